"""FP8 parameters (TrainingSpec.fp8_param_gather): the data-parallel weight all-gathers move
one byte per parameter, the gradient reductions do not change, and the FP8 weight with its
transpose replaces the BF16 weight and its FP8 cache in memory."""

from __future__ import annotations

import pytest

import planner


def _estimate(
    fp8_params: bool, sharding: str, grad: str = "bf16", overlap: bool = False
) -> planner.Estimate:
    training = planner.TrainingSpec(
        seq_len=8192, global_batch_seqs=16, total_tokens=1e12, precision="fp8",
        grad_reduce_dtype=grad, overlap_grad_reduce=overlap, fp8_param_gather=fp8_params,
    )  # fmt: skip
    layout = planner.Layout(dp=8, micro_batch=1, recompute="full", sharding=sharding)
    cluster = planner.ClusterSpec(gpu="H100-SXM-80GB", num_gpus=8)
    return planner.estimate(planner.get_model("llama3-8b"), cluster, training, layout)


def _dp_s(estimate: planner.Estimate) -> float:
    return float(estimate.step.breakdown["dp_comm_s"])


def test_zero1_gathers_half_the_bytes_and_reduces_the_same() -> None:
    # Without overlap ZeRO-1 pays reduce-scatter(grads) + all-gather(weights), each
    # (n-1)/n * bytes / bw + (n-1) * alpha. BF16 weights and grads: 2X + 2a; FP8 weights:
    # X + X/2 + 2a; FP8 weights with FP32 grads: 2X + X/2 + 2a, so X is the difference
    # of the last two and the FP8 weights save half of it.
    bf16_w = _dp_s(_estimate(False, "zero1"))
    fp8_w = _dp_s(_estimate(True, "zero1"))
    fp8_w_fp32_g = _dp_s(_estimate(True, "zero1", grad="fp32"))
    x = fp8_w_fp32_g - fp8_w
    assert x > 0
    assert bf16_w - fp8_w == pytest.approx(x / 2, rel=1e-9)


def test_fsdp_gathers_less_and_hides_more() -> None:
    assert _dp_s(_estimate(True, "zero3")) < _dp_s(_estimate(False, "zero3"))
    hidden_bf16 = _estimate(False, "zero3", overlap=True).step.breakdown["dp_contention_s"]
    hidden_fp8 = _estimate(True, "zero3", overlap=True).step.breakdown["dp_contention_s"]
    assert 0 < hidden_fp8 < hidden_bf16


def test_fp8_weights_take_two_bytes_instead_of_three() -> None:
    # ZeRO-1 keeps every weight on every rank: BF16 weight (2) + FP8 cache (1) against
    # FP8 weight + FP8 transpose (2).
    before = _estimate(False, "zero1").memory_gib.params
    after = _estimate(True, "zero1").memory_gib.params
    assert before / after == pytest.approx(3 / 2, rel=1e-9)


def test_off_by_default() -> None:
    assert not planner.TrainingSpec(seq_len=8, global_batch_seqs=1, total_tokens=1).fp8_param_gather


@pytest.mark.parametrize("precision", ["bf16", "bf16-pure", "fp32"])
def test_needs_fp8(precision: str) -> None:
    with pytest.raises(ValueError, match="fp8_param_gather needs precision fp8"):
        planner.TrainingSpec(
            seq_len=2048, global_batch_seqs=8, total_tokens=1e9, precision=precision,
            fp8_param_gather=True,
        )  # fmt: skip
