"""Fit the accelerator's efficiency constants to measured step times (``plan calibrate``).

The planner writes every step time as a sum of terms (``Estimate.step.breakdown``, see
``planner.core.BREAKDOWN_KEYS``). Each term runs at one of a few rates, and each rate is
a constant of the :class:`~planner.specs.AcceleratorSpec`:

============== ================================================ ==========================
group          breakdown terms                                  constant it scales
============== ================================================ ==========================
gemm           gemm_s                                           gemm_efficiency
attention      attention_s                                      attention_{fwd,bwd}_eff.
memory         memory_bound_s, optimizer_s (less the overhead)  hbm_efficiency
intra_network  tp/cp/ep/pp/dp communication, one-node jobs      intra_node_efficiency
inter_network  the same, jobs on more than one node             inter_node_efficiency
overhead       a constant per step                              step_overhead_s
============== ================================================ ==========================

``recompute_s`` and ``pipeline_bubble_s`` repeat forward or whole micro-batch work, and
``dp_contention_s`` is compute slowed by the collectives beside it, so they are spread
over gemm/attention/memory in proportion to those three.

Measured step time of job j is modelled as ``sum_g f_g T_jg + o``: ``T_jg`` the planned
seconds of group g, ``f_g`` how much slower than planned that group runs, ``o`` the
per-step overhead. ``f`` and ``o`` are found by linear least squares on relative
residuals ``(measured - model) / measured`` (so a 50 ms job weighs as much as a 5 s
one), bounded (``f_g >= FACTOR_FLOOR``, ``o >= 0``, solved exactly by trying each set of
active bounds, at most 2^6 small solves), with a weak pull (``PRIOR_WEIGHT``) of every
factor to 1 and of ``o`` to the accelerator's own overhead, so that groups the jobs
cannot tell apart keep their planned constants instead of taking arbitrary values
(Tikhonov regularisation; Hansen, "Rank-Deficient and Discrete Ill-Posed Problems",
1998, ch. 5). A GEMM's time is a roofline (compute or memory, whichever is longer), so
``T`` is not exactly linear in the constants: the fit is repeated on re-estimated terms
(``ITERATIONS``), keeping the round whose re-estimated predictions fit best.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from planner.attention_rates import MEASURED_KERNELS
from planner.errors import PlanInputError
from planner.estimator import estimate
from planner.profile import CalibrationProfile, FactorName, JobResidual
from planner.result import Estimate, Plan
from planner.specs import AcceleratorSpec

WARMUP_STEPS = 5
"""Steps left out of the measured step time: allocator warm-up, first collectives,
kernel selection (the same cut as ``make run``'s summary)."""
MIN_STEADY_STEPS = 5
"""Fewest steady-state steps whose median is trusted as the job's step time."""
PRIOR_WEIGHT = 0.05
"""Weight of the pull of each factor to 1, against relative residuals of weight 1: a
factor moves freely when the jobs constrain it, and stays put when they do not."""
FACTOR_FLOOR = 0.02
"""Smallest time factor allowed (a group at most 50x faster than planned)."""
ITERATIONS = 4
"""Rounds of fit and re-estimate (the roofline's non-linearity settles in two or three)."""

GROUPS: tuple[FactorName, ...] = ("gemm", "attention", "memory", "intra_network", "inter_network")
_COMPUTE: tuple[FactorName, ...] = ("gemm", "attention", "memory")
_NETWORK_TERMS = ("tp_comm_s", "cp_comm_s", "ep_comm_s", "pp_p2p_s", "dp_comm_s")
_SPREAD_TERMS = ("recompute_s", "pipeline_bubble_s", "dp_contention_s")


@dataclass(frozen=True)
class MeasuredJob:
    """One job: its plan and the step time it measured."""

    job: str
    """The job's name for reports (its directory name, the job id)."""
    plan: Plan
    """plan.json of the job."""
    step_time_s: float
    """Median steady-state step time, s."""
    steps_used: int
    """How many steps that median is over."""


def steady_step_time_s(
    job: str, ranks: Mapping[str, Sequence[Mapping[str, Any]]]
) -> tuple[float, int]:
    """(median steady-state step time, steps used) of the slowest rank (a synchronous step
    waits for it), from each rank's progress records; too few steps raise PlanInputError."""
    best: tuple[float, int] | None = None
    for records in ranks.values():
        times = [
            float(r["step_time_s"])
            for r in records
            if isinstance(r.get("step_time_s"), int | float)
            and isinstance(r.get("step"), int)
            and r["step"] > WARMUP_STEPS
            and math.isfinite(r["step_time_s"])
            and r["step_time_s"] > 0
        ]
        if len(times) >= MIN_STEADY_STEPS:
            median = statistics.median(times)
            if best is None or median > best[0]:
                best = (median, len(times))
    if best is None:
        raise PlanInputError(
            f"{job}: fewer than {MIN_STEADY_STEPS} steps with step_time_s after the first "
            f"{WARMUP_STEPS} (warm-up) in progress/*.jsonl; calibrate from a job that ran "
            f"at least {WARMUP_STEPS + MIN_STEADY_STEPS} steps."
        )
    return best


def group_seconds(est: Estimate, multi_node: bool, overhead_s: float) -> dict[str, float]:
    """Planned seconds per step of each group (table above) and of the overhead."""
    b = est.step.breakdown
    compute = {
        "gemm": b.get("gemm_s", 0.0),
        "attention": b.get("attention_s", 0.0),
        "memory": b.get("memory_bound_s", 0.0) + max(b.get("optimizer_s", 0.0) - overhead_s, 0.0),
    }
    spread = sum(b.get(key, 0.0) for key in _SPREAD_TERMS)
    total = sum(compute.values())
    if total > 0:
        compute = {g: t * (1.0 + spread / total) for g, t in compute.items()}
    network = sum(b.get(key, 0.0) for key in _NETWORK_TERMS)
    return {
        **compute,
        "intra_network": 0.0 if multi_node else network,
        "inter_network": network if multi_node else 0.0,
    }


def bounded_lstsq(a: np.ndarray, b: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """argmin ||a x - b|| subject to x >= lower, exactly: every set of variables held at
    their bound is tried (fine for the few variables here; Lawson & Hanson 1974, ch. 23
    for the general method)."""
    n = a.shape[1]
    shifted = b - a @ lower
    best_x, best_cost = lower.copy(), float(np.sum(shifted**2))
    for size in range(1, n + 1):
        for free in itertools.combinations(range(n), size):
            cols = list(free)
            y, *_ = np.linalg.lstsq(a[:, cols], shifted, rcond=None)
            if np.any(y < 0):
                continue
            x = lower.copy()
            x[cols] += y
            cost = float(np.sum((a @ x - b) ** 2))
            if cost < best_cost - 1e-15:
                best_x, best_cost = x, cost
    return best_x


def scaled_accelerator(
    acc: AcceleratorSpec, factors: Mapping[str, float], overhead_s: float
) -> AcceleratorSpec:
    """``acc`` with each group's rate divided by its time factor and the given overhead.

    An efficiency may not exceed 1: when a fitted rate is above the peak (a peak that was
    itself measured, as for a calibrated CPU), the peak is raised to it instead, and the
    other efficiencies on that peak are rescaled so their achieved rates stay the same.
    """
    up: dict[str, Any] = {"step_overhead_s": overhead_s}
    gemm = acc.gemm_efficiency / factors.get("gemm", 1.0)
    fp8 = (acc.fp8_gemm_efficiency or acc.gemm_efficiency) / factors.get("gemm", 1.0)
    att = 1.0 / factors.get("attention", 1.0)
    fwd, bwd = acc.attention_fwd_efficiency * att, acc.attention_bwd_efficiency * att
    raise_by = max(1.0, gemm, fwd, bwd, fp8 if acc.fp8_gemm_efficiency else 0.0)
    for peak in ("bf16_dense_tflops", "fp8_dense_tflops", "fp32_dense_tflops"):
        value = getattr(acc, peak)
        up[peak] = value * raise_by if value is not None else None
    up["gemm_efficiency"] = gemm / raise_by
    up["fp8_gemm_efficiency"] = fp8 / raise_by if acc.fp8_gemm_efficiency else None
    up["attention_fwd_efficiency"] = fwd / raise_by
    up["attention_bwd_efficiency"] = bwd / raise_by
    for group, rate, eff in (
        ("memory", "hbm_tb_s", "hbm_efficiency"),
        ("intra_network", "intra_node_gb_s", "intra_node_efficiency"),
        ("inter_network", "inter_node_gb_s_per_gpu", "inter_node_efficiency"),
    ):
        achieved = getattr(acc, eff) / factors.get(group, 1.0)
        up[rate] = getattr(acc, rate) * max(1.0, achieved)
        up[eff] = min(1.0, achieved)
    return AcceleratorSpec(**{**acc.model_dump(), **up})


def _predict(job: MeasuredJob, acc: AcceleratorSpec) -> Estimate:
    p = job.plan
    return estimate(p.model, p.cluster.model_copy(update={"gpu": acc}), p.training, p.layout)


def _base_accelerator(jobs: Sequence[MeasuredJob]) -> AcceleratorSpec:
    names = sorted({job.plan.cluster.accelerator().name for job in jobs})
    if len(names) > 1:
        raise PlanInputError(
            f"the jobs were planned on different accelerators ({', '.join(names)}); "
            "calibrate each accelerator from its own jobs."
        )
    return jobs[0].plan.cluster.accelerator()


def _held_groups(acc: AcceleratorSpec, jobs: Sequence[MeasuredJob]) -> tuple[FactorName, ...]:
    """Groups kept as planned: attention when a job runs a kernel the accelerator has
    measured tables for (``attention_benchmarks``): its rates come from those tables, not
    from the efficiencies the fit would scale (planner.attention_rates)."""
    measured = acc.attention_benchmarks is not None and any(
        j.plan.training.attention_kernel in MEASURED_KERNELS for j in jobs
    )
    return ("attention",) if measured else ()


def _fit_round(
    jobs: Sequence[MeasuredJob],
    acc: AcceleratorSpec,
    factors: dict[str, float],
    prior_overhead_s: float,
) -> tuple[dict[str, float], float]:
    """One least-squares round on terms re-estimated with ``acc``: new totals."""
    cols = [
        group_seconds(_predict(j, acc), j.plan.cluster.num_nodes > 1, acc.step_overhead_s)
        for j in jobs
    ]
    held = _held_groups(acc, jobs)
    active = [g for g in GROUPS if g not in held and any(c[g] > 0 for c in cols)]
    measured = np.array([j.step_time_s for j in jobs])
    scale = float(np.median(measured))
    data = np.array([[c[g] for g in active] + [1.0] for c in cols]) / measured[:, None]
    fixed = np.array([sum(c[g] for g in held) for c in cols]) / measured
    prior = PRIOR_WEIGHT * np.eye(len(active) + 1)
    prior[-1, -1] /= scale
    target = np.concatenate(
        [
            1.0 - fixed,
            PRIOR_WEIGHT
            * np.array([1.0 / factors[g] for g in active] + [prior_overhead_s / scale]),
        ]
    )
    lower = np.array([FACTOR_FLOOR / factors[g] for g in active] + [0.0])
    solution = bounded_lstsq(np.vstack([data, prior]), target, lower)
    new = dict(factors)
    for g, relative in zip(active, solution[:-1], strict=True):
        new[g] = factors[g] * float(relative)
    return new, float(solution[-1])


def fit_profile(jobs: Sequence[MeasuredJob]) -> CalibrationProfile:
    """The profile whose accelerator best predicts the measured step times."""
    if not jobs:
        raise PlanInputError("give at least one job directory or job id to calibrate from.")
    base = _base_accelerator(jobs)
    factors: dict[str, float] = {g: 1.0 for g in GROUPS}
    overhead = base.step_overhead_s
    acc = base
    best: tuple[float, AcceleratorSpec, dict[str, float], float] | None = None
    for _ in range(ITERATIONS):
        factors, overhead = _fit_round(jobs, acc, factors, base.step_overhead_s)
        acc = scaled_accelerator(base, factors, overhead)
        cost = sum((1.0 - _predict(j, acc).step.time_s / j.step_time_s) ** 2 for j in jobs)
        if best is None or cost < best[0]:
            best = (cost, acc, dict(factors), overhead)
    assert best is not None
    _, acc, factors, overhead = best
    exercised = {
        g
        for j in jobs
        for g, t in group_seconds(j.plan.estimate, j.plan.cluster.num_nodes > 1, 0.0).items()
        if t > 0 and g not in _held_groups(base, jobs)
    }
    return CalibrationProfile(
        fitted_for=base.name,
        accelerator=acc,
        time_factors={g: f for g, f in factors.items() if g in exercised},
        step_overhead_s=overhead,
        jobs=[
            JobResidual(
                job=j.job,
                layout=describe_layout(j.plan),
                steps_used=j.steps_used,
                measured_step_s=j.step_time_s,
                predicted_before_s=j.plan.estimate.step.time_s,
                predicted_after_s=_predict(j, acc).step.time_s,
            )
            for j in jobs
        ],
    )


def describe_layout(plan: Plan) -> str:
    """'h128 L4 dp2 mb8 zero3' (tp, pp, cp, ep when above 1) for reports."""
    lay, model = plan.layout, plan.model
    degrees = " ".join(
        f"{name}{value}"
        for name, value in (("dp", lay.dp), ("tp", lay.tp), ("pp", lay.pp), ("cp", lay.cp),
                            ("ep", lay.ep))
        if name == "dp" or value > 1
    )  # fmt: skip
    return f"h{model.hidden_size} L{model.num_layers} {degrees} mb{lay.micro_batch} {lay.sharding}"
