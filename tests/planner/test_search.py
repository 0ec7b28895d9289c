"""planner.search: every valid layout, ranked; results equal the scalar estimate."""

from __future__ import annotations

import numpy as np
import pytest

import planner
from planner import SearchConstraints, search
from planner.layouts import enumerate_layouts
from tests.planner.planner_fixtures import cluster, training

MODEL = "llama3-8b"


def test_ranked_estimates_equal_the_scalar_estimate() -> None:
    model, cl, tr = planner.get_model(MODEL), cluster(64), training(batch=256)
    result = search(model, cl, tr, top_k=400)
    assert len(result.ranked) == 400 and result.problem is None
    assert result.evaluated > result.fitting >= result.feasible >= 400
    rng = np.random.default_rng(5)
    for i in rng.choice(len(result.ranked), 60, replace=False):
        found = result.ranked[int(i)]
        scalar = planner.estimate(model, cl, tr, found.layout)
        assert found.memory_gib.total == pytest.approx(scalar.memory_gib.total, rel=1e-9)
        assert found.step.time_s == pytest.approx(scalar.step.time_s, rel=1e-9)
        assert found.train.cost_usd == pytest.approx(scalar.train.cost_usd, rel=1e-9)
        assert _close(found, scalar)


def _close(a: planner.Estimate, b: planner.Estimate) -> bool:
    da, db = a.model_dump(), b.model_dump()
    assert da["layout"] == db["layout"] and da["fits"] == db["fits"]
    for part in ("memory_gib", "step", "train"):
        for key, value in da[part].items():
            if isinstance(value, dict):
                for k, v in value.items():
                    assert v == pytest.approx(db[part][key][k], rel=1e-9, abs=1e-12), (part, k)
            else:
                assert value == pytest.approx(db[part][key], rel=1e-9, abs=1e-12), (part, key)
    return True


def test_ranked_in_objective_order_and_every_candidate_valid() -> None:
    model, cl, tr = planner.get_model(MODEL), cluster(64), training(batch=256)
    result = search(model, cl, tr, top_k=50)
    times = [e.train.days for e in result.ranked]
    assert times == sorted(times)
    assert result.why_not[0] == "" and all(result.why_not[1:])
    tree = enumerate_layouts(model, cl, tr, [64])
    assert tree.size == result.evaluated
    rng = np.random.default_rng(0)
    for i in rng.choice(tree.size, 200, replace=False):
        assert planner.layout_problems(model, cl, tr, tree.layout(int(i))) == []


def test_pinned_knobs_are_respected() -> None:
    model, cl, tr = planner.get_model(MODEL), cluster(64), training(batch=256)
    pinned = {"tp": 2, "recompute": "full", "sharding": "zero3", "micro_batch": 1}
    result = search(model, cl, tr, pinned=pinned, top_k=30)
    assert result.ranked
    for est in result.ranked + result.pareto:
        lo = est.layout
        assert (lo.tp, lo.recompute, lo.sharding, lo.micro_batch) == (2, "full", "zero3", 1)


def test_constraints_model_refuses_bad_values() -> None:
    with pytest.raises(ValueError):
        SearchConstraints(memory_headroom=1.5)
    with pytest.raises(planner.PlanInputError, match="objective"):
        search(planner.get_model(MODEL), cluster(8), training(), objective="speed")  # type: ignore[arg-type]
