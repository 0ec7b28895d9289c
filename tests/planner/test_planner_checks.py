"""Layouts that cannot run are refused with the reason and a fix (like ParallelDims)."""

from __future__ import annotations

import pytest

import planner
from planner.errors import PlanInputError
from tests.planner.planner_fixtures import cluster, layout, training

CASES = [
    (dict(dp=32, tp=3), 96, "tp=3 does not divide num_attention_heads=32"),
    (dict(dp=8, tp=16), 128, "tp=16 does not divide num_kv_heads=8"),
    (dict(dp=16, tp=2), 64, "dp·tp·pp·cp = 16·2·1·1 = 32 but the cluster has 64 GPUs"),
    (dict(dp=8, cp=8), 64, None),  # 4096 % 8 == 0: fine
    (dict(dp=16, cp=3, tp=1), 48, "cp=3 does not divide seq_len=4096"),
    (dict(dp=64, micro_batch=3), 64, "micro_batch=3 does not divide the 4 sequences"),
    (dict(dp=3, tp=1), 3, "dp=3 does not divide the global batch of 256"),
    (dict(dp=1, pp=64), 64, "pp=64 exceeds the 32 layers"),
    (dict(dp=2, pp=16, interleave=4), 32, "pp·interleave = 64 exceeds the 32 layers"),
    (dict(dp=64, ep=2), 64, "ep=2 needs a mixture-of-experts model"),
]


@pytest.mark.parametrize(("kw", "gpus", "message"), CASES)
def test_layout_problems(kw: dict[str, int], gpus: int, message: str | None) -> None:
    model, cl, tr = planner.get_model("llama3-8b"), cluster(gpus), training()
    lo = layout(**kw)
    problems = planner.layout_problems(model, cl, tr, lo)
    if message is None:
        assert problems == []
        planner.estimate(model, cl, tr, lo)
        return
    assert any(message in p for p in problems), problems
    with pytest.raises(PlanInputError, match="layout: "):
        planner.estimate(model, cl, tr, lo)


def test_expert_parallel_rules() -> None:
    moe, cl, tr = planner.get_model("mixtral-8x7b"), cluster(64), training()
    assert planner.layout_problems(moe, cl, tr, layout(dp=8, tp=8, ep=8)) == []
    bad = planner.layout_problems(moe, cl, tr, layout(dp=16, tp=4, ep=16))
    assert any("ep=16 does not divide num_experts=8" in p for p in bad)
    bad = planner.layout_problems(moe, cluster(48), tr, layout(dp=6, tp=8, ep=4))
    assert any("ep=4 must divide dp·cp = 6" in p for p in bad)


def test_fp8_needs_fp8_units() -> None:
    tr = training(precision="fp8")
    with pytest.raises(PlanInputError, match="A100-SXM-80GB lacks"):
        planner.estimate(planner.get_model("llama3-8b"), cluster(8, "A100"), tr, layout(dp=8))
    est = planner.estimate(planner.get_model("llama3-8b"), cluster(8), tr, layout(dp=8))
    assert est.step.time_s > 0


def test_first_problem_reported_with_count() -> None:
    with pytest.raises(
        PlanInputError, match=r"= 48 but the cluster has 64 GPUs.*\(and 3 more problem\(s\)\)"
    ):
        planner.estimate(
            planner.get_model("llama3-8b"), cluster(64), training(), layout(dp=16, tp=3)
        )
