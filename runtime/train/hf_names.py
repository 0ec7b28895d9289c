"""Names and layouts shared by reading and writing Hugging Face checkpoints.

Parameter names. transformers' Llama, Mistral and Qwen2 (``models/llama/modeling_llama.py``
and the two derived from it) call our ``Transformer``'s parameters::

    model.embed_tokens.weight                  embed.weight
    model.layers.{i}.self_attn.q_proj.*        layers.{i}.attn.wq.*   (k, v, o alike)
    model.layers.{i}.mlp.gate_proj.weight      layers.{i}.ffn.w1.weight
    model.layers.{i}.mlp.up_proj.weight        layers.{i}.ffn.w3.weight
    model.layers.{i}.mlp.down_proj.weight      layers.{i}.ffn.w2.weight
    model.layers.{i}.input_layernorm.weight    layers.{i}.attn_norm.weight
    model.layers.{i}.post_attention_layernorm  layers.{i}.ffn_norm.weight
    model.norm.weight                          norm.weight
    lm_head.weight                             output.weight  (absent when tied)

Rotary layout. Our ``apply_rotary`` turns each (even, odd) pair of a head's dimensions,
as Meta's original Llama code does; transformers' ``rotate_half`` pairs dimension i with
i + d/2. transformers' ``convert_llama_weights_to_hf.py`` therefore reorders the output
rows of q_proj and k_proj within each head (its ``permute``: row 2i + j of a head goes to
j * d/2 + i). Reading applies the inverse of that reordering, writing the reordering
itself, to the q/k weights, Qwen2's q/k biases and a LoRA ``B`` of q/k (whose rows are
the output rows of the weight update B A).
"""

from __future__ import annotations

import re

import torch

from runtime.train.model import ModelConfig

HF_FAMILIES = ("llama", "mistral", "qwen2")
"""``model_type`` values read: transformers' ``LlamaForCausalLM``, ``MistralForCausalLM``
and ``Qwen2ForCausalLM`` share these parameter names."""

BLOCK_NAMES = {
    "self_attn.q_proj": "attn.wq",
    "self_attn.k_proj": "attn.wk",
    "self_attn.v_proj": "attn.wv",
    "self_attn.o_proj": "attn.wo",
    "mlp.gate_proj": "ffn.w1",
    "mlp.up_proj": "ffn.w3",
    "mlp.down_proj": "ffn.w2",
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
}
"""transformers' module inside ``model.layers.{i}`` -> ours inside ``layers.{i}``."""
TOP_NAMES = {
    "model.embed_tokens.weight": "embed.weight",
    "model.norm.weight": "norm.weight",
    "lm_head.weight": "output.weight",
}
"""Parameters outside the blocks: transformers' name -> ours."""
LORA_TARGETS = {
    "q": "q_proj",
    "k": "k_proj",
    "v": "v_proj",
    "o": "o_proj",
    "gate": "gate_proj",
    "up": "up_proj",
    "down": "down_proj",
}
"""The planner's LoRA target names (planner/finetune.py) -> the module names PEFT's
``target_modules`` uses."""

_HF_BLOCK = re.compile(r"model\.layers\.(\d+)\.(.+)\.(weight|bias)")
_OUR_BLOCK = re.compile(r"layers\.(\d+)\.(.+)\.(weight|bias)")
_OURS_TO_HF_BLOCK = {ours: hf for hf, ours in BLOCK_NAMES.items()}
_OURS_TO_HF_TOP = {ours: hf for hf, ours in TOP_NAMES.items()}


def hf_to_ours(name: str) -> str | None:
    """Our parameter name for transformers' ``name``; None when it is none of ours."""
    if name in TOP_NAMES:
        return TOP_NAMES[name]
    match = _HF_BLOCK.fullmatch(name)
    if match is None or match[2] not in BLOCK_NAMES:
        return None
    return f"layers.{match[1]}.{BLOCK_NAMES[match[2]]}.{match[3]}"


def ours_to_hf(name: str) -> str:
    """transformers' name for our parameter ``name`` (KeyError when it has none: MoE
    experts, GPT-style norms' biases)."""
    if name in _OURS_TO_HF_TOP:
        return _OURS_TO_HF_TOP[name]
    match = _OUR_BLOCK.fullmatch(name)
    if match is None or match[2] not in _OURS_TO_HF_BLOCK:
        raise KeyError(f"{name}: no Hugging Face Llama name for this parameter")
    return f"model.layers.{match[1]}.{_OURS_TO_HF_BLOCK[match[2]]}.{match[3]}"


def rotated_heads(name: str, cfg: ModelConfig) -> int:
    """Heads whose rows ``name`` (ours) holds in the rotary order, 0 when its rows are not
    rotated: the query and key projections' weights, biases and LoRA ``B``."""
    match = re.fullmatch(r"layers\.\d+\.attn\.(wq|wk)\.(weight|bias|lora_b)", name)
    if match is None:
        return 0
    return cfg.heads if match[1] == "wq" else cfg.kv_heads


def rows_to_hf(tensor: torch.Tensor, heads: int) -> torch.Tensor:
    """Reorder dim 0 of ``tensor`` from (even, odd) pairs to first/second halves per head
    (transformers' ``permute`` in ``convert_llama_weights_to_hf.py``)."""
    rest = tensor.shape[1:]
    head_dim = tensor.shape[0] // heads
    pairs = tensor.reshape(heads, head_dim // 2, 2, *rest)
    return pairs.transpose(1, 2).reshape(tensor.shape)


def rows_from_hf(tensor: torch.Tensor, heads: int) -> torch.Tensor:
    """Inverse of ``rows_to_hf``: first/second halves per head back to (even, odd) pairs."""
    rest = tensor.shape[1:]
    head_dim = tensor.shape[0] // heads
    halves = tensor.reshape(heads, 2, head_dim // 2, *rest)
    return halves.transpose(1, 2).reshape(tensor.shape)
