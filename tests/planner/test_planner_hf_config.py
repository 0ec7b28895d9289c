"""config.json of Llama/Mistral/Mixtral/Qwen2 and GPT-2 families; missing keys named."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import planner
from planner.errors import PlanInputError
from planner.hf_defaults import HF_DEFAULTS
from planner.hf_families import GPT2_KEYS

LLAMA3_8B = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 4096,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "intermediate_size": 14336,
    "vocab_size": 128256,
    "hidden_act": "silu",
    "tie_word_embeddings": False,
}
MIXTRAL = {
    **LLAMA3_8B,
    "model_type": "mixtral",
    "vocab_size": 32000,
    "num_local_experts": 8,
    "num_experts_per_tok": 2,
}
QWEN2_MOE = {
    "model_type": "qwen2_moe",
    "hidden_size": 2048,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "num_key_value_heads": 16,
    "intermediate_size": 5632,
    "moe_intermediate_size": 1408,
    "shared_expert_intermediate_size": 5632,
    "num_experts": 60,
    "num_experts_per_tok": 4,
    "vocab_size": 151936,
}
GPT2 = {
    "model_type": "gpt2",
    "n_embd": 768,
    "n_layer": 12,
    "n_head": 12,
    "vocab_size": 50257,
    "n_positions": 1024,
}


def write(tmp_path: Path, cfg: dict[str, Any], name: str = "m") -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder / "config.json"


def test_llama_config_matches_the_preset(tmp_path: Path) -> None:
    spec = planner.load_hf_config(write(tmp_path, LLAMA3_8B, "Meta-Llama-3-8B"))
    preset = planner.get_model("llama3-8b")
    assert spec.name == "Meta-Llama-3-8B"
    assert spec.model_dump(exclude={"name"}) == preset.model_dump(exclude={"name"})


def test_directory_and_moe(tmp_path: Path) -> None:
    path = write(tmp_path, MIXTRAL, "mixtral")
    spec = planner.load_hf_config(path.parent)
    assert spec.num_experts == 8 and spec.top_k == 2
    assert spec.num_params / 1e9 == pytest.approx(46.7, rel=2e-3)
    assert spec.router_score == "softmax"
    sigmoid = write(tmp_path, MIXTRAL | {"scoring_func": "sigmoid"}, "deepseek-like")
    assert planner.load_hf_config(sigmoid).router_score == "sigmoid"  # DeepSeek-V3's key


def test_qwen2_moe_shared_expert(tmp_path: Path) -> None:
    spec = planner.load_hf_config(write(tmp_path, QWEN2_MOE))
    assert (spec.num_experts, spec.top_k, spec.moe_ffn_hidden_size) == (60, 4, 1408)
    assert spec.shared_expert_ffn_hidden_size == 5632
    # Qwen1.5-MoE-A2.7B: 14.3B total, 2.7B active.
    assert spec.num_params / 1e9 == pytest.approx(14.3, rel=0.02)
    assert spec.num_active_params / 1e9 == pytest.approx(2.7, rel=0.03)


def test_gpt2_keys(tmp_path: Path) -> None:
    spec = planner.load_hf_config(write(tmp_path, GPT2))
    assert spec.ffn_hidden_size == 4 * 768 and spec.activation == "gelu"
    assert spec.tied_embeddings and spec.position_embedding == "learned"
    assert spec.num_params / 1e6 == pytest.approx(124.4, rel=2e-3)  # GPT-2 small: 124M


@pytest.mark.parametrize(
    ("cfg", "key"),
    [
        ({k: v for k, v in LLAMA3_8B.items() if k != "num_hidden_layers"}, "num_hidden_layers"),
        ({k: v for k, v in LLAMA3_8B.items() if k != "intermediate_size"}, "intermediate_size"),
        ({k: v for k, v in GPT2.items() if k != "n_layer"}, "n_layer"),
        ({k: v for k, v in GPT2.items() if k != "n_head"}, "n_head"),
    ],
)
def test_missing_key_is_named(tmp_path: Path, cfg: dict[str, Any], key: str) -> None:
    with pytest.raises(PlanInputError, match=f"missing key '{key}'"):
        planner.load_hf_config(write(tmp_path, cfg))


def test_not_json_or_absent(tmp_path: Path) -> None:
    bad = tmp_path / "config.json"
    bad.write_text("{not json")
    with pytest.raises(PlanInputError, match="not valid JSON"):
        planner.load_hf_config(bad)
    with pytest.raises(PlanInputError, match=r"no config\.json"):
        planner.load_hf_config(tmp_path / "nowhere")


def test_gpt2_dropout_defaults_to_transformers_0_1(tmp_path: Path) -> None:
    """GPT2Config defaults resid_pdrop and attn_pdrop to 0.1: a config.json without them
    trains with dropout, so its masks take memory (Why 2 of issue 17)."""
    spec = planner.load_hf_config(write(tmp_path, GPT2))
    assert (spec.hidden_dropout, spec.attention_dropout) == (0.1, 0.1)
    off = planner.load_hf_config(write(tmp_path, {**GPT2, "resid_pdrop": 0.0}, "off"))
    assert off.hidden_dropout == 0.0 and off.attention_dropout == 0.1


def test_mistral_kv_heads_default_to_8_not_mha(tmp_path: Path) -> None:
    cfg = {k: v for k, v in LLAMA3_8B.items() if k != "num_key_value_heads"}
    mistral = planner.load_hf_config(write(tmp_path, {**cfg, "model_type": "mistral"}, "a"))
    llama = planner.load_hf_config(write(tmp_path, cfg, "b"))
    assert (mistral.num_kv_heads, llama.num_kv_heads) == (8, 32)


def test_gpt_neox_is_layernorm_with_biases(tmp_path: Path) -> None:
    cfg = {**{k: v for k, v in LLAMA3_8B.items() if k != "hidden_act"}, "model_type": "gpt_neox"}
    spec = planner.load_hf_config(write(tmp_path, cfg))
    assert (spec.norm, spec.bias, spec.activation) == ("layernorm", True, "gelu")


SHAPE_KEYS = {
    "gpt2": {"n_embd": 256, "n_layer": 2, "n_head": 4, "vocab_size": 1000},
    "llama-style": {
        "hidden_size": 256,
        "num_hidden_layers": 2,
        "num_attention_heads": 32,
        "intermediate_size": 512,
        "vocab_size": 1000,
    },
}


@pytest.mark.parametrize("model_type", sorted(HF_DEFAULTS))
def test_defaults_match_transformers_config_classes(tmp_path: Path, model_type: str) -> None:
    """Each default in planner.hf_defaults equals the transformers class's, and a
    config.json with only the shape keys reads as transformers would build it."""
    transformers = pytest.importorskip("transformers")

    reference = transformers.CONFIG_MAPPING[model_type]()
    for key, value in HF_DEFAULTS[model_type].items():
        if not hasattr(reference, key):
            assert value in (None, 0), (model_type, key)  # a key this family lacks
            continue
        actual = getattr(reference, key)
        if key == "num_key_value_heads" and value is None:
            assert actual in (None, reference.num_attention_heads), (model_type, key)
        elif key == "head_dim" and value is None:
            assert actual in (None, reference.hidden_size // reference.num_attention_heads)
        else:
            assert actual == value, (model_type, key, actual)
    if "n_routed_experts" in HF_DEFAULTS[model_type]:
        return  # DeepSeek-MoE families: read at their own shape in test_hf_families.py
    shape = SHAPE_KEYS["gpt2" if model_type in GPT2_KEYS else "llama-style"]
    hf = transformers.CONFIG_MAPPING[model_type](**shape)
    spec = planner.load_hf_config(write(tmp_path, {"model_type": model_type, **shape}))
    assert spec.tied_embeddings == bool(hf.tie_word_embeddings)
    if model_type in GPT2_KEYS:
        assert spec.num_kv_heads == (1 if getattr(hf, "multi_query", False) else hf.n_head)
        assert (spec.hidden_dropout, spec.attention_dropout) == (hf.resid_pdrop, hf.attn_pdrop)
        assert spec.max_position_embeddings == hf.n_positions
        return
    assert spec.num_kv_heads == (getattr(hf, "num_key_value_heads", None) or hf.num_attention_heads)
    assert spec.attention_dropout == getattr(hf, "attention_dropout", 0.0)
    assert spec.hidden_dropout == getattr(hf, "hidden_dropout", 0.0)
    experts = getattr(hf, "num_local_experts", None) or getattr(hf, "num_experts", None) or 1
    assert spec.num_experts == experts
    if experts > 1:
        assert spec.top_k == hf.num_experts_per_tok
