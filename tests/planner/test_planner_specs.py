"""Specs: parameter counts against published sizes; self-checks; defaults filled in."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

import planner
from planner import ClusterSpec, Layout, ModelSpec, TrainingSpec


@pytest.mark.parametrize(
    ("name", "total_b", "active_b"),
    [
        ("llama2-7b", 6.74, 6.74),  # Touvron 2023b: 7B (6.74B in the HF checkpoint)
        ("llama2-13b", 13.02, 13.02),
        ("llama2-70b", 68.98, 68.98),
        ("llama3-8b", 8.03, 8.03),  # Dubey 2024 / HF: 8.03B
        ("llama3-70b", 70.55, 70.55),
        ("llama3-405b", 405.85, 405.85),
        ("mixtral-8x7b", 46.70, 12.88),  # Jiang 2024: 46.7B total, 12.9B active
        ("gpt3-175b", 174.6, 174.6),  # Brown 2020: 175B (Narayanan Table 2: 174.6)
    ],
)
def test_parameter_counts(name: str, total_b: float, active_b: float) -> None:
    model = planner.get_model(name)
    assert model.num_params / 1e9 == pytest.approx(total_b, rel=2e-3)
    assert model.num_active_params / 1e9 == pytest.approx(active_b, rel=2e-3)


@pytest.mark.parametrize("name", ["megatron-1.7b", "megatron-39.1b", "megatron-529.6b"])
def test_megatron_configs_follow_narayanan_eq2(name: str) -> None:
    m = planner.get_model(name)
    layers, h, vocab, s = m.num_layers, m.hidden_size, m.vocab_size, 2048
    eq2 = 12 * layers * h**2 * (1 + 13 / (12 * h) + (vocab + s) / (12 * layers * h))
    assert m.num_params == pytest.approx(eq2, rel=1e-3)
    assert m.num_params / 1e9 == pytest.approx(float(name.split("-")[1][:-1]), rel=0.03)


def test_model_defaults_and_refusals() -> None:
    m = ModelSpec(
        name="x",
        num_layers=2,
        hidden_size=64,
        num_attention_heads=4,
        ffn_hidden_size=128,
        vocab_size=100,
    )
    assert m.num_kv_heads == 4 and m.head_dim_eff == 16 and not m.is_moe
    with pytest.raises(ValidationError, match="num_kv_heads 3 must divide"):
        ModelSpec(
            name="x",
            num_layers=2,
            hidden_size=64,
            num_attention_heads=4,
            num_kv_heads=3,
            ffn_hidden_size=128,
            vocab_size=100,
        )
    with pytest.raises(ValidationError, match="not divisible by num_attention_heads"):
        ModelSpec(
            name="x",
            num_layers=2,
            hidden_size=65,
            num_attention_heads=4,
            ffn_hidden_size=128,
            vocab_size=100,
        )
    with pytest.raises(ValidationError, match="top_k 3 exceeds num_experts 2"):
        ModelSpec(
            name="x",
            num_layers=2,
            hidden_size=64,
            num_attention_heads=4,
            ffn_hidden_size=128,
            vocab_size=100,
            num_experts=2,
            top_k=3,
        )
    with pytest.raises(ValidationError, match="greater than 0"):
        ModelSpec(
            name="x",
            num_layers=0,
            hidden_size=64,
            num_attention_heads=4,
            ffn_hidden_size=128,
            vocab_size=100,
        )
    with pytest.raises(ValidationError, match="extra"):
        ModelSpec.model_validate({**m.model_dump(), "n_layers": 3})


def test_specs_are_frozen() -> None:
    lo = Layout(dp=2)
    with pytest.raises(ValidationError):
        lo.dp = 4  # type: ignore[misc]


def test_cluster_fills_nodes_or_gpus() -> None:
    assert ClusterSpec(gpu="H100", num_gpus=20).num_nodes == 3
    assert ClusterSpec(gpu="H100", num_nodes=4, gpus_per_node=4).num_gpus == 16
    with pytest.raises(ValidationError, match="do not fill"):
        ClusterSpec(gpu="H100", num_gpus=20, num_nodes=5)
    with pytest.raises(ValidationError, match="give num_gpus or num_nodes"):
        ClusterSpec(gpu="H100")


def test_cluster_takes_an_inline_accelerator() -> None:
    acc = planner.AcceleratorSpec(
        name="my-cpu",
        bf16_dense_tflops=0.5,
        hbm_gib=16,
        hbm_tb_s=0.02,
        intra_node_gb_s=5,
        inter_node_gb_s_per_gpu=1,
        tdp_w=100,
        idle_w=10,
        price_usd_per_gpu_hour=0,
    )
    cl = ClusterSpec(gpu=acc, num_gpus=2, gpus_per_node=2)
    assert cl.accelerator() is acc
    again = ClusterSpec.model_validate(cl.model_dump(mode="json"))
    assert again.accelerator() == acc


def test_training_accepts_tokens_per_batch() -> None:
    tr = TrainingSpec(seq_len=4096, global_batch_tokens=4 * 2**20, total_tokens=2e12)
    assert tr.global_batch_seqs == 1024 and tr.global_batch_tokens == 4 * 2**20
    with pytest.raises(ValidationError, match="not a positive multiple of seq_len 4096"):
        TrainingSpec(seq_len=4096, global_batch_tokens=4_000_000, total_tokens=2e12)


def test_layout_self_checks() -> None:
    assert Layout(dp=8, tp=2, pp=2, cp=2).num_gpus == 64
    assert Layout(dp=2, sharding="fsdp").sharding == "zero3"  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="interleave > 1 needs pipeline stages"):
        Layout(dp=2, interleave=2)
    with pytest.raises(ValidationError, match="hsdp_shard_size goes with sharding='hsdp'"):
        Layout(dp=8, sharding="hsdp")
    with pytest.raises(ValidationError, match="must divide dp 8"):
        Layout(dp=8, sharding="hsdp", hsdp_shard_size=3)
    with pytest.raises(ValidationError):
        Layout(dp=2, recompute="sometimes")  # type: ignore[arg-type]
