"""A fine-tuned checkpoint out as Hugging Face directories: ``merged/`` (the base with the
adapters folded in, or the fully fine-tuned weights), which ``transformers`` loads and
serving stacks read, and ``adapter/`` (LoRA runs: the adapters alone in PEFT's format).

One process does it, from the committed checkpoint: the trainer's rank 0 after the final
step, and ``scalectl export JOB``. The base weights are read again from the run's
``--from`` directory, the adapters (or all weights) from the checkpoint; QLoRA's base is
quantised to NF4 again exactly as in training (quantisation is deterministic), so the merged
weights are the dequantised base plus the scaled update the run trained against.
"""

from __future__ import annotations

import json
import shutil
import warnings
from dataclasses import dataclass, fields
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp

from runtime.train import checkpoint, finetune
from runtime.train.config import TrainConfig
from runtime.train.plan_fields import ConfigError

MERGED = "merged"
"""Sub-directory of the export with the merged Hugging Face model."""
ADAPTER = "adapter"
"""Sub-directory of the export with the PEFT adapter (LoRA and QLoRA runs)."""

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class Exported:
    """What one export wrote."""

    merged_dir: Path
    """The merged model (config.json, safetensors, tokenizer files)."""
    adapter_dir: Path | None
    """The adapters alone (PEFT format); None for full fine-tuning."""
    step: int
    """Training step of the checkpoint exported."""


def run_config(path: Path) -> TrainConfig:
    """The TrainConfig a checkpoint was written under (its trainer state records it)."""
    saved = checkpoint.read_trainer_state(path).get("config", {})
    known = {item.name for item in fields(TrainConfig)}
    config = TrainConfig(**{k: v for k, v in saved.items() if k in known})
    if not config.finetune:
        raise ConfigError(
            f"checkpoint {path}: a pre-training run (no --finetune); export writes fine-tuned "
            "checkpoints of a --from model as Hugging Face directories"
        )
    return config


def source_dtype(directory: Path) -> torch.dtype:
    """The base checkpoint's weight dtype (config.json ``torch_dtype``, or ``dtype`` as
    transformers 5 writes it); float32 when it says nothing."""
    try:
        config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return torch.float32
    name = config.get("torch_dtype") or config.get("dtype") or "float32"
    return _DTYPES.get(str(name), torch.float32)


def export_checkpoint(path: Path, out: Path, dtype: torch.dtype | None = None) -> Exported:
    """Write ``out/merged`` (and ``out/adapter``) from committed checkpoint ``path``;
    ``out`` is replaced only once both are complete. ``dtype``: that of the base
    checkpoint unless given."""
    from runtime.train import lora
    from runtime.train.hf_export import export_hf, export_peft_adapter

    cfg = run_config(path)
    source = Path(cfg.init_from)
    step = int(checkpoint.read_trainer_state(path)["step"])
    torch.manual_seed(cfg.seed)
    model = finetune.make_model(cfg, torch.device("cpu"))
    _load_trained(path, model, adapters_only=cfg.finetune in finetune.ADAPTERS)
    state = {k: v.detach() for k, v in model.state_dict().items()}
    model_cfg = model.cfg
    out_dtype = dtype or source_dtype(source)
    partial = out.with_name(f".{out.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        adapter_dir: Path | None = None
        if cfg.finetune in finetune.ADAPTERS:
            scale = cfg.lora_alpha / cfg.lora_rank
            export_hf(
                partial / MERGED, lora.merged_state_dict(state, scale), model_cfg, source, out_dtype
            )
            export_peft_adapter(
                partial / ADAPTER,
                lora.adapter_state_dict(state),
                model_cfg,
                rank=cfg.lora_rank,
                alpha=cfg.lora_alpha,
                targets=finetune.resolve_targets(cfg.lora_targets),
                source_dir=source,
            )
            adapter_dir = out / ADAPTER
        else:
            export_hf(partial / MERGED, state, model_cfg, source, out_dtype)
        _replace(partial, out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return Exported(merged_dir=out / MERGED, adapter_dir=adapter_dir, step=step)


def _load_trained(path: Path, model: torch.nn.Module, *, adapters_only: bool) -> None:
    """The checkpoint's trained tensors into ``model`` (one process, no process group)."""
    if not adapters_only:
        checkpoint.load_model_single_process(path, model)
        return
    from runtime.train import lora

    trained = lora.adapter_state_dict(dict(model.state_dict()))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        dcp.load({"model": trained}, checkpoint_id=path, no_dist=True)
    missing = model.load_state_dict(trained, strict=False).unexpected_keys
    if missing:
        raise ConfigError(f"checkpoint {path}: unexpected adapter tensors {missing[:3]}")


def _replace(new: Path, out: Path) -> None:
    """Put directory ``new`` at ``out``, an older export there removed only afterwards."""
    old = out.with_name(f".{out.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    new.rename(out)
    shutil.rmtree(old, ignore_errors=True)
