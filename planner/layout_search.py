"""``planner.search`` (this module is ``planner.layout_search``, so that ``planner.search`` stays
the function): every valid layout, ranked, with the Pareto front of time and cost.

    result = planner.search(model, cluster, training, pinned={"tp": 8},
                            objective="time", top_k=10,
                            constraints=planner.SearchConstraints(deadline_days=90))
    result.ranked        # [Estimate, ...] best first, each with its Layout
    result.why_not       # why each loses to the first ("" for the first)
    result.pareto        # [Estimate, ...] not beaten on both wall time and cost
    result.evaluated     # candidates enumerated and assessed
    result.feasible      # candidates that fit and meet the constraints
    result.problem       # None, or one line: why nothing is feasible
    result.nearest       # when nothing is feasible: the nearest answer

How (no Python call per layout):

1. :func:`planner.layouts.enumerate_layouts` builds every valid layout as numpy arrays in a
   tree of levels (shape, kernels, schedule, sharding, recompute); pinned knobs take
   their given value only;
2. a memory pass (:mod:`planner.vector`: the memory outputs of :func:`planner.core.evaluate`,
   compiled to numpy code per level) drops what does not fit in the accelerator's memory
   less the headroom;
3. the full cost model runs on what fits, per level, so a quantity that does not depend
   on, say, the sharding mode is computed once per parent row rather than once per
   candidate; the numbers equal the scalar :func:`planner.estimate` for the same layout
   (tested);
4. the deadline and budget are applied to the failure-aware totals (expected wall time
   and cost including interruptions, checkpoints and restarts: ``train.goodput``);
   candidates are ranked by the objective, ties broken by wall time, cost, then memory.

Objectives: ``time`` (expected wall-clock days), ``cost`` (expected USD), ``energy``
(facility MWh), ``mfu`` (model FLOPs utilisation, highest first).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from planner.checks import precision_problems
from planner.errors import PlanInputError
from planner.layouts import CandidateTree, enumerate_layouts, pinned_values
from planner.margins import DEFAULT_MEMORY_HEADROOM
from planner.pareto import pareto_front, rank
from planner.result import Estimate, Plan
from planner.search_explain import describe_layout, why_it_loses
from planner.search_infeasible import (
    cluster_with,
    fits_on_more_gpus,
    money,
    no_valid_layout,
)
from planner.specs import ClusterSpec, ModelSpec, TrainingSpec

__all__ = [
    "NoFeasibleLayout",
    "SearchConstraints",
    "SearchResult",
    "cluster_with",
    "describe_layout",
    "search",
    "why_it_loses",
]

Objective = Literal["time", "cost", "energy", "mfu"]
OBJECTIVES: tuple[str, ...] = ("time", "cost", "energy", "mfu")

_FROZEN = ConfigDict(extra="forbid", frozen=True)


class SearchConstraints(BaseModel):
    """What a layout must meet besides fitting in memory."""

    model_config = _FROZEN

    max_gpus: int | None = Field(default=None, gt=0)
    """Search GPU counts up to this many instead of the cluster's ``num_gpus``: the
    divisors of one node, then whole nodes in counts 1, 2, 3, 4, 6, 8, 12, ... (powers
    of two and three times powers of two) and ``max_gpus`` itself when it is whole nodes."""
    deadline_days: float | None = Field(default=None, gt=0)
    """Longest acceptable expected wall-clock time, days (failures included)."""
    budget_usd: float | None = Field(default=None, gt=0)
    """Largest acceptable expected cost, USD (failures included)."""
    memory_headroom: float = Field(default=DEFAULT_MEMORY_HEADROOM, ge=0.0, lt=1.0)
    """Share of each GPU's memory to leave free (0.1 keeps 10 % spare); see
    :data:`DEFAULT_MEMORY_HEADROOM` for the default's reason."""


def gpu_counts(max_gpus: int, gpus_per_node: int) -> list[int]:
    """The GPU counts a search with ``max_gpus`` tries (see SearchConstraints.max_gpus)."""
    counts = {d for d in range(1, gpus_per_node + 1) if gpus_per_node % d == 0}
    nodes = 1
    while nodes * gpus_per_node <= max_gpus:
        counts.add(nodes * gpus_per_node)
        if 3 * nodes * gpus_per_node // 2 <= max_gpus and nodes >= 2:
            counts.add(3 * nodes * gpus_per_node // 2)
        nodes *= 2
    if max_gpus % gpus_per_node == 0:
        counts.add(max_gpus)
    return sorted(c for c in counts if c <= max_gpus)


@dataclass(frozen=True)
class SearchResult:
    """What :func:`search` found (see the module docstring)."""

    model: ModelSpec
    """The model searched."""
    cluster: ClusterSpec
    """The cluster searched (its ``num_gpus`` is ignored when constraints.max_gpus is set)."""
    training: TrainingSpec
    """The training run."""
    objective: str
    """What ``ranked`` is ordered by."""
    constraints: SearchConstraints
    """The constraints applied."""
    ranked: list[Estimate]
    """The best ``top_k`` feasible layouts, best first."""
    why_not: list[str]
    """For each of ``ranked``, why it loses to the first ('' for the first)."""
    pareto: list[Estimate]
    """Feasible layouts no other beats on both expected wall time and cost, fastest first
    (on a fixed GPU count cost is proportional to time, so it is one point)."""
    evaluated: int
    """Candidate layouts enumerated and assessed (memory model for all)."""
    fitting: int
    """Candidates that fit in memory (with the headroom): evaluated by the full model."""
    feasible: int
    """Candidates that fit and meet the deadline and budget."""
    problem: str | None
    """None when ``ranked`` is non-empty; otherwise why nothing is feasible (one line)."""
    nearest: Estimate | None
    """When nothing is feasible: the nearest answer (least memory over capacity, the
    fastest when the deadline is missed, the cheapest when the budget is)."""
    table: dict[str, np.ndarray] = field(repr=False)
    """Metrics of every feasible candidate (``days``, ``cost_usd``, ``energy_mwh``,
    ``mfu``, ``gpus``, ``memory_gib``...), for plots."""
    seconds: float = 0.0
    """Wall time of the search."""
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds per phase: enumerate, memory, time, rank."""

    def plan(self, index: int = 0) -> Plan:
        """``ranked[index]`` as a Plan (the cluster resized to the layout's GPU count)."""
        est = self.ranked[index]
        return Plan(
            model=self.model,
            cluster=cluster_with(self.cluster, est.layout.num_gpus),
            training=self.training,
            layout=est.layout,
            estimate=est,
        )

    def raise_if_infeasible(self) -> None:
        """Raise :class:`NoFeasibleLayout` (a user error: exit code 2) when nothing is."""
        if self.problem is not None:
            raise NoFeasibleLayout(self.problem)


class NoFeasibleLayout(PlanInputError):
    """No layout fits or meets the constraints; the message names the nearest answer."""


def search(
    model: ModelSpec,
    cluster: ClusterSpec,
    training: TrainingSpec,
    *,
    pinned: Mapping[str, Any] | None = None,
    objective: Objective = "time",
    top_k: int = 10,
    constraints: SearchConstraints | None = None,
) -> SearchResult:
    """Every valid layout of ``model`` on ``cluster`` for ``training``, ranked.

    ``pinned`` fixes Layout fields by name (``tp``, ``pp``, ``cp``, ``dp``, ``ep``,
    ``sharding``, ``hsdp_shard_size``, ``micro_batch``, ``recompute``, ``interleave``,
    ``sequence_parallel``); the others are searched. ``objective`` is ``time``,
    ``cost``, ``energy`` or ``mfu``. When nothing is feasible the result says why
    (``problem``) and gives the nearest answer (``nearest``); the search itself raises
    PlanInputError only for bad input (an unknown knob or objective, or numerics the
    accelerator cannot run).
    """
    started = time.perf_counter()
    if objective not in OBJECTIVES:
        raise PlanInputError(f"objective {objective!r}: choose one of {', '.join(OBJECTIVES)}.")
    if top_k <= 0:
        raise PlanInputError(f"top_k: must be a positive whole number, got {top_k}.")
    cons = constraints or SearchConstraints()
    accelerator = cluster.accelerator()
    bad = precision_problems(training, accelerator)
    if bad:
        raise PlanInputError(bad[0])
    counts = (
        gpu_counts(cons.max_gpus, cluster.gpus_per_node)
        if cons.max_gpus is not None
        else [cluster.num_gpus]
    )
    pins = pinned_values(pinned)
    timings: dict[str, float] = {}
    tick = time.perf_counter()
    tree = enumerate_layouts(model, cluster, training, counts, pinned)
    timings["enumerate"] = time.perf_counter() - tick

    from planner.vector import cost_model

    costs = cost_model(model, accelerator, cluster, training)

    def finish(**kw: Any) -> SearchResult:
        values: dict[str, Any] = dict(
            model=model, cluster=cluster, training=training, objective=objective,
            constraints=cons, ranked=[], why_not=[], pareto=[], evaluated=tree.size,
            fitting=0, feasible=0, problem=None, nearest=None, table={},
        )  # fmt: skip
        values.update(kw)
        timings["total"] = time.perf_counter() - started
        return SearchResult(**values, seconds=timings["total"], timings=timings)

    if tree.size == 0:
        return finish(problem=no_valid_layout(model, cluster, training, pins, counts))

    tick = time.perf_counter()
    memory_gib = costs.memory(tree)
    capacity = accelerator.hbm_gib * (1.0 - cons.memory_headroom)
    fits = memory_gib <= capacity
    timings["memory"] = time.perf_counter() - tick
    if not fits.any():
        closest = int(np.argmin(memory_gib))
        nearest = costs.estimates(tree, np.asarray([closest]))[0]
        room = f" less the {cons.memory_headroom:.0%} headroom" if cons.memory_headroom else ""
        where = f"{counts[0]} GPUs" if len(counts) == 1 else f"up to {counts[-1]} GPUs"
        larger = fits_on_more_gpus(model, cluster, training, pinned, counts[-1], capacity, costs)
        hint = (
            f"it first fits on {larger[0]} GPUs ({larger[1]}); use more GPUs"
            if larger is not None
            else "use more GPUs"
        )
        return finish(
            nearest=nearest,
            problem=(
                f"no layout of {model.name} fits in the {accelerator.hbm_gib:g} GiB of "
                f"{accelerator.name}{room} on {where}: the closest "
                f"({describe_layout(nearest.layout)}) needs {nearest.memory_gib.total:.1f} GiB "
                f"per GPU; {hint}, a GPU with more memory, a smaller batch or unpin knobs."
            ),
        )

    tick = time.perf_counter()
    fitting = tree.select(fits)
    out = costs.metrics(fitting, memory_gib[fits])
    timings["time"] = time.perf_counter() - tick

    tick = time.perf_counter()
    days, cost = out["days_expected"], out["cost_expected_usd"]
    meets_deadline = days <= cons.deadline_days if cons.deadline_days else np.ones(len(days), bool)
    meets_budget = cost <= cons.budget_usd if cons.budget_usd else np.ones(len(days), bool)
    feasible_mask = meets_deadline & meets_budget
    feasible = np.flatnonzero(feasible_mask)
    if len(feasible) == 0:
        timings["rank"] = time.perf_counter() - tick
        return _infeasible(
            finish, costs, fitting, out, meets_deadline, meets_budget, cons, model, counts
        )
    keys = {
        "time": [days, cost],
        "cost": [cost, days],
        "energy": [out["energy_mwh"], days],
        "mfu": [-out["mfu"], days],
    }[objective]
    keys = [k[feasible] for k in keys] + [out["memory_gib"][feasible]]
    best = feasible[rank(keys, top_k)]
    front = feasible[pareto_front(days[feasible], cost[feasible])]
    chosen = np.unique(np.concatenate([best, front]))
    estimates = dict(zip(chosen.tolist(), costs.estimates(fitting, chosen), strict=True))
    ranked = [estimates[i] for i in best.tolist()]
    why = [""] + [why_it_loses(e, ranked[0], objective) for e in ranked[1:]]
    table = {name: values[feasible] for name, values in out.items()}
    timings["rank"] = time.perf_counter() - tick
    return finish(
        ranked=ranked,
        why_not=why,
        pareto=[estimates[i] for i in front.tolist()],
        fitting=fitting.size,
        feasible=len(feasible),
        table=table,
    )


def _infeasible(
    finish: Any,
    costs: Any,
    tree: CandidateTree,
    out: dict[str, np.ndarray],
    meets_deadline: np.ndarray,
    meets_budget: np.ndarray,
    cons: SearchConstraints,
    model: ModelSpec,
    counts: list[int],
) -> SearchResult:
    """The result when layouts fit but none meets the deadline and budget together."""
    days, cost = out["days_expected"], out["cost_expected_usd"]
    where = f"{counts[0]} GPUs" if len(counts) == 1 else f"up to {counts[-1]} GPUs"
    if not meets_deadline.any():
        index = int(np.argmin(days))
        nearest = costs.estimates(tree, np.asarray([index]))[0]
        problem = (
            f"no layout of {model.name} on {where} meets the {cons.deadline_days:g}-day "
            f"deadline: the fastest ({describe_layout(nearest.layout)}) takes "
            f"{days[index]:.1f} days with failures; add GPUs (`scalectl plan capacity` "
            "finds how many) or extend the deadline."
        )
    elif not meets_budget.any():
        index = int(np.argmin(cost))
        nearest = costs.estimates(tree, np.asarray([index]))[0]
        problem = (
            f"no layout of {model.name} on {where} fits the ${money(cons.budget_usd)} "
            f"budget: the cheapest ({describe_layout(nearest.layout)}) costs "
            f"${money(cost[index])} with failures; raise the budget, train on fewer "
            "tokens or use a cheaper GPU."
        )
    else:
        on_time = np.flatnonzero(meets_deadline)
        index = int(on_time[np.argmin(cost[on_time])])
        nearest = costs.estimates(tree, np.asarray([index]))[0]
        problem = (
            f"no layout of {model.name} on {where} meets both the {cons.deadline_days:g}-day "
            f"deadline and the ${money(cons.budget_usd)} budget: the cheapest on time "
            f"({describe_layout(nearest.layout)}) costs ${money(cost[index])}; relax one of them."
        )
    return finish(nearest=nearest, problem=problem, fitting=tree.size)
