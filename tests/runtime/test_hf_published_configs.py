"""Published config.json files of three real checkpoints read into our ModelConfig: the
model built from each has the parameter count its Hugging Face page states (the
safetensors total), so no field is misread. No weights, no transformers needed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from runtime.train.hf_checkpoint import CheckpointError, hf_model_config
from runtime.train.model import Llama3Rope, Transformer, count_parameters

LLAMA_31_8B = {
    "architectures": ["LlamaForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "bos_token_id": 128000,
    "eos_token_id": 128001,
    "hidden_act": "silu",
    "hidden_size": 4096,
    "initializer_range": 0.02,
    "intermediate_size": 14336,
    "max_position_embeddings": 131072,
    "mlp_bias": False,
    "model_type": "llama",
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 8,
    "pretraining_tp": 1,
    "rms_norm_eps": 1e-05,
    "rope_scaling": {
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
        "rope_type": "llama3",
    },
    "rope_theta": 500000.0,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.43.0.dev0",
    "use_cache": True,
    "vocab_size": 128256,
}
"""meta-llama/Llama-3.1-8B config.json (transformers 4 layout: rope_theta + rope_scaling)."""
QWEN25_05B = {
    "architectures": ["Qwen2ForCausalLM"],
    "attention_dropout": 0.0,
    "bos_token_id": 151643,
    "eos_token_id": 151643,
    "hidden_act": "silu",
    "hidden_size": 896,
    "initializer_range": 0.02,
    "intermediate_size": 4864,
    "max_position_embeddings": 32768,
    "max_window_layers": 24,
    "model_type": "qwen2",
    "num_attention_heads": 14,
    "num_hidden_layers": 24,
    "num_key_value_heads": 2,
    "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0,
    "sliding_window": 32768,
    "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.40.1",
    "use_cache": True,
    "use_sliding_window": False,
    "vocab_size": 151936,
}
"""Qwen/Qwen2.5-0.5B config.json."""
MISTRAL_7B = {
    "architectures": ["MistralForCausalLM"],
    "bos_token_id": 1,
    "eos_token_id": 2,
    "hidden_act": "silu",
    "hidden_size": 4096,
    "initializer_range": 0.02,
    "intermediate_size": 14336,
    "max_position_embeddings": 32768,
    "model_type": "mistral",
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 8,
    "rms_norm_eps": 1e-05,
    "rope_theta": 10000.0,
    "sliding_window": 4096,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.34.0.dev0",
    "use_cache": True,
    "vocab_size": 32000,
}
"""mistralai/Mistral-7B-v0.1 config.json."""


def _read(tmp_path: Path, config: dict[str, object], seq_len: int = 4096) -> Transformer:
    (tmp_path / "config.json").write_text(json.dumps(config))
    with torch.device("meta"):
        return Transformer(hf_model_config(tmp_path, seq_len))


@pytest.mark.parametrize(
    ("config", "parameters"),
    [(LLAMA_31_8B, 8_030_261_248), (QWEN25_05B, 494_032_768), (MISTRAL_7B, 7_241_732_096)],
)
def test_published_parameter_counts(
    tmp_path: Path, config: dict[str, object], parameters: int
) -> None:
    assert count_parameters(_read(tmp_path, config)) == parameters


def test_published_fields(tmp_path: Path) -> None:
    llama = _read(tmp_path, LLAMA_31_8B).cfg
    assert llama.rope_llama3 == Llama3Rope(8.0, 1.0, 4.0, 8192)
    assert (llama.rope_theta, llama.norm_eps, llama.kv_heads, llama.tied) == (5e5, 1e-5, 8, False)
    qwen = _read(tmp_path, QWEN25_05B, seq_len=65536).cfg  # use_sliding_window is false
    assert (qwen.head_dim, qwen.qkv_bias, qwen.attn_out_bias, qwen.tied) == (64, True, False, True)
    with pytest.raises(CheckpointError, match=r"sliding_window 4096 .* --seq-len 8192"):
        _read(tmp_path, MISTRAL_7B, seq_len=8192)
