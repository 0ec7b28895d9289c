"""The cost model on arrays of candidate layouts (the layout search's evaluator).

:func:`cost_model` binds the model, accelerator, cluster and training spec; its methods
take a :class:`~planner.layouts.CandidateTree` and return one value per candidate:
``memory`` (peak GiB per GPU), ``metrics`` (what the search ranks by) and ``estimates``
(full :class:`~planner.result.Estimate` objects for a few rows). The physics is
:func:`planner.core.evaluate`, the same function the scalar ``planner.estimate`` runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from planner.core import Outputs, evaluate
from planner.estimator import to_estimate
from planner.inputs import Inputs, build_inputs, constants
from planner.layouts import LEVELS, CandidateTree
from planner.result import Estimate
from planner.specs import AcceleratorSpec, ClusterSpec, Layout, ModelSpec, TrainingSpec

DYNAMIC = tuple(name for names in LEVELS for name in names)
"""Inputs that vary between candidates: the layout's knobs and the GPU count."""


@dataclass
class CostModel:
    """The cost model of one planning problem, evaluated on candidate trees."""

    static: Inputs
    """Inputs of the problem (layout fields are placeholders)."""

    def _inputs(self, tree: CandidateTree) -> Inputs:
        columns = tree.columns()
        return self.static._replace(**{name: columns[name] for name in DYNAMIC})

    def outputs(self, tree: CandidateTree) -> Outputs:
        """Every output of :func:`planner.core.evaluate`, one entry per candidate."""
        with np.errstate(all="ignore"):
            out = evaluate(self._inputs(tree), constants())
        n = tree.size
        return Outputs(*(np.broadcast_to(np.asarray(v, dtype=float), (n,)) for v in out))

    def memory(self, tree: CandidateTree) -> np.ndarray:
        """Peak memory per GPU, GiB, of every candidate."""
        return np.asarray(self.outputs(tree).total_gib)

    def metrics(self, tree: CandidateTree) -> dict[str, np.ndarray]:
        """What the search ranks and filters by, per candidate."""
        out = self.outputs(tree)
        return metrics_of(out, tree)

    def estimates(self, tree: CandidateTree, rows: np.ndarray) -> list[Estimate]:
        """Full Estimates of the candidates at ``rows``."""
        sub = tree.select(np.asarray(rows, dtype=np.intp))
        out = self.outputs(sub)
        order = np.argsort(np.argsort(rows))  # select() keeps ascending row order
        result = []
        for position in order:
            values = tuple(float(column[position]) for column in out)
            result.append(to_estimate(sub.layout(int(position)), values))
        return result


def metrics_of(out: Outputs, tree: CandidateTree) -> dict[str, np.ndarray]:
    """The ranking metrics from the cost model's outputs."""
    goodput = np.ones(tree.size)
    return {
        "days": out.days,
        "days_expected": out.days / goodput,
        "cost_usd": out.cost_usd,
        "cost_expected_usd": out.cost_usd / goodput,
        "energy_mwh": out.energy_mwh,
        "mfu": out.mfu,
        "step_time_s": out.step_time_s,
        "memory_gib": out.total_gib,
        "gpus": tree.column("gpus"),
    }


def cost_model(
    model: ModelSpec, accelerator: AcceleratorSpec, cluster: ClusterSpec, training: TrainingSpec
) -> CostModel:
    """The cost model of this problem for candidate trees."""
    static = build_inputs(model, accelerator, cluster, training, Layout(dp=1))
    return CostModel(static)


def _unused(*_: Any) -> None:
    return None
