"""Held-out evaluation of the reference trainer: the mean per-token loss over fixed rows,
the same at any world size and layout (a mixin of ``runtime.train.loop.Trainer``)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor

from runtime.train import batches, parallel

if TYPE_CHECKING:
    from runtime.train.pipeline import Pipeline


class Evaluation:
    """``evaluate`` for ``Trainer`` (the attributes are the Trainer's)."""

    cfg: Any
    dims: parallel.ParallelDims
    device: torch.device
    dp_rank: int
    model: Any
    pipeline: Pipeline | None
    loss_chunks: int
    eval_set: batches.Batch
    _loss_context: Callable[[], contextlib.AbstractContextManager[None]]

    if TYPE_CHECKING:

        def _inputs(
            self, tokens: torch.Tensor, targets: torch.Tensor
        ) -> tuple[torch.Tensor, torch.Tensor]: ...
        def _evaluate_pipelined(
            self, mine: tuple[np.ndarray, np.ndarray], per_rank: int
        ) -> float: ...

    @torch.no_grad()
    def evaluate(self) -> float:
        """Mean per-token loss over the fixed held-out windows, the same at any world size."""
        self.model.eval()
        rows, labels = self.eval_set
        # Split over data-parallel ranks; a tensor-parallel group reads the same rows and
        # so counts them tp times, in both sums of the ratio.
        per_rank = -(-len(rows) // self.dims.dp)
        mine = slice(self.dp_rank * per_rank, (self.dp_rank + 1) * per_rank)
        if self.pipeline is not None:
            return self._evaluate_pipelined((rows[mine], labels[mine]), per_rank)
        chunks = -(-per_rank // self.cfg.micro_batch)
        totals = torch.zeros(2, device=self.device, dtype=torch.float64)
        for index in range(chunks):
            at = mine.start + index * self.cfg.micro_batch
            part = slice(at, min(at + self.cfg.micro_batch, mine.stop))
            weight = 1.0
            if len(rows[part]) == 0:
                # Every rank must run the same number of forwards (FSDP gathers inside them).
                part, weight = slice(0, 1), 0.0
            tokens, targets = self._inputs(
                torch.from_numpy(rows[part]).to(self.device),
                torch.from_numpy(labels[part]).to(self.device),
            )
            with self._loss_context():
                loss = self.model(tokens, targets, self.loss_chunks, "sum")
            totals[0] += weight * _local(loss).double()
            # Tokens that take a loss (a cp rank's: summed over cp).
            totals[1] += weight * float((targets != batches.IGNORE_INDEX).sum())
        dist.all_reduce(totals)
        self.model.train()
        return float(totals[0] / totals[1])


def _local(value: torch.Tensor) -> torch.Tensor:
    """A loss as a plain tensor (under ``loss_parallel`` it is a replicated DTensor)."""
    return value.full_tensor() if isinstance(value, DTensor) else value
