"""Defaults of Hugging Face ``config.json`` keys, per ``model_type``.

A config.json written by ``save_pretrained`` may leave out keys (older exports, hand-written
files, and hub configs that predate a key); ``from_pretrained`` then takes the default of
the model type's configuration class. The planner must read the same model, so a key it
reads that is missing takes the value below. Source: the ``__init__`` defaults of
transformers' configuration classes (``GPT2Config``, ``LlamaConfig``, ``MistralConfig``,
``MixtralConfig``, ``Qwen2Config``, ``Qwen2MoeConfig``, ``Qwen3Config``, ``GPTNeoXConfig``,
``GemmaConfig``, ``Gemma2Config``, ``Gemma3TextConfig``, ``GptOssConfig``, ``Cohere2Config`` in
``src/transformers/models/<type>/configuration_<type>.py``), checked against transformers
5.25 by ``tests/planner/test_planner_hf_config.py`` when transformers is installed.

``None`` means the class derives the value from other keys: ``num_key_value_heads`` None
is multi-head attention (kv heads = attention heads), ``head_dim`` None is
hidden_size / num_attention_heads, ``n_inner`` None is 4·n_embd.

Shape keys (layers, widths, heads, vocabulary) stay required: a config.json without them
is a mistake rather than a request for the class's example model (Llama 2 7B for
``LlamaConfig()``), so the planner names the key instead.
"""

from __future__ import annotations

from typing import Any

_LLAMA_STYLE: dict[str, Any] = {
    "num_key_value_heads": None,
    "head_dim": None,
    "hidden_act": "silu",
    "tie_word_embeddings": False,
    "attention_dropout": 0.0,
    "num_experts_per_tok": None,
    "moe_intermediate_size": None,
    "shared_expert_intermediate_size": 0,
}
"""Keys of the Llama family the planner reads, with LlamaConfig's defaults."""

_QWEN_WINDOW: dict[str, Any] = {"use_sliding_window": False, "max_window_layers": 28}
"""Qwen's window switch (its ``sliding_window`` counts only when this is true)."""
_GEMMA: dict[str, Any] = {
    **_LLAMA_STYLE,
    "head_dim": 256,
    "hidden_act": None,
    "hidden_activation": "gelu_pytorch_tanh",
    "tie_word_embeddings": True,
}
"""Gemma 1-3: 256-wide heads, tied embeddings, GELU-tanh (Gemma 1 names it hidden_act)."""


def _with(base: dict[str, Any], **keys: Any) -> dict[str, Any]:
    """A family's defaults: ``base``'s with ``keys`` in place."""
    return {**base, **keys}


_GPT2: dict[str, Any] = {
    "n_inner": None,
    "n_positions": 1024,
    "tie_word_embeddings": True,
    "resid_pdrop": 0.1,
    "attn_pdrop": 0.1,
    "embd_pdrop": 0.1,
}
"""GPT2Config's defaults of the keys the planner reads (GPT-BigCode's are the same)."""

_DEEPSEEK_MOE: dict[str, Any] = {**_LLAMA_STYLE, "scoring_func": None}
"""DeepSeek-MoE's key names (n_routed_experts, n_shared_experts, first_k_dense_replace)."""

HF_DEFAULTS: dict[str, dict[str, Any]] = {
    "gpt2": _GPT2,
    "gpt_bigcode": _with(_GPT2, multi_query=True),
    "llama": dict(_LLAMA_STYLE),
    "mistral": {**_LLAMA_STYLE, "num_key_value_heads": 8, "sliding_window": 4096},
    "mixtral": {
        **_LLAMA_STYLE,
        "num_key_value_heads": 8,
        "num_local_experts": 8,
        "num_experts_per_tok": 2,
    },
    "qwen2": {**_LLAMA_STYLE, "num_key_value_heads": 32, **_QWEN_WINDOW},
    "qwen3": {**_LLAMA_STYLE, "num_key_value_heads": 32, "head_dim": 128, **_QWEN_WINDOW},
    "qwen2_moe": {
        **_LLAMA_STYLE,
        "num_key_value_heads": 16,
        "num_experts": 60,
        "num_experts_per_tok": 4,
        "moe_intermediate_size": 1408,
        "shared_expert_intermediate_size": 5632,
        **_QWEN_WINDOW,
    },
    "gemma": _with(
        _GEMMA, num_key_value_heads=16, hidden_act="gelu_pytorch_tanh", hidden_activation=None
    ),
    "gemma2": _with(_GEMMA, num_key_value_heads=4, sliding_window=4096),
    "gemma3_text": _with(_GEMMA, num_key_value_heads=4, sliding_window=4096),
    "vaultgemma": _with(_GEMMA, num_key_value_heads=4, sliding_window=4096),
    "gpt_oss": _with(
        _LLAMA_STYLE,
        num_key_value_heads=8,
        head_dim=64,
        num_local_experts=128,
        num_experts_per_tok=4,
        sliding_window=128,
        attention_bias=True,
    ),
    "cohere2": _with(_LLAMA_STYLE, tie_word_embeddings=True, sliding_window=4096),
    "cohere": _with(_LLAMA_STYLE, tie_word_embeddings=True),
    "smollm3": _with(_LLAMA_STYLE, num_key_value_heads=4, tie_word_embeddings=True),
    "ernie4_5": _with(_LLAMA_STYLE, num_key_value_heads=2, head_dim=128, tie_word_embeddings=True),
    "apertus": _with(_LLAMA_STYLE, hidden_act="xielu"),
    "arcee": _with(_LLAMA_STYLE, hidden_act="relu2"),
    "nemotron": _with(_LLAMA_STYLE, hidden_act="relu2"),
    "phi": _with(_LLAMA_STYLE, hidden_act="gelu_new"),
    "starcoder2": _with(
        _LLAMA_STYLE,
        num_key_value_heads=2,
        hidden_act="gelu_pytorch_tanh",
        tie_word_embeddings=True,
    ),
    "olmo3": _with(_LLAMA_STYLE, sliding_window=4096),
    "exaone4": _with(_LLAMA_STYLE, sliding_window=4096),
    "ministral": _with(_LLAMA_STYLE, num_key_value_heads=8, sliding_window=4096),
    "ministral3": _with(_LLAMA_STYLE, num_key_value_heads=8),
    "qwen3_moe": _with(
        _LLAMA_STYLE,
        num_key_value_heads=4,
        num_experts=128,
        num_experts_per_tok=8,
        moe_intermediate_size=768,
        use_sliding_window=False,
    ),
    "olmoe": _with(_LLAMA_STYLE, num_experts=64, num_experts_per_tok=8),
    "flex_olmo": _with(_LLAMA_STYLE, num_experts=7, num_experts_per_tok=5),
    "granitemoe": _with(_LLAMA_STYLE, num_local_experts=8, num_experts_per_tok=2),
    "granitemoeshared": _with(_LLAMA_STYLE, num_local_experts=8, num_experts_per_tok=2),
    "phimoe": _with(
        _LLAMA_STYLE, num_key_value_heads=8, num_local_experts=16, num_experts_per_tok=2
    ),
    "minimax_m2": _with(
        _LLAMA_STYLE,
        num_key_value_heads=8,
        head_dim=128,
        num_local_experts=256,
        num_experts_per_tok=8,
    ),
    "glm4_moe": _with(
        _DEEPSEEK_MOE,
        num_key_value_heads=8,
        n_routed_experts=128,
        n_shared_experts=1,
        num_experts_per_tok=8,
        moe_intermediate_size=1408,
        first_k_dense_replace=1,
    ),
    "deepseek_v2": _with(
        _DEEPSEEK_MOE,
        head_dim=64,
        n_routed_experts=64,
        n_shared_experts=2,
        num_experts_per_tok=None,
        moe_intermediate_size=1407,
        first_k_dense_replace=0,
    ),
    "deepseek_v3": _with(
        _DEEPSEEK_MOE,
        head_dim=64,
        n_routed_experts=256,
        n_shared_experts=1,
        num_experts_per_tok=8,
        moe_intermediate_size=2048,
        first_k_dense_replace=3,
    ),
    "gpt_neox": {
        **_LLAMA_STYLE,
        "hidden_act": "gelu",
        "hidden_dropout": 0.0,
        "attention_bias": True,
    },
}
"""Per model_type: the keys the planner reads and their defaults (see the module doc)."""

FALLBACK_TYPE = "llama"
"""Defaults for a model_type not listed (Llama look-alikes: most decoder-only configs)."""


def with_defaults(cfg: dict[str, Any], gpt2_keys: bool) -> dict[str, Any]:
    """``cfg`` with every missing key the planner reads set to its model_type's default;
    ``gpt2_keys``: the config uses GPT-2's key names (n_embd, n_layer, ...)."""
    family = "gpt2" if gpt2_keys else FALLBACK_TYPE
    defaults = HF_DEFAULTS.get(str(cfg.get("model_type") or family), HF_DEFAULTS[family])
    return {**defaults, **cfg}
