"""Reading Hugging Face checkpoints: our Transformer's logits against transformers' own
``*ForCausalLM`` on the same directory (fp32), and every bad input as one clear line."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import hf_tiny_dirs
import pytest
import torch
from hf_tiny_dirs import TinyHF, logits_gap, ours_from, tokens

from runtime.train import hf_checkpoint
from runtime.train.hf_checkpoint import CheckpointError, hf_model_config, load_hf_weights
from runtime.train.hf_names import hf_to_ours, ours_to_hf, rows_from_hf, rows_to_hf
from runtime.train.model import (
    Llama3Rope,
    Transformer,
    apply_rotary,
    llama3_frequencies,
    rotary_tables,
)

pytest.importorskip("transformers")
tiny_hf = hf_tiny_dirs.tiny_hf  # the shared fixture

PARITY_ATOL = 2e-5
"""Largest |logit difference| allowed, fp32, 2 blocks, logits of magnitude ~4: measured
3.7e-6 for all three families (summation order and float64 vs float32 rotary angles)."""


def _copy(directory: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(directory, tmp_path / "ckpt"))


def _edit_config(directory: Path, **changes: object) -> None:
    path = directory / "config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


def _edit_weights(directory: Path, edit: Callable[[dict[str, torch.Tensor]], None]) -> None:
    from safetensors.torch import load_file, save_file

    path = directory / "model.safetensors"
    tensors = load_file(path)
    edit(tensors)
    save_file(tensors, path, metadata={"format": "pt"})


# ---- parity ------------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["llama", "mistral", "qwen2"])
def test_logits_match_transformers(tiny_hf: TinyHF, family: str) -> None:
    assert logits_gap(tiny_hf(family), 64) < PARITY_ATOL


def test_config_fields(tiny_hf: TinyHF) -> None:
    llama = hf_model_config(tiny_hf("llama"), 64)
    assert (llama.layers, llama.hidden, llama.heads, llama.kv_heads) == (2, 256, 4, 2)
    assert (llama.ffn_hidden, llama.head_dim, llama.tied, llama.qkv_bias) == (512, 64, False, False)
    assert (llama.rope_theta, llama.norm_eps, llama.rope_llama3) == (500_000.0, 1e-6, None)
    qwen2 = hf_model_config(tiny_hf("qwen2"), 64)
    assert (qwen2.tied, qwen2.qkv_bias, qwen2.attn_out_bias) == (True, True, False)


def test_without_the_row_reordering_the_logits_differ(
    tiny_hf: TinyHF, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hf_checkpoint, "rows_from_hf", lambda tensor, heads: tensor)
    assert logits_gap(tiny_hf("llama"), 64) > 1e-2


def test_row_reordering_turns_our_rotation_into_rotate_half() -> None:
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    heads, head_dim, seq = 3, 8, 5
    cos, sin = rotary_tables(seq, head_dim, 10_000.0)
    ours = torch.randn(1, heads, seq, head_dim)
    # Their layout of the same projection output: rows reordered within each head.
    theirs = rows_to_hf(ours.transpose(1, 2).reshape(seq, heads * head_dim).T, heads)
    theirs = theirs.T.reshape(1, seq, heads, head_dim).transpose(1, 2)
    full_cos, full_sin = torch.cat((cos, cos), -1)[None], torch.cat((sin, sin), -1)[None]
    rotated, _ = apply_rotary_pos_emb(theirs, theirs, full_cos, full_sin)
    back = rows_from_hf(rotated.transpose(1, 2).reshape(seq, -1).T, heads)
    back = back.T.reshape(1, seq, heads, head_dim).transpose(1, 2)
    torch.testing.assert_close(back, apply_rotary(ours, cos, sin))
    weight = torch.randn(heads * head_dim, 7)
    torch.testing.assert_close(rows_from_hf(rows_to_hf(weight, heads), heads), weight)


def test_names_both_ways() -> None:
    for ours in ("embed.weight", "layers.1.attn.wk.bias", "layers.0.ffn.w3.weight", "norm.weight"):
        hf = ours_to_hf(ours)
        assert hf_to_ours(hf) == ours
    assert ours_to_hf("layers.3.ffn.w1.weight") == "model.layers.3.mlp.gate_proj.weight"
    assert (
        ours_to_hf("layers.0.ffn_norm.weight") == "model.layers.0.post_attention_layernorm.weight"
    )
    assert hf_to_ours("lm_head.weight") == "output.weight"
    assert hf_to_ours("model.layers.0.mlp.experts.0.weight") is None


def test_llama_attention_bias_is_read(tiny_hf: TinyHF) -> None:
    directory = tiny_hf("llama", overrides={"attention_bias": True})
    cfg = hf_model_config(directory, 64)
    assert cfg.qkv_bias and cfg.attn_out_bias
    assert logits_gap(directory, 64) < PARITY_ATOL


LLAMA3_ROPE = {
    "rope_type": "llama3",
    "rope_theta": 500_000.0,
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 32,
}
"""Llama 3.1's factors with a pre-training length of 32, so that 128 positions use it."""


def test_llama3_rope_scaling_matches_transformers(tiny_hf: TinyHF) -> None:
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    directory = tiny_hf("llama", overrides={"rope_parameters": LLAMA3_ROPE})
    cfg = hf_model_config(directory, 128)
    assert cfg.rope_llama3 == Llama3Rope(8.0, 1.0, 4.0, 32)
    their_freq, _ = ROPE_INIT_FUNCTIONS["llama3"](LlamaConfig.from_pretrained(directory), "cpu")
    plain_freq = cfg.rope_theta ** (-torch.arange(0, 64, 2, dtype=torch.float64) / 64)
    assert cfg.rope_llama3 is not None
    ours_freq = llama3_frequencies(plain_freq, cfg.rope_llama3).float()
    torch.testing.assert_close(ours_freq, their_freq, rtol=1e-6, atol=0)
    assert not torch.allclose(plain_freq.float(), their_freq)
    ours = ours_from(directory, 128)
    assert logits_gap(directory, 128, ours) < PARITY_ATOL
    # The scaling matters at these lengths: plain tables give other logits.
    plain = Transformer(replace(cfg, rope_llama3=None))
    plain.load_state_dict(ours.state_dict())
    batch = tokens(cfg.vocab, 128)
    with torch.no_grad():
        assert (plain(batch) - ours(batch)).abs().max() > 1e-3


def test_transformers4_rope_keys(tiny_hf: TinyHF, tmp_path: Path) -> None:
    directory = _copy(tiny_hf("llama"), tmp_path)
    scaling = {k: v for k, v in LLAMA3_ROPE.items() if k != "rope_theta"}
    _edit_config(directory, rope_parameters=None, rope_theta=123.0, rope_scaling=scaling)
    cfg = hf_model_config(directory, 64)
    assert (cfg.rope_theta, cfg.rope_llama3) == (123.0, Llama3Rope(8.0, 1.0, 4.0, 32))
    del scaling["original_max_position_embeddings"]  # transformers: max_position_embeddings
    _edit_config(directory, rope_scaling=scaling, rope_theta=None, max_position_embeddings=77)
    cfg = hf_model_config(directory, 64)
    assert (cfg.rope_theta, cfg.rope_llama3) == (10_000.0, Llama3Rope(8.0, 1.0, 4.0, 77))
    _edit_config(directory, rope_scaling={"type": "linear", "factor": 2.0})
    with pytest.raises(CheckpointError, match=r"rope_scaling\.rope_type 'linear'.*llama3"):
        hf_model_config(directory, 64)


def test_sharded_checkpoint_and_bf16_model(tiny_hf: TinyHF) -> None:
    directory = tiny_hf("qwen2", max_shard_size="1MB")
    assert (directory / "model.safetensors.index.json").is_file()
    assert logits_gap(directory, 64) < PARITY_ATOL
    model = Transformer(hf_model_config(directory, 64)).to(torch.bfloat16)
    load_hf_weights(directory, model)
    exact = ours_from(directory, 64)
    for (name, param), reference in zip(model.named_parameters(), exact.parameters(), strict=True):
        assert param.dtype == torch.bfloat16, name
        torch.testing.assert_close(param, reference.to(torch.bfloat16), rtol=0, atol=0)


def test_explicit_head_dim(tiny_hf: TinyHF) -> None:
    directory = tiny_hf("llama", overrides={"head_dim": 32})
    cfg = hf_model_config(directory, 64)
    assert (cfg.head_dim, cfg.head_dim_override, cfg.hidden) == (32, 32, 256)
    assert logits_gap(directory, 64) < PARITY_ATOL


def test_a_window_as_long_as_the_sequence_is_full_attention(tiny_hf: TinyHF) -> None:
    directory = tiny_hf("mistral", overrides={"sliding_window": 32})
    assert logits_gap(directory, 32) < PARITY_ATOL
    with pytest.raises(CheckpointError, match="sliding_window 32"):
        hf_model_config(directory, 33)
    # Past the window transformers attends to less than our full causal attention does.
    same_weights = ours_from(tiny_hf("mistral"), 64)  # window 4096, same seed
    assert logits_gap(directory, 64, same_weights) > 1e-3


def test_adapters_already_on_the_model_are_kept(tiny_hf: TinyHF) -> None:
    directory = tiny_hf("llama")
    model = Transformer(hf_model_config(directory, 64))
    lora_a = torch.nn.Parameter(torch.full((2, 256), 3.0))
    model.layers[0].attn.wq.register_parameter("lora_a", lora_a)
    load_hf_weights(directory, model)
    assert torch.equal(lora_a, torch.full((2, 256), 3.0))
    assert torch.equal(
        model.layers[0].attn.wq.weight, ours_from(directory, 64).layers[0].attn.wq.weight
    )


def test_sliding_window(tiny_hf: TinyHF, tmp_path: Path) -> None:
    directory = _copy(tiny_hf("mistral"), tmp_path)
    _edit_config(directory, sliding_window=32)
    assert hf_model_config(directory, 32).seq_len == 32
    with pytest.raises(CheckpointError, match=r"sliding_window 32 .*--seq-len <= 32"):
        hf_model_config(directory, 64)
    qwen2 = tmp_path / "qwen2"
    shutil.copytree(tiny_hf("qwen2"), qwen2)
    _edit_config(qwen2, sliding_window=32, use_sliding_window=False)
    hf_model_config(qwen2, 64)  # Qwen2 slides only with use_sliding_window
    _edit_config(
        qwen2, use_sliding_window=True, layer_types=["full_attention", "sliding_attention"]
    )
    with pytest.raises(CheckpointError, match="sliding_window"):
        hf_model_config(qwen2, 64)


def test_old_rotary_buffers_are_ignored(tiny_hf: TinyHF, tmp_path: Path) -> None:
    directory = _copy(tiny_hf("llama"), tmp_path)
    _edit_weights(
        directory,
        lambda t: t.update({"model.layers.0.self_attn.rotary_emb.inv_freq": torch.ones(32)}),
    )
    assert logits_gap(directory, 64) < PARITY_ATOL


# ---- bad input ---------------------------------------------------------------------------


def _bad(directory: Path, match: str, seq_len: int = 64) -> None:
    with pytest.raises(CheckpointError, match=match) as info:
        model = Transformer(hf_model_config(directory, seq_len))
        load_hf_weights(directory, model)
    assert "\n" not in str(info.value)
    assert info.value.user_error


def test_no_directory_no_config_no_weights(tmp_path: Path, tiny_hf: TinyHF) -> None:
    _bad(tmp_path / "nope", r"nope: no such directory")
    (tmp_path / "empty").mkdir()
    _bad(tmp_path / "empty", r"empty/config.json: missing")
    directory = _copy(tiny_hf("llama"), tmp_path)
    (directory / "model.safetensors").rename(directory / "pytorch_model.bin")
    _bad(directory, r"no model.safetensors or model.safetensors.index.json \(found pytorch")


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"model_type": "gpt2"}, r"model_type 'gpt2' is not supported; supported: llama, mistral"),
        ({"hidden_act": "gelu"}, r"hidden_act 'gelu'"),
        ({"mlp_bias": True}, r"mlp_bias"),
        ({"num_key_value_heads": 3}, r"num_key_value_heads 3 does not divide"),
        ({"hidden_size": None}, r"no hidden_size"),
        ({"rope_parameters": {"rope_type": "yarn"}}, r"rope_parameters\.rope_type 'yarn'"),
        ({"quantization_config": {"quant_method": "gptq"}}, r"quantization_config"),
        (
            {
                "rope_parameters": {
                    "rope_type": "llama3",
                    "low_freq_factor": 1,
                    "high_freq_factor": 4,
                }
            },
            r"no rope_parameters\.factor; add it",
        ),
        (
            {"rope_parameters": {**LLAMA3_ROPE, "low_freq_factor": 4}},
            r"low_freq_factor 4.0 must be",
        ),
    ],
)
def test_bad_config(
    tiny_hf: TinyHF, tmp_path: Path, changes: dict[str, object], match: str
) -> None:
    directory = _copy(tiny_hf("llama"), tmp_path)
    _edit_config(directory, **changes)
    _bad(directory, match)


def test_missing_unexpected_and_misshapen_tensors(tiny_hf: TinyHF, tmp_path: Path) -> None:
    directory = _copy(tiny_hf("llama"), tmp_path)
    _edit_weights(directory, lambda t: t.pop("model.layers.1.mlp.up_proj.weight"))
    _bad(directory, r"no tensor model.layers.1.mlp.up_proj.weight .*\(1 missing\)")
    shutil.rmtree(directory)
    directory = _copy(tiny_hf("llama"), tmp_path)
    _edit_weights(
        directory,
        lambda t: t.update({"model.layers.2.mlp.up_proj.weight": t["model.norm.weight"].clone()}),
    )
    _bad(directory, r"model.safetensors: unexpected tensor model.layers.2.mlp.up_proj.weight")
    _edit_config(directory, intermediate_size=384, num_hidden_layers=3)
    _bad(
        directory,
        r"tensor model.layers.0.mlp.down_proj.weight has shape \[256, 512\] but config.json "
        r"\(intermediate_size, hidden_size\) gives \[256, 384\]",
    )


def test_malformed_index(tiny_hf: TinyHF, tmp_path: Path) -> None:
    directory = _copy(tiny_hf("llama", max_shard_size="1MB"), tmp_path)
    index = directory / "model.safetensors.index.json"
    good = json.loads(index.read_text())
    index.write_text("{not json")
    _bad(directory, r"index.json: not a JSON object")
    index.write_text(json.dumps({"metadata": {}}))
    _bad(directory, r"index.json: no weight_map object")
    first = next(iter(good["weight_map"]))
    index.write_text(json.dumps({"weight_map": {**good["weight_map"], first: "gone.safetensors"}}))
    _bad(directory, rf"weight_map names gone.safetensors \(for {first}\), which is missing")
    other = sorted(set(good["weight_map"].values()) - {good["weight_map"][first]})[0]
    index.write_text(json.dumps({"weight_map": {**good["weight_map"], first: other}}))
    _bad(directory, rf"weight_map puts {first} in {other}, which does not hold it")
    (directory / other).write_bytes(b"garbage")
    index.write_text(json.dumps(good))
    _bad(directory, rf"{other}: not a readable safetensors file")
