"""The peak per GPU over the backward: gradients made in it (TrainingSpec.grad_lifetime),
the workspace beside the loss's buffers, the eager loss and eager saved tensors
(TrainingSpec.loss_kernels, kernels), and offloading every saved activation."""

from __future__ import annotations

from typing import Any

import pytest

import planner
from planner.formulas import memory
from planner.units import GIB

MODEL = planner.get_model("llama3.2-3b")
TOKENS = 2 * 4096
LOGITS = TOKENS * MODEL.vocab_size


def _estimate(gpus: int = 1, layout: dict[str, Any] | None = None, **training: Any) -> Any:
    spec = planner.TrainingSpec(
        **{"seq_len": 4096, "global_batch_seqs": 2 * gpus, "total_tokens": 1e9,
           "finetune": "full", "precision": "bf16-pure", **training}
    )  # fmt: skip
    cluster = planner.ClusterSpec(gpu="A100-SXM-80GB", num_gpus=gpus)
    lo = planner.Layout(**{"dp": gpus, "micro_batch": 2, **(layout or {})})
    return planner.estimate(MODEL, cluster, spec, lo).memory_gib


def _sums(mem: Any) -> bool:
    parts = mem.params + mem.grads + mem.optimizer + mem.activations + mem.other
    return bool(mem.total == pytest.approx(parts, rel=1e-9))


def test_gradients_made_in_backward_meet_the_activations_at_neither_end() -> None:
    # Without recompute the start of the backward (activations and logits) is the peak:
    # no gradient exists yet.
    held = _estimate(loss_chunks=8)
    made = _estimate(loss_chunks=8, grad_lifetime="backward")
    assert made.grads == 0.0 and made.activations == held.activations
    assert made.total == pytest.approx(held.total - held.grads)
    # With full recompute its end is: every gradient, no saved activation.
    held = _estimate(loss_chunks=8, layout={"recompute": "full"})
    made = _estimate(loss_chunks=8, grad_lifetime="backward", layout={"recompute": "full"})
    assert made.grads == held.grads > made.activations == 0.0
    # ... and the recomputed layer, hidden behind the logits at the start, in full.
    assert made.other > held.other and made.total < held.total
    assert _sums(held) and _sums(made)


@pytest.mark.parametrize(
    ("gpus", "layout"),
    [(1, {}), (2, {}), (2, {"sharding": "zero1"})],
    ids=["accumulation", "ddp-buckets", "zero1-buffers"],
)
def test_gradients_held_all_step_under_accumulation_or_persistent_buffers(
    gpus: int, layout: dict[str, Any]
) -> None:
    # 4 sequences of micro-batch 2: two micro-batches on one GPU, one on each of two.
    held = _estimate(gpus, layout, global_batch_seqs=4)
    made = _estimate(gpus, layout, grad_lifetime="backward", global_batch_seqs=4)
    assert made.total == held.total


def test_fsdp_gradients_are_made_in_backward() -> None:
    held = _estimate(2, {"sharding": "zero3"})
    made = _estimate(2, {"sharding": "zero3"}, grad_lifetime="backward")
    assert made.total == pytest.approx(held.total - held.grads)


def test_eager_saved_tensors_by_hand() -> None:
    h, q, kv, ffn = 3072, 3072, 1024, 8192
    args = (TOKENS, h, q, kv, ffn, 1.0)
    # Two RMSNorms: FP32 input (4) and the BF16 normalised operand (2) against the fused
    # count's input (2); the silu output; K and V widened from kv to q.
    trained = memory.eager_saved_extra_bytes(*args, 0.0, 1.0, 1.0, 1.0, 2.0)
    assert trained == TOKENS * (2 * 4 * h + 2 * ffn + 2 * 2 * (q - kv))
    frozen = memory.eager_saved_extra_bytes(*args, 0.0, 0.0, 1.0, 1.0, 2.0)
    assert trained - frozen == TOKENS * 2 * 2 * h  # a frozen scale saves no operand
    # LayerNorm is one eager kernel, GELU too, and without GQA nothing is widened.
    assert memory.eager_saved_extra_bytes(TOKENS, h, q, q, ffn, 0.0, 1.0, 1.0, 1, 1, 2) == 0
    fused, eager = _estimate(), _estimate(kernels="eager")
    per_layer = (eager.activations - fused.activations) * GIB / MODEL.num_layers
    loss = LOGITS * (memory.EAGER_LOSS_PEAK_BYTES - 6) / MODEL.num_layers
    assert per_layer == pytest.approx(trained + loss)


def test_eager_loss_beside_compiled_blocks() -> None:
    fused = _estimate()
    loss_eager = _estimate(loss_kernels="eager")
    assert (loss_eager.activations - fused.activations) * GIB == pytest.approx(LOGITS * 6)
    assert _estimate(kernels="eager", loss_kernels="fused").activations < (
        _estimate(kernels="eager").activations
    )
    with pytest.raises(ValueError, match="loss_kernels"):
        planner.TrainingSpec(seq_len=8, global_batch_seqs=1, total_tokens=1, loss_kernels="x")


def test_workspace_counts_beyond_the_logits_only() -> None:
    # Full recompute's workspace (one layer's activations) is smaller than the logits the
    # loss holds first, so it adds only the fragmentation allowance on top of them.
    mem = _estimate(layout={"recompute": "full"})
    fixed = planner.get_gpu("A100-SXM-80GB").runtime_reserved_gib
    assert mem.other == pytest.approx(fixed + 0.05 * mem.activations)


def test_offloading_every_saved_activation_keeps_the_logits() -> None:
    lo = {"recompute": "full", "activation_offload": 1.0}
    mem = _estimate(loss_chunks=8, layout=lo)
    assert mem.activations * GIB == pytest.approx(LOGITS * 2.25)
    with pytest.raises(ValueError, match="activation_offload"):
        planner.Layout(dp=1, activation_offload=1.5)
