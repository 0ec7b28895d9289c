"""The node agent under the Slurm backend, on the real local 2-node cluster: one node of
an elastic job is lost at a chosen step (``kill@...,target=node`` kills that node's
torchrun and rank; its agent, ``srun``'s task, has no ``SCALECTL_NODE`` in its own
environment, survives and reports ``node_lost``); the surviving node's agent records the
shrink with cause ``node_lost`` and training finishes at world size 1.

The lost node is node2: node1's torchrun hosts the c10d rendezvous store (the Slurm
backend's choice), and a job cannot outlive its store's host (the survivors' torchrun
waits out the rendezvous timeout, then fails; the Slurm end helper requeues the job)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import psutil
import pytest
from agent_harness import assert_loss_continuous, events, summary
from polling import job_activity, wait_for

from launcher import api
from launcher.store import JobRecord, Store
from runtime.processes import job_processes, stop_processes

pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.timeout(400)]

TINY = [
    *("--layers", "1", "--hidden", "32", "--heads", "2", "--kv-heads", "1"),
    *("--seq-len", "32", "--micro-batch", "2", "--eval-every", "0", "--log-every", "5"),
]
STEPS = 80


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("SCALECTL_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SCALECTL_JOB_ID", raising=False)
    monkeypatch.delenv("SCALECTL_FAULTS", raising=False)
    yield tmp_path
    with Store() as store:
        for record in store.list_jobs():
            if record.backend_job_id:
                subprocess.run(["scancel", record.backend_job_id], check=False)
            stop_processes(job_processes(record.id), 1.0)


def assert_one_supervisor_per_node(job_dir: Path) -> None:
    """On each node: slurmstepd -> the agent (srun's task) -> torchrun -> the ranks."""
    started = wait_for(lambda: (e := events(job_dir, "slurm_node_started")) and len(e) == 2 and e)
    for event in started:
        agent = psutil.Process(event["pid"])
        parent = agent.parent()
        assert parent is not None and parent.name() == "slurmstepd", parent
        assert agent.cmdline()[1:5] == ["-u", "-m", "scalectl", "agent"], agent.cmdline()

        def torchrun_with_ranks(agent: psutil.Process = agent) -> bool:
            try:
                runs = [c for c in agent.children() if "torch.distributed.run" in c.cmdline()]
                return len(runs) == 1 and bool(runs[0].children())
            except psutil.NoSuchProcess:  # a child that ended between the two calls
                return False

        wait_for(torchrun_with_ranks)


def test_node_lost_under_slurm_the_other_agent_goes_on(home: Path) -> None:
    job_dir = home / "run"
    launched = subprocess.run(
        [sys.executable, "-m", "scalectl", "launch", "--backend", "slurm",
         "--cpus-per-node", "1", "--nodes", "1:2", "--max-restarts", "2",
         "--job-dir", str(job_dir), "--env", "SCALECTL_FAULTS=kill@step=30,node=node2,target=node",
         "--module", "runtime.train", "--", *TINY, "--steps", str(STEPS), "--ckpt-every", "10"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert launched.returncode == 0, launched.stderr
    job_id = next(
        line.split()[2] for line in launched.stdout.splitlines() if line.startswith("launched job")
    )
    assert_one_supervisor_per_node(job_dir)

    def refreshed() -> JobRecord:
        with Store() as store:
            record = store.get(job_id)
            assert record is not None
            return api.refresh(store, record)

    # as long as the job trains or changes state (a loaded machine), a minute at most
    # without that
    wait_for(
        lambda: refreshed().state.is_terminal, poll_s=1, progress=partial(job_activity, job_dir)
    )
    record = refreshed()
    assert record.state.value == "COMPLETED", (record.state, record.reason)
    (fault,) = events(job_dir, "fault_injected")
    resized = events(job_dir, "resized", source="agent")
    assert [(e["world_size_then"], e["world_size"], e["cause"]) for e in resized] == [
        (2, 1, "node_lost")
    ]
    survivor = resized[0]["node"]
    restarts = events(job_dir, "restarted", source="agent", node=survivor)
    assert restarts and restarts[0]["cause"] == "node_lost"
    assert [e["step"] for e in events(job_dir, "training_complete")] == [STEPS]
    assert_loss_continuous(job_dir, STEPS, same_world=False)
    lost = [f for f in summary(job_dir)["faults"] if f["fault"] == fault["spec"]]
    assert lost and lost[0]["time_to_recover_s"] > 0
    with contextlib.suppress(AssertionError):  # the assertion below says what is left
        wait_for(lambda: not job_processes(job_id), 30, poll_s=0.5)
    assert job_processes(job_id) == []
