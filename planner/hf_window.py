"""Which layers of a Hugging Face ``config.json`` attend to a sliding window.

A config says it in one of three ways, read here in the order transformers gives them
weight (``src/transformers/models/<type>/configuration_<type>.py``, 5.25):

* ``layer_types``: one entry a layer, ``"sliding_attention"`` or ``"full_attention"``
  (written by recent ``save_pretrained`` for Gemma 2/3, gpt-oss, Cohere2, Qwen2/3);
* the family's fixed pattern when that list is absent: Gemma 2, VaultGemma and gpt-oss
  window every layer but each second one, OLMo 3 all but each fourth, Gemma 3 all but
  each ``sliding_window_pattern``-th (6), Cohere2 and EXAONE 4 likewise (4); Qwen2/Qwen3
  window the layers from ``max_window_layers`` on, and
  Qwen2-MoE the even layers below it, and only with ``use_sliding_window``;
* otherwise a non-null ``sliding_window`` windows every layer (Mistral 7B v0.1, Qwen3-MoE
  with ``use_sliding_window``, Phi-3, Starcoder2).

The planner holds the pattern as ModelSpec's ``sliding_window`` and
``full_attention_every`` (every k-th layer full), the form Megatron-LM's
``--window-attn-skip-freq`` takes too; a pattern outside it is refused by name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from planner.errors import PlanInputError

FULL_EVERY: dict[str, int] = {
    "gemma2": 2, "vaultgemma": 2, "gpt_oss": 2, "gemma3_text": 6, "cohere2": 4, "olmo3": 4,
    "exaone4": 4,
}  # fmt: skip
"""model_type -> every k-th layer full, when the config has no ``layer_types``: the
classes' ``(i + 1) % k`` rule (Gemma3TextConfig, Cohere2Config and Exaone4Config read k
from ``sliding_window_pattern``, defaulting to 6, 4 and 4; Exaone4's may also be a
string such as "LLLG", L for a windowed layer)."""
QWEN_TYPES = ("qwen2", "qwen3", "qwen2_moe", "qwen3_moe")
"""Families whose ``sliding_window`` counts only with ``use_sliding_window``."""
QWEN_WINDOW = 4096
"""Their classes' ``sliding_window`` field default, taken when the switch is on and the
key absent (the class sets the attribute to None while the switch is off, so the
per-type defaults of :mod:`planner.hf_defaults` cannot hold it)."""


def _sliding_layers(cfg: dict[str, Any], model_type: str, layers: int, path: Path) -> list[bool]:
    types = cfg.get("layer_types")
    if isinstance(types, list):
        if len(types) != layers:
            raise PlanInputError(
                f"{path}: layer_types has {len(types)} entries for {layers} layers; give one "
                "per layer ('sliding_attention' or 'full_attention')."
            )
        return [kind == "sliding_attention" for kind in types]
    below = int(cfg.get("max_window_layers") or 0)
    if model_type in ("qwen2", "qwen3"):
        return [i >= below for i in range(layers)]
    if model_type == "qwen2_moe":
        return [bool((i + 1) % 2) and i < below for i in range(layers)]
    every = FULL_EVERY.get(model_type)
    if every is not None:
        pattern = cfg.get("sliding_window_pattern") or every
        if isinstance(pattern, str):
            return [pattern[i % len(pattern)].upper() == "L" for i in range(layers)]
        return [bool((i + 1) % int(pattern)) for i in range(layers)]
    return [True] * layers


def sliding_window_of(
    cfg: dict[str, Any], layers: int, path: Path
) -> tuple[int | None, int | None]:
    """(``sliding_window``, ``full_attention_every``) for ModelSpec; (None, None) when no
    layer is windowed."""
    model_type = str(cfg.get("model_type") or "")
    window = cfg.get("sliding_window")
    if model_type in QWEN_TYPES:
        if not cfg.get("use_sliding_window"):
            return None, None
        window = QWEN_WINDOW if window is None else window
    if not window:
        return None, None
    sliding = _sliding_layers(cfg, model_type, layers, path)
    if not any(sliding):
        return None, None
    if all(sliding):
        return int(window), None
    every = sliding.index(False) + 1
    if every < 2 or sliding != [bool((i + 1) % every) for i in range(layers)]:
        full = [i for i, windowed in enumerate(sliding) if not windowed]
        raise PlanInputError(
            f"{path}: full-attention layers {full[:8]}{' ...' if len(full) > 8 else ''} do "
            "not repeat every k-th layer, the one pattern the planner models "
            "(ModelSpec full_attention_every); write the model as a ModelSpec instead."
        )
    return int(window), every
