"""Write our ``Transformer``'s weights, or its LoRA adapters alone, as Hugging Face files.

``export_hf`` writes what transformers' ``save_pretrained`` would: the source checkpoint's
config.json (``dtype`` updated), the weights under transformers' names in safetensors
files of at most ``max_shard_bytes`` each (``model.safetensors``, or
``model-0000i-of-0000n.safetensors`` and ``model.safetensors.index.json`` when there is more
than one), each with metadata ``{"format": "pt"}``, and the source's tokenizer and
generation files. ``export_peft_adapter`` writes PEFT's layout (``adapter_config.json`` +
``adapter_model.safetensors``) that ``peft.PeftModel.from_pretrained`` puts on the source
model. Query/key rows go back to transformers' rotary order (``runtime.train.hf_names``).

Atomic: everything is written into a temporary sibling of the destination, which is
renamed into place at the end; on any failure the sibling is removed and the destination
is untouched.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import torch

from runtime.train.hf_checkpoint import (
    CONFIG_FILE,
    INDEX_FILE,
    WEIGHTS_FILE,
    CheckpointError,
    hf_model_config,
    read_config,
)
from runtime.train.hf_names import LORA_TARGETS, ours_to_hf, rotated_heads, rows_to_hf
from runtime.train.lora import SWIGLU_MODULES
from runtime.train.model import ModelConfig, Transformer

DEFAULT_SHARD_BYTES = 5 * 10**9
"""transformers 4's ``save_pretrained(max_shard_size="5GB")`` default (huggingface_hub
reads GB as 10^9 bytes); transformers 5 raised its default to 50GB."""
COPIED_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "generation_config.json",
    "chat_template.jinja",
    "tokenizer.model",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
)
"""Files taken over from the source directory when it has them: the tokenizer (fast
tokenizer.json, sentencepiece tokenizer.model, GPT-2 style vocab/merges), its special
tokens and chat template (transformers 5 keeps it in chat_template.jinja) and the
generation defaults."""
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
OUR_MODULES = SWIGLU_MODULES
"""The planner's LoRA target names -> our module inside ``layers.{i}`` (the checkpoint
families read here are SwiGLU models)."""


def parameter_shapes(cfg: ModelConfig) -> dict[str, torch.Size]:
    """Our parameter names and shapes for ``cfg`` (a tied output weight only as
    ``embed.weight``), from a model on the meta device: no memory."""
    with torch.device("meta"):
        model = Transformer(cfg)
    return {name: param.shape for name, param in model.named_parameters()}


def _check_source(cfg: ModelConfig, source_dir: Path) -> dict[str, object]:
    """The source's config.json, after checking that ``cfg`` is the model it describes."""
    config = read_config(source_dir)
    if hf_model_config(source_dir, cfg.seq_len) != cfg:
        raise ValueError(
            f"{source_dir / CONFIG_FILE} describes another model than the one exported; "
            "export with the ModelConfig hf_model_config read from it"
        )
    return config


@contextmanager
def staged_dir(out_dir: Path, source_dir: Path, overwrite: bool) -> Iterator[Path]:
    """A temporary sibling of ``out_dir`` to write into; renamed to ``out_dir`` when the
    block ends without an exception, removed otherwise."""
    if out_dir.resolve() == source_dir.resolve():
        raise CheckpointError(f"{out_dir}: is the source checkpoint; export to another directory")
    if out_dir.exists() and not out_dir.is_dir():
        raise CheckpointError(f"{out_dir}: exists and is not a directory; pick another path")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise CheckpointError(f"{out_dir}: exists and is not empty; remove it or pick another")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    os.chmod(staging, 0o755)  # mkdtemp's 0700 would make the export private to this user
    try:
        yield staging
        _fsync_files(staging)
        if out_dir.exists():
            old = staging.with_suffix(".old")
            os.rename(out_dir, old)
            os.rename(staging, out_dir)
            shutil.rmtree(old)
        else:
            os.rename(staging, out_dir)
        _fsync_files(out_dir.parent, files=False)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _fsync_files(directory: Path, files: bool = True) -> None:
    """Flush ``directory``'s files and its entry list to disk before the rename publishes
    them (as ``contract.jobdir.write_json_atomic`` does for one file)."""
    for path in sorted(directory.iterdir()) if files else []:
        with path.open("rb") as handle:
            os.fsync(handle.fileno())
    handle_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(handle_fd)
    finally:
        os.close(handle_fd)


def _save(tensors: dict[str, torch.Tensor], path: Path) -> None:
    from safetensors import torch as safetensors_torch

    safetensors_torch.save_file(tensors, str(path), metadata={"format": "pt"})


def _hf_tensor(
    name: str, tensor: torch.Tensor, cfg: ModelConfig, dtype: torch.dtype
) -> torch.Tensor:
    """Our ``name``'s tensor as transformers stores it: CPU, ``dtype``, rotary rows reordered."""
    tensor = tensor.detach().to(device="cpu", dtype=dtype)
    heads = rotated_heads(name, cfg)
    return (rows_to_hf(tensor, heads) if heads else tensor).contiguous()


def _checked_names(state: Mapping[str, torch.Tensor], cfg: ModelConfig) -> list[str]:
    """Our names to export, in the model's order, after checking ``state`` holds exactly
    the model's parameters with their shapes."""
    shapes = parameter_shapes(cfg)
    extra = sorted(set(state) - set(shapes) - ({"output.weight"} if cfg.tied else set()))
    if extra:
        hint = "; merge the adapters first" if any("lora_" in n for n in extra) else ""
        raise ValueError(f"state has {extra[0]}, not a parameter of the model{hint}")
    for name, shape in shapes.items():
        if name not in state:
            raise ValueError(f"state has no {name}: export a full, gathered state dict")
        if state[name].shape != shape:
            raise ValueError(f"state's {name} is {list(state[name].shape)}, not {list(shape)}")
    return list(shapes)


def shard_groups(sizes: list[tuple[str, int]], max_bytes: int) -> list[list[str]]:
    """Names in order, cut into groups of at most ``max_bytes`` (a larger tensor alone),
    as huggingface_hub's ``split_torch_state_dict_into_shards`` cuts them."""
    groups: list[list[str]] = [[]]
    used = 0
    for name, size in sizes:
        if groups[-1] and used + size > max_bytes:
            groups.append([])
            used = 0
        groups[-1].append(name)
        used += size
    return groups


def export_hf(
    out_dir: Path,
    state: dict[str, torch.Tensor],
    cfg: ModelConfig,
    source_dir: Path,
    dtype: torch.dtype,
    *,
    max_shard_bytes: int = DEFAULT_SHARD_BYTES,
    overwrite: bool = False,
) -> None:
    """Write our full (merged, gathered) ``state`` of the model ``cfg``, read from
    ``source_dir``, as a Hugging Face checkpoint in ``out_dir``, tensors in ``dtype``;
    ``overwrite`` replaces an existing non-empty ``out_dir``."""
    out_dir, source_dir = Path(out_dir), Path(source_dir)
    config = _check_source(cfg, source_dir)
    names = _checked_names(state, cfg)
    itemsize = torch.empty((), dtype=dtype).element_size()
    groups = shard_groups([(n, state[n].numel() * itemsize) for n in names], max_shard_bytes)
    with staged_dir(out_dir, source_dir, overwrite) as staging:
        weight_map: dict[str, str] = {}
        for index, group in enumerate(groups, start=1):
            file = (
                WEIGHTS_FILE
                if len(groups) == 1
                else f"model-{index:05d}-of-{len(groups):05d}.safetensors"
            )
            tensors = {ours_to_hf(n): _hf_tensor(n, state[n], cfg, dtype) for n in group}
            _save(tensors, staging / file)
            weight_map.update(dict.fromkeys(tensors, file))
            del tensors
        if len(groups) > 1:
            total = sum(state[n].numel() for n in names)
            index_doc = {
                "metadata": {"total_size": total * itemsize, "total_parameters": total},
                "weight_map": weight_map,
            }
            (staging / INDEX_FILE).write_text(json.dumps(index_doc, indent=2) + "\n")
        dtype_name = str(dtype).removeprefix("torch.")
        config["dtype"] = dtype_name
        if "torch_dtype" in config:  # transformers 4's name for it
            config["torch_dtype"] = dtype_name
        (staging / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        for name in COPIED_FILES:
            if (source_dir / name).is_file():
                shutil.copy2(source_dir / name, staging / name)


def export_peft_adapter(
    out_dir: Path,
    adapters: dict[str, torch.Tensor],
    cfg: ModelConfig,
    *,
    rank: int,
    alpha: float,
    targets: tuple[str, ...],
    source_dir: Path,
    overwrite: bool = False,
) -> None:
    """Write the LoRA ``adapters`` (ours: ``layers.{i}.attn.wq.lora_a`` [r, in] and
    ``lora_b`` [out, r], on every block for each of ``targets``, the planner's names) in
    PEFT's layout for the model read from ``source_dir``."""
    out_dir, source_dir = Path(out_dir), Path(source_dir)
    _check_source(cfg, source_dir)
    unknown = [t for t in targets if t not in OUR_MODULES]
    if unknown or not targets:
        raise ValueError(f"targets {targets!r}: use names among {', '.join(OUR_MODULES)}")
    shapes = parameter_shapes(cfg)
    expected: dict[str, tuple[int, ...]] = {}
    for layer in range(cfg.layers):
        for target in targets:
            module = f"layers.{layer}.{OUR_MODULES[target]}"
            out_features, in_features = shapes[f"{module}.weight"]
            expected[f"{module}.lora_a"] = (rank, in_features)
            expected[f"{module}.lora_b"] = (out_features, rank)
    if set(adapters) != set(expected):
        odd = sorted(set(adapters) ^ set(expected))
        raise ValueError(f"adapters do not match targets {targets!r} on every block: {odd[0]}")
    tensors: dict[str, torch.Tensor] = {}
    for name, shape in expected.items():
        tensor = adapters[name]
        if tuple(tensor.shape) != shape:
            raise ValueError(f"adapter {name} is {list(tensor.shape)}, not {list(shape)}")
        module, kind = name.rsplit(".", 1)
        peft = f"base_model.model.{ours_to_hf(module + '.weight').removesuffix('.weight')}"
        key = f"{peft}.{'lora_A' if kind == 'lora_a' else 'lora_B'}.weight"
        tensors[key] = _hf_tensor(name, tensor, cfg, tensor.dtype)
    adapter_config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": str(source_dir.resolve()),
        "r": rank,
        "lora_alpha": int(alpha) if float(alpha).is_integer() else alpha,
        "lora_dropout": 0.0,
        "target_modules": sorted(LORA_TARGETS[t] for t in targets),
        "bias": "none",
        "fan_in_fan_out": False,
        "inference_mode": True,
        "init_lora_weights": True,
        "use_rslora": False,
        "modules_to_save": None,
    }
    with staged_dir(out_dir, source_dir, overwrite) as staging:
        _save(tensors, staging / ADAPTER_WEIGHTS)
        text = json.dumps(adapter_config, indent=2, sort_keys=True) + "\n"
        (staging / ADAPTER_CONFIG).write_text(text)
