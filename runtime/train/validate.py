"""Validation of a parsed :class:`~runtime.train.config.TrainConfig`: each bad value is one
``ConfigError`` naming the flag or Plan field that holds it and how to fix it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import TYPE_CHECKING

from contract.plan_layout import SCHEDULES
from runtime.train import finetune
from runtime.train.context import CP_IMPLS
from runtime.train.data import MIN_VOCAB
from runtime.train.moe import ROUTER_SCORES
from runtime.train.parallel import RECOMPUTES, SHARDINGS
from runtime.train.plan_fields import ConfigError

if TYPE_CHECKING:
    from runtime.train.config import TrainConfig

PRECISIONS = ("auto", "fp32", "bf16", "bf16-pure", "fp8")
"""Numerics the trainer applies (fp8 only where torchao's float8 training runs)."""


def validate(cfg: TrainConfig, where: Callable[[str], str]) -> None:
    def need(ok: bool, name: str, message: str) -> None:
        if not ok:
            value = getattr(cfg, name)
            raise ConfigError(f"{where(name)} {value}: {message}")

    expected_types: dict[str, tuple[type, ...]] = {
        "int": (int,),
        "float": (int, float),
        "str": (str,),
        "bool": (bool,),
    }
    for item in fields(cfg):
        value = getattr(cfg, item.name)
        expected = expected_types[str(item.type)]
        if not isinstance(value, expected) or (expected == (int,) and isinstance(value, bool)):
            raise ConfigError(f"{where(item.name)} {value!r}: expected {item.type}")
    for name in ("layers", "hidden", "heads", "kv_heads", "ffn_hidden", "seq_len", "micro_batch"):
        need(getattr(cfg, name) > 0, name, "must be a positive integer")
    for name in ("grad_accum", "steps", "keep_checkpoints", "eval_sequences", "log_every"):
        need(getattr(cfg, name) >= 1, name, "must be at least 1")
    for name in ("warmup_steps", "ckpt_every", "eval_every", "seed"):
        need(getattr(cfg, name) >= 0, name, "must be 0 or more")
    need(cfg.head_dim >= 0, "head_dim", "must be 0 (hidden / heads) or more")
    need(cfg.head_dim % 2 == 0, "head_dim", "must be even (rotary pairs)")
    if cfg.head_dim == 0:
        need(cfg.hidden % cfg.heads == 0, "heads", f"must divide the hidden size {cfg.hidden}")
        need(
            (cfg.hidden // cfg.heads) % 2 == 0,
            "heads",
            "hidden / heads must be even (rotary pairs)",
        )
    need(cfg.activation in ("swiglu", "gelu"), "activation", "use swiglu or gelu")
    need(cfg.norm in ("rmsnorm", "layernorm"), "norm", "use rmsnorm or layernorm")
    need(cfg.heads % cfg.kv_heads == 0, "kv_heads", f"must divide the {cfg.heads} query heads")
    need(
        cfg.vocab >= MIN_VOCAB,
        "vocab",
        f"must be at least {MIN_VOCAB} (256 bytes + end of document)",
    )
    need(cfg.lr > 0, "lr", "must be positive")
    need(0 <= cfg.min_lr <= cfg.lr, "min_lr", f"must be between 0 and --lr {cfg.lr}")
    need(cfg.weight_decay >= 0, "weight_decay", "must be 0 or more")
    need(cfg.clip_grad_norm >= 0, "clip_grad_norm", "must be 0 (off) or more")
    need(cfg.dist_timeout_s > 0, "dist_timeout_s", "must be positive")
    need(cfg.device in ("auto", "cpu", "cuda"), "device", "use auto, cpu or cuda")
    for name in ("tp", "pp", "cp", "ep", "interleave"):
        need(getattr(cfg, name) >= 1, name, "must be 1 or more")
    need(cfg.cp_impl in CP_IMPLS, "cp_impl", f"use one of {', '.join(CP_IMPLS)}")
    need(
        cfg.seq_len % (2 * cfg.cp) == 0,
        "cp",
        f"2 x cp must divide the sequence of {cfg.seq_len} tokens (load-balanced causal "
        "chunks); plan a cp or seq_len that divides",
    )
    need(cfg.schedule in SCHEDULES, "schedule", f"use one of {', '.join(SCHEDULES)}")
    need(
        cfg.pp > 1 or (cfg.interleave == 1 and not cfg.uneven_stages),
        "interleave" if cfg.interleave > 1 else "uneven_stages",
        "needs pipeline stages (--pp 2 or more)",
    )
    for name in ("dp", "hsdp_shard_size", "loss_chunks"):
        need(getattr(cfg, name) >= 0, name, "must be 0 (derived) or more")
    need(
        not cfg.elastic_dp or cfg.dp >= 1,
        "elastic_dp",
        "needs --dp or --plan: the planned dp whose global batch it keeps",
    )
    need(cfg.sharding in SHARDINGS, "sharding", f"use one of {', '.join(SHARDINGS)}")
    need(cfg.recompute in RECOMPUTES, "recompute", f"use one of {', '.join(RECOMPUTES)}")
    need(cfg.precision in PRECISIONS, "precision", f"use one of {', '.join(PRECISIONS)}")
    _validate_moe(cfg, need)
    finetune.check(cfg, need)
    need(cfg.heads % cfg.tp == 0, "tp", f"must divide the {cfg.heads} attention heads")
    need(cfg.kv_heads % cfg.tp == 0, "tp", f"must divide the {cfg.kv_heads} key/value heads")


def _validate_moe(cfg: TrainConfig, need: Callable[[bool, str, str], None]) -> None:
    """The MoE fields, and what the trainer's MoE layers do not run with."""
    need(cfg.experts >= 1, "experts", "must be 1 (dense) or more")
    for name in ("moe_ffn_hidden", "shared_ffn_hidden", "dense_first_layers"):
        need(getattr(cfg, name) >= 0, name, "must be 0 or more")
    need(cfg.router_score in ROUTER_SCORES, "router_score", "use softmax or sigmoid")
    need(
        cfg.moe_capacity_factor == 0 or cfg.moe_capacity_factor >= 1,
        "moe_capacity_factor",
        "must be 0 (dropless) or at least 1",
    )
    need(cfg.moe_aux_loss_coef >= 0, "moe_aux_loss_coef", "must be 0 (off) or more")
    if cfg.experts == 1:
        need(cfg.ep == 1, "ep", "the model has no experts (experts 1); use ep 1")
        return
    need(1 <= cfg.top_k <= cfg.experts, "top_k", f"must be 1 to the {cfg.experts} experts")
    need(
        cfg.dense_first_layers < cfg.layers,
        "dense_first_layers",
        f"must be fewer than the {cfg.layers} layers",
    )
    need(cfg.experts % cfg.ep == 0, "ep", f"must divide the {cfg.experts} experts")
    for name, bad, fix in (
        ("tp", cfg.tp > 1, "the trainer's MoE layers run without tensor parallelism; plan tp 1"),
        ("pp", cfg.pp > 1, "the trainer's MoE layers run without pipeline stages; plan pp 1"),
        # torchtitan's ep borrows from dp_shard x cp; the expert mesh here spans dp only.
        ("cp", cfg.cp > 1, "the expert mesh does not span context-parallel ranks; plan cp 1"),
        ("recompute", cfg.recompute == "full",
         "an MoE block is not recomputed whole (its routing counts would double); use selective"),
        ("compile", cfg.compile, "the MoE layers' token exchange is not compiled; drop --compile"),
        ("activation", cfg.activation != "swiglu", "MoE experts are SwiGLU; use swiglu"),
    ):  # fmt: skip
        need(not bad, name, f"with {cfg.experts} experts: {fix}")
