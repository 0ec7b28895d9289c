"""MoE models with dense first layers (DeepSeek-V3's first_k_dense_replace) and shared
experts read from DeepSeek-style config.json keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

import planner
from planner.errors import PlanInputError

# DeepSeek-V3 config.json (the keys the planner reads; MLA's keys are not among them)
DEEPSEEK_V3 = {
    "model_type": "deepseek_v3",
    "hidden_size": 7168,
    "num_hidden_layers": 61,
    "num_attention_heads": 128,
    "num_key_value_heads": 128,
    "intermediate_size": 18432,
    "moe_intermediate_size": 2048,
    "n_routed_experts": 256,
    "n_shared_experts": 1,
    "num_experts_per_tok": 8,
    "first_k_dense_replace": 3,
    "moe_layer_freq": 1,
    "vocab_size": 129280,
    "hidden_act": "silu",
    "tie_word_embeddings": False,
}


def _write(tmp_path: Path, cfg: dict[str, object]) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    return path


def _moe(dense_first: int, layers: int = 8) -> planner.ModelSpec:
    return planner.ModelSpec(
        name="m", num_layers=layers, hidden_size=1024, num_attention_heads=8, num_kv_heads=8,
        ffn_hidden_size=4096, vocab_size=32000, num_experts=16, top_k=2,
        moe_ffn_hidden_size=512, shared_expert_ffn_hidden_size=512,
        dense_first_layers=dense_first,
    )  # fmt: skip


def test_deepseek_keys_give_routed_shared_and_dense_first_layers(tmp_path: Path) -> None:
    spec = planner.load_hf_config(_write(tmp_path, DEEPSEEK_V3))
    assert (spec.num_experts, spec.top_k, spec.moe_ffn_hidden_size) == (256, 8, 2048)
    assert spec.shared_expert_ffn_hidden_size == 1 * 2048  # n_shared_experts x width
    assert spec.dense_first_layers == 3
    all_moe = spec.model_copy(update={"dense_first_layers": 0})
    # three layers trade 256 routed experts, a router and a shared expert for an MLP of 18432
    moe_mlp = 256 * 3 * 7168 * 2048 + 7168 * 256 + 3 * 7168 * 2048
    assert all_moe.num_params - spec.num_params == pytest.approx(3 * (moe_mlp - 3 * 7168 * 18432))


def test_moe_every_few_layers_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PlanInputError, match="moe_layer_freq 2"):
        planner.load_hf_config(_write(tmp_path, {**DEEPSEEK_V3, "moe_layer_freq": 2}))


def test_dense_first_layers_need_an_moe_model_and_fewer_than_all_layers() -> None:
    with pytest.raises(ValidationError, match="dense_first_layers 8"):
        _moe(8)
    with pytest.raises(ValidationError, match="needs an MoE model"):
        planner.ModelSpec(name="d", num_layers=4, hidden_size=64, num_attention_heads=4,
                          num_kv_heads=4, ffn_hidden_size=256, vocab_size=100,
                          dense_first_layers=1)  # fmt: skip


def _estimate(model: planner.ModelSpec, pp: int) -> planner.Estimate:
    return planner.estimate(
        model,
        planner.ClusterSpec(gpu="H100", num_gpus=16),
        planner.TrainingSpec(seq_len=2048, global_batch_seqs=64, total_tokens=1e10),
        planner.Layout(dp=16 // pp, pp=pp, ep=2, sharding="zero1"),
    )


def test_without_pipelining_a_step_averages_moe_and_dense_layers() -> None:
    moe, mixed, = _estimate(_moe(0), 1), _estimate(_moe(2), 1)  # fmt: skip
    # a dense layer has no all-to-all: two of eight layers exchange no tokens
    assert mixed.step.breakdown["ep_comm_s"] == pytest.approx(
        moe.step.breakdown["ep_comm_s"] * 6 / 8
    )
    assert mixed.memory_gib.params < moe.memory_gib.params  # 2 x 16 experts fewer
    # model FLOPs count the dense MLP (4096 wide) on those layers, not top-2 of 512 + shared
    assert mixed.step.model_tflops_per_gpu != moe.step.model_tflops_per_gpu


def test_with_pipelining_the_slowest_stage_is_all_moe() -> None:
    moe, mixed = _estimate(_moe(0), 2), _estimate(_moe(2), 2)
    assert mixed.step.breakdown["ep_comm_s"] == pytest.approx(moe.step.breakdown["ep_comm_s"])
    assert mixed.memory_gib.params == pytest.approx(moe.memory_gib.params)
