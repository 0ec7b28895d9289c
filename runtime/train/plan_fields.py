"""The trainer's flags a planner Plan sets (``--plan`` or ``$SCALECTL_PLAN_FILE``), each
with where in the plan it came from, and the plans the reference trainer cannot run."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from contract.plan import PlanError, read_plan
from contract.plan_trainer import reference_trainer_refusal


class ConfigError(ValueError):
    """Bad flags or Plan; the trainer prints ``error: <message>`` and exits 2."""

    user_error = True


_PLAN_FIELDS: dict[str, tuple[str, str]] = {
    "layers": ("model", "num_layers"),
    "hidden": ("model", "hidden_size"),
    "heads": ("model", "num_attention_heads"),
    "kv_heads": ("model", "num_kv_heads"),
    "ffn_hidden": ("model", "ffn_hidden_size"),
    "vocab": ("model", "vocab_size"),
    "tied_embeddings": ("model", "tied_embeddings"),
    "activation": ("model", "activation"),
    "norm": ("model", "norm"),
    "bias": ("model", "bias"),
    "head_dim": ("model", "head_dim"),
    "experts": ("model", "num_experts"),
    "top_k": ("model", "top_k"),
    "moe_ffn_hidden": ("model", "moe_ffn_hidden_size"),
    "shared_ffn_hidden": ("model", "shared_expert_ffn_hidden_size"),
    "dense_first_layers": ("model", "dense_first_layers"),
    "router_score": ("model", "router_score"),
    "moe_capacity_factor": ("training", "moe_capacity_factor"),
    "seq_len": ("training", "seq_len"),
    "micro_batch": ("layout", "micro_batch"),
    "dp": ("layout", "dp"),
    "tp": ("layout", "tp"),
    "pp": ("layout", "pp"),
    "interleave": ("layout", "interleave"),
    "schedule": ("layout", "schedule"),
    "uneven_stages": ("layout", "uneven_stages"),
    "cp": ("layout", "cp"),
    "cp_impl": ("layout", "cp_impl"),
    "ep": ("layout", "ep"),
    "sequence_parallel": ("layout", "sequence_parallel"),
    "sharding": ("layout", "sharding"),
    "hsdp_shard_size": ("layout", "hsdp_shard_size"),
    "recompute": ("layout", "recompute"),
    "precision": ("training", "precision"),
    "compile": ("training", "compile"),
    "finetune": ("training", "finetune"),
    "lora_rank": ("training", "lora_rank"),
    "lora_alpha": ("training", "lora_alpha"),
    "lora_targets": ("training", "lora_targets"),
    "base_format": ("training", "base_format"),
}


def read_plan_fields(path: Path, flag: str) -> dict[str, tuple[Any, str]]:
    try:
        plan = read_plan(path)
    except PlanError as exc:
        raise ConfigError(f"{flag} {exc}") from None
    found: dict[str, tuple[Any, str]] = {}
    for name, (section, key) in _PLAN_FIELDS.items():
        value = getattr(getattr(plan, section), key)
        if value is not None:
            found[name] = (value, f"plan {section}.{key}")
    training, layout = plan.training, plan.layout
    batch = _positive(training.global_batch_seqs)
    dp = _positive(layout.dp)
    micro = _positive(layout.micro_batch if layout.micro_batch is not None else 1)
    if batch and dp and micro:
        per_step = int(dp * micro)
        where = "plan training.global_batch_seqs / (layout.dp * layout.micro_batch)"
        # Not a whole number is reported by validation, unless --grad-accum overrides it.
        accum = batch / per_step
        found["grad_accum"] = (int(accum) if accum.is_integer() else accum, where)
    total, seq = _positive(training.total_tokens), _positive(training.seq_len)
    if batch and seq and total:
        steps = max(1, math.ceil(total / (batch * seq)))
        found["steps"] = (steps, "plan training.total_tokens / global batch tokens")
    refusal = reference_trainer_refusal(plan)
    if refusal is not None:
        raise ConfigError(f"{flag} {refusal}")
    if "hidden" not in found or "layers" not in found:
        raise ConfigError(
            f"{flag} {path}: no model.num_layers / model.hidden_size; is this a planner Plan?"
        )
    return found


def _positive(value: Any) -> float | None:
    """``value`` as a float when it is a positive JSON number, else None."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    return None
