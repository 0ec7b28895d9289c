"""The local backend end to end: real supervisor, torchrun and rank processes.

Tiny user scripts stand in for training (they start in milliseconds); the reference
trainer runs in test_local_trainer.py. Every test here is a few seconds of torchrun.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import psutil
import pytest
from launcher_helpers import events, job_id_from, wait_for

from launcher.backends.local import host_name
from launcher.commands import omp_threads
from launcher.spec import spec_from_mapping
from launcher.states import JobState
from launcher.store import Store
from runtime.processes import job_processes

pytestmark = pytest.mark.slow

HOST = host_name()

REPORTER = """
    import os, sys, time
    from pathlib import Path
    from runtime import progress
    rank = int(os.environ["RANK"])
    print(f"rank {rank} of {os.environ['WORLD_SIZE']} env A={os.environ.get('A')} "
          f"TOKEN={os.environ.get('TOKEN')} OMP={os.environ['OMP_NUM_THREADS']} "
          f"node={os.environ['SCALECTL_NODE']}", flush=True)
    job_dir = Path(os.environ["SCALECTL_JOB_DIR"])
    for step in range(1, 6):
        progress.report(step=step, loss=10.0 / step, tokens=64 * step, step_time_s=0.01)
        if rank == 0:
            (job_dir / "checkpoints" / f"step_{step}").mkdir()
        time.sleep(0.02)
    print(f"rank {rank} done", flush=True)
"""


def record_of(job_id: str):
    with Store() as store:
        record = store.get(job_id)
    assert record is not None
    return record


def test_launch_follow_jobs_logs(cli, script) -> None:
    path = script("reporter.py", REPORTER)
    result = cli(
        "launch", "--name", "rep", "--nproc-per-node", "2", "--env", "A=1",
        "--keep-last", "2", "-f", "--", "python", str(path),
    )  # fmt: skip
    assert result.code == 0, result.out + result.err
    job_id = job_id_from(result.out)
    assert f"[{HOST}.0] rank 0 of 2 env A=1" in result.out
    assert f"[{HOST}.1] rank 1 done" in result.out
    assert result.out.rstrip().endswith(f"job {job_id} COMPLETED")

    record = record_of(job_id)
    assert record.state is JobState.COMPLETED and record.exit_code == 0
    assert record.started_ts is not None and record.ended_ts is not None
    job_dir = record.job_dir
    expected_omp = omp_threads(spec_from_mapping(record.spec), len(os.sched_getaffinity(0)))
    log0 = (job_dir / "logs" / f"{HOST}.0.log").read_text()
    assert f"OMP={expected_omp}" in log0 and f"node={HOST}" in log0
    assert log0.startswith("==== scalectl ") and "rank=0" in log0 and "attempt=0" in log0
    job_json = json.loads((job_dir / "job.json").read_text())
    assert job_json["schema_version"] == 1 and job_json["job_id"] == job_id
    assert job_json["spec"]["env"] == {"A": "1"}
    names = [e["event"] for e in events(job_dir)]
    assert names[:2] == ["submitted", "started"] and names[-1] == "finished"
    # the supervisor keeps the newest two checkpoints
    assert sorted(p.name for p in (job_dir / "checkpoints").iterdir()) == ["step_4", "step_5"]

    listed = cli("jobs", "--json")
    assert listed.code == 0
    (row,) = json.loads(listed.out)
    assert row["id"] == job_id and row["state"] == "COMPLETED"
    assert row["progress"]["step"] == 5 and row["progress"]["loss"] == 2.0
    assert row["progress"]["ranks_reporting"] == 2
    table = cli("jobs")
    assert job_id in table.out and "COMPLETED" in table.out

    only_rank1 = cli("logs", job_id[-4:], "--rank", "1")
    assert only_rank1.code == 0
    assert "rank 1 done" in only_rank1.out and "rank 0" not in only_rank1.out
    assert not only_rank1.out.startswith("[")  # one file: no prefix
    last = cli("logs", job_id, "--rank", "0", "-n", "1")
    assert last.out.strip() == "rank 0 done"
    assert "job ended: COMPLETED" in cli("logs", job_id, "--rank", "supervisor").out


def test_yaml_spec_with_env_reference_and_plan(cli, script, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TOKEN", "s3cr3t-value")
    path = script("reporter.py", REPORTER)
    spec = tmp_path / "job.yaml"
    spec.write_text(
        "name: yaml-job\n"
        f"entrypoint: {{script: {path}}}\n"
        "env: {TOKEN: {from_env: TOKEN}, A: 7}\n"
        "plan: {layout: {dp: 1}, estimate: {step: {time_s: 0.01}}}\n"
    )
    result = cli("launch", str(spec), "-f")
    assert result.code == 0, result.out + result.err
    record = record_of(job_id_from(result.out))
    job_dir = record.job_dir
    assert record.name == "yaml-job"
    assert json.loads((job_dir / "plan.json").read_text())["layout"] == {"dp": 1}
    log0 = (job_dir / "logs" / f"{HOST}.0.log").read_text()
    assert "TOKEN=s3cr3t-value" in log0 and "A=7" in log0
    for name in ("job.json", "events.jsonl", "plan.json"):
        assert "s3cr3t" not in (job_dir / name).read_text()
    assert "s3cr3t" not in record.spec_json


def test_failure_names_the_rank_and_its_error(cli, script) -> None:
    path = script(
        "fail.py",
        """
        import os, sys
        if os.environ["RANK"] == "1":
            raise ValueError("boom on rank 1")
        """,
    )
    result = cli("launch", "--nproc-per-node", "2", "-f", "--", "python", str(path))
    assert result.code == 1
    record = record_of(job_id_from(result.out))
    assert record.state is JobState.FAILED and record.exit_code == 1
    assert record.reason == "rank 1 exited with code 1: ValueError: boom on rank 1"
    assert events(record.job_dir, "finished")[-1]["state"] == "FAILED"


def test_restart_budget_and_logs_appended_across_restarts(cli, script) -> None:
    path = script(
        "flaky.py",
        """
        import os, sys
        attempt = int(os.environ["TORCHELASTIC_RESTART_COUNT"])
        print("attempt", attempt, flush=True)
        sys.exit(3 if attempt == 0 else 0)
        """,
    )
    result = cli("launch", "--max-restarts", "1", "-f", "--", "python", str(path))
    assert result.code == 0, result.out + result.err
    record = record_of(job_id_from(result.out))
    assert record.state is JobState.COMPLETED
    log = (record.job_dir / "logs" / f"{HOST}.0.log").read_text()
    assert log.count("==== scalectl") == 2 and "attempt 0" in log and "attempt 1" in log
    assert [e["attempt"] for e in events(record.job_dir, "restarted")] == [1]


STUBBORN = """
    import os, signal, subprocess, sys, time
    from pathlib import Path
    rank = os.environ["RANK"]
    if rank == "0":
        # a daemon in a session of its own: no process group signal reaches it
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"],
                         start_new_session=True)
    if rank == "1":
        signal.signal(signal.SIGTERM, lambda s, f: print("ignoring SIGTERM", flush=True))
    print("ready", flush=True)
    while True:
        time.sleep(0.2)
"""


def _ready(job_dir: Path, ranks: int) -> bool:
    logs = [job_dir / "logs" / f"{HOST}.{r}.log" for r in range(ranks)]
    return all(p.exists() and "ready" in p.read_text() for p in logs)


def test_cancel_stops_every_process_and_leaves_no_orphan(cli, script) -> None:
    path = script("stubborn.py", STUBBORN)
    result = cli("launch", "--nproc-per-node", "2", "--", "python", str(path))
    assert result.code == 0, result.err
    job_id = job_id_from(result.out)
    record = record_of(job_id)
    wait_for(lambda: _ready(record.job_dir, 2))
    procs = wait_for(lambda: (found := job_processes(job_id)) and len(found) >= 6 and found)
    # supervisor, node agent, torchrun, two ranks, and the daemon rank 0 started
    assert len(procs) == 6, [p.cmdline() for p in procs]
    assert wait_for(lambda: record_of(job_id).state is JobState.RUNNING)

    start = time.monotonic()
    cancelled = cli("cancel", job_id, "--grace", "1")
    assert cancelled.code == 0, cancelled.err
    assert f"cancelled job {job_id}" in cancelled.out
    assert time.monotonic() - start < 15
    assert job_processes(job_id) == []
    assert not [p for p in procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]

    final = record_of(job_id)
    assert (final.state, final.reason) == (JobState.CANCELLED, "cancelled by user")
    assert "ignoring SIGTERM" in (final.job_dir / "logs" / f"{HOST}.1.log").read_text()
    assert events(final.job_dir, "cancelled")[0]["grace_s"] == 1.0
    wait_for(lambda: events(final.job_dir, "finished"), timeout_s=10)
    again = cli("cancel", job_id)
    assert again.code == 0 and "already ended (CANCELLED)" in again.out


def test_time_limit_stops_gracefully_with_timeout(cli, script) -> None:
    path = script(
        "slow.py",
        """
        import signal, sys, time
        def stop(signum, frame):
            print("checkpointing before exit", flush=True)
            sys.exit(128 + signum)
        signal.signal(signal.SIGTERM, stop)
        print("ready", flush=True)
        time.sleep(120)
        """,
    )
    result = cli("launch", "--time-limit", "15s", "-f", "--", "python", str(path))
    assert result.code == 1
    record = record_of(job_id_from(result.out))
    assert record.state is JobState.TIMEOUT and "time limit of 15 s" in record.reason
    assert "checkpointing before exit" in (record.job_dir / "logs" / f"{HOST}.0.log").read_text()
    assert job_processes(record.id) == []


def test_two_local_node_agents_form_one_world(cli, script) -> None:
    path = script(
        "world.py",
        """
        import os
        print("world", os.environ["WORLD_SIZE"], "node", os.environ["SCALECTL_NODE"],
              "group", os.environ["GROUP_RANK"], flush=True)
        """,
    )
    result = cli("launch", "--nodes", "2", "--", "python", str(path))
    assert result.code == 0, result.err
    job_id = job_id_from(result.out)
    wait_for(lambda: record_of(job_id).state.is_terminal)
    record = record_of(job_id)
    assert record.state is JobState.COMPLETED, record.reason
    logs = sorted(p.name for p in (record.job_dir / "logs").glob("*.log"))
    rank_logs = [name for name in logs if name.rsplit(".", 2)[-2].isdigit()]
    assert len(rank_logs) == 2 and {n.split(".")[0] for n in rank_logs} == {
        f"{HOST}-0",
        f"{HOST}-1",
    }
    for name in rank_logs:
        assert "world 2" in (record.job_dir / "logs" / name).read_text()


def test_follow_logs_of_a_running_job_until_it_ends(cli, script) -> None:
    path = script(
        "ticker.py",
        """
        import os, time
        for i in range(6):
            print("tick", i, "rank", os.environ["RANK"], flush=True)
            time.sleep(0.3)
        """,
    )
    result = cli("launch", "--nproc-per-node", "2", "--", "python", str(path))
    job_id = job_id_from(result.out)
    followed = cli("logs", job_id, "-f", "--rank", "1")
    assert followed.code == 0
    ticks = [line for line in followed.out.splitlines() if line.startswith("tick")]
    assert ticks == [f"tick {i} rank 1" for i in range(6)]
    assert followed.out.rstrip().endswith("COMPLETED")


def test_a_killed_supervisor_is_noticed_and_cancel_still_cleans_up(cli, script) -> None:
    path = script("stubborn.py", STUBBORN)
    result = cli("launch", "--nproc-per-node", "2", "--", "python", str(path))
    job_id = job_id_from(result.out)
    record = record_of(job_id)
    wait_for(lambda: _ready(record.job_dir, 2))
    supervisor = psutil.Process(int(record.backend_job_id or 0))
    supervisor.send_signal(signal.SIGKILL)
    supervisor.wait(10)

    listed = json.loads(cli("jobs", "--json").out)[0]
    assert listed["state"] == "UNKNOWN" and "supervisor" in listed["reason"]
    assert "scalectl cancel" in listed["reason"]
    assert cli("cancel", job_id, "--grace", "1").code == 0
    assert job_processes(job_id) == []
    assert record_of(job_id).state is JobState.CANCELLED


def test_failure_reason_reads_the_root_cause_not_the_ranks_stopped_after_it() -> None:
    from launcher.backends.local_supervision import failure_reason

    # torchrun's ChildFailedError report when rank 0 was still running as rank 1 failed:
    # rank 0, stopped by torchrun, is listed first.
    report = """
    ============================================================
    fail.py FAILED
    ------------------------------------------------------------
    Failures:
    [1]:
      time      : 2026-11-26_02:10:11
      host      : vm
      rank      : 0 (local_rank: 0)
      exitcode  : -15 (pid: 4242)
      error_file: <N/A>
      traceback : Signal 15 (SIGTERM) received by PID 4242
    ------------------------------------------------------------
    Root Cause (first observed failure):
    [0]:
      time      : 2026-11-26_02:10:10
      host      : vm
      rank      : 1 (local_rank: 1)
      exitcode  : 1 (pid: 4243)
      error_file: <N/A>
    ============================================================
    """
    tails = {0: "", 1: "Traceback ...\nValueError: boom on rank 1\n"}
    assert (
        failure_reason(report, tails, 1) == "rank 1 exited with code 1: ValueError: boom on rank 1"
    )
    only_failures = report[: report.index("Root Cause")]
    assert failure_reason(only_failures, tails, 1) == "rank 0 killed by SIGTERM"
    assert failure_reason("no report", tails, 3) == "torchrun exited with code 3"
