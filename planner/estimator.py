"""``estimate`` and ``make_plan``: the scalar entry points (pure functions).

``estimate`` validates the layout (:mod:`planner.checks`), turns the specs into numbers
(:func:`planner.inputs.build_inputs`, memoised per immutable spec object), runs the one
shared physics (:func:`planner.core.evaluate`, compiled for scalars by
:mod:`planner.trace`), and packs the numbers into an :class:`~planner.result.Estimate`
without re-validating them (:func:`planner.result.trusted`). One estimate takes tens of
microseconds; ``bench/planner_estimate.py`` measures it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
        ("gpu_power_w", "gpu_power_w"),
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
        ("goodput", "goodput"),
        ("checkpoint_interval_min", "checkpoint_interval_min"),
        ("expected_interruptions", "expected_interruptions"),
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
    dynamic = layout_values(layout)
    key = (id(model), id(cluster), id(training), dynamic[_SHARDING], dynamic[_RECOMPUTE],
           dynamic[_SP])  # fmt: skip
    entry = _PREPARED.get(key)
    if entry is None or not (entry[0] is model and entry[1] is cluster and entry[2] is training):
        values = build_inputs(model, accelerator, cluster, training, layout)
        choices = tuple(values[i] for i in _FIXED_AT)
        uses = _USES[choices] = _USES.get(choices, 0) + 1
        if uses < COMPILE_AFTER_USES:
            # Compiling costs ~50 ms; a one-off estimate (the CLI) is cheaper uncompiled.
            return to_estimate(layout, evaluate(values, constants()))
        compiled = compiled_evaluate(choices)
        if len(_PREPARED) >= _PREPARED_LIMIT:
            _PREPARED.clear()
        entry = (model, cluster, training, compiled, compiled.prepare(values[:_STATIC_INPUTS]))
        _PREPARED[key] = entry
    return to_estimate(layout, entry[3].finish(entry[4], dynamic))


_STATIC_INPUTS = Inputs._fields.index("dp")
"""Inputs before the layout's: the static stage of the compiled function."""
PROBLEM_FLAGS = ("flash", "fp8", "overlap_grad_reduce", "tp_comm_overlap", "ep_comm_overlap",
                 "co2_tdp_basis", "eager", "fp8_dynamic", "fp8_current", "grads_freed",
                 "quant_inputs", "nf4_init_bytes", "torch_ring", "windowed_share")  # fmt: skip
"""Inputs constant within one planning problem (the model's, the training spec's): the
categorical flags and ``windowed_share`` (a model's share of sliding-window layers). Both
compiled paths fix them, so each ``where`` on them keeps one side and a problem without
an optional term runs none of its work."""
SPECIALISED = (*PROBLEM_FLAGS, "sharding", "recompute", "sp")
"""Categorical inputs each compiled variant fixes, so it holds only the branches it takes:
the problem's flags and, one layout at a time, its sharding, recomputation and SP."""
_FIXED_AT = tuple(Inputs._fields.index(name) for name in SPECIALISED)
_SHARDING, _RECOMPUTE, _SP = (Inputs._fields.index(n) - _STATIC_INPUTS
                              for n in ("sharding", "recompute", "sp"))  # fmt: skip
_PREPARED: dict[tuple[Any, ...], tuple[Any, Any, Any, Compiled, tuple[float, ...]]] = {}
_PREPARED_LIMIT = 1024
COMPILE_AFTER_USES = 3
"""A variant is compiled the third time it is needed; before that the same physics runs
uncompiled (identical results, ``tests/planner/test_planner_paths.py``)."""
_USES: dict[tuple[float, ...], int] = {}


@lru_cache(maxsize=64)
def compiled_evaluate(choices: tuple[float, ...]) -> Compiled:
    """:func:`planner.core.evaluate` traced into flat scalar code (see planner.trace), for
    one combination of the categorical inputs in :data:`SPECIALISED` (``choices``, in
    that order). Its static stage (everything not depending on the layout) is computed
    once per (model, cluster, training) object and reused across layouts."""
    fixed = dict(zip(SPECIALISED, choices, strict=True))
    return compile_function(
        evaluate, Inputs, "evaluate_scalar", _STATIC_INPUTS, constants(), fixed=fixed
    )


def compiled_for(values: Sequence[float]) -> Compiled:
    """The compiled variant for a full tuple of input values."""
    return compiled_evaluate(tuple(values[i] for i in _FIXED_AT))


def _packer_source() -> str:
    """Source of the function that packs the compiled outputs into an Estimate: literal
    dicts indexed by position, built from the mapping tables above. The compiled physics
    returns Python floats (and a bool for ``fits``), so values are stored as they are."""

    def fields(pairs: tuple[tuple[str, int], ...]) -> str:
        return ", ".join(f"{key!r}: out[{i}]" for key, i in pairs)

    train = dict(_TRAIN)
    train_items = ", ".join(
        f"'steps': int(out[{_STEPS}])" if key == "steps" else f"{key!r}: out[{train[key]}]"
        for key in _TRAIN_ORDER
    )
    return (
        "def pack(layout, out):\n"
        "    return new(Estimate, {'layout': layout,\n"
        f"        'memory_gib': new(MemoryGiB, {{{fields(_MEMORY)}}}),\n"
        f"        'fits': bool(out[{_FITS}]),\n"
        f"        'step': new(StepEstimate, {{{fields(_STEP)}, "
        f"'breakdown': {{{fields(_BREAKDOWN)}}}}}),\n"
        f"        'train': new(TrainTotals, {{{train_items}}})}})\n"
    )


def _compile_packer() -> Callable[[Layout, Sequence[Any]], Estimate]:
    namespace: dict[str, Any] = {
        "new": trusted,
        "Estimate": Estimate,
        "MemoryGiB": MemoryGiB,
        "StepEstimate": StepEstimate,
        "TrainTotals": TrainTotals,
    }
    exec(compile(_packer_source(), "<planner.estimator:pack>", "exec"), namespace)
    packer: Callable[[Layout, Sequence[Any]], Estimate] = namespace["pack"]
    return packer


to_estimate = _compile_packer()
"""Pack one candidate's outputs (an :class:`~planner.core.Outputs` of floats, or the
plain tuple the compiled function returns) into an Estimate: ``to_estimate(layout, out)``."""


def host_memory_gib(
    model: ModelSpec, cluster: ClusterSpec, training: TrainingSpec, layout: Layout
) -> tuple[float, float]:
    """(offloaded activations in one node's host memory, that memory), GiB: the host side
    of ``fits``, for display (the estimate's JSON keeps its published schema)."""
    accelerator = cluster.accelerator()
    out = evaluate(build_inputs(model, accelerator, cluster, training, layout), constants())
    return float(out.host_offload_gib), float(out.host_capacity_gib)


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
