"""Fine-tuning in the reference trainer: ``--finetune full|lora|qlora --from DIR``.

The model's shape, weights and tokenizer come from the Hugging Face checkpoint directory
``--from`` (``runtime.train.hf_checkpoint``); a shape the flags or the Plan also give must
agree with it. ``full`` trains every weight as pre-training does; ``lora`` freezes them
and trains low-rank adapters on the targeted projections (Hu et al. 2021, Sec. 4;
``runtime.train.lora``); ``qlora`` does the same over NF4 base weights (Dettmers et al.
2023, Sec. 3). Adapter runs checkpoint only what they train: the frozen base is the
``--from`` directory, read again at every start and by ``scalectl export``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch.distributed.checkpoint.state_dict import StateDictOptions

from runtime.train.plan_fields import ConfigError

if TYPE_CHECKING:
    from runtime.train.batches import Batches
    from runtime.train.config import TrainConfig
    from runtime.train.model import ModelConfig, Transformer

FINETUNES = ("full", "lora", "qlora")
"""What ``--finetune`` accepts (empty: pre-training)."""
ADAPTERS = ("lora", "qlora")
"""Modes that freeze the base weights and train adapters."""
CHECKPOINT_FIELDS = ("finetune", "lora_rank", "lora_alpha", "lora_targets", "base_format")
"""Fields a fine-tuning checkpoint only resumes under when unchanged (they fix which
parameters it holds and what they mean)."""


def resolve_targets(text: str) -> tuple[str, ...]:
    """The planner's target names (q, k, v, o, gate, up, down) ``--lora-targets`` selects:
    one vocabulary for the plan and the run."""
    from contract.finetune_targets import TargetsError
    from contract.finetune_targets import resolve_targets as contract_targets

    try:
        return contract_targets(text)
    except TargetsError as exc:
        raise ConfigError(str(exc).rstrip(".")) from None


def check(cfg: TrainConfig, need: Callable[[bool, str, str], None]) -> None:
    """The fine-tuning flags, and what the trainer does not fine-tune with."""
    need(
        cfg.finetune in ("", *FINETUNES),
        "finetune",
        "use full, lora or qlora (or leave it empty to pre-train)",
    )
    if not cfg.finetune:
        need(not cfg.init_from, "init_from", "needs --finetune full, lora or qlora")
        return
    need(
        bool(cfg.init_from),
        "finetune",
        "needs --from DIR, a Hugging Face checkpoint directory (config.json, *.safetensors, "
        "tokenizer.json)",
    )
    need(
        cfg.data.endswith(".jsonl"),
        "data",
        "fine-tuning reads instruction records; pass --data FILE.jsonl (one prompt/response, "
        "messages or instruction/output object per line)",
    )
    need(cfg.experts == 1, "experts", "fine-tuning loads dense checkpoints; use experts 1")
    if cfg.finetune not in ADAPTERS:
        return
    need(cfg.lora_rank >= 1, "lora_rank", "must be 1 or more")
    need(cfg.lora_alpha > 0, "lora_alpha", "must be positive")
    dims = matrix_dims(cfg)
    targets = resolve_targets(cfg.lora_targets)
    missing = [t for t in targets if t not in dims]
    need(
        not missing,
        "lora_targets",
        f"this model's MLP has no {'/'.join(missing)} projection (GELU); drop it",
    )
    smallest = min(min(dims[t]) for t in targets)
    need(
        cfg.lora_rank <= smallest,
        "lora_rank",
        f"exceeds {smallest}, the smallest dimension of a targeted matrix; use {smallest} or less",
    )
    if cfg.finetune == "qlora":
        from runtime.train import lora

        need(
            cfg.tp == 1,
            "tp",
            "QLoRA's NF4 base weights are not split by tensor parallelism in the trainer; "
            "plan tp 1 (QLoRA shards over data-parallel ranks with FSDP)",
        )

        try:
            lora.check_base_format(cfg.base_format)
        except lora.LoRAError as exc:
            raise ConfigError(str(exc)) from None


def matrix_dims(cfg: TrainConfig) -> dict[str, tuple[int, int]]:
    """(in, out) features of each projection of a block, by target name (GELU MLPs have
    no gate)."""
    head = cfg.head_dim or cfg.hidden // cfg.heads
    q, kv, h, f = cfg.heads * head, cfg.kv_heads * head, cfg.hidden, cfg.ffn_hidden
    dims = {"q": (h, q), "k": (h, kv), "v": (h, kv), "o": (q, h), "up": (h, f), "down": (f, h)}
    if cfg.activation == "swiglu":
        dims["gate"] = (h, f)
    return dims


SHAPE_FIELDS = {
    "layers": "layers",
    "hidden": "hidden",
    "heads": "heads",
    "kv_heads": "kv_heads",
    "ffn_hidden": "ffn_hidden",
    "vocab": "vocab",
    "tied_embeddings": "tied",
    "activation": "activation",
    "norm": "norm",
}
"""TrainConfig field -> ModelConfig field the checkpoint's config.json fixes."""


def with_checkpoint_shape(cfg: TrainConfig, origin: dict[str, str]) -> TrainConfig:
    """``cfg`` with the model shape of the ``--from`` checkpoint; a shape field the Plan or
    a flag set (``origin``) to another value is an error naming both."""
    from runtime.train.hf_checkpoint import check_hf_weights, hf_model_config

    source = Path(cfg.init_from).absolute()
    model = hf_model_config(source, cfg.seq_len)
    check_hf_weights(source, model)  # a bad checkpoint is refused before anything is written
    values: dict[str, Any] = {name: getattr(model, key) for name, key in SHAPE_FIELDS.items()}
    # Absolute: checkpoints record it, and `scalectl export` may run elsewhere.
    values["init_from"] = str(source)
    values["bias"] = model.bias
    values["head_dim"] = model.head_dim if model.head_dim * model.heads != model.hidden else 0
    for name, value in values.items():
        if name == "init_from":
            continue
        given = getattr(cfg, name)
        effective = (given or cfg.hidden // max(cfg.heads, 1)) if name == "head_dim" else given
        wanted = model.head_dim if name == "head_dim" else value
        if name in origin and effective != wanted:
            raise ConfigError(
                f"{origin[name]} {given}: the checkpoint --from {cfg.init_from} has "
                f"{name} {wanted}; plan from the checkpoint (scalectl plan estimate --model "
                f"{cfg.init_from}) or drop the flag"
            )
    return replace(cfg, **values)


def model_config(cfg: TrainConfig) -> ModelConfig:
    """The checkpoint's model (its rotary base, norm epsilon, biases) at ``cfg.seq_len``."""
    from runtime.train.hf_checkpoint import hf_model_config

    return hf_model_config(Path(cfg.init_from), cfg.seq_len)


def make_model(cfg: TrainConfig, device: torch.device, quantize: bool = True) -> Transformer:
    """The ``--from`` model with its weights on ``device``, adapters added and (qlora, unless
    ``quantize`` is off) the base quantised; not yet parallelised. Call under the run's seed:
    every rank must draw the same adapter initialisation."""
    from runtime.train import lora
    from runtime.train.hf_checkpoint import load_hf_weights
    from runtime.train.model import Transformer

    with torch.device(device):
        model = Transformer(model_config(cfg))
    load_hf_weights(Path(cfg.init_from), model)
    if cfg.finetune in ADAPTERS:
        lora.apply_lora(model, resolve_targets(cfg.lora_targets), cfg.lora_rank, cfg.lora_alpha)
        if cfg.finetune == "qlora" and quantize:
            lora.quantize_base_nf4(model)
    return model


def state_options(cfg: TrainConfig) -> StateDictOptions | None:
    """Checkpoint options: adapter runs save and load only trained parameters."""
    if cfg.finetune not in ADAPTERS:
        return None
    from runtime.train import lora

    return lora.trainable_state_dict_options()


def check_vocab(cfg: TrainConfig, batches: Batches) -> None:
    """The tokenizer's ids must index the model's embedding."""
    vocab = getattr(getattr(batches, "corpus", None), "vocab_size", None)
    if cfg.finetune and vocab is not None and vocab > cfg.vocab:
        raise ConfigError(
            f"--from {cfg.init_from}: tokenizer.json has {vocab} tokens but the model's "
            f"embedding has {cfg.vocab} rows; use the checkpoint's own tokenizer"
        )


def started_fields(cfg: TrainConfig, trained_params: int) -> dict[str, Any]:
    """What the ``started`` event says of a fine-tune (nothing for pre-training): the mode,
    the parameters trained and, for adapter runs, the adapters as they ran."""
    if not cfg.finetune:
        return {}
    fields: dict[str, Any] = {"finetune": cfg.finetune, "trained_params": trained_params}
    if cfg.finetune in ADAPTERS:
        fields |= {"lora_rank": cfg.lora_rank, "lora_targets": cfg.lora_targets}
    if cfg.finetune == "qlora":
        fields["base_format"] = cfg.base_format
    return fields
