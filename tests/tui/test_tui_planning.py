"""The Planner tab's logic: form to specs, ranked layouts, the job spec a plan launches."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import planner
from tui.data.planning import PlanForm, PlanFormError, job_name, planned_job, search

FORM = PlanForm(
    model="llama3-8b", gpu="H100", gpus="16", seq_len="4096", batch="256", tokens="100B"
)


def tiny_config(tmp_path: Path) -> Path:
    path = tmp_path / "tiny" / "config.json"
    path.parent.mkdir()
    path.write_text(
        json.dumps(
            {
                "num_hidden_layers": 4,
                "hidden_size": 128,
                "num_attention_heads": 4,
                "num_key_value_heads": 2,
                "intermediate_size": 352,
                "vocab_size": 257,
                "hidden_act": "silu",
            }
        )
    )
    return path


def test_search_ranks_layouts_with_planner_search_and_the_planners_numbers() -> None:
    result = search(FORM)
    assert result.ranked, "llama3-8b fits on 16 H100s in many layouts"
    days = [c.estimate.train.days / c.estimate.train.goodput for c in result.ranked]
    assert days == sorted(days)  # ranked by expected wall time (objective "time")
    assert all(c.estimate.fits for c in result.ranked)
    assert result.found.evaluated >= result.found.fitting >= len(result.ranked)
    assert result.ranked[0].why_not == "" and result.ranked[1].why_not
    by_mfu = search(PlanForm(**{**FORM.__dict__, "objective": "mfu"}))
    mfus = [c.estimate.step.mfu for c in by_mfu.ranked]
    assert mfus == sorted(mfus, reverse=True)
    best = result.ranked[0]
    again = planner.estimate(result.model, result.cluster, result.training, best.layout)
    assert again.step.time_s == pytest.approx(best.estimate.step.time_s)
    assert best.layout.num_gpus == 16
    plan = result.plan(0)
    assert plan.layout == best.layout and plan.estimate == best.estimate


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model": "llama-9000"}, "unknown model preset"),
        ({"gpu": "H10"}, "did you mean"),
        ({"gpus": "many"}, "GPUs"),
        ({"gpus": ""}, "GPUs"),
        ({"seq_len": "-5"}, "sequence length"),
        ({"tokens": "lots"}, "tokens"),
        ({"model": "/nonexistent/config.json"}, "no config.json"),
        ({"objective": "vibes"}, "rank by"),
        ({"model": "llama3-405b", "gpus": "8"}, "fit"),
    ],
)
def test_bad_form_fields_are_named(change: dict[str, str], message: str) -> None:
    form = PlanForm(**{**FORM.__dict__, **change})
    with pytest.raises(Exception) as caught:
        search(form)
    assert getattr(caught.value, "user_error", False) or isinstance(caught.value, PlanFormError)
    assert message in str(caught.value)


def test_a_config_path_and_its_launch_spec_validate(tmp_path: Path) -> None:
    form = PlanForm(
        model=str(tiny_config(tmp_path)),
        gpu="H100",
        gpus="2",
        gpus_per_node="8",
        seq_len="128",
        batch="16",
        tokens="8192",
    )
    result = search(form)
    assert result.model.num_layers == 4 and result.ranked
    plan = result.plan(0)
    planned = planned_job(plan, "local")
    spec = planned.spec
    assert spec.name == "tiny" and spec.backend == "local"
    assert planned.resolved.world_size == 2
    assert spec.entrypoint.module == "runtime.train"
    assert (spec.nodes.min, spec.nodes.max, spec.procs_per_node) == (1, 1, 2)
    assert spec.gpus_per_node == 0  # local: ranks are processes; no GPU is requested
    assert spec.plan is not None and spec.plan["training"]["total_tokens"] == 8192
    slurm = planned_job(plan, "slurm").spec
    assert slurm.gpus_per_node == 2


def test_job_names_are_valid() -> None:
    assert job_name("llama3-8b") == "llama3-8b"
    assert job_name("my model/v2 (test)") == "my-model-v2-test"
    assert job_name("...") == "planned"
    assert len(job_name("x" * 100)) == 63
