"""Fault injection against the node agent: real processes (agent, torchrun, trainer ranks),
CPU gloo, a tiny model. Each fault is injected deterministically at a step
(``SCALECTL_FAULTS``); each test checks that the run finishes with a continuous loss
curve, that the event names the right cause, that no process of the job is left, and that
the time to recover was measured.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from agent_harness import (
    REPO,
    agent_cmd,
    agent_output,
    assert_loss_continuous,
    events,
    job_env,
    job_pids,
    kill_job,
    new_job_id,
    rank0,
    run_agent,
    summary,
)
from polling import run_to_end, wait_for

from contract.jobdir import JobDir

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

STEPS = 14
TRAIN = ["--steps", str(STEPS), "--ckpt-every", "5"]


@pytest.fixture
def job_id() -> Iterator[str]:
    value = new_job_id()
    yield value
    kill_job(value)


def _recovered(job: Path, kind: str) -> dict:
    faults = [f for f in summary(job)["faults"] if f["kind"] == kind]
    assert len(faults) == 1, summary(job)["faults"]
    fault = faults[0]
    assert fault["time_to_recover_s"] is not None and fault["time_to_recover_s"] > 0
    return fault


def _finished_clean(job: Path, job_id: str, code: int) -> None:
    assert code == 0, agent_output(job)[-4000:]
    assert job_pids(job_id) == [], "processes of the job were left behind"
    assert [e["step"] for e in events(job, "training_complete")] == [STEPS]
    assert summary(job)["exit_code"] == 0


def test_sigkill_of_one_rank_restarts_from_the_checkpoint(tmp_path: Path, job_id: str) -> None:
    job = tmp_path / "job"
    code = run_agent(job, 2, TRAIN, faults="kill@step=8,rank=1", job_id=job_id)
    _finished_clean(job, job_id, code)
    (failed,) = events(job, "rank_failed", source="agent")
    assert (failed["rank"], failed["cause"], failed["signal"]) == (1, "signal", "SIGKILL")
    (restart,) = events(job, "restarted", source="agent")
    assert restart["cause"] == "signal" and restart["by"] == "torchrun"
    assert [e["step"] for e in events(job, "resumed")] == [5]
    assert_loss_continuous(job, STEPS)
    fault = _recovered(job, "signal")
    assert fault["fault"] == "kill@step=8,rank=1" and fault["steps_lost"] == 2
    assert summary(job)["restarts_by_cause"] == {"signal": 1}


def test_sigstop_hang_is_detected_stacks_dumped_and_restarted(tmp_path: Path, job_id: str) -> None:
    job = tmp_path / "job"
    code = run_agent(job, 2, TRAIN, faults="signal@step=8,rank=1,sig=STOP", job_id=job_id)
    _finished_clean(job, job_id, code)
    (hang,) = events(job, "hang_detected")
    assert hang["stopped_ranks"] == [1] and sorted(hang["ranks"]) == [0, 1]
    assert hang["last_steps"] == {"0": 7, "1": 7}
    stacks = Path(hang["stacks"]["1"])
    assert stacks.parent == JobDir(job).stacks_dir
    assert "faults.py" in stacks.read_text()  # rank 1 stopped itself inside the injector
    # rank 0 waits for it inside a collective
    assert "torch/distributed/distributed_c10d.py" in Path(hang["stacks"]["0"]).read_text()
    (restart,) = events(job, "restarted", source="agent")
    assert restart["cause"] == "hang" and restart["fault_ts"] <= restart["detected_ts"]
    assert events(job, "rank_failed", source="agent") == []  # the agent's kill is no failure
    assert_loss_continuous(job, STEPS)
    fault = _recovered(job, "hang")
    assert fault["detect_s"] >= 3.0  # the hang floor


def test_exception_at_a_step_is_classified_with_its_line(tmp_path: Path, job_id: str) -> None:
    job = tmp_path / "job"
    code = run_agent(job, 2, TRAIN, faults="crash@step=7,rank=0", job_id=job_id)
    _finished_clean(job, job_id, code)
    (failed,) = events(job, "rank_failed", source="agent")
    assert failed["rank"] == 0 and failed["cause"] == "exception" and failed["exit_code"] == 1
    assert "FaultInjected: injected crash at step 7 on rank 0" in failed["detail"]
    assert_loss_continuous(job, STEPS)
    _recovered(job, "exception")


def test_checkpoint_killed_mid_write_resumes_from_the_previous_one(
    tmp_path: Path, job_id: str
) -> None:
    job = tmp_path / "job"
    code = run_agent(job, 2, TRAIN, faults="crash_in_checkpoint@step=10,rank=1", job_id=job_id)
    _finished_clean(job, job_id, code)
    (failed,) = events(job, "rank_failed", source="agent")
    assert failed["rank"] == 1 and failed["signal"] == "SIGKILL"
    assert [e["step"] for e in events(job, "resumed")] == [5]  # not the torn step 10
    saved = [e["step"] for e in events(job, "checkpoint_saved")]
    assert saved == [5, 10, 14]  # step 10 committed once, by the second attempt
    assert not [p for p in JobDir(job).checkpoints_dir.iterdir() if p.name.startswith("tmp-")]
    assert "removed incomplete checkpoint debris: tmp-step_10" in (
        JobDir(job).log_file("n0", 0).read_text()
    )
    assert_loss_continuous(job, STEPS)
    assert _recovered(job, "signal")["steps_lost"] == 5


def test_sigterm_to_the_agent_checkpoints_and_exits_for_requeue(
    tmp_path: Path, job_id: str
) -> None:
    job = tmp_path / "job"
    faults = "signal@step=8,rank=0,sig=TERM,target=agent"
    code = run_agent(job, 2, TRAIN, faults=faults, job_id=job_id)
    assert code == 143, agent_output(job)[-4000:]
    assert job_pids(job_id) == []
    (stop,) = events(job, "stop_requested")
    assert (stop["signal"], stop["sent"]) == ("SIGTERM", "SIGTERM") and len(stop["rank_pids"]) == 2
    (preempted,) = events(job, "preempted", source="trainer")  # the ranks got it, once
    assert preempted["exit_code"] == 143
    (stopped,) = events(job, "stopped", source="agent")
    assert stopped["checkpointed"] and stopped["checkpoint_step"] == preempted["step"]
    assert JobDir(job).latest_checkpoint()[0] == preempted["step"]
    assert events(job, "restarted", source="agent") == []

    # The backend requeues on 143: the same command again resumes from that checkpoint.
    again = run_agent(job, 2, TRAIN, faults=faults, job_id=job_id)
    _finished_clean(job, job_id, again)
    assert [e["step"] for e in events(job, "resumed")] == [preempted["step"]]
    assert_loss_continuous(job, STEPS)
    fault = _recovered(job, "preemption")
    assert fault["steps_lost"] == 0


def test_straggler_is_reported_with_its_node(tmp_path: Path, job_id: str) -> None:
    job = tmp_path / "job"
    code = run_agent(
        job, 2, ["--steps", "24", "--ckpt-every", "100"],
        faults="slow@step=4,rank=1,secs=0.05", job_id=job_id,
        agent_args=["--straggler-window", "5"],
    )  # fmt: skip
    assert code == 0, agent_output(job)[-4000:]
    found = events(job, "straggler_detected")
    assert [(e["rank"], e["node"]) for e in found] == [(1, "n0")]
    assert found[0]["ratio"] > 1.2
    assert job_pids(job_id) == []


def test_bad_input_to_the_ranks_is_not_restarted(tmp_path: Path, job_id: str) -> None:
    job = tmp_path / "job"
    code = run_agent(job, 1, ["--steps", "0"], job_id=job_id)
    assert code == 2, agent_output(job)[-3000:]
    (failed,) = events(job, "rank_failed", source="agent")
    assert failed["cause"] == "bad_input" and "--steps" in failed["detail"]
    assert events(job, "restarted", source="agent") == []
    assert job_pids(job_id) == []


def test_sigusr2_from_a_scheduler_that_signals_every_process(tmp_path: Path, job_id: str) -> None:
    """Slurm's ``--signal=USR2@T`` reaches every process of the step (agent, torchrun,
    ranks). With ``SCALECTL_SIGNALS_REACH_ALL=1`` the agent sends nothing more (a second
    signal would make the trainer skip its checkpoint) and torchrun, started with USR2
    ignored, neither dies of it nor restarts the ranks when they exit 140."""
    job = tmp_path / "job"
    env = job_env(job_id, None)
    env["SCALECTL_SIGNALS_REACH_ALL"] = "1"
    proc = subprocess.Popen(
        agent_cmd(job, 2, ["--steps", "5000", "--ckpt-every", "1000"]),
        env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(lambda: any(r["step"] >= 10 for r in rank0(job)), poll_s=0.02)
        for pid in [proc.pid, *(p for p in job_pids(job_id) if p != proc.pid)]:
            os.kill(pid, signal.SIGUSR2)  # what the scheduler does, to every process
        wait_for(lambda: proc.poll() is not None, poll_s=0.2)
        assert proc.returncode == 140
    finally:
        if proc.poll() is None:
            proc.kill()
    (stop,) = events(job, "stop_requested")
    assert stop["signal"] == "SIGUSR2" and stop["sent"] is None
    (preempted,) = events(job, "preempted", source="trainer")
    assert preempted["exit_code"] == 140
    (stopped,) = events(job, "stopped", source="agent")
    assert stopped["checkpointed"] and JobDir(job).latest_checkpoint()[0] == preempted["step"]
    assert events(job, "restarted", source="agent") == []
    assert job_pids(job_id) == []


def test_a_restart_the_agent_never_saw_is_still_recorded(tmp_path: Path) -> None:
    # Workers that finish between two scans of the process tree (a quick script, or a
    # loaded machine) leave no generation to see; the agent here sees none at all.
    # torchrun's success after a reported failure is the restart's proof.
    flaky = tmp_path / "flaky.py"
    flaky.write_text(
        "import os, sys\nsys.exit(3 if os.environ['TORCHELASTIC_RESTART_COUNT'] == '0' else 0)\n"
    )
    blind = (
        "import sys\n"
        "from runtime.agent import procs\n"
        "procs.WorkerTable.scan = lambda self, pid: []\n"
        "from runtime.agent.main import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    cmd = agent_cmd(tmp_path / "job", 1, [], restarts=1)
    assert cmd[2:4] == ["scalectl", "agent"]
    ranks = cmd.index("runtime.rank_exec") + 2  # -m runtime.rank_exec -- <command>
    argv = [*cmd[4:ranks], sys.executable, str(flaky)]
    done = run_to_end(
        [sys.executable, "-c", blind, *argv],
        watch=tmp_path / "job",
        env=job_env(new_job_id(), None),
        cwd=REPO,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    restarts = events(tmp_path / "job", "restarted", source="agent")
    assert len(restarts) == 1, restarts
    restart = restarts[0]
    assert (restart["by"], restart["attempt"], restart["restarts_left"]) == ("torchrun", 1, 0)
    assert restart["cause"] and restart["cause"] != "unknown"  # from the reported failure
    assert events(tmp_path / "job", "agent_finished")[-1]["restarts_used"] == 1


def test_a_rank_aborting_after_training_complete_is_not_restarted(tmp_path: Path) -> None:
    # A script that records its completion and then dies in its teardown (SIGABRT, as
    # torch's gloo teardown sometimes does): the job's work is done, so the agent trusts
    # the record instead of restarting (which would run the script again).
    done_then_abort = tmp_path / "done_then_abort.py"
    done_then_abort.write_text(
        "import os\n"
        "from runtime import progress\n"
        "progress.event('training_complete', step=1)\n"
        "os.abort()\n"
    )
    job = tmp_path / "job"
    cmd = agent_cmd(job, 1, [], ["--restart-mode", "agent"], restarts=1)
    ranks = cmd.index("runtime.rank_exec") + 2  # -m runtime.rank_exec -- <command>
    done = run_to_end([*cmd[:ranks], sys.executable, str(done_then_abort)],
                      watch=job, env=job_env(new_job_id(), None), cwd=REPO)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "after training_complete: finished" in done.stdout
    assert len(events(job, "training_complete")) == 1
    assert events(job, "restarted", source="agent") == []
    assert events(job, "agent_finished")[-1]["exit_code"] == 0
