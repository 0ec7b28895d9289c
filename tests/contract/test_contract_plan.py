"""contract.plan: the Plan document's one model and reader, and plan-against-measured."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import BaseModel

import planner
from contract import plan as contract_plan
from contract.jobdir import JobDir
from contract.plan import (
    PLAN_SCHEMA_VERSION,
    Plan,
    PlanError,
    parse_plan,
    ratio,
    read_plan,
)
from contract.run_facts import against_plan
from planner import result as planner_result
from planner import specs as planner_specs


def planner_document(num_gpus: int = 16) -> dict[str, Any]:
    """What the planner writes today (planner.make_plan, JSON form)."""
    model = planner.get_model("llama3-8b")
    cluster = planner.ClusterSpec(gpu="H100", num_gpus=num_gpus, gpus_per_node=8)
    training = planner.TrainingSpec(seq_len=8192, global_batch_seqs=256, total_tokens=2e11)
    layout = planner.Layout(dp=num_gpus, sharding="zero3", micro_batch=1, recompute="selective")
    document: dict[str, Any] = planner.make_plan(model, cluster, training, layout).model_dump(
        mode="json"
    )
    return document


def test_the_planners_document_reads_typed_and_whole() -> None:
    document = planner_document()
    plan = parse_plan(document)
    assert plan.schema_version == PLAN_SCHEMA_VERSION  # absent: written before it existed
    assert plan.model.name == "llama3-8b" and plan.model.num_layers == 32
    assert plan.cluster.gpu_name == "H100" and plan.cluster.num_gpus == 16
    assert plan.layout_text() == "dp16 tp1 pp1 cp1 zero3 mb1 rc=selective"
    assert plan.step.time_s == document["estimate"]["step"]["time_s"]
    # The planner's other fields ride along untouched.
    assert plan.model.model_extra is not None
    assert plan.model.model_extra["position_embedding"] == document["model"]["position_embedding"]
    assert plan.model_dump(mode="json") == document | {"schema_version": 1}


@pytest.mark.parametrize(
    ("section", "planner_model"),
    [
        (contract_plan.PlanModel, planner_specs.ModelSpec),
        (contract_plan.PlanGpu, planner_specs.AcceleratorSpec),
        (contract_plan.PlanCluster, planner_specs.ClusterSpec),
        (contract_plan.PlanTraining, planner_specs.TrainingSpec),
        (contract_plan.PlanLayout, planner_specs.Layout),
        (contract_plan.PlanEstimate, planner_result.Estimate),
        (contract_plan.PlanMemory, planner_result.MemoryGiB),
        (contract_plan.PlanStep, planner_result.StepEstimate),
        (contract_plan.PlanTrain, planner_result.TrainTotals),
        (Plan, planner_result.Plan),
    ],
)
def test_every_declared_field_is_one_the_planner_writes(
    section: type[BaseModel], planner_model: type[BaseModel]
) -> None:
    declared = set(section.model_fields) - {"schema_version"}
    assert declared <= set(planner_model.model_fields)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([1, 2], "p.json: expected a JSON object (a planner Plan)"),
        ({"schema_version": 2}, "p.json: plan schema_version 2: this scalectl reads version 1"),
        ({"foo": 1}, "p.json: plan foo: unknown field"),
        ({"model": {"num_layers": "3"}}, "p.json: plan model.num_layers '3': expected int"),
        ({"layout": {"dp": 2.5}}, "p.json: plan layout.dp 2.5: expected int"),
        ({"layout": {"sharding": 3}}, "p.json: plan layout.sharding 3: expected a string"),
        ({"cluster": {"gpu": 5}}, "p.json: plan cluster.gpu 5: expected an object"),
        ({"estimate": {"step": {"time_s": "fast"}}}, "plan estimate.step.time_s 'fast'"),
        ({"estimate": []}, "p.json: plan estimate []: expected an object"),
    ],
)
def test_a_bad_or_other_version_document_names_the_field(document: Any, message: str) -> None:
    with pytest.raises(PlanError) as info:
        parse_plan(document, "p.json")
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_read_plan_from_a_path_or_a_job_directory(tmp_path: Path) -> None:
    (tmp_path / "plan.json").write_text(json.dumps(planner_document(8)))
    assert read_plan(JobDir(tmp_path)).cluster.num_gpus == 8
    assert read_plan(tmp_path / "plan.json").cluster.num_gpus == 8
    with pytest.raises(PlanError, match="no such file"):
        read_plan(tmp_path / "missing.json")
    (tmp_path / "torn.json").write_text('{"model": {')
    with pytest.raises(PlanError, match=r"torn\.json: not a readable JSON file"):
        read_plan(tmp_path / "torn.json")


def test_a_partial_hand_written_plan_reads() -> None:
    # A plan: block typed into job.yaml carries a few numbers only.
    plan = parse_plan({"layout": {"dp": 1}, "estimate": {"step": {"time_s": 0.01}}})
    assert plan.step.time_s == 0.01 and plan.model.num_layers is None
    assert plan.gpu_energy_per_step_j() is None and plan.facility_energy_per_step_j() is None
    assert plan.measured_mfu(100.0, 1) is None


def test_plan_against_measured_arithmetic() -> None:
    plan = parse_plan(
        {
            "cluster": {"num_gpus": 16},
            "estimate": {
                "step": {"time_s": 2.0, "tokens_per_s": 100_000.0, "mfu": 0.5, "gpu_power_w": 500},
                "train": {"steps": 1000, "energy_mwh": 0.036},
            },
        }
    )
    assert plan.measured_mfu(90_000.0, 16) == pytest.approx(0.45)
    # Elastic: the same throughput from half the GPUs is twice the utilisation.
    assert plan.measured_mfu(90_000.0, 8) == pytest.approx(0.9)
    assert plan.gpu_energy_per_step_j() == pytest.approx(500 * 2.0 * 16)
    assert plan.facility_energy_per_step_j() == pytest.approx(0.036 * 3.6e9 / 1000)
    assert ratio(3.0, 2.0) == 1.5 and ratio(None, 2.0) is None and ratio(1.0, 0.0) is None
    assert against_plan(plan, 2.2, 50_000.0, 16) == {
        "step_time_s": 2.0,
        "step_time_ratio": pytest.approx(1.1),
        "tokens_per_s": 100_000.0,
        "tokens_per_s_ratio": 0.5,
        "mfu": 0.5,
        "mfu_measured": 0.25,
    }


def test_scalectl_jobs_json_shows_the_plan_against_progress(tmp_path: Path) -> None:
    from launcher.cli_table import plan_json as _plan_json
    from launcher.progress_view import ProgressSnapshot

    record: Any = SimpleNamespace(job_dir=tmp_path)
    snap = ProgressSnapshot(step_time_s=1.0, tokens_per_s=50.0, world_size=2)
    assert _plan_json(record, snap) is None
    plan = {"layout": {"dp": 2}, "estimate": {"step": {"time_s": 0.5, "tokens_per_s": 100.0}}}
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    shown = _plan_json(record, snap)
    assert shown is not None
    assert shown["layout"] == "dp2 tp1 pp1 cp1 mb1"
    assert shown["step_time_ratio"] == 2.0 and shown["tokens_per_s_ratio"] == 0.5
    (tmp_path / "plan.json").write_text(json.dumps({"schema_version": 9}))
    assert _plan_json(record, snap) == {
        "error": f"{tmp_path / 'plan.json'}: plan schema_version 9: this scalectl reads "
        "version 1; plan again with this scalectl"
    }
