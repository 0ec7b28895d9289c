"""Which ``model_type`` families of Hugging Face ``config.json`` the planner reads.

A family is read only once its config reads to the model transformers builds from it:
``tests/planner/test_hf_families.py`` instantiates each on the meta device and checks the
planner's parameter count against transformers' own (within 2 %; the remainder is norms
and biases the planner does not carry, e.g. Qwen2's q/k/v biases, Gemma 2's extra norms).
Any other family is refused by name rather than read as a Llama look-alike: the families
that differ do so in ways the keys alone do not reveal (recurrent or linear-attention
layers, MoE on every other layer, parallel attention and MLP, multi-head latent
attention variants), and a silent misreading is a wrong plan. Such a model is planned by
writing its shape as a ModelSpec YAML file (``--model model.yaml``). A config.json
without ``model_type`` (hand-written) is read with Llama's keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from planner.errors import PlanInputError

READ = frozenset(
    {
        # Llama-style keys, gated MLP
        "llama", "mistral", "ministral", "ministral3", "mixtral", "qwen2", "qwen2_moe",
        "qwen3", "qwen3_moe", "gemma", "gemma2", "gemma3_text", "vaultgemma", "phi3",
        "phimoe", "olmo", "olmo2", "olmo3", "olmoe", "flex_olmo", "granite", "granitemoe",
        "granitemoeshared", "cohere", "cohere2", "gpt_oss", "glm", "glm4", "glm4_moe",
        "smollm3", "minimax_m2", "exaone4", "ernie4_5", "hunyuan_v1_dense", "seed_oss",
        "helium",
        # DeepSeek-MoE names; multi-head latent attention is read as multi-head attention
        "deepseek_v2", "deepseek_v3",
        # Llama-style keys, two-matrix MLP (activation other than SiLU)
        "starcoder2", "arcee", "apertus", "nemotron", "stablelm", "phi", "gpt_neox",
        # GPT-2 keys
        "gpt2", "gpt_bigcode",
    }
)  # fmt: skip
"""Families whose config.json the planner reads (checked against transformers)."""

GPT2_KEYS = frozenset({"gpt2", "gpt_bigcode"})
"""Families with GPT-2's key names (n_embd, n_layer, n_head, n_inner, n_positions)."""

_RECURRENT = ("jamba", "bamba", "zamba", "zamba2", "falcon_h1", "falcon_mamba", "mamba",
              "mamba2", "nemotron_h", "granitemoehybrid", "lfm2", "lfm2_moe",
              "recurrent_gemma", "rwkv", "xlstm", "olmo_hybrid")  # fmt: skip
_LINEAR = ("qwen3_next", "minimax", "kimi_linear", "bailing_hybrid")
WHY_NOT: dict[str, str] = {
    **dict.fromkeys(_RECURRENT, "state-space or recurrent layers beside attention"),
    **dict.fromkeys(_LINEAR, "linear-attention layers beside softmax attention"),
    "llama4_text": "MoE on every interleave_moe_layer_step-th layer and chunked attention",
    "ernie4_5_moe": "MoE from moe_layer_start_index on, every moe_layer_interval-th layer",
    "hunyuan_v1_moe": "per-layer expert counts and a shared MLP beside the experts",
    "glm4_moe_lite": "multi-head latent attention with its own projections",
    "deepseek_v32": "DeepSeek Sparse Attention (an indexer picks the keys each query reads)",
    **dict.fromkeys(("gptj", "codegen"), "attention and MLP in parallel under one norm"),
    "falcon": "Falcon's keys (num_kv_heads, new_decoder_architecture, parallel attention)",
    "mpt": "MPT's keys (d_model, n_heads, expansion_ratio) and ALiBi",
    "bloom": "BLOOM's keys (n_head, n_layer) and ALiBi",
    "opt": "OPT's keys (ffn_dim, word_embed_proj_dim) and its position offset",
    "dbrx": "DBRX's nested attention and FFN configs",
}
"""Why a family is not read, where the difference is known (otherwise: not yet checked)."""


def check_family(cfg: dict[str, Any], path: Path) -> str | None:
    """The config's ``model_type`` (None when it has none); PlanInputError naming it when
    the planner does not read that family."""
    model_type = cfg.get("model_type")
    if model_type is None:
        return None
    model_type = str(model_type)
    text = cfg.get("text_config")
    if model_type not in READ and isinstance(text, dict) and text.get("model_type") in READ:
        raise PlanInputError(
            f"{path}: model_type {model_type!r} wraps a {text['model_type']} language model "
            "(text_config) with other towers the planner does not cost; to plan the "
            "language model alone, save its text_config as a config.json and pass that."
        )
    if model_type not in READ:
        why = WHY_NOT.get(model_type, "not yet checked against transformers")
        raise PlanInputError(
            f"{path}: model_type {model_type!r} is not a family the planner reads ({why}); "
            "write the model's shape as ModelSpec fields in a YAML file and pass "
            "--model FILE.yaml (see `scalectl plan models` for the fields of a preset)."
        )
    return model_type
