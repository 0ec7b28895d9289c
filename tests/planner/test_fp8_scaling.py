"""Dynamic against delayed FP8 scaling (TrainingSpec.fp8_scaling): the amax passes and
``_scaled_mm`` layout copies of torchao's dynamic tensorwise Float8Linear, as HBM bytes
of the element-wise terms, and nothing outside precision fp8."""

from __future__ import annotations

import pytest

import planner
from planner.formulas import kernels

H100 = planner.get_gpu("H100-SXM-80GB")
LAYERS = 32


def _estimate(precision: str, scaling: str, recompute: str = "full") -> planner.Estimate:
    training = planner.TrainingSpec(
        seq_len=8192, global_batch_seqs=16, total_tokens=1e12, precision=precision,
        attention_kernel="fa2", fp8_scaling=scaling,
    )  # fmt: skip
    layout = planner.Layout(dp=8, micro_batch=1, recompute=recompute, sharding="zero3")
    cluster = planner.ClusterSpec(gpu="H100-SXM-80GB", num_gpus=8)
    return planner.estimate(planner.get_model("llama3-8b"), cluster, training, layout)


def test_bytes_of_one_llama3_8b_token_without_tp() -> None:
    # GEMM inputs: two norm outputs (4096 each), attention output (4096), SwiGLU product
    # (14336): 26624. Output gradients: Q 4096, K and V 1024 each, gate and up 14336 each,
    # output projection and down projection 4096 each: 43008.
    fwd, bwd = kernels.fp8_dynamic_scaling_bytes(1, 4096, 4096, 1024, 14336, 1, 1, 1.0, 2)
    assert fwd == 2 * 26624  # one more BF16 read for each input's amax
    assert bwd == 2 * 43008 + 2 * 43008 + 2 * 26624  # amax read, two FP8 layout copies


def test_sequence_parallel_casts_a_share_and_copies_the_gathered_tensor() -> None:
    whole = kernels.fp8_dynamic_scaling_bytes(1, 4096, 4096, 1024, 14336, 1, 4, 1.0, 2)
    share = kernels.fp8_dynamic_scaling_bytes(1, 4096, 4096, 1024, 14336, 1, 4, 0.25, 2)
    # only the amax reads of the norm outputs and row-parallel gradients shrink
    assert whole[0] - share[0] == 2 * 2 * 4096 * 0.75
    assert whole[1] - share[1] == 2 * 2 * 4096 * 0.75


def test_dynamic_scaling_adds_its_bytes_to_the_memory_bound_and_recompute_terms() -> None:
    delayed, dynamic = _estimate("fp8", "delayed"), _estimate("fp8", "dynamic")
    fwd, bwd = kernels.fp8_dynamic_scaling_bytes(8192, 4096, 4096, 1024, 14336, 1, 1, 1.0, 2)
    bandwidth = H100.hbm_tb_s * 1e12 * H100.hbm_efficiency
    micro_batches = 2  # 16 sequences over 8 replicas of one
    extra = dynamic.step.breakdown["memory_bound_s"] - delayed.step.breakdown["memory_bound_s"]
    assert extra == pytest.approx(micro_batches * LAYERS * (fwd + bwd) / bandwidth, rel=1e-9)
    # full recomputation repeats the forward's amax passes
    extra = dynamic.step.breakdown["recompute_s"] - delayed.step.breakdown["recompute_s"]
    assert extra == pytest.approx(micro_batches * LAYERS * fwd / bandwidth, rel=1e-9)
    assert dynamic.step.tokens_per_s < delayed.step.tokens_per_s


@pytest.mark.parametrize("precision", ["bf16", "bf16-pure"])
def test_fp8_scaling_changes_nothing_outside_fp8(precision: str) -> None:
    assert _estimate(precision, "dynamic").step == _estimate(precision, "delayed").step


def test_delayed_is_the_default() -> None:
    assert planner.TrainingSpec(seq_len=8, global_batch_seqs=1, total_tokens=1).fp8_scaling == (
        "delayed"
    )


def test_fp8_scaling_is_delayed_or_dynamic() -> None:
    with pytest.raises(ValueError, match="fp8_scaling"):
        planner.TrainingSpec(
            seq_len=2048, global_batch_seqs=8, total_tokens=1e9, fp8_scaling="rowwise"
        )


def test_current_scaling_reads_each_tensor_once_more_and_copies_nothing() -> None:
    # Transformer Engine's current scaling: the amax reads of torchao's dynamic scaling
    # (GEMM inputs forward, output gradients backward), without its two layout copies.
    fwd, bwd = kernels.fp8_amax_bytes(1, 4096, 4096, 1024, 14336, 1, 1, 1.0, 2)
    assert (fwd, bwd) == (2 * 26624, 2 * 43008)
    dyn_fwd, dyn_bwd = kernels.fp8_dynamic_scaling_bytes(1, 4096, 4096, 1024, 14336, 1, 1, 1.0, 2)
    assert fwd == dyn_fwd and bwd < dyn_bwd


def test_current_scaling_costs_between_delayed_and_dynamic() -> None:
    delayed, current = _estimate("fp8", "delayed"), _estimate("fp8", "current")
    dynamic = _estimate("fp8", "dynamic")
    fwd, bwd = kernels.fp8_amax_bytes(8192, 4096, 4096, 1024, 14336, 1, 1, 1.0, 2)
    bandwidth = H100.hbm_tb_s * 1e12 * H100.hbm_efficiency
    extra = current.step.breakdown["memory_bound_s"] - delayed.step.breakdown["memory_bound_s"]
    assert extra == pytest.approx(2 * LAYERS * (fwd + bwd) / bandwidth, rel=1e-9)
    assert dynamic.step.tokens_per_s < current.step.tokens_per_s < delayed.step.tokens_per_s
    assert _estimate("bf16", "current").step == _estimate("bf16", "delayed").step
