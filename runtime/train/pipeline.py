"""Pipeline parallelism in the reference trainer, on ``torch.distributed.pipelining``.

The model is cut into ``pp x interleave`` virtual stages of whole blocks, in order; pipeline
rank ``r`` holds virtual stages ``r, r + pp, r + 2 pp, ...`` (the looped placement of
Narayanan et al. 2021, "Efficient Large-Scale Language Model Training on GPU Clusters",
section 2.2, which torch's ``ScheduleInterleaved1F1B`` expects). The first virtual stage
also holds the embedding, the last the final norm and the output projection. With uneven
stages the first and the last hold one block fewer than the others, as the planner counts
them (planner/terms/shapes.py ``layers_stage``; Llama 3 paper, section 3.3.2).

A stage keeps the full model's attribute names (``embed``, ``layers.<i>``, ``norm``,
``output``), so its parameters have the same fully-qualified names as in the whole model:
a checkpoint written under pp resumes under any other layout (DCP matches by name).

Schedules (torch's): ``gpipe`` (Huang et al. 2019), ``1f1b`` (Narayanan et al. 2019,
PipeDream-Flush) and, with interleave > 1, interleaved 1F1B (Narayanan et al. 2021). The
gradient accumulation of a step is the schedule's micro-batches; the schedules average
the micro-batches' gradients (``scale_grads``), as the unpipelined loop does.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.pipelining import PipelineStage
from torch.distributed.pipelining.schedules import (
    PipelineScheduleMulti,
    PipelineScheduleSingle,
    Schedule1F1B,
    ScheduleGPipe,
    ScheduleInterleaved1F1B,
)

from contract.plan_layout import SCHEDULES
from runtime.train.model import Transformer
from runtime.train.parallel import LayoutError

UNEVEN_LAYERS = 1
"""Blocks the first and the last virtual stage hold fewer than the others with uneven
stages (the planner's UNEVEN_LAYERS, planner/terms/shapes.py)."""


def stage_layer_counts(layers: int, stages: int, uneven: bool) -> list[int]:
    """Blocks per virtual stage, first to last. The most loaded stage holds
    ceil(layers / stages) blocks, or with uneven stages ceil((layers + 2) / stages) with one
    fewer on the first and the last: the planner's ``layers_stage``."""
    if stages < 1:
        raise LayoutError(f"--pp x --interleave {stages}: must be 1 or more")
    extra = 2 * UNEVEN_LAYERS if uneven and stages > 1 else 0
    total = layers + extra
    base, remainder = divmod(total, stages)
    # The blocks left over go to the middle stages first when the ends are to be lighter.
    order = [*range(1, stages - 1), 0, stages - 1] if extra else list(range(stages))
    counts = [base] * stages
    for index in order[:remainder]:
        counts[index] += 1
    if extra:
        counts[0] -= UNEVEN_LAYERS
        counts[-1] -= UNEVEN_LAYERS
    if min(counts) < 1:
        what = "pp x interleave" + (" + 2 (uneven stages)" if extra else "")
        raise LayoutError(
            f"--pp x --interleave = {stages} virtual stages for {layers} layers: every stage "
            f"needs a block ({what} must not exceed the layers); lower pp or interleave"
        )
    return counts


def stage_ids(pp_rank: int, pp: int, interleave: int) -> list[int]:
    """Virtual stages of pipeline rank ``pp_rank``: looped placement."""
    return [pp_rank + i * pp for i in range(interleave)]


def layer_ranges(counts: Sequence[int]) -> list[range]:
    """The blocks of each virtual stage as index ranges into the whole model's layers."""
    ranges, start = [], 0
    for count in counts:
        ranges.append(range(start, start + count))
        start += count
    return ranges


class StageModule(nn.Module):
    """One virtual stage of a :class:`Transformer`, under the whole model's names."""

    def __init__(self, model: Transformer, blocks: range, first: bool, last: bool) -> None:
        super().__init__()
        self.cfg = model.cfg
        self.embed: nn.Module | None = model.embed if first else None
        self.layers = nn.ModuleDict({str(i): model.layers[i] for i in blocks})
        self.norm: nn.Module | None = model.norm if last else None
        self.output: nn.Module | None = model.output if last else None
        cos: torch.Tensor = model.rope_cos  # type: ignore[assignment]
        sin: torch.Tensor = model.rope_sin  # type: ignore[assignment]
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Token ids [B, T] on the first stage, hidden states from the previous one
        otherwise; logits [B, T, vocab] from the last."""
        seq = self.cfg.seq_len  # training windows are always seq_len tokens long
        rope_cos: torch.Tensor = self.rope_cos  # type: ignore[assignment]
        rope_sin: torch.Tensor = self.rope_sin  # type: ignore[assignment]
        cos, sin = rope_cos[:seq], rope_sin[:seq]
        if self.embed is not None:
            x = self.embed(x)
        for block in self.layers.values():
            x = block(x, cos, sin)
        if self.norm is not None and self.output is not None:
            x = self.output(self.norm(x))
        return x


def split_stages(
    model: Transformer, pp_rank: int, pp: int, interleave: int, uneven: bool
) -> list[tuple[int, StageModule]]:
    """(virtual stage index, its module) of this pipeline rank, in schedule order."""
    if model.cfg.tied and pp > 1:
        raise LayoutError(
            "--tied-embeddings with --pp > 1: the embedding (first stage) and the output "
            "projection (last stage) would live on different ranks; train untied"
        )
    stages = pp * interleave
    ranges = layer_ranges(stage_layer_counts(model.cfg.layers, stages, uneven))
    return [
        (s, StageModule(model, ranges[s], first=s == 0, last=s == stages - 1))
        for s in stage_ids(pp_rank, pp, interleave)
    ]


@dataclass
class Pipeline:
    """This rank's stages and the schedule that runs them."""

    stages: list[tuple[int, StageModule]]
    """(virtual stage index, module), in schedule order."""
    schedule: PipelineScheduleSingle | PipelineScheduleMulti
    """torch's schedule over ``stages``."""
    has_first: bool
    """This rank feeds the token ids (holds virtual stage 0)."""
    has_last: bool
    """This rank computes the loss (holds the last virtual stage)."""
    busy_s: list[float] = field(default_factory=lambda: [0.0])
    """Seconds this rank's stages spent computing (forward, backward) since the last
    :meth:`step` began; the schedule's own waits for other stages are outside."""
    bubble_fraction: float | None = None
    """Share of the last step's schedule this rank idled (waiting for other stages): the
    pipeline bubble as measured here, beside the planner's ``step.bubble_fraction``."""

    def modules(self) -> list[StageModule]:
        return [module for _, module in self.stages]

    def step(self, tokens: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """One optimiser step's forward and backward over ``tokens`` [micro-batches x
        micro_batch, T]: the sum of the micro-batches' mean losses on the last stage's
        rank, 0 elsewhere."""
        losses: list[torch.Tensor] = []
        inputs = (tokens,) if self.has_first else ()
        self.busy_s[0] = 0.0
        start = time.perf_counter()
        self.schedule.step(*inputs, target=targets if self.has_last else None, losses=losses)
        wall = time.perf_counter() - start
        self.bubble_fraction = max(0.0, 1.0 - self.busy_s[0] / wall) if wall > 0 else None
        if not losses:
            return torch.zeros((), device=tokens.device)
        return torch.stack([_plain(loss.detach()).float() for loss in losses]).sum()


def build_pipeline(
    model: Transformer,
    pp_mesh: DeviceMesh,
    *,
    interleave: int,
    schedule: str,
    uneven: bool,
    micro_batches: int,
    device: torch.device,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    prepare: Callable[[StageModule], None],
) -> Pipeline:
    """Cut ``model`` for this rank, ``prepare`` each stage (tensor parallelism,
    recomputation, sharding: the same ``apply_*`` functions as the whole model), and build
    the schedule. ``micro_batches`` is the step's gradient accumulation."""
    if schedule not in SCHEDULES:
        raise LayoutError(f"--schedule {schedule!r}: use one of {', '.join(SCHEDULES)}")
    if interleave < 1:
        raise LayoutError(f"--interleave {interleave}: must be 1 or more")
    if schedule == "gpipe" and interleave > 1:
        raise LayoutError(
            f"--interleave {interleave} with --schedule gpipe: interleaving is a 1F1B "
            "schedule; use --schedule 1f1b or --interleave 1"
        )
    pp, pp_rank = pp_mesh.size(), pp_mesh.get_local_rank()
    if micro_batches < pp and schedule == "1f1b":
        raise LayoutError(
            f"--grad-accum {micro_batches}: a 1F1B schedule needs at least pp = {pp} "
            "micro-batches per step (each stage holds one in flight); raise the global "
            "batch, lower pp, or use --schedule gpipe"
        )
    stages = split_stages(model, pp_rank, pp, interleave, uneven)
    count = pp * interleave
    group = pp_mesh.get_group()
    torch_stages: list[Any] = []
    busy = [0.0]
    for index, module in stages:
        prepare(module)
        stage = PipelineStage(module, index, count, device, group=group)
        _time_compute(stage, busy)
        torch_stages.append(stage)
    scheduled: PipelineScheduleSingle | PipelineScheduleMulti
    if interleave > 1:
        scheduled = ScheduleInterleaved1F1B(torch_stages, micro_batches, loss_fn=loss_fn)
    else:
        kind: Any = ScheduleGPipe if schedule == "gpipe" else Schedule1F1B
        scheduled = kind(torch_stages[0], micro_batches, loss_fn=loss_fn)
    ids = [index for index, _ in stages]
    return Pipeline(stages, scheduled, has_first=0 in ids, has_last=count - 1 in ids, busy_s=busy)


_COMPUTE_METHODS = ("forward_one_chunk", "backward_one_chunk", "backward_weight_one_chunk")
"""The stage's methods that compute a micro-batch; the schedules post and wait for the
sends and receives around them (torch/distributed/pipelining/schedules.py)."""


def _time_compute(stage: Any, busy: list[float]) -> None:
    """Add the time each compute call of ``stage`` takes to ``busy[0]``."""
    for name in _COMPUTE_METHODS:
        method = getattr(stage, name, None)
        if method is None:
            continue

        def timed(*args: Any, _method: Any = method, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return _method(*args, **kwargs)
            finally:
                busy[0] += time.perf_counter() - start

        setattr(stage, name, timed)


class StageGroup(nn.Module):
    """This rank's stages seen as one module under the whole model's names: what the
    optimiser, checkpoints and the trainer's measurements use (the stages share its
    submodules; only the schedule runs them)."""

    def __init__(self, stages: Sequence[StageModule]) -> None:
        super().__init__()
        self.embed = next((s.embed for s in stages if s.embed is not None), None)
        self.layers = nn.ModuleDict({k: b for s in stages for k, b in s.layers.items()})
        self.norm = next((s.norm for s in stages if s.norm is not None), None)
        self.output = next((s.output for s in stages if s.output is not None), None)


def eval_calls(
    rows: int, rows_max: int, micro_batch: int, micro_batches: int
) -> list[list[tuple[int, int]]]:
    """Evaluation of this rank's ``rows`` windows through a schedule of ``micro_batches``
    micro-batches of ``micro_batch`` rows, in as many calls as the rank with the most
    (``rows_max``) needs, since every rank of a pipeline and of a shard group must run the
    same calls: per call, the (start, stop) rows of each micro-batch, where
    stop - start < micro_batch is padded and start == stop is all padding."""
    per_call = micro_batch * micro_batches
    calls = []
    for base in range(0, max(rows_max, 1), per_call):
        calls.append(
            [
                (min(base + i * micro_batch, rows), min(base + (i + 1) * micro_batch, rows))
                for i in range(micro_batches)
            ]
        )
    return calls


def eval_totals(
    pipe: Pipeline,
    mine: tuple[np.ndarray, np.ndarray],
    per_rank: int,
    micro_batch: int,
    micro_batches: int,
    device: torch.device,
    loss_context: Callable[[], contextlib.AbstractContextManager[None]],
) -> torch.Tensor:
    """(summed token loss, tokens) of this rank's held-out (tokens, targets) ``mine``
    through the schedule, forward only, on the last stage's ranks (zeros elsewhere):
    padded rows carry target -100, which the evaluation loss skips (the trainer's loss
    function sums with ``ignore_index=-100`` while evaluating)."""
    inputs, labels = mine
    seq = inputs.shape[1] if len(inputs) else pipe.stages[0][1].cfg.seq_len
    totals = torch.zeros(2, device=device, dtype=torch.float64)
    for call in eval_calls(len(inputs), per_rank, micro_batch, micro_batches):
        rows = np.zeros((micro_batch * micro_batches, seq), dtype=np.int64)
        targets = np.full((len(rows), seq), -100, dtype=np.int64)
        for index, (start, stop) in enumerate(call):
            at = index * micro_batch
            rows[at : at + stop - start] = inputs[start:stop]
            targets[at : at + stop - start] = labels[start:stop]
        losses: list[torch.Tensor] = []
        with loss_context():
            pipe.schedule.eval(
                *((torch.from_numpy(rows).to(device),) if pipe.has_first else ()),
                target=torch.from_numpy(targets).to(device) if pipe.has_last else None,
                losses=losses,
            )
        if pipe.has_last:
            for loss in losses:
                totals[0] += _plain(loss).double()
            totals[1] += float((targets != -100).sum())
    return totals


def _plain(value: torch.Tensor) -> torch.Tensor:
    """A loss as a plain tensor (under ``loss_parallel`` it is a replicated DTensor)."""
    from torch.distributed.tensor import DTensor

    return value.full_tensor() if isinstance(value, DTensor) else value
