"""The cost model on arrays of candidate layouts (the layout search's evaluator).

:func:`cost_model` binds the model, accelerator, cluster and training spec; its methods
take a :class:`~planner.layouts.CandidateTree` and return one value per candidate:
``memory`` (peak GiB per GPU), ``metrics`` (what the search ranks by) and ``estimates``
(full :class:`~planner.result.Estimate` objects for a few rows). The physics is
:func:`planner.core.evaluate`, the same function the scalar ``planner.estimate`` runs,
compiled per level of the tree by :mod:`planner.levels`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from planner.core import Outputs, evaluate
from planner.estimator import PROBLEM_FLAGS, to_estimate
from planner.inputs import Inputs, build_inputs, constants
from planner.layouts import LEVELS, CandidateTree
from planner.levels import LevelProgram, compile_levels
from planner.result import Estimate
from planner.specs import AcceleratorSpec, ClusterSpec, Layout, ModelSpec, TrainingSpec

DYNAMIC = tuple(name for names in LEVELS for name in names)
"""Inputs that vary between candidates: the layout's knobs and the GPU count."""


FIXED = PROBLEM_FLAGS
"""Categorical inputs constant within one problem (:data:`planner.estimator.PROBLEM_FLAGS`):
fixed while compiling, so each ``where`` on them keeps one side (a dense model also fixes
``experts`` = 1)."""

CHUNK_ROWS = 8192
"""Candidates per call of the last stage (at most): its arrays then stay in the cache."""


@dataclass
class CostModel:
    """The cost model of one planning problem, evaluated on candidate trees."""

    static: Inputs
    """Inputs of the problem (layout fields are placeholders)."""
    fixed: tuple[tuple[str, float], ...]
    """Inputs fixed at compile time (see :data:`FIXED`)."""
    _envs: dict[tuple[str, ...], dict[str, Any]] = field(default_factory=dict, repr=False)

    def _program(self, outputs: tuple[str, ...]) -> tuple[LevelProgram, dict[str, Any]]:
        program = compile_levels(self.fixed, LEVELS, outputs)
        env = self._envs.get(outputs)
        if env is None:
            env = self._envs[outputs] = program.prepare(self.static._asdict())
        return program, env

    def run(self, tree: CandidateTree, outputs: tuple[str, ...]) -> list[np.ndarray]:
        """The named outputs, one entry per candidate of ``tree``.

        The small levels run whole; the last two run block by block (a block of rows of
        the second-to-last level and their children), so that every array a stage
        touches stays in the CPU's cache (about 2x faster than whole arrays here).
        """
        program, env = self._program(outputs)
        n = tree.size
        last = len(tree.levels) - 1
        mid = last - 1
        columns = [np.empty(n) for _ in outputs]
        with np.errstate(all="ignore"):
            env = dict(env)
            for k in range(mid):
                program.stages[k](env, tree.levels[k], {j: tree.index_map(j, k) for j in range(k)})
            parent = tree.parents[last]
            assert parent is not None
            to_mid = {j: tree.index_map(j, mid) for j in range(mid)}
            to_last = {j: tree.index_map(j, last) for j in range(mid)}
            rows_mid = tree.rows(mid)
            # Level-`mid` rows whose children fill a block: children are contiguous.
            child_start = np.searchsorted(parent, np.arange(rows_mid + 1))
            start = 0
            while start < rows_mid:
                stop = int(np.searchsorted(child_start, child_start[start] + CHUNK_ROWS, "right"))
                stop = min(max(stop - 1, start + 1), rows_mid)
                a, b = int(child_start[start]), int(child_start[stop])
                block = dict(env)
                program.stages[mid](
                    block,
                    {name: v[start:stop] for name, v in tree.levels[mid].items()},
                    {j: index[start:stop] for j, index in to_mid.items()},
                )
                maps = {j: index[a:b] for j, index in to_last.items()}
                maps[mid] = parent[a:b] - start
                values = program.run_last(
                    block, {name: v[a:b] for name, v in tree.levels[last].items()}, maps
                )
                for column, value in zip(columns, values, strict=True):
                    column[a:b] = value
                start = stop
        return columns

    def outputs(self, tree: CandidateTree) -> Outputs:
        """Every output of :func:`planner.core.evaluate`, one entry per candidate, by the
        plain numpy path (no compilation: meant for the few rows the search reports)."""
        columns = tree.columns()
        x = self.static._replace(**{name: columns[name] for name in DYNAMIC})
        with np.errstate(all="ignore"):
            out = evaluate(x, constants())
        return Outputs(*(np.broadcast_to(np.asarray(v, dtype=float), (tree.size,)) for v in out))

    def memory(self, tree: CandidateTree) -> np.ndarray:
        """Peak memory per GPU, GiB, of every candidate."""
        return self.run(tree, ("total_gib",))[0]

    def metrics(self, tree: CandidateTree, memory_gib: np.ndarray) -> dict[str, np.ndarray]:
        """What the search ranks and filters by (:data:`RANKED`), per candidate;
        ``memory_gib`` is the memory pass's result for the same candidates."""
        values = dict(zip(RANKED, self.run(tree, RANKED), strict=True))
        values["total_gib"] = memory_gib
        return metrics_of(values, tree)

    def estimates(self, tree: CandidateTree, rows: np.ndarray) -> list[Estimate]:
        """Full Estimates of the candidates at ``rows``."""
        rows = np.asarray(rows, dtype=np.intp)
        sub = tree.select(rows)  # keeps ascending row order
        out = self.outputs(sub)
        position = np.searchsorted(np.unique(rows), rows)
        result = []
        for p in position.tolist():
            values = tuple(float(column[p]) for column in out)
            result.append(to_estimate(sub.layout(p), values))
        return result


RANKED = ("step_time_s", "days", "cost_usd", "energy_mwh", "mfu", "goodput")
"""Outputs the search ranks and filters by (the full Estimate is built for a few rows)."""


def metrics_of(out: dict[str, np.ndarray], tree: CandidateTree) -> dict[str, np.ndarray]:
    """The ranking metrics from the cost model's outputs."""
    goodput = out["goodput"]
    # A cluster so large it fails faster than it checkpoints has goodput 0: its expected
    # days are +inf, ranked last, which is the answer (not a warning for the user).
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        days_expected = out["days"] / goodput
        cost_expected_usd = out["cost_usd"] / goodput
    return {
        "days": out["days"],
        "days_expected": days_expected,
        "cost_usd": out["cost_usd"],
        "cost_expected_usd": cost_expected_usd,
        "energy_mwh": out["energy_mwh"],
        "mfu": out["mfu"],
        "step_time_s": out["step_time_s"],
        "memory_gib": out["total_gib"],
        "goodput": goodput,
        "gpus": tree.column("gpus"),
    }


def cost_model(
    model: ModelSpec, accelerator: AcceleratorSpec, cluster: ClusterSpec, training: TrainingSpec
) -> CostModel:
    """The cost model of this problem for candidate trees."""
    static = build_inputs(model, accelerator, cluster, training, Layout(dp=1))
    values = static._asdict()
    fixed = tuple((name, float(values[name])) for name in FIXED)
    if values["experts"] == 1:
        fixed += (("experts", 1.0),)
    return CostModel(static, fixed)
