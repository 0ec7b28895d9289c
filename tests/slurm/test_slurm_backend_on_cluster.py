"""The Slurm backend against the real local 2-node cluster (scripts/slurm-local.sh).

Each test submits through ``scalectl`` (in-process CLI), waits on the registry as
``scalectl jobs`` refreshes it (squeue/sacct), and checks the job directory, Slurm's
accounting, and that no process marked with the job's id is left on the host (both
"nodes" are this machine). The trained model is tiny, so each job takes seconds.

A requeued job waits Slurm's credential lifetime (``AuthInfo=cred_expire``, 120 s by
default) before it may start again; the preemption test releases it after 2 s with
``scontrol update StartTime=now`` once the requeue has happened.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polling
import pytest

from launcher import api
from launcher.states import JobState
from launcher.store import JobRecord, Store
from runtime import processes
from runtime.processes import job_processes

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

TINY = [
    "--layers", "2", "--hidden", "64", "--heads", "4", "--kv-heads", "2", "--seq-len", "64",
    "--micro-batch", "4", "--warmup-steps", "5", "--log-every", "5", "--eval-every", "0",
]  # fmt: skip
HOSTILE = "a b'c\"d$HOME`id`\\e\nf;g|h&i* ~"
HOSTILE_PATH = "we ird'd\"$x`y` ;&|"


def wait_for(
    predicate: Callable[[], Any],
    timeout_s: float = polling.CEILING_S,
    progress: Callable[[], Any] | None = None,
) -> Any:
    # sacct/squeue: not too often
    return polling.wait_for(predicate, timeout_s, poll_s=0.3, progress=progress)


def record_of(job_id: str) -> JobRecord:
    """The registry row after a refresh from Slurm (what ``scalectl jobs`` shows)."""
    with Store() as store:
        record = store.get(job_id)
        assert record is not None
        return api.refresh(store, record)


def wait_terminal(job_id: str) -> JobRecord:
    """The job's final record: waited for as long as the job trains or changes state (a
    loaded machine), a minute at most without that (``polling.job_activity``)."""
    job_dir = record_of(job_id).job_dir
    wait_for(
        lambda: record_of(job_id).state.is_terminal, progress=lambda: polling.job_activity(job_dir)
    )
    return record_of(job_id)


def launched_id(out: str) -> str:
    line = next(ln for ln in out.splitlines() if ln.startswith("launched job "))
    return line.split()[2]


def events(job_dir: Path, name: str | None = None) -> list[dict[str, Any]]:
    path = job_dir / "events.jsonl"
    rows = [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
    return [r for r in rows if name is None or r.get("event") == name]


def progress(job_dir: Path, rank: int = 0) -> list[dict[str, Any]]:
    path = job_dir / "progress" / f"{rank}.jsonl"
    if not path.exists():
        return []
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]


def sacct_states(handle: str) -> list[str]:
    """Every run of the job (``-D``: requeued runs too), oldest first."""
    out = subprocess.run(
        ["sacct", "-D", "-X", "-n", "-P", "-j", handle, "-o", "State"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def wait_sacct(handle: str, state: str) -> list[str]:
    return wait_for(lambda: (s := sacct_states(handle)) and s[-1] == state and s, 60)


def no_leftovers(job_id: str) -> None:
    """No process on this host (both nodes) still carries the job's marker."""
    with contextlib.suppress(AssertionError):  # the assertion below names them
        wait_for(lambda: not job_processes(job_id), 30)
    left = [(p.pid, p.cmdline()[:3]) for p in job_processes(job_id)]
    assert left == []


def kill_node(job_id: str, node: str) -> int:
    """SIGKILL every process of the job on ``node``: its torchrun and its ranks."""
    victims = processes.job_pids(job_id, node)
    for pid in victims:
        processes.kill(pid)
    return len(victims)


def trainer(cli, *flags: str, steps: int, extra: tuple[str, ...] = ()) -> tuple[str, Path]:
    result = cli(
        "launch", "--backend", "slurm", "--cpus-per-node", "1", *flags,
        "--module", "runtime.train", "--", *TINY, "--steps", str(steps), *extra,
    )  # fmt: skip
    assert result.code == 0, result.err
    job_id = launched_id(result.out)
    return job_id, record_of(job_id).job_dir


def test_two_node_elastic_job_trains_across_both_nodes_and_a_chained_run_follows(cli) -> None:
    job_id, job_dir = trainer(cli, "--nodes", "1:2", steps=20, extra=("--ckpt-every", "10"))
    first = record_of(job_id)
    assert first.backend == "slurm" and first.backend_job_id
    # A chained run: pending on its dependency until the first one completed.
    chained = cli(
        "launch", "--backend", "slurm", "--after", job_id, "--cpus-per-node", "1",
        "--", "python", "-c", "print('second run')",
    )  # fmt: skip
    assert chained.code == 0, chained.err
    second_id = launched_id(chained.out)
    pending = record_of(second_id)
    if not record_of(job_id).state.is_terminal:
        assert pending.state is JobState.PENDING and pending.reason == "Dependency"

    # `scalectl logs -f` follows every node's logs until Slurm says the job ended.
    followed = cli("logs", job_id, "-f")
    assert followed.code == 0, followed.err
    assert "[node1." in followed.out and "[node2." in followed.out
    assert followed.out.rstrip().endswith(f"job {job_id} COMPLETED")
    record = wait_terminal(job_id)
    assert record.state is JobState.COMPLETED, record.reason
    assert wait_sacct(first.backend_job_id, "COMPLETED")
    for rank in (0, 1):
        rows = progress(job_dir, rank)
        assert rows and {r["world_size"] for r in rows} == {2}
        assert rows[-1]["step"] == 20
    nodes = {path.name.split(".")[0] for path in (job_dir / "logs").glob("*.[01].log")}
    assert nodes == {"node1", "node2"}

    logs = cli("logs", job_id)
    assert logs.code == 0 and "[node1." in logs.out and "[node2." in logs.out
    listed = json.loads(cli("jobs", "--json").out)
    assert {j["id"]: j["state"] for j in listed}[job_id] == "COMPLETED"
    no_leftovers(job_id)

    second = wait_terminal(second_id)
    assert second.state is JobState.COMPLETED, second.reason
    rank_logs = "".join(p.read_text() for p in (second.job_dir / "logs").glob("*.0.log"))
    assert "second run" in rank_logs


def test_preemption_signal_checkpoints_requeues_and_resumes(cli) -> None:
    job_id, job_dir = trainer(
        cli, "--nodes", "2", "--max-restarts", "1", steps=60, extra=("--ckpt-every", "1000")
    )
    handle = record_of(job_id).backend_job_id
    assert handle
    wait_for(lambda: len(progress(job_dir)) >= 10)
    subprocess.run(["scancel", "--signal=USR2", handle], check=True)

    wait_for(lambda: events(job_dir, "requeued"), progress=lambda: polling.job_activity(job_dir))
    # Skip Slurm's credential-expiry hold of a requeued job (see the module docstring),
    # but start it no earlier than the second after the old credential was revoked:
    # slurmd refuses a credential issued in the same second ("Job credential revoked").
    wait_for(lambda: "BeginTime" in _squeue(handle), 60)
    time.sleep(2.0)
    subprocess.run(["scontrol", "update", f"JobId={handle}", "StartTime=now"], check=True)

    record = wait_terminal(job_id)
    assert record.state is JobState.COMPLETED, record.reason
    saved = [e for e in events(job_dir, "checkpoint_saved") if e.get("reason") == "signal"]
    assert len(saved) == 1
    step = saved[0]["step"]
    assert 10 <= step < 60
    resumed = events(job_dir, "resumed")
    assert resumed and resumed[0]["step"] == step
    # Training went on from that step: every step exactly once across both runs.
    assert [r["step"] for r in progress(job_dir)] == list(range(1, 61))
    assert events(job_dir, "requeued")[0]["count"] == 1
    assert wait_sacct(handle, "COMPLETED") == ["REQUEUED", "COMPLETED"]
    # Logs of both runs, appended: each node's log holds both of its runs, and the rank
    # logs (which node gets which rank is the rendezvous' choice) 2 runs x 2 ranks.
    logs = job_dir / "logs"
    for node in ("node1", "node2"):
        assert (logs / f"{node}.torchrun.log").read_text().count("slurm task of job") == 2
    rank_logs = "".join(p.read_text() for p in logs.glob("node*.[01].log"))
    assert rank_logs.count("==== scalectl") == 4
    assert "SIGUSR2 received" in rank_logs
    no_leftovers(job_id)


def _squeue(handle: str) -> str:
    return subprocess.run(
        ["squeue", "-h", "-j", handle, "-o", "%T %r"], capture_output=True, text=True
    ).stdout


def test_losing_a_node_continues_on_the_other_and_leaves_no_process(cli) -> None:
    job_id, job_dir = trainer(
        cli, "--nodes", "1:2", "--max-restarts", "2", steps=60, extra=("--ckpt-every", "10")
    )
    wait_for(lambda: len(progress(job_dir)) >= 20)
    assert kill_node(job_id, "node2") >= 2  # the node's torchrun and its rank (the agent
    # reports the loss: its own environment has no SCALECTL_NODE)

    record = wait_terminal(job_id)
    assert record.state is JobState.COMPLETED, record.reason
    assert "node2" in record.reason  # "finished without node2 (lost)"
    lost = events(job_dir, "node_lost")
    assert [e["node"] for e in lost] == ["node2"]
    sizes = [r["world_size"] for r in progress(job_dir)]
    assert sizes[0] == 2 and sizes[-1] == 1
    assert progress(job_dir)[-1]["step"] == 60
    assert wait_sacct(record.backend_job_id or "", "COMPLETED")
    no_leftovers(job_id)


def test_an_array_of_three_learning_rates(cli, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        textwrap.dedent(
            f"""
            name: lr-sweep
            backend: slurm
            cpus_per_node: 1
            entrypoint: {{module: runtime.train}}
            args: {json.dumps([*TINY, "--steps", "10", "--ckpt-every", "0"])}
            sweep:
              throttle: 3
              grid:
                --lr: ["1e-3", "3e-3", "1e-2"]
            """
        )
    )
    result = cli("launch", str(sweep))
    assert result.code == 0, result.err
    ids = [line.split()[0] for line in result.out.splitlines() if line.startswith("  2")]
    assert len(ids) == 3
    records = [wait_terminal(i) for i in ids]
    handles = [r.backend_job_id or "" for r in records]
    assert len({h.split("_")[0] for h in handles}) == 1  # one Slurm array
    assert sorted(h.split("_")[1] for h in handles) == ["0", "1", "2"]
    assert len({r.job_dir for r in records}) == 3
    for record, lr in zip(records, ["1e-3", "3e-3", "1e-2"], strict=True):
        assert record.state is JobState.COMPLETED, record.reason
        job = json.loads((record.job_dir / "job.json").read_text())
        assert job["spec"]["args"][-2:] == ["--lr", lr]
        header = (record.job_dir / "logs").glob("*.0.log").__next__().read_text()
        assert f"--lr {lr}" in header.splitlines()[0]
        assert progress(record.job_dir)[-1]["step"] == 10
        assert wait_sacct(record.backend_job_id or "", "COMPLETED")
        no_leftovers(record.id)


def test_hostile_strings_reach_the_ranks_intact(cli, tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / HOSTILE_PATH
    workdir = root / "work dir"
    workdir.mkdir(parents=True)
    (workdir / "probe.py").write_text(
        textwrap.dedent(
            """
            import json, os, sys
            out = os.path.join(os.environ["SCALECTL_JOB_DIR"], "probe.json")
            with open(out, "w") as f:
                json.dump({"argv": sys.argv[1:], "plain": os.environ["PLAIN"],
                           "secret": os.environ["SECRET"], "cwd": os.getcwd()}, f)
            """
        )
    )
    secret = "s3cr3t " + HOSTILE
    monkeypatch.setenv("SECRET", secret)
    result = cli(
        "launch", "--backend", "slurm", "--nodes", "1", "--jobs-root", str(root / "jobs"),
        "--workdir", str(workdir), "-e", f"PLAIN={HOSTILE}", "-e", "SECRET",
        "--", "python", "probe.py", HOSTILE, f"--x={HOSTILE}", "$(id)",
    )  # fmt: skip
    assert result.code == 0, result.err
    job_id = launched_id(result.out)
    record = wait_terminal(job_id)
    assert record.state is JobState.COMPLETED, record.reason
    probe = json.loads((record.job_dir / "probe.json").read_text())
    assert probe == {
        "argv": [HOSTILE, f"--x={HOSTILE}", "$(id)"],
        "plain": HOSTILE,
        "secret": secret,
        "cwd": str(workdir),
    }
    scripts = list((record.job_dir / "slurm").glob("*_submission.sh"))
    assert len(scripts) == 1
    for path in [*scripts, record.job_dir / "job.json", record.job_dir / "events.jsonl"]:
        assert "s3cr3t" not in path.read_text(), path
    no_leftovers(job_id)


def test_cancel_checkpoints_then_cancels_in_slurm(cli) -> None:
    job_id, job_dir = trainer(cli, "--nodes", "2", steps=100000, extra=("--ckpt-every", "1000"))
    wait_for(lambda: len(progress(job_dir)) >= 10)
    result = cli("cancel", job_id)
    assert result.code == 0, result.err
    assert f"cancelled job {job_id}" in result.out
    assert "cancelled after its ranks stopped on SIGUSR2" in result.out
    record = record_of(job_id)
    assert record.state is JobState.CANCELLED
    saved = [e for e in events(job_dir, "checkpoint_saved") if e.get("reason") == "signal"]
    assert saved, "the ranks checkpoint before the job is cancelled"
    assert not events(job_dir, "requeued")
    assert wait_sacct(record.backend_job_id or "", "CANCELLED")
    no_leftovers(job_id)


def test_requeue_on_demand_checkpoints_and_puts_the_job_back_in_the_queue(cli) -> None:
    job_id, job_dir = trainer(cli, "--nodes", "2", steps=100000, extra=("--ckpt-every", "1000"))
    handle = record_of(job_id).backend_job_id
    assert handle
    wait_for(lambda: len(progress(job_dir)) >= 10)
    result = cli("requeue", job_id)
    assert result.code == 0, result.err
    assert "SIGUSR2 sent" in result.out and "requeue 1 of 3" in result.out
    wait_for(lambda: events(job_dir, "requeued"), progress=lambda: polling.job_activity(job_dir))
    saved = [e for e in events(job_dir, "checkpoint_saved") if e.get("reason") == "signal"]
    assert saved, "the ranks checkpoint before the job goes back to the queue"
    assert events(job_dir, "requeue_requested")[0]["by"]
    # Back in the queue, held until the old credential expires (see the module docstring).
    wait_for(lambda: "BeginTime" in _squeue(handle), 60)
    refused = cli("requeue", job_id)
    assert refused.code == 2 and "only a running job can be requeued" in refused.err
    assert cli("cancel", job_id).code == 0
    assert wait_sacct(handle, "CANCELLED")[0] == "REQUEUED"
    no_leftovers(job_id)


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # A stray SCALECTL_* from the calling shell must not reach sbatch's environment.
    for name in list(os.environ):
        if name.startswith("SCALECTL_") and name != "SCALECTL_HOME":
            monkeypatch.delenv(name, raising=False)


def test_a_job_sbatch_refuses_is_one_line_and_failed(cli, tmp_path: Path) -> None:
    spec = tmp_path / "job.yaml"
    spec.write_text(
        "name: bad\nbackend: slurm\nentrypoint: {command: ['true']}\n"
        "slurm: {partition: no-such-partition}\n"
    )
    result = cli("launch", str(spec))
    assert result.code == 2
    assert result.err == (
        "error: sbatch refused the job: invalid partition specified: no-such-partition\n"
    )
    failed = [r for r in json.loads(cli("jobs", "--json").out) if r["state"] == "FAILED"]
    assert len(failed) == 1 and "invalid partition" in failed[0]["reason"]
