"""The training loss: cross-entropy of the output projection, computed over sequence chunks.

The planner counts the logits of one micro-batch as ``logits_stored_bytes`` per element
(planner/data/constants.yaml: 6 bytes under bf16, the bf16 logits plus the fp32 copy
Megatron's vocab-parallel cross-entropy keeps; 8 under fp32) and nothing beyond them.
An unchunked ``F.cross_entropy(logits.float())`` holds more at its peak: the logits, their
fp32 copy, the saved log-probabilities, and in the backward pass the fp32 gradient of
the log-probabilities and of the logits, each the size of the whole micro-batch's logits
(16 bytes per element in fp32, 14 in bf16 besides the stored ones).

Split along the sequence, each chunk's projection and cross-entropy run one after the
other: what stays for the backward pass is each chunk's fp32 log-probabilities (4 bytes
per element, within the planner's count), and the transients (the bf16 logits, their
fp32 copy, the gradients) exist for one chunk at a time. No logit is computed twice, so
the step's FLOPs are the planner's (a recomputed chunk would add an output GEMM the
planner's MFU does not count). This is torchtune's ``CEWithChunkedOutputLoss``
(torchtune/modules/loss, pytorch/torchtune#1390) with the projection inside the chunk;
Liger-Kernel's fused linear cross-entropy (Hsu et al. 2024, arXiv:2410.10989) chunks the
same way and also computes the gradient in the forward pass.

The planner's ``TrainingSpec.loss_chunks`` describes a different chunking, torchtune's
compiled one, which keeps the bf16 logits and no fp32 log-probabilities (2 + 4/n bytes):
a compiled plan for this trainer keeps 1 (``plan_fields`` refuses more), whose 6 bytes
cover the 5.3 measured here in 8 chunks (bench/RESULTS.md, "Trainer kernels: chunked loss
memory"). An eager plan (``--kernels eager``) counts an eager loss in one piece at 12
bytes, torchtune's unchunked ``nn.CrossEntropyLoss``, so for this trainer's eager chunks
it is planned with 2 or more chunks, which the planner counts at the same 6 bytes.

Under tensor parallelism the logits are already split over the vocabulary
(``loss_parallel``: 1/tp of them per rank, as the planner counts), and the DTensor
cross-entropy is not split along the sequence here: ``resolve_loss_chunks`` gives 1
chunk there, and refuses more when asked.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

AUTO_CHUNKS = 8
"""Chunks of ``--loss-chunks 0`` (auto) without tensor parallelism: the transients of
the loss are 1/8 of the unchunked ones (torchtune's ``CEWithChunkedOutputLoss`` also
defaults to 8 chunks)."""


class LossChunksError(ValueError):
    """``--loss-chunks`` this layout cannot run; the trainer prints it and exits 2."""

    user_error = True


def resolve_loss_chunks(loss_chunks: int, tp: int, seq_len: int) -> int:
    """Chunks the loss runs in: ``loss_chunks`` when given, else ``AUTO_CHUNKS`` at tp 1
    and 1 under tensor parallelism (vocabulary-parallel logits); at most ``seq_len``."""
    if loss_chunks > 1 and tp > 1:
        raise LossChunksError(
            f"--loss-chunks {loss_chunks}: with --tp {tp} the logits are split over the "
            "vocabulary (loss_parallel), whose cross-entropy the trainer does not also "
            "split along the sequence; use --loss-chunks 0 (auto) or 1"
        )
    if loss_chunks > seq_len:
        raise LossChunksError(
            f"--loss-chunks {loss_chunks}: more chunks than the {seq_len} tokens of a "
            "sequence; use at most --seq-len chunks"
        )
    if loss_chunks == 0:
        return 1 if tp > 1 else min(AUTO_CHUNKS, seq_len)
    return loss_chunks


def chunked_cross_entropy(
    project: Callable[[torch.Tensor], torch.Tensor],
    hidden: torch.Tensor,
    targets: torch.Tensor,
    chunks: int,
    reduction: str = "mean",
) -> torch.Tensor:
    """Cross-entropy of ``project(hidden)`` [B, T, V] against ``targets`` [B, T], in fp32,
    over ``chunks`` pieces of the sequence; ``reduction`` ``mean`` (per token) or ``sum``.

    One chunk is the plain ``F.cross_entropy`` (also on DTensor logits under
    ``loss_parallel``). The chunks' sums add up to the same loss and gradients up to the
    order of the fp32 additions (tests/runtime/test_train_kernels.py).
    """
    if chunks <= 1:
        logits = project(hidden).float()
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction=reduction)
    total = torch.zeros((), device=hidden.device, dtype=torch.float32)
    for part, wanted in zip(
        hidden.tensor_split(chunks, dim=1), targets.tensor_split(chunks, dim=1), strict=True
    ):
        # The projection's output in the parameters' dtype lives only until its fp32 copy
        # exists, and that copy only until the cross-entropy has its log-probabilities.
        logits = project(part).float()
        total = total + F.cross_entropy(logits.flatten(0, 1), wanted.flatten(), reduction="sum")
        del logits
    if reduction != "mean":
        return total
    # Per token that takes a loss: fine-tuning targets only response tokens (-100 elsewhere,
    # which F.cross_entropy skips); a micro-batch without one has loss 0, not 0 / 0.
    return total / (targets != -100).sum().clamp(min=1)


class LiveBytes(TorchDispatchMode):
    """Bytes of tensor storage that operators allocated inside the ``with`` block and are
    still alive, and their peak: the CPU has no allocator statistics
    (``torch.cuda.max_memory_allocated`` has no CPU twin), so the operators' outputs are
    counted as torch's own ``MemTracker`` (torch.distributed._tools) counts them, by
    storage, released when the storage is freed. What tests and bench/loss_memory.py
    measure the loss's peak with."""

    def __init__(self) -> None:
        super().__init__()
        self.live = self.peak = 0
        self._alive: dict[int, weakref.ref[Any]] = {}

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for tensor in tree_leaves(out):
            if not isinstance(tensor, torch.Tensor):
                continue
            storage = tensor.untyped_storage()
            key, size = id(storage), storage.nbytes()
            if key in self._alive or size == 0:
                continue  # a view of storage already counted
            self._alive[key] = weakref.ref(storage, self._release(key, size))
            self.live += size
            self.peak = max(self.peak, self.live)
        return out

    def _release(self, key: int, size: int) -> Callable[[Any], None]:
        """The weak reference's callback: the storage of ``key`` was freed."""

        def free(_: Any) -> None:
            self._alive.pop(key, None)
            self.live -= size

        return free
