"""``estimate`` and ``make_plan``: the scalar entry points (pure functions).

``estimate`` validates the layout (:mod:`planner.checks`), turns the specs into numbers
(:func:`planner.inputs.build_inputs`, memoised per immutable spec object), runs the one
shared physics (:func:`planner.core.evaluate`, compiled for scalars by
:mod:`planner.trace`), and packs the numbers into an :class:`~planner.result.Estimate`
without re-validating them (:func:`planner.result.trusted`). One estimate takes tens of
microseconds; ``bench/planner_estimate.py`` measures it.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from planner.checks import validate
from planner.core import BREAKDOWN_KEYS, Outputs, evaluate
from planner.inputs import Inputs, build_inputs, constants, layout_values
from planner.result import Estimate, MemoryGiB, Plan, StepEstimate, TrainTotals, trusted
from planner.specs import ClusterSpec, Layout, ModelSpec, TrainingSpec
from planner.trace import Compiled, compile_function

_AT = {name: i for i, name in enumerate(Outputs._fields)}
_MEMORY = tuple(
    (key, _AT[f"{key}_gib"])
    for key in ("params", "grads", "optimizer", "activations", "other", "total", "capacity")
)
_STEP = tuple(
    (key, _AT[source])
    for key, source in (
        ("time_s", "step_time_s"),
        ("model_tflops_per_gpu", "model_tflops_per_gpu"),
        ("hardware_tflops_per_gpu", "hardware_tflops_per_gpu"),
        ("mfu", "mfu"),
        ("hfu", "hfu"),
        ("tokens_per_s", "tokens_per_s"),
        ("bubble_fraction", "bubble_fraction"),
        ("exposed_comm_s", "exposed_comm_s"),
    )
)
_BREAKDOWN = tuple((key, _AT[key]) for key in BREAKDOWN_KEYS)
_TRAIN = tuple(
    (key, _AT[source])
    for key, source in (
        ("tokens", "train_tokens"),
        ("days", "days"),
        ("gpu_hours", "gpu_hours"),
        ("energy_mwh", "energy_mwh"),
        ("energy_mwh_tdp", "energy_mwh_tdp"),
        ("cost_usd", "cost_usd"),
        ("co2_t", "co2_t"),
    )
)
_FITS, _STEPS = _AT["fits"], _AT["steps"]
_TRAIN_ORDER = tuple(TrainTotals.model_fields)


def estimate(
    model: ModelSpec, cluster: ClusterSpec, training: TrainingSpec, layout: Layout
) -> Estimate:
    """Memory, step time, MFU, days, energy, cost and CO2 of ``layout``.

    Raises PlanInputError when the layout cannot run (see planner.checks).
    """
    accelerator = cluster.accelerator()
    validate(model, cluster, training, layout, accelerator)
    compiled = compiled_evaluate()
    key = (id(model), id(cluster), id(training))
    entry = _PREPARED.get(key)
    if entry is None or not (entry[0] is model and entry[1] is cluster and entry[2] is training):
        static = build_inputs(model, accelerator, cluster, training, layout)[:_STATIC_INPUTS]
        if len(_PREPARED) >= _PREPARED_LIMIT:
            _PREPARED.clear()
        entry = (model, cluster, training, compiled.prepare(static))
        _PREPARED[key] = entry
    return to_estimate(layout, compiled.finish(entry[3], layout_values(layout)))


_STATIC_INPUTS = Inputs._fields.index("dp")
"""Inputs before the layout's: the static stage of the compiled function."""
_PREPARED: dict[tuple[int, int, int], tuple[Any, Any, Any, tuple[float, ...]]] = {}
_PREPARED_LIMIT = 1024


@lru_cache(maxsize=1)
def compiled_evaluate() -> Compiled:
    """:func:`planner.core.evaluate` traced into flat scalar code (see planner.trace).

    Its static stage (everything not depending on the layout) is computed once per
    (model, cluster, training) object and reused across layouts.
    """
    return compile_function(evaluate, Inputs, "evaluate_scalar", _STATIC_INPUTS, constants())


def to_estimate(layout: Layout, out: Sequence[Any]) -> Estimate:
    """Pack one candidate's outputs (an :class:`~planner.core.Outputs` of floats, or the
    plain tuple the compiled function returns) into an Estimate."""
    memory = trusted(MemoryGiB, {key: float(out[i]) for key, i in _MEMORY})
    step_values: dict[str, Any] = {key: float(out[i]) for key, i in _STEP}
    step_values["breakdown"] = {key: float(out[i]) for key, i in _BREAKDOWN}
    train_values: dict[str, Any] = {key: float(out[i]) for key, i in _TRAIN}
    train_values["steps"] = int(out[_STEPS])
    train_values = {key: train_values[key] for key in _TRAIN_ORDER}
    return trusted(
        Estimate,
        {
            "layout": layout,
            "memory_gib": memory,
            "fits": bool(out[_FITS]),
            "step": trusted(StepEstimate, step_values),
            "train": trusted(TrainTotals, train_values),
        },
    )


def make_plan(
    model: ModelSpec, cluster: ClusterSpec, training: TrainingSpec, layout: Layout
) -> Plan:
    """The Plan (specs + estimate) that a job directory stores as plan.json."""
    return Plan(
        model=model,
        cluster=cluster,
        training=training,
        layout=layout,
        estimate=estimate(model, cluster, training, layout),
    )
