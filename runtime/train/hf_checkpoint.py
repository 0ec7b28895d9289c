"""Read a local Hugging Face checkpoint (Llama, Mistral, Qwen2) into our ``Transformer``.

A checkpoint directory holds ``config.json`` and the weights as ``model.safetensors`` or as
shards listed by ``model.safetensors.index.json`` (its ``weight_map``: tensor name ->
file), the layout transformers' ``save_pretrained`` writes. ``hf_model_config`` turns
config.json into a ``ModelConfig``; ``load_hf_weights`` checks every tensor's name and
shape against the model from the files' headers alone, then copies the tensors one at a
time (``safetensors.safe_open`` maps the file, so a 70B checkpoint is never held whole in
memory beside the model), reordering the query/key rows for our rotary layout
(``runtime.train.hf_names``) and casting to the model's dtype. Each bad input is a
``CheckpointError``: one line naming the file, tensor or field and the fix.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from runtime.train.hf_names import (
    HF_FAMILIES,
    hf_to_ours,
    ours_to_hf,
    rotated_heads,
    rows_from_hf,
)
from runtime.train.model import Llama3Rope, ModelConfig, Transformer

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)
"""Tensors some older checkpoints carry that are recomputed, not learned: transformers
ignores them too."""
ADAPTER_SUFFIXES = (".lora_a", ".lora_b")
"""Parameters of ``runtime.train.lora``'s adapters: not in a base checkpoint."""
NORM_EPS_DEFAULT = 1e-6
"""``rms_norm_eps`` when config.json omits it: LlamaConfig's, MistralConfig's and
Qwen2Config's default (transformers 5)."""
ROPE_THETA_DEFAULT = 10_000.0
"""``rope_theta`` when config.json omits it: the three config classes' default."""


class CheckpointError(ValueError):
    """A Hugging Face checkpoint cannot be used; the message names the file or field and
    the fix."""

    user_error = True


def _line(exc: BaseException) -> str:
    """The first line of an exception's message: errors stay one line."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def read_config(directory: Path) -> dict[str, Any]:
    """config.json of the checkpoint ``directory`` as a dict."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"--from {directory}: no such directory; pass a local checkpoint")
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(
            f"{path}: missing; a Hugging Face checkpoint directory holds config.json "
            "(download the whole model repository)"
        )
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({_line(exc)}); re-download it") from exc
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: not a JSON object; re-download it")
    return config


def _int(
    config: Mapping[str, Any], key: str, path: Path, default: int | None = None, label: str = ""
) -> int:
    value = _value(config, key, path, default, label)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise CheckpointError(f"{path}: {label or key} is {value!r}; it must be a positive integer")
    return value


def _number(
    config: Mapping[str, Any], key: str, path: Path, default: float | None = None, label: str = ""
) -> float:
    value = _value(config, key, path, default, label)
    if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
        raise CheckpointError(f"{path}: {label or key} is {value!r}; it must be a positive number")
    return float(value)


def _value(
    config: Mapping[str, Any], key: str, path: Path, default: object, label: str = ""
) -> object:
    value = config.get(key)
    value = default if value is None else value  # a null in config.json means "default"
    if value is None:
        raise CheckpointError(f"{path}: no {label or key}; add it (transformers' config names it)")
    return value


def _rope(config: Mapping[str, Any], path: Path) -> tuple[float, Llama3Rope | None]:
    """(rope_theta, Llama 3.1 scaling or None) from transformers 5's ``rope_parameters``
    or transformers 4's ``rope_theta`` + ``rope_scaling``."""
    key = "rope_parameters" if isinstance(config.get("rope_parameters"), dict) else "rope_scaling"
    params = config.get(key) or {}
    if not isinstance(params, dict):
        raise CheckpointError(f"{path}: {key} is {params!r}; it must be an object or null")
    theta = _number({**config, **params}, "rope_theta", path, ROPE_THETA_DEFAULT)
    if params.get("partial_rotary_factor", 1.0) != 1.0:
        raise CheckpointError(
            f"{path}: {key}.partial_rotary_factor {params['partial_rotary_factor']!r} is not "
            "supported; only rotary embeddings over whole heads (1.0) are"
        )
    rope_type = params.get("rope_type", params.get("type", "default"))
    if rope_type == "default":
        return theta, None
    if rope_type != "llama3":
        raise CheckpointError(
            f"{path}: {key}.rope_type {rope_type!r} is not supported; the trainer implements "
            "'default' and Llama 3.1's 'llama3' rotary scaling"
        )
    fields = ("factor", "low_freq_factor", "high_freq_factor")
    factor, low, high = (_number(params, f, path, label=f"{key}.{f}") for f in fields)
    if low >= high:
        raise CheckpointError(
            f"{path}: {key}.low_freq_factor {low} must be below high_freq_factor {high}"
        )
    # transformers falls back to max_position_embeddings without it.
    positions = _int(
        params,
        "original_max_position_embeddings",
        path,
        config.get("max_position_embeddings"),
        label=f"{key}.original_max_position_embeddings",
    )
    return theta, Llama3Rope(factor, low, high, positions)


def _sliding_window(config: Mapping[str, Any], family: str) -> int | None:
    """The attention window when some layer uses one (Mistral's ``sliding_window``;
    Qwen2's only with ``use_sliding_window``, on the layers ``layer_types`` or, without
    it, ``max_window_layers`` selects, as Qwen2Config decides), else None."""
    window = config.get("sliding_window")
    if not isinstance(window, int) or isinstance(window, bool):
        return None
    if family != "qwen2":
        return window
    if not config.get("use_sliding_window", False):
        return None
    first = config.get("max_window_layers", 28)
    types = config.get("layer_types") or [
        "sliding_attention" if i >= first else "full_attention"
        for i in range(config.get("num_hidden_layers", 0))
    ]
    return window if "sliding_attention" in types else None


def hf_model_config(directory: Path, seq_len: int) -> ModelConfig:
    """Our ``ModelConfig`` for the checkpoint in ``directory``, rotary tables ``seq_len``
    long."""
    directory = Path(directory)
    config = read_config(directory)
    path = directory / CONFIG_FILE
    family = config.get("model_type")
    if family not in HF_FAMILIES:
        raise CheckpointError(
            f"{path}: model_type {family!r} is not supported; supported: {', '.join(HF_FAMILIES)}"
        )
    if config.get("quantization_config"):
        raise CheckpointError(
            f"{path}: quantization_config is set; quantised checkpoints are not read, "
            "pass the unquantised model (--finetune qlora quantises it on load)"
        )
    if config.get("hidden_act", "silu") != "silu":
        raise CheckpointError(
            f"{path}: hidden_act {config['hidden_act']!r} is not supported; the trainer's "
            "feed-forward is SwiGLU (silu)"
        )
    if config.get("mlp_bias", False):
        raise CheckpointError(f"{path}: mlp_bias true is not supported; the MLP has no biases")
    hidden = _int(config, "hidden_size", path)
    heads = _int(config, "num_attention_heads", path)
    kv_heads = _int(config, "num_key_value_heads", path, heads)
    if heads % kv_heads:
        raise CheckpointError(
            f"{path}: num_key_value_heads {kv_heads} does not divide num_attention_heads {heads}"
        )
    head_dim = _int(config, "head_dim", path, hidden // heads)
    if head_dim % 2:
        raise CheckpointError(f"{path}: head_dim {head_dim} is odd; rotary pairs need it even")
    window = _sliding_window(config, family)
    if window is not None and seq_len > window:
        raise CheckpointError(
            f"{path}: sliding_window {window} is shorter than --seq-len {seq_len}; the "
            f"trainer attends to the whole sequence, so pass --seq-len <= {window}"
        )
    theta, llama3 = _rope(config, path)
    attention_bias = family == "llama" and bool(config.get("attention_bias", False))
    return ModelConfig(
        layers=_int(config, "num_hidden_layers", path),
        hidden=hidden,
        heads=heads,
        kv_heads=kv_heads,
        ffn_hidden=_int(config, "intermediate_size", path),
        vocab=_int(config, "vocab_size", path),
        seq_len=seq_len,
        tied=bool(config.get("tie_word_embeddings", False)),
        head_dim_override=0 if head_dim * heads == hidden else head_dim,
        rope_theta=theta,
        norm_eps=_number(config, "rms_norm_eps", path, NORM_EPS_DEFAULT),
        qkv_bias=family == "qwen2" or attention_bias,
        attn_out_bias=attention_bias,
        rope_llama3=llama3,
    )


def _safe_open(path: Path) -> Any:
    from safetensors import safe_open

    try:
        return safe_open(str(path), framework="pt", device="cpu")
    except Exception as exc:  # safetensors raises its own SafetensorError, OSError...
        raise CheckpointError(f"{path}: not a readable safetensors file ({_line(exc)})") from exc


def _index(directory: Path) -> dict[str, Path]:
    """Tensor name -> file, from ``model.safetensors.index.json``."""
    path = directory / INDEX_FILE
    try:
        weight_map = json.loads(path.read_text(encoding="utf-8")).get("weight_map")
    except (OSError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{path}: not a JSON object ({_line(exc)}); re-download it") from exc
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(
            f"{path}: no weight_map object (tensor name -> shard file); re-download it"
        )
    files: dict[str, Path] = {}
    for name, file in weight_map.items():
        if not isinstance(file, str) or "/" in file or not file.endswith(".safetensors"):
            raise CheckpointError(
                f"{path}: weight_map[{name!r}] is {file!r}, not a .safetensors file beside "
                "the index; re-download it"
            )
        if not (directory / file).is_file():
            raise CheckpointError(
                f"{path}: weight_map names {file} (for {name}), which is missing; "
                "download every shard"
            )
        files[name] = directory / file
    return files


def weight_files(directory: Path) -> dict[str, Path]:
    """Every tensor name of the checkpoint -> the safetensors file holding it."""
    if (directory / INDEX_FILE).is_file():
        return _index(directory)
    single = directory / WEIGHTS_FILE
    if not single.is_file():
        other = sorted(p.name for p in directory.glob("*.bin")) + sorted(
            p.name for p in directory.glob("*.safetensors")
        )
        found = f" (found {', '.join(other[:3])}: convert to model.safetensors)" if other else ""
        raise CheckpointError(
            f"{directory}: no {WEIGHTS_FILE} or {INDEX_FILE}{found}; download the "
            "safetensors weights"
        )
    with _safe_open(single) as handle:
        return {name: single for name in handle.keys()}  # noqa: SIM118 (not a dict)


def _config_fields(ours: str) -> str:
    """The config.json fields a parameter's shape follows from, for error messages."""
    if ours.startswith(("embed.", "output.")):
        return "vocab_size, hidden_size"
    if ".attn.wq" in ours or ".attn.wo" in ours:
        return "num_attention_heads, head_dim, hidden_size"
    if ".attn." in ours:
        return "num_key_value_heads, head_dim, hidden_size"
    if ".ffn." in ours:
        return "intermediate_size, hidden_size"
    return "hidden_size"


def _plan(
    directory: Path, files: dict[str, Path], params: Mapping[str, torch.Tensor], tied: bool
) -> dict[Path, list[tuple[str, str]]]:
    """(transformers name, our name) to read from each file, after checking names and
    shapes from the files' headers; nothing is copied yet."""
    plan: dict[Path, list[tuple[str, str]]] = {}
    for file in sorted(set(files.values())):
        with _safe_open(file) as handle:
            present = set(handle.keys())
            for name in sorted(n for n, f in files.items() if f == file):
                if name not in present:
                    raise CheckpointError(
                        f"{directory / INDEX_FILE}: weight_map puts {name} in {file.name}, "
                        "which does not hold it; re-download the checkpoint"
                    )
                ours = hf_to_ours(name)
                if name.endswith(IGNORED_SUFFIXES) or (tied and ours == "output.weight"):
                    continue
                if ours is None or ours not in params:
                    raise CheckpointError(
                        f"{file}: unexpected tensor {name}; config.json describes no such "
                        "parameter (check num_hidden_layers, attention_bias, model_type)"
                    )
                shape = list(handle.get_slice(name).get_shape())
                expected = list(params[ours].shape)
                if shape != expected:
                    raise CheckpointError(
                        f"{file}: tensor {name} has shape {shape} but config.json "
                        f"({_config_fields(ours)}) gives {expected}; the weights and "
                        "config.json are from different models"
                    )
                plan.setdefault(file, []).append((name, ours))
    return plan


def check_hf_weights(directory: Path, cfg: ModelConfig) -> None:
    """Every tensor ``cfg`` needs is in the checkpoint with its shape, read from the files'
    headers only (no weight is loaded): what ``load_hf_weights`` would refuse, refused
    before the run writes anything."""
    from runtime.train.model import Transformer

    with torch.device("meta"):
        model = Transformer(cfg)
    _planned(Path(directory), model)


def _planned(directory: Path, model: Transformer) -> dict[Path, list[tuple[str, str]]]:
    """``_plan`` of ``model``'s parameters, every one of them found."""
    params = {  # a tied output weight appears once, as embed.weight
        name: param
        for name, param in model.named_parameters()
        if not name.endswith(ADAPTER_SUFFIXES)
    }
    plan = _plan(directory, weight_files(directory), params, model.cfg.tied)
    read = {ours for pairs in plan.values() for _, ours in pairs}
    missing = [name for name in params if name not in read]
    if missing:
        raise CheckpointError(
            f"{directory}: no tensor {ours_to_hf(missing[0])} in the safetensors files "
            f"({len(missing)} missing); the checkpoint is incomplete or not a "
            f"{model.cfg.layers}-layer model as config.json says: re-download it"
        )
    return plan


def load_hf_weights(directory: Path, model: Transformer) -> None:
    """Copy the checkpoint in ``directory`` into ``model`` (whole, unsharded, not
    quantised, built from ``hf_model_config`` of the same directory), on its device and
    in its dtype. LoRA adapters already on it (``lora_a``/``lora_b``) are left as they are."""
    directory = Path(directory)
    plan = _planned(directory, model)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for file, pairs in plan.items():
            with _safe_open(file) as handle:
                for name, ours in pairs:
                    tensor = handle.get_tensor(name)
                    heads = rotated_heads(ours, model.cfg)
                    if heads:
                        tensor = rows_from_hf(tensor, heads)
                    params[ours].copy_(tensor)
                    del tensor
