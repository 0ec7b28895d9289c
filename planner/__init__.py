"""Planner: will it fit, how fast, how long, how much energy, cost and CO2.

Pure functions over pydantic specs and the catalog data files; no torch, no I/O beyond
reading ``planner/data``. The physics lives once in :mod:`planner.formulas` and works
on Python floats (``estimate``) and numpy arrays of candidates (the layout search).

Public API (imported lazily, so ``import planner`` stays cheap for the CLI)::

    from planner import (ModelSpec, AcceleratorSpec, ClusterSpec, TrainingSpec, Layout,
                         Estimate, Plan, estimate, make_plan, get_gpu, get_model,
                         list_gpus, list_models, load_hf_config, parse_count,
                         PlanInputError)

The layout search (every valid layout, ranked, with the Pareto front of time and cost)::

    result = planner.search(model, cluster, training, pinned={"tp": 8},
                            objective="time", top_k=10,
                            constraints=planner.SearchConstraints(deadline_days=90))
    result.ranked, result.why_not, result.pareto, result.problem, result.nearest

Capacity: ``planner.smallest_cluster(model, cluster, training, deadline_days)`` (the
fewest GPUs meeting a deadline, failures included) and ``planner.compute_optimal(flops)``
(Chinchilla / Kaplan model size, tokens and loss for a FLOP budget).

For many layouts at once (what the search runs on)::

    x = planner.candidate_inputs(model, cluster.accelerator(), cluster, training,
                                 dp=dps, tp=tps, pp=pps, sharding=["zero1", ...], ...)
    out = planner.evaluate(x, planner.constants())      # numpy arrays, one entry each
    best = planner.to_estimate(layout, planner.candidate(out, i))
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "ModelSpec": "planner.specs",
    "AcceleratorSpec": "planner.specs",
    "ClusterSpec": "planner.specs",
    "TrainingSpec": "planner.specs",
    "Layout": "planner.specs",
    "Estimate": "planner.result",
    "MemoryGiB": "planner.result",
    "StepEstimate": "planner.result",
    "TrainTotals": "planner.result",
    "Plan": "planner.result",
    "estimate": "planner.estimator",
    "make_plan": "planner.estimator",
    "get_gpu": "planner.catalog",
    "get_model": "planner.catalog",
    "list_gpus": "planner.catalog",
    "list_models": "planner.catalog",
    "load_gpu_spec": "planner.catalog",
    "load_hf_config": "planner.hf_config",
    "validate": "planner.checks",
    "layout_problems": "planner.checks",
    "parse_count": "planner.units",
    "PlanInputError": "planner.errors",
    "Inputs": "planner.inputs",
    "build_inputs": "planner.inputs",
    "stack_inputs": "planner.inputs",
    "evaluate": "planner.core",
    "candidate": "planner.core",
    "constants": "planner.inputs",
    "candidate_inputs": "planner.inputs",
    "to_estimate": "planner.estimator",
    "search": "planner.layout_search",
    "SearchConstraints": "planner.layout_search",
    "SearchResult": "planner.layout_search",
    "NoFeasibleLayout": "planner.layout_search",
    "smallest_cluster": "planner.capacity",
    "compute_optimal": "planner.scaling",
}

__all__ = [
    "AcceleratorSpec",
    "ClusterSpec",
    "Estimate",
    "Inputs",
    "Layout",
    "MemoryGiB",
    "ModelSpec",
    "NoFeasibleLayout",
    "Plan",
    "PlanInputError",
    "SearchConstraints",
    "SearchResult",
    "StepEstimate",
    "TrainTotals",
    "TrainingSpec",
    "build_inputs",
    "candidate",
    "candidate_inputs",
    "compute_optimal",
    "constants",
    "estimate",
    "evaluate",
    "get_gpu",
    "get_model",
    "layout_problems",
    "list_gpus",
    "list_models",
    "load_gpu_spec",
    "load_hf_config",
    "make_plan",
    "parse_count",
    "search",
    "smallest_cluster",
    "stack_inputs",
    "to_estimate",
    "validate",
]

if TYPE_CHECKING:
    from planner.capacity import smallest_cluster
    from planner.catalog import get_gpu, get_model, list_gpus, list_models, load_gpu_spec
    from planner.checks import layout_problems, validate
    from planner.core import candidate, evaluate
    from planner.errors import PlanInputError
    from planner.estimator import estimate, make_plan, to_estimate
    from planner.hf_config import load_hf_config
    from planner.inputs import Inputs, build_inputs, candidate_inputs, constants, stack_inputs
    from planner.layout_search import NoFeasibleLayout, SearchConstraints, SearchResult, search
    from planner.result import Estimate, MemoryGiB, Plan, StepEstimate, TrainTotals
    from planner.scaling import compute_optimal
    from planner.specs import AcceleratorSpec, ClusterSpec, Layout, ModelSpec, TrainingSpec
    from planner.units import parse_count


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'planner' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
