"""The reference trainer on the local backend: launch from YAML, cancel mid-run (the
trainer checkpoints on the SIGTERM the supervisor passes down), relaunch into the same
job directory with another world size, and see it resume where it stopped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from launcher_helpers import events, job_id_from, wait_for

from contract.jobdir import JobDir
from launcher.progress_view import read_progress
from launcher.states import JobState
from launcher.store import Store
from runtime.processes import job_processes

pytestmark = pytest.mark.slow

TINY = [
    *("--layers", "1", "--hidden", "32", "--heads", "2", "--kv-heads", "1"),
    *("--seq-len", "32", "--micro-batch", "2", "--eval-every", "0", "--log-every", "1"),
]


def record_of(job_id: str):
    with Store() as store:
        record = store.get(job_id)
    assert record is not None
    return record


def test_trainer_cancel_checkpoints_and_relaunch_resumes(cli, tmp_path: Path) -> None:
    job_dir = tmp_path / "run"
    spec = tmp_path / "job.yaml"
    spec.write_text(
        "name: tiny-llm\n"
        "entrypoint: {module: runtime.train}\n"
        f"args: {json.dumps(['--steps', '100000', *TINY])}\n"
        "procs_per_node: 2\n"
        f"job_dir: {job_dir}\n"
        "checkpoint: {every_steps: 100000, keep_last: 2}\n"
        "local: {stop_grace_s: 60}\n"
    )
    first = cli("launch", str(spec))
    assert first.code == 0, first.err
    job_id = job_id_from(first.out)
    # the job directory is taken while the job runs
    busy = cli("launch", str(spec))
    assert busy.code == 2 and f"in use by job {job_id}" in busy.err

    wait_for(lambda: (read_progress(job_dir).step or 0) >= 3)
    cancelled = cli("cancel", job_id)
    assert cancelled.code == 0, cancelled.err
    assert "killed" not in cancelled.out  # the trainer stopped on SIGTERM, in time
    assert job_processes(job_id) == []
    assert record_of(job_id).state is JobState.CANCELLED
    saved = JobDir(job_dir).latest_checkpoint()
    assert saved is not None, "the trainer did not checkpoint on SIGTERM"
    stop_step = saved[0]
    assert stop_step >= 3
    assert [e["exit_code"] for e in events(job_dir, "preempted")] == [143]

    # Relaunch into the same directory with one process: it resumes from the checkpoint.
    second = cli(
        "launch", str(spec), "--nproc-per-node", "1", "-f", "--",
        "--steps", str(stop_step + 2),
    )  # fmt: skip
    assert second.code == 0, second.out + second.err
    record = record_of(job_id_from(second.out))
    assert record.state is JobState.COMPLETED and record.job_dir == job_dir
    (resumed,) = events(job_dir, "resumed")
    assert resumed["step"] == stop_step
    assert (resumed["world_size_then"], resumed["world_size"]) == (2, 1)
    snapshot = read_progress(job_dir)
    assert snapshot.step == stop_step + 2 and snapshot.loss is not None
    steps_rank0 = [
        json.loads(line)["step"]
        for line in (job_dir / "progress" / "0.jsonl").read_text().splitlines()
    ]
    assert steps_rank0[-2:] == [stop_step + 1, stop_step + 2]
    log = (job_dir / "logs").glob("*.0.log")
    assert any("resumed from" in p.read_text() for p in log)
