"""contract.plan_layout.check_layout: the plan's layout beside the trainer's
``layout_applied`` event, as ``scalectl jobs --json`` and the TUI show it."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from contract.event_kinds import EventKind
from contract.events import append_event, read_events
from contract.jobdir import JobDir
from contract.plan import PlanError, parse_plan
from contract.plan_layout import (
    check_layout,
    dp_at_world_size,
    last_layout_applied,
    planned_layout_fields,
)

PLAN: dict[str, Any] = {
    "model": {"num_attention_heads": 4, "num_kv_heads": 4},
    "training": {"seq_len": 32, "global_batch_seqs": 8, "precision": "fp32"},
    "layout": {"dp": 2, "tp": 2, "sharding": "zero3", "micro_batch": 2, "sequence_parallel": True},
}

# What runtime/train/measure.py writes for PLAN on 4 ranks.
APPLIED: dict[str, Any] = {
    "dp_replicate": 1,
    "dp_shard": 2,
    "tp": 2,
    "pp": 1,
    "interleave": 1,
    "cp": 1,
    "ep": 1,
    "sequence_parallel": True,
    "recompute": "none",
    "sharding": "zero3",
    "precision": "fp32",
    "world_size": 4,
    "global_batch_tokens": 256,
    "micro_batch": 2,
    "grad_accum": 2,
}


def _job(tmp_path: Path, applied: dict[str, Any] | None) -> JobDir:
    job = JobDir(tmp_path)
    job.root.mkdir(parents=True, exist_ok=True)
    job.plan_json.write_text(json.dumps(PLAN))
    append_event(job, EventKind.SUBMITTED, source="launcher")
    if applied is not None:
        append_event(job, EventKind.LAYOUT_APPLIED, source="trainer", rank=0, **applied)
    return job


def test_the_plan_in_the_events_fields() -> None:
    assert planned_layout_fields(parse_plan(PLAN)) == APPLIED
    hsdp = parse_plan({"layout": {"dp": 4, "sharding": "hsdp", "hsdp_shard_size": 2}})
    fields = planned_layout_fields(hsdp)
    assert (fields["dp_replicate"], fields["dp_shard"], fields["world_size"]) == (2, 2, 4)
    replicated = planned_layout_fields(parse_plan({"layout": {"dp": 3, "sharding": "none"}}))
    assert (replicated["dp_replicate"], replicated["dp_shard"]) == (3, 1)
    # What the plan leaves to the trainer is not claimed.
    bare = planned_layout_fields(parse_plan({"layout": {"dp": 2}}))
    assert "sharding" not in bare and "precision" not in bare and "grad_accum" not in bare
    assert planned_layout_fields(parse_plan({})) == {}


def test_a_job_that_ran_its_plan_differs_in_nothing(tmp_path: Path) -> None:
    job = _job(tmp_path, APPLIED)
    check = check_layout(parse_plan(PLAN), last_layout_applied(read_events(job)))
    assert check.applied == APPLIED and check.differs == ()
    assert check.json() == {"planned": APPLIED, "applied": APPLIED, "differs": [], "resized": []}


def test_a_different_grad_accum_is_flagged(tmp_path: Path) -> None:
    # The bug issue 16 found: accumulation derived from dp x tp, 4 ranks training twice
    # the planned tokens per step.
    ran = APPLIED | {"grad_accum": 4, "global_batch_tokens": 512}
    job = _job(tmp_path, ran)
    check = check_layout(parse_plan(PLAN), last_layout_applied(read_events(job)))
    assert check.differs == ("global_batch_tokens", "grad_accum")
    assert check.difference_text("grad_accum") == "grad_accum: plan 2, ran 4"


# What the trainer writes for PLAN after losing a node of a 1:2 range: dp 1, tp kept,
# accumulation doubled so tokens per step stay the plan's 256.
SHRUNK = APPLIED | {"dp_shard": 1, "world_size": 2, "grad_accum": 4}


def test_a_dp_resize_the_node_range_allowed_is_shown_not_flagged(tmp_path: Path) -> None:
    job = _job(tmp_path, SHRUNK | {"elastic_dp": True})
    check = check_layout(parse_plan(PLAN), last_layout_applied(read_events(job)))
    assert check.differs == ()
    assert check.resized == ("dp_shard", "world_size", "grad_accum")
    assert check.json()["resized"] == ["dp_shard", "world_size", "grad_accum"]
    assert check.difference_text("grad_accum") == "grad_accum: plan 2, ran 4"


def test_the_same_resize_without_a_node_range_is_flagged() -> None:
    check = check_layout(parse_plan(PLAN), SHRUNK)
    assert check.differs == ("dp_shard", "world_size", "grad_accum") and check.resized == ()


def test_an_elastic_job_that_lost_the_plans_tokens_per_step_is_flagged() -> None:
    # dp resized, but accumulation kept at the plan's 2: half the planned tokens per step.
    ran = SHRUNK | {"grad_accum": 2, "global_batch_tokens": 128, "elastic_dp": True}
    check = check_layout(parse_plan(PLAN), ran)
    assert check.differs == ("global_batch_tokens",)
    assert check.resized == ("dp_shard", "world_size")
    # A tp change is never a resize.
    check = check_layout(parse_plan(PLAN), SHRUNK | {"tp": 1, "elastic_dp": True})
    assert "tp" in check.differs


def test_dp_at_world_size_keeps_tp_and_the_global_batch() -> None:
    size = {"model_ranks": 2, "global_batch_seqs": 8, "micro_batch": 2}
    assert dp_at_world_size(4, **size) == (2, 2)
    assert dp_at_world_size(2, **size) == (1, 4)
    assert dp_at_world_size(8, **size) == (4, 1)
    assert dp_at_world_size(8, model_ranks=2, global_batch_seqs=None, micro_batch=2) == (4, None)
    for world, hsdp, message in [
        (3, None, "3 ranks do not hold whole model replicas of tp x pp x cp = 2 ranks"),
        (6, None, "the global batch of 8 sequences does not divide into dp 3 x micro_batch 2"),
        (16, None, "the global batch of 8 sequences does not divide into dp 8 x micro_batch 2"),
        (2, 2, "dp 1 is not a multiple of the hsdp shard group 2"),
    ]:
        try:
            dp_at_world_size(world, hsdp_shard_size=hsdp, **size)
        except PlanError as exc:
            assert str(exc) == message
        else:
            raise AssertionError(f"world size {world} was accepted")
    try:
        dp_at_world_size(2, ep=2, **size)
    except PlanError as exc:
        assert str(exc) == "dp 1 is not a multiple of ep 2, the ranks that split the experts"
    else:
        raise AssertionError("dp 1 was accepted at ep 2")
    assert dp_at_world_size(4, ep=2, **size) == (2, 2)


def test_the_newest_event_counts_and_none_before_the_trainer_starts(tmp_path: Path) -> None:
    job = _job(tmp_path, None)
    assert last_layout_applied(read_events(job)) is None
    check = check_layout(parse_plan(PLAN), None)
    assert check.applied is None and check.differs == ()
    append_event(job, EventKind.LAYOUT_APPLIED, source="trainer", **(APPLIED | {"tp": 1}))
    append_event(job, EventKind.LAYOUT_APPLIED, source="trainer", **APPLIED)
    assert last_layout_applied(read_events(job)) == APPLIED
    # A field the trainer did not write is not a difference.
    partial = {k: v for k, v in APPLIED.items() if k != "precision"}
    assert check_layout(parse_plan(PLAN), partial).differs == ()


def test_scalectl_jobs_json_lists_the_differing_fields(tmp_path: Path) -> None:
    from launcher.cli_table import plan_json
    from launcher.progress_view import ProgressSnapshot

    record: Any = SimpleNamespace(job_dir=tmp_path / "same")
    _job(tmp_path / "same", APPLIED)
    shown = plan_json(record, ProgressSnapshot())
    assert shown is not None and shown["layout_check"]["differs"] == []
    record = SimpleNamespace(job_dir=tmp_path / "other")
    _job(tmp_path / "other", APPLIED | {"grad_accum": 4})
    shown = plan_json(record, ProgressSnapshot())
    assert shown is not None
    assert shown["layout_check"]["differs"] == ["grad_accum"]
    assert shown["layout_check"]["planned"]["grad_accum"] == 2
    assert shown["layout_check"]["applied"]["grad_accum"] == 4
