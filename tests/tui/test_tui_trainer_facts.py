"""The trainer's newer figures in the TUI's data layer and in ``scalectl jobs --json``:
pipeline bubble and parameter/gradient/optimizer state against the plan, MoE routing, and
a fine-tune's mode, adapters, trained parameters and export; a dense pre-training job
keeps exactly the rows it had."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import trainer_fixtures as tf
import tui_fixtures as fx

from contract.event_kinds import EventKind
from contract.events import parse_event
from contract.jobdir import JobDir
from contract.plan import parse_plan
from contract.run_facts import TrainerEvents, against_plan, finetune_run, planned_state_mib
from launcher.progress_view import (
    ProgressSnapshot,
    expert_loads,
    load_imbalance,
    read_progress,
)
from launcher.states import JobState
from launcher.store import Store
from tui.data.compare import Measured, compare, finetune_text, mebibytes, moe_text, plan_facts
from tui.data.jobview import JobView

DENSE_METRICS = ["step time", "tokens/s", "MFU", "memory (rank RSS)", "GPU energy/step"]


@pytest.fixture(autouse=True)
def _utc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    store = fx.build_home(tmp_path, telemetry_samples=1, progress_steps=3)
    tf.add_trainer_jobs(store, tmp_path / "jobs")
    store.close()
    return tmp_path


def view(home: Path, job_id: str) -> JobView:
    with Store(home / "registry.sqlite3") as store:
        record = store.get(job_id)
    assert record is not None
    return JobView(record, home=home)


def test_plan_facts_carry_the_planned_bubble_and_state_memory() -> None:
    document = tf.moe_plan()
    facts = plan_facts(document)
    memory = document["estimate"]["memory_gib"]
    assert facts.pipelined
    assert facts.bubble_fraction == document["estimate"]["step"]["bubble_fraction"] > 0
    want = (memory["params"] + memory["grads"] + memory["optimizer"]) * 1024
    assert facts.state_mib == pytest.approx(want)
    dense = plan_facts(fx.plan_document(16))
    assert not dense.pipelined and dense.bubble_fraction is None
    # A hand-written plan with a total only has no planned state.
    partial = parse_plan({"estimate": {"memory_gib": {"total": 20.0, "params": 2.0}}})
    assert planned_state_mib(partial) is None


def test_a_dense_job_keeps_its_rows_and_new_rows_need_the_data() -> None:
    facts = plan_facts(fx.plan_document(16))
    before = Measured(step_time_s=13.0, tokens_per_s=1e5, world_size=16, rank_rss_mib=2048.0)
    assert [row.metric for row in compare(facts, before)] == DENSE_METRICS
    # A rank that reports its state memory adds that row, with the ratio to the plan.
    state = (facts.state_mib or 0) * 1.08
    rows = {r.metric: r for r in compare(facts, Measured(state_mib=state))}
    assert rows["params+grads+optim"].ratio == "×1.08"
    assert rows["params+grads+optim"].style == "green"
    assert "pipeline bubble" not in rows


def test_bubble_row_planned_against_measured_with_the_ratio() -> None:
    facts = plan_facts(tf.moe_plan())
    planned = facts.bubble_fraction or 0
    rows = {r.metric: r for r in compare(facts, Measured(bubble_fraction=planned * 1.5))}
    bubble = rows["pipeline bubble"]
    assert bubble.predicted == f"{planned * 100:.1f}%"
    assert bubble.ratio == "×1.50" and bubble.style == "red"
    # Planned before the first step: the row is there, the measurement missing.
    rows = {r.metric: r for r in compare(facts, Measured())}
    assert rows["pipeline bubble"].measured == "–" and rows["pipeline bubble"].style == "dim"


def test_job_view_of_an_moe_pipeline_job(home: Path) -> None:
    snapshot = view(home, tf.MOE_ID).poll()
    rows = {r.metric: r for r in snapshot.compare}
    assert rows["pipeline bubble"].measured == "2.0%"  # median of 2.1 % and 1.9 %
    # The largest rank's state (rank 15, the last stage) against the plan's.
    state = rows["params+grads+optim"]
    assert state.measured == mebibytes(tf.MOE_STATE_MIB + 15_000.0) == "65.43 GiB"
    assert snapshot.progress.state_mib == tf.MOE_STATE_MIB + 15_000.0
    line = moe_text(snapshot.progress)
    share = tf.DROPPED / (sum(tf.EXPERT_LOADS) + tf.DROPPED)
    imbalance = max(tf.EXPERT_LOADS) / (sum(tf.EXPERT_LOADS) / len(tf.EXPERT_LOADS))
    assert line == (
        f"MoE step 40: load max/mean ×{imbalance:.2f}, dropped 88 ({share * 100:.1f}%), "
        "aux loss 0.0123"
    )
    assert snapshot.finetune is None and snapshot.finetune_line is None


def test_job_view_of_a_lora_finetune_follows_its_events(home: Path) -> None:
    job = view(home, tf.LORA_ID)
    snapshot = job.poll()
    run = snapshot.finetune
    assert run is not None
    assert (run.mode, run.lora_rank, run.lora_targets, run.base_format) == (
        "lora",
        16,
        "attn",
        None,
    )
    assert (run.params, run.trained_params) == (tf.LORA_PARAMS, tf.LORA_TRAINED)
    assert snapshot.finetune_line == (
        "fine-tune lora r16 attn: 13.6M of 8.03G params trained; "
        f"export → $SCALECTL_HOME/jobs/{tf.LORA_ID}/export"
    )
    state = {r.metric: r for r in snapshot.compare}["params+grads+optim"]
    assert state.measured == "1.93 GiB" and state.ratio.startswith("×")
    assert "pipeline bubble" not in {r.metric for r in snapshot.compare}


def test_the_export_appears_when_training_completes(tmp_path: Path) -> None:
    store = Store(tmp_path / "registry.sqlite3")
    job = fx.add_job(
        store,
        tmp_path / "jobs",
        fx.Job("20250615-120000-abcd", "ft", "local", JobState.RUNNING, "", (1, 1), 2, 0),
    )
    record = store.get("20250615-120000-abcd")
    store.close()
    assert record is not None
    watch = JobView(record, home=tmp_path)
    assert watch.poll().finetune is None  # no plan, no trainer event yet
    tf.start_trainer(job, fx.NOW - 60)
    run = watch.poll().finetune  # a fine-tune launched without a plan: the event says
    assert run is not None and (run.mode, run.lora_rank, run.lora_targets) == ("lora", 16, "attn")
    assert run.export is None
    tf.complete(job, fx.NOW)
    snapshot = watch.poll()
    run = snapshot.finetune
    assert run is not None and run.export == str(job.root / "export")
    # The timeline leaves the long path to the fine-tune line.
    assert snapshot.timeline[-1].event == EventKind.TRAINING_COMPLETE
    assert snapshot.timeline[-1].detail == "step=30"


def test_trainer_events_fold_keeps_the_newest_and_ignores_the_launchers() -> None:
    events = [
        parse_event({"event": EventKind.STARTED, "source": "launcher", "world_size": 8}),
        parse_event({"event": EventKind.STARTED, "source": "trainer", "params": 10}),
        parse_event({"event": EventKind.TRAINING_COMPLETE, "source": "trainer", "step": 3}),
    ]
    seen = TrainerEvents().fold(events)
    assert seen.started is not None and seen.started["params"] == 10
    assert seen.export is None
    assert seen.fold([]) is seen
    # Pre-training: neither plan nor event names a fine-tune.
    assert finetune_run(None, seen) is None
    full = parse_plan({"training": {"finetune": "full", "lora_rank": 8}})
    run = finetune_run(full, seen)
    assert run is not None and run.lora_rank is None and run.params == 10
    assert finetune_text(run) == "fine-tune full"
    qlora = parse_plan({"training": {"finetune": "qlora", "base_format": "nf4"}})
    assert finetune_text(finetune_run(qlora, TrainerEvents()) or run) == (
        "fine-tune qlora (base nf4)"
    )
    # What the trainer says it ran wins over the plan.
    planned = parse_plan({"training": {"finetune": "lora", "lora_rank": 16, "lora_targets": "all"}})
    record = {"event": EventKind.STARTED, "source": "trainer", "finetune": "lora", "lora_rank": 8}
    ran = finetune_run(planned, TrainerEvents().fold([parse_event(record)]))
    assert ran is not None and (ran.lora_rank, ran.lora_targets) == (8, "all")


def test_expert_load_arithmetic_and_bad_routing_records() -> None:
    assert load_imbalance((10, 10, 10, 10)) == 1.0
    assert load_imbalance((40, 0, 0, 0)) == 4.0
    assert load_imbalance((0, 0)) is None and load_imbalance(None) is None
    assert expert_loads([3, 4]) == (3, 4)
    for bad in ([], [1, "x"], [1, -2], "12", None, [1, float("nan")]):
        assert expert_loads(bad) is None
    dense = ProgressSnapshot(step=4)
    assert moe_text(dense) is None
    no_loads = ProgressSnapshot(step=4, moe_aux_loss=0.5, moe_dropped_tokens=3)
    assert moe_text(no_loads) == "MoE step 4: dropped 3, aux loss 0.5"
    assert mebibytes(512.0) == "512 MiB" and mebibytes(2048.0) == "2.00 GiB"


def test_scalectl_jobs_and_the_tui_agree_on_the_new_figures(home: Path) -> None:
    moe = JobDir(home / "jobs" / tf.MOE_ID)
    snap = read_progress(moe)
    assert snap == view(home, tf.MOE_ID).poll().progress
    assert snap.moe_tokens_per_expert == tf.EXPERT_LOADS
    plan = parse_plan(tf.moe_plan())
    figures = against_plan(plan, None, None, None, snap.bubble_fraction, snap.state_mib)
    assert figures["state_mib_measured"] == tf.MOE_STATE_MIB + 15_000.0
    assert figures["state_ratio"] == pytest.approx(
        (tf.MOE_STATE_MIB + 15_000.0) / (planned_state_mib(plan) or 1)
    )
    assert figures["bubble_fraction_measured"] == snap.bubble_fraction == pytest.approx(0.02)
    assert "state_mib" not in against_plan(plan, None, None, None, 0.02, None)


def test_jobs_json_carries_the_new_figures(
    home: Path, monkeypatch: pytest.MonkeyPatch, cli: Any
) -> None:
    monkeypatch.setenv("SCALECTL_HOME", str(home))
    result = cli("jobs", "--json")
    assert result.code == 0, result.err
    rows = {row["id"]: row for row in json.loads(result.out)}
    moe, lora, dense = rows[tf.MOE_ID], rows[tf.LORA_ID], rows[fx.MAIN_ID]
    assert moe["progress"]["moe_dropped_tokens"] == tf.DROPPED
    assert moe["progress"]["moe_load_imbalance"] == pytest.approx(1500 / 1097.5)
    assert moe["plan"]["bubble_fraction_measured"] == pytest.approx(0.02)
    assert moe["plan"]["state_mib_measured"] == tf.MOE_STATE_MIB + 15_000.0
    assert moe["plan"]["state_ratio"] > 0 and "finetune" not in moe["plan"]
    assert lora["plan"]["finetune"] == {
        "finetune": "lora",
        "lora_rank": 16,
        "lora_targets": "attn",
        "base_format": None,
        "params": tf.LORA_PARAMS,
        "trained_params": tf.LORA_TRAINED,
        "export": str(home / "jobs" / tf.LORA_ID / "export"),
    }
    # A dense pre-training job without the trainer's newer fields: nothing added.
    assert "state_mib" not in dense["plan"] and "finetune" not in dense["plan"]
    assert dense["progress"]["moe_load_imbalance"] is None
