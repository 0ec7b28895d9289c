"""Capacity planning: the smallest cluster that trains a model on T tokens within D days.

:func:`smallest_cluster` answers "how many GPUs of type G to train model M on T tokens in
D days" with the layout search (:func:`planner.search`) at candidate cluster sizes:

1. sizes people build and rent: the divisors of one node, then whole nodes in counts
   m·2^k with m in {1, 3, 5, 7} (1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, ... nodes:
   steps of at most 25 %), up to ``max_gpus``, that admit a valid layout (the count
   must factor into dp·tp·pp·cp with dp dividing the batch);
2. a lower bound from the FLOPs alone: no layout beats the model FLOPs over the
   deadline at the accelerator's peak times its best kernel efficiency, so smaller sizes
   are skipped;
3. the largest size is searched first (if it misses the deadline, nothing does: the
   answer is the nearest, its fastest layout); then sizes in increasing order from the
   bound, and the first whose fastest layout meets the deadline (expected wall time,
   failures included) is the answer. Best time does not fall smoothly with the GPU
   count (a count that only factors with an odd pipeline depth is slow), so no
   bisection: every size below the answer was searched.

The answer carries the search result at that size (its best layout, ranked list and
totals with and without failures) and every size probed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from planner.checks import problem_of, rules_ok
from planner.errors import PlanInputError
from planner.layout_search import (
    NoFeasibleLayout,
    SearchConstraints,
    SearchResult,
    cluster_with,
    describe_layout,
    search,
)
from planner.layouts import divisors, pinned_values
from planner.margins import DEFAULT_MEMORY_HEADROOM
from planner.specs import ClusterSpec, ModelSpec, TrainingSpec
from planner.units import SECONDS_PER_DAY


@dataclass(frozen=True)
class CapacityAnswer:
    """The smallest cluster meeting a deadline (see the module docstring)."""

    gpus: int | None
    """GPUs needed; None when even ``max_gpus`` cannot meet the deadline."""
    result: SearchResult
    """The search at ``gpus`` (or, when infeasible, at the largest count: the nearest)."""
    deadline_days: float
    """The deadline, days (expected wall time, failures included)."""
    lower_bound_gpus: int
    """GPUs below which the FLOPs alone rule the deadline out."""
    probes: list[tuple[int, float | None]] = field(default_factory=list)
    """(GPU count, fastest expected days or None when nothing fits), in probe order."""
    seconds: float = 0.0
    """Wall time of the whole answer."""

    @property
    def nodes(self) -> int | None:
        """Nodes needed (GPUs over GPUs per node, rounded up)."""
        if self.gpus is None:
            return None
        return -(-self.gpus // self.result.cluster.gpus_per_node)


def achievable_counts(
    model: ModelSpec,
    cluster: ClusterSpec,
    training: TrainingSpec,
    max_gpus: int,
    pinned: Mapping[str, Any] | None = None,
) -> list[int]:
    """GPU counts up to ``max_gpus`` that are a divisor of one node or whole nodes and
    admit a valid dp·tp·pp·cp factorisation (tp within a node, dp dividing the batch)."""
    pins = pinned_values(pinned)
    per_node = cluster.gpus_per_node
    problem = problem_of(model, training)

    def options(name: str, values: list[int]) -> np.ndarray:
        return np.asarray([pins[name]] if name in pins else values, dtype=float)

    tp = options("tp", divisors(per_node))
    cp = options("cp", [d for d in divisors(training.seq_len) if d <= max_gpus])
    pp = options("pp", list(range(1, min(model.num_layers, max_gpus) + 1)))
    dp = options("dp", [d for d in divisors(training.global_batch_seqs) if d <= max_gpus])
    grid = np.meshgrid(tp, cp, pp, dp, indexing="ij")
    shape = {name: g.ravel() for name, g in zip(("tp", "cp", "pp", "dp"), grid, strict=True)}
    gpus = shape["tp"] * shape["cp"] * shape["pp"] * shape["dp"]
    shape["gpus"] = gpus
    ok = (gpus <= max_gpus) & ((gpus % per_node == 0) | (per_node % gpus == 0))
    ok &= rules_ok(shape, problem, set(shape))
    return sorted(int(g) for g in np.unique(gpus[ok]))


def flops_lower_bound_gpus(
    model: ModelSpec, cluster: ClusterSpec, training: TrainingSpec, deadline_days: float
) -> int:
    """GPUs below which the deadline is impossible whatever the layout: the training
    FLOPs (6N per token, the MFU basis without attention) over the deadline, at the peak
    of the training precision times the best efficiency any kernel reaches."""
    acc = cluster.accelerator()
    peak_tflops = {
        "fp8": acc.fp8_dense_tflops,
        "fp32": acc.fp32_dense_tflops,
    }.get(training.precision) or acc.bf16_dense_tflops
    best = max(acc.gemm_efficiency, acc.fp8_gemm_efficiency or 0.0,
               acc.attention_fwd_efficiency, acc.attention_bwd_efficiency)  # fmt: skip
    flops = 6.0 * model.num_active_params * training.total_tokens
    per_gpu = peak_tflops * 1e12 * best
    return max(1, math.floor(flops / (deadline_days * SECONDS_PER_DAY * per_gpu)))


def smallest_cluster(
    model: ModelSpec,
    cluster: ClusterSpec,
    training: TrainingSpec,
    deadline_days: float,
    *,
    max_gpus: int = 131072,
    pinned: Mapping[str, Any] | None = None,
    memory_headroom: float = DEFAULT_MEMORY_HEADROOM,
    top_k: int = 5,
) -> CapacityAnswer:
    """The fewest GPUs of ``cluster``'s type (its ``num_gpus`` is ignored) that train
    ``model`` for ``training`` within ``deadline_days`` (expected wall time, failures
    included), with the best layout there. See the module docstring for the method."""
    started = time.perf_counter()
    if deadline_days <= 0:
        raise PlanInputError(f"--days: must be positive, got {deadline_days}.")
    sizes = set(cluster_sizes(max_gpus, cluster.gpus_per_node))
    counts = [c for c in achievable_counts(model, cluster, training, max_gpus, pinned)
              if c in sizes]  # fmt: skip
    if not counts:
        raise PlanInputError(
            f"no GPU count up to {max_gpus} factors into dp·tp·pp·cp for {model.name} with "
            f"a global batch of {training.global_batch_seqs} sequences; change the batch "
            "or unpin knobs."
        )
    bound = flops_lower_bound_gpus(model, cluster, training, deadline_days)
    probes: list[tuple[int, float | None]] = []
    results: dict[int, SearchResult] = {}
    cons = SearchConstraints(deadline_days=deadline_days, memory_headroom=memory_headroom)

    def run(gpus: int) -> SearchResult:
        if gpus not in results:
            result = search(
                model, cluster_with(cluster, gpus), training,
                pinned=pinned, top_k=top_k, constraints=cons,
            )  # fmt: skip
            results[gpus] = result
            probes.append((gpus, _fastest_days(result)))
        return results[gpus]

    def ok(gpus: int) -> bool:
        return run(gpus).problem is None

    candidates = [c for c in counts if c >= bound] or counts[-1:]
    if not ok(candidates[-1]):
        return CapacityAnswer(None, results[candidates[-1]], deadline_days, bound, probes,
                              time.perf_counter() - started)  # fmt: skip
    answer = next(c for c in candidates if ok(c))
    return CapacityAnswer(answer, results[answer], deadline_days, bound, probes,
                          time.perf_counter() - started)  # fmt: skip


def cluster_sizes(max_gpus: int, gpus_per_node: int) -> list[int]:
    """Candidate cluster sizes up to ``max_gpus`` (see the module docstring)."""
    sizes = {d for d in divisors(gpus_per_node) if d <= max_gpus}
    power = 1
    while power * gpus_per_node <= max_gpus:
        for m in (1, 3, 5, 7):
            if m * power * gpus_per_node <= max_gpus:
                sizes.add(m * power * gpus_per_node)
        power *= 2
    return sorted(sizes)


def _fastest_days(result: SearchResult) -> float | None:
    est = result.ranked[0] if result.ranked else result.nearest
    if est is None or not est.fits:
        return None
    return est.train.days / est.train.goodput


def infeasible_message(answer: CapacityAnswer) -> str:
    """One line: why no count up to the limit meets the deadline, and the nearest answer."""
    result = answer.result
    near = result.ranked[0] if result.ranked else result.nearest
    limit = result.cluster.num_gpus
    if near is None or not near.fits:
        return (
            f"{result.model.name} does not fit on up to {limit} {result.cluster.gpu} GPUs; "
            "use a GPU with more memory or a smaller batch."
        )
    days = near.train.days / near.train.goodput
    return (
        f"no cluster of up to {limit} GPUs trains {result.model.name} in "
        f"{answer.deadline_days:g} days: the fastest at {limit} GPUs "
        f"({describe_layout(near.layout)}) takes {days:.1f} days with failures; raise "
        "--max-gpus, extend the deadline or train on fewer tokens."
    )


def raise_if_infeasible(answer: CapacityAnswer) -> None:
    """Raise NoFeasibleLayout (exit code 2) when no count met the deadline."""
    if answer.gpus is None:
        raise NoFeasibleLayout(infeasible_message(answer))


@dataclass(frozen=True)
class ReliabilityFacts:
    """The reliability model's intermediate figures for one layout."""

    job_mtbf_h: float
    """Hours between interruptions of the whole job (per-GPU MTBF / GPUs)."""
    checkpoint_gb: float
    """Checkpoint size: weights and optimizer states, GB."""
    checkpoint_save_s: float
    """Seconds to write one checkpoint at the storage bandwidth."""
    restart_s: float
    """Seconds from an interruption to training again, checkpoint reload included."""


def reliability_facts(
    model: ModelSpec, cluster: ClusterSpec, training: TrainingSpec, layout: Any
) -> ReliabilityFacts:
    """What the estimate's goodput rests on, for ``layout`` on ``cluster``."""
    from planner.core import evaluate
    from planner.inputs import build_inputs, constants

    x = build_inputs(model, cluster.accelerator(), cluster, training, layout)
    out = evaluate(x, constants())
    save_s = float(out.checkpoint_save_s)
    storage = min(cluster.num_nodes * x.ckpt_node_bytes_s, x.ckpt_max_bytes_s)
    return ReliabilityFacts(
        job_mtbf_h=float(out.job_mtbf_h),
        checkpoint_gb=save_s * storage / 1e9,
        checkpoint_save_s=save_s,
        restart_s=float(x.restart_s) + save_s,
    )
