"""Pure BF16 training (TrainingSpec.precision 'bf16-pure') and the chunked cross-entropy
(TrainingSpec.loss_chunks): what each changes in the estimate, and what it leaves alone."""

from __future__ import annotations

import pytest

import planner
from planner.errors import PlanInputError
from planner.formulas import memory

GIB = 2.0**30
MODEL = planner.get_model("llama3.2-3b")
CLUSTER = planner.ClusterSpec(gpu="A100-SXM-80GB", num_gpus=1)
LAYOUT = planner.Layout(dp=1, micro_batch=2, recompute="none")


def _estimate(**training: object) -> planner.Estimate:
    spec = planner.TrainingSpec(
        seq_len=4096, global_batch_seqs=2, total_tokens=1e9, finetune="full", **training
    )  # type: ignore[arg-type]
    return planner.estimate(MODEL, CLUSTER, spec, LAYOUT)


def test_pure_bf16_holds_eight_bytes_per_trained_parameter() -> None:
    mixed, pure = _estimate(precision="bf16"), _estimate(precision="bf16-pure")
    n = mixed.memory_gib.params / 2  # BF16 weights: 2 bytes per parameter, in both
    assert pure.memory_gib.params == pytest.approx(mixed.memory_gib.params)
    # Mixed: FP32 gradient buffer (4) and master + AdamW states (12): 18 bytes in all.
    assert mixed.memory_gib.grads == pytest.approx(4 * n)
    assert mixed.memory_gib.optimizer == pytest.approx(12 * n)
    # Pure: BF16 gradients (2) and exp_avg, exp_avg_sq in BF16 (4): 8 bytes in all.
    assert pure.memory_gib.grads == pytest.approx(2 * n)
    assert pure.memory_gib.optimizer == pytest.approx(4 * n)
    assert pure.memory_gib.activations == pytest.approx(mixed.memory_gib.activations)
    # The optimizer step moves 18 bytes per parameter instead of 42 (constants.yaml
    # optimizer_step_bytes); the GEMMs and attention do not change.
    overhead = CLUSTER.accelerator().step_overhead_s
    mixed_s, pure_s = mixed.step.breakdown, pure.step.breakdown
    assert pure_s["optimizer_s"] - overhead == pytest.approx(
        (mixed_s["optimizer_s"] - overhead) * 18 / 42
    )
    assert (pure_s["gemm_s"], pure_s["attention_s"]) == (mixed_s["gemm_s"], mixed_s["attention_s"])


def test_pure_bf16_gradients_are_bf16_whatever_the_reduce_dtype() -> None:
    a = _estimate(precision="bf16-pure", grad_reduce_dtype="fp32")
    b = _estimate(precision="bf16-pure", grad_reduce_dtype="bf16")
    assert a.memory_gib.grads == b.memory_gib.grads


def test_pure_bf16_sgd_keeps_one_bf16_state() -> None:
    est = _estimate(precision="bf16-pure", optimizer="sgd_momentum")
    assert est.memory_gib.optimizer == pytest.approx(est.memory_gib.params)


def test_compiled_chunked_loss_keeps_bf16_logits_and_one_chunk_gradient() -> None:
    whole = _estimate(precision="bf16-pure")
    chunked = _estimate(precision="bf16-pure", loss_chunks=8)
    logits = 2 * 4096 * MODEL.vocab_size  # one micro-batch's logits
    saved = (whole.memory_gib.activations - chunked.memory_gib.activations) * GIB
    # 6 bytes per logit (BF16 + FP32) become 2 + 2 / 8: the BF16 logits and one chunk's
    # BF16 gradient (the compiled chunk upcasts in registers).
    assert saved == pytest.approx(logits * (6 - 2.25))
    assert chunked.step.time_s == whole.step.time_s  # each logit computed once
    assert memory.chunked_logits_bytes(8.0, 4, eager=False) == 5.0  # fp32: logits + 1/4 gradient


def test_eager_loss_holds_three_fp32_copies_in_one_piece_and_six_bytes_in_chunks() -> None:
    # Eager log_softmax and nll_loss: the saved FP32 log-probabilities plus two FP32
    # gradients at the start of the backward; chunks each save their FP32 output (the
    # reference trainer's --loss-chunks). bench/loss_memory.py measured 12.3 and 5.3 bytes
    # per logit in BF16 (bench/RESULTS.md).
    whole = _estimate(kernels="eager")
    chunked = _estimate(kernels="eager", loss_chunks=8)
    logits = 2 * 4096 * MODEL.vocab_size
    saved = (whole.memory_gib.activations - chunked.memory_gib.activations) * GIB
    assert saved == pytest.approx(logits * (12 - 6))
    assert memory.chunked_logits_bytes(6.0, 8, eager=True) == 6.0
    assert memory.chunked_logits_bytes(6.0, 1, eager=True) == 12.0


def test_defaults_are_mixed_precision_and_one_chunk() -> None:
    spec = planner.TrainingSpec(seq_len=4096, global_batch_seqs=2, total_tokens=1e9)
    assert (spec.precision, spec.loss_chunks) == ("bf16", 1)


@pytest.mark.parametrize(("field", "value"), [("loss_chunks", 0), ("precision", "bf16-true")])
def test_bad_values_name_the_field(field: str, value: object) -> None:
    with pytest.raises((ValueError, PlanInputError), match=field):
        planner.TrainingSpec(seq_len=4096, global_batch_seqs=2, total_tokens=1e9, **{field: value})  # type: ignore[arg-type]
