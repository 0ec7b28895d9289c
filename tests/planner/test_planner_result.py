"""The Estimate JSON contract and the Plan saved as plan.json."""

from __future__ import annotations

import json

import pytest

import planner
from planner import Estimate, Plan
from planner.result import MemoryGiB, trusted
from tests.planner.planner_fixtures import cluster, layout, training

SCHEMA = {
    "layout": None,
    "memory_gib": {"params", "grads", "optimizer", "activations", "other", "total", "capacity"},
    "fits": None,
    "step": {
        "time_s",
        "model_tflops_per_gpu",
        "hardware_tflops_per_gpu",
        "mfu",
        "hfu",
        "tokens_per_s",
        "bubble_fraction",
        "exposed_comm_s",
        # checked against NVML's energy counter by the agent's summary and the TUI
        "gpu_power_w",
        "breakdown",
    },
    "train": {
        "tokens",
        "steps",
        "days",
        "gpu_hours",
        "energy_mwh",
        "energy_mwh_tdp",
        "cost_usd",
        "co2_t",
        # issue 5: failures, checkpoints and restarts
        "goodput",
        "checkpoint_interval_min",
        "expected_interruptions",
    },
}


def _estimate() -> Estimate:
    return planner.estimate(
        planner.get_model("llama3-8b"),
        cluster(16),
        training(),
        layout(dp=8, tp=2, sequence_parallel=True, sharding="zero1"),
    )


def test_json_is_exactly_the_issue_schema() -> None:
    data = json.loads(json.dumps(_estimate().model_dump(mode="json")))
    assert list(data) == list(SCHEMA)
    for key, fields in SCHEMA.items():
        if fields is not None:
            assert set(data[key]) == fields, key
    assert data["layout"]["tp"] == 2 and isinstance(data["fits"], bool)
    assert isinstance(data["train"]["steps"], int)
    assert all(isinstance(v, float) for v in data["step"]["breakdown"].values())


def test_trusted_instances_equal_validated_ones() -> None:
    est = _estimate()
    again = Estimate.model_validate(est.model_dump())
    assert again == est
    assert again.model_dump_json() == est.model_dump_json()
    mem = trusted(MemoryGiB, est.memory_gib.model_dump())
    assert mem == MemoryGiB(**est.memory_gib.model_dump())
    assert mem.model_fields_set == set(MemoryGiB.model_fields)


def test_plan_round_trips_and_carries_what_the_trainer_reads() -> None:
    plan = planner.make_plan(
        planner.get_model("llama3-8b"),
        cluster(16),
        training(seq=2048),
        layout(dp=16, micro_batch=2),
    )
    data = json.loads(plan.model_dump_json())
    assert set(data) == {"model", "cluster", "training", "layout", "estimate"}
    assert data["model"]["num_layers"] == 32 and data["model"]["num_kv_heads"] == 8
    assert data["training"]["seq_len"] == 2048 and data["layout"]["micro_batch"] == 2
    assert Plan.model_validate(data) == plan


def test_plan_with_inline_accelerator_round_trips() -> None:
    acc = planner.get_gpu("L40S").model_copy(update={"name": "my-l40s", "aliases": ()})
    cl = planner.ClusterSpec(gpu=acc, num_gpus=8)
    plan = planner.make_plan(
        planner.get_model("llama2-7b"),
        cl,
        training(seq=2048, batch=64),
        layout(dp=8, sharding="zero3"),
    )
    again = Plan.model_validate_json(plan.model_dump_json())
    assert again.cluster.accelerator().name == "my-l40s"
    assert again.estimate == plan.estimate


def test_energy_cost_and_co2_accounting() -> None:
    est = planner.estimate(
        planner.get_model("llama3-8b"),
        cluster(16, pue=1.2, grid_kg_co2_per_kwh=0.5, price_usd_per_gpu_hour=2.0),
        training(),
        layout(dp=16),
    )
    t = est.train
    acc = planner.get_gpu("H100")
    assert t.gpu_hours == pytest.approx(16 * t.days * 24, rel=1e-12)
    assert t.energy_mwh_tdp == t.gpu_hours * acc.tdp_w / 1e6
    assert t.cost_usd == t.gpu_hours * 2.0
    assert t.co2_t == t.energy_mwh * 0.5
    gpu_only = t.gpu_hours * acc.tdp_w / 1e6 * 1.2
    assert t.energy_mwh > t.gpu_hours * acc.idle_w / 1e6  # at least idle power
    assert t.energy_mwh < gpu_only + 2 * t.days * 24 * acc.node_overhead_w * 1.2 / 1e6
