"""The node agent's parts that need no training run: classification, hang and straggler
policies, options, torchrun arguments, stacks, the worker table, the summary, the CLI."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from polling import wait_for

from contract.events import EventKind, append_event, read_events
from contract.jobdir import JobDir, append_jsonl
from runtime import faults, processes
from runtime.agent import (
    AgentConfig,
    AgentInputError,
    classify,
    find_stragglers,
    hang_timeout_s,
    job_summary,
    procs,
    stacks,
    stalled,
    stop_exit_code,
    torchrun,
)
from runtime.agent.agent import NodeAgent
from runtime.agent.output import TorchrunOutput
from runtime.agent.summary import format_summary
from runtime.agent.watch import ProgressWatcher
from runtime.rank_exec import backoff_s

HEADER = "==== scalectl 2026-01-01T00:00:00 job=j node=n rank=1 attempt=0 ====\n"


@pytest.mark.parametrize(
    ("code", "tail", "cause", "detail"),
    [
        (1, "Traceback...\ntorch.OutOfMemoryError: CUDA out of memory. Tried", "oom", "CUDA out"),
        (-6, "[Rank 0] Watchdog caught collective operation timeout: WorkNCCL(...)",
         "collective_timeout", "Watchdog"),
        (1, "RuntimeError: CUDA error: an illegal memory access was encountered",
         "cuda_error", "illegal memory access"),
        (1, "RuntimeError: [../gloo/transport/tcp/pair.cc:534] Connection closed by peer [1]",
         "peer_failure", "Connection closed by peer"),
        (1, "Traceback (most recent call last):\n  File x\nValueError: boom on rank 1\n",
         "exception", "ValueError: boom on rank 1"),
        (1, "[rank0]: runtime.faults.FaultInjected: injected crash at step 7\n", "exception",
         "runtime.faults.FaultInjected: injected crash at step 7"),
        (-9, "[train] step 5 loss 4.2\n", "signal", "killed by SIGKILL"),
        (137, "", "signal", "killed by SIGKILL"),
        (2, "error: --steps 0: must be at least 1\n", "bad_input", "error: --steps 0"),
        (3, "", "exit", "exited with code 3"),
    ],
)  # fmt: skip
def test_classify(code: int, tail: str, cause: str, detail: str) -> None:
    result = classify(code, HEADER + tail)
    assert result.cause == cause and detail in result.detail
    assert result.restartable is (cause != "bad_input")


def test_classify_looks_only_at_the_current_attempt() -> None:
    old = HEADER + "torch.OutOfMemoryError: CUDA out of memory\n"
    assert classify(-9, old + HEADER + "[train] step 3\n").cause == "signal"


def test_hang_timeout_learns_from_gaps_with_a_floor() -> None:
    assert hang_timeout_s([], 3.0, 10.0) == 3.0
    assert hang_timeout_s([0.05, 0.06, 0.2], 3.0, 10.0) == 3.0
    assert hang_timeout_s([0.05, 2.0, 0.06], 3.0, 10.0) == 20.0  # a checkpoint pause


def test_stalled_uses_the_startup_allowance_before_the_first_step() -> None:
    seen = {0: (7, 100.0)}
    assert stalled([0, 1], seen, 90.0, 102.0, 3.0, 60.0) == []
    found = stalled([0, 1], seen, 90.0, 104.0, 3.0, 60.0)
    assert [(s.rank, s.last_step, s.silent_s) for s in found] == [(0, 7, 4.0)]
    late = stalled([0, 1], seen, 40.0, 104.0, 3.0, 60.0)
    assert [s.rank for s in late] == [0, 1] and late[1].allowed_s == 60.0


def test_find_stragglers() -> None:
    assert find_stragglers({0: 0.01, 1: 0.06, 2: 0.011, 3: 0.0105}, 0.2) == {1: 5.714}
    assert find_stragglers({0: 0.01, 1: 0.0115}, 0.2) == {}
    assert find_stragglers({0: 0.01}, 0.2) == {}
    assert find_stragglers({0: 0.0012, 1: 0.0016}, 0.2) == {1: 1.333}
    assert find_stragglers({0: 0.0012, 1: 0.0016}, 0.2, min_excess_s=0.01) == {}


def test_progress_watcher_counts_gaps_within_one_generation(tmp_path: Path) -> None:
    job = JobDir(tmp_path)
    job.create()
    watcher = ProgressWatcher(job, straggler_window=3)
    watcher.new_generation(100.0)
    for step, ts in ((1, 101.0), (2, 101.5), (3, 102.5)):
        append_jsonl(job.progress_file(0), {"ts": ts, "rank": 0, "step": step, "compute_s": 0.1})
    watcher.poll()
    assert list(watcher.gaps) == [0.5, 1.0] and watcher.last_seen() == {0: (3, 102.5)}
    assert watcher.medians() == {0: 0.1} and watcher.ever_progressed
    watcher.new_generation(110.0)  # restarted: the gap across the restart is not a step gap
    append_jsonl(job.progress_file(0), {"ts": 118.0, "rank": 0, "step": 4})
    watcher.poll()
    assert list(watcher.gaps) == [0.5, 1.0] and watcher.medians() == {}


def test_config_rejects_bad_values_with_the_option_name(tmp_path: Path) -> None:
    for kwargs, text in (
        ({"restarts": -1}, "--restarts"),
        ({"restart_mode": "magic"}, "--restart-mode"),
        ({"hang_floor_s": 0}, "--hang-timeout-floor-s"),
        ({"straggler_window": 1}, "--straggler-window"),
        ({"node": "a b"}, "--node"),
        ({"metrics_port": 70000}, "--metrics-port"),
    ):
        with pytest.raises(AgentInputError, match=text):
            AgentConfig(job_dir=tmp_path, node=kwargs.pop("node", "n0"), **kwargs)  # type: ignore[arg-type]
    cfg = AgentConfig(job_dir=tmp_path, node="n0", backoff_s=1.0, backoff_max_s=5.0)
    assert [cfg.backoff_for(n) for n in (1, 2, 3, 4, 5)] == [0.0, 1.0, 2.0, 4.0, 5.0]


def test_rank_exec_back_off_matches_the_agent() -> None:
    env = {"SCALECTL_RESTART_BACKOFF": "1,5"}
    assert [backoff_s({**env, "TORCHELASTIC_RESTART_COUNT": str(n)}) for n in range(6)] == [
        0.0, 0.0, 1.0, 2.0, 4.0, 5.0,
    ]  # fmt: skip
    assert backoff_s({"TORCHELASTIC_RESTART_COUNT": "3"}) == 0.0


def test_torchrun_arguments_and_reports() -> None:
    args = ["--", "--nnodes=1:2", "--nproc-per-node", "2", "-m", "mod", "--max-restarts=3"]
    assert torchrun.check_args(args) == args[1:]  # the module's own flag is left alone
    with pytest.raises(AgentInputError, match="--restarts N"):
        torchrun.check_args(["--max-restarts=3", "train.py"])
    with pytest.raises(AgentInputError, match="no torchrun arguments"):
        torchrun.check_args(["--"])
    line = "E1125 ... failed (exitcode: -9) local_rank: 1 (pid: 4242) of binary: /py"
    assert torchrun.parse_failure(line) == torchrun.FailureReport(-9, 1, 4242)
    assert torchrun.parse_failure("all good") is None
    assert stop_exit_code(signal.SIGTERM) == 143 and stop_exit_code(signal.SIGUSR2) == 140


def test_new_fault_kinds_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    parsed = faults.parse("slow@step=3,rank=1,secs=0.5;kill@step=4,target=node;"
                          "signal@step=5,sig=TERM,target=agent")  # fmt: skip
    assert [(f.kind, f.target, f.secs) for f in parsed] == [
        ("slow", "rank", 0.5), ("kill", "node", None), ("signal", "agent", None),
    ]  # fmt: skip
    with pytest.raises(faults.FaultSpecError, match="'secs=S' is required"):
        faults.parse("slow@step=3")
    with pytest.raises(faults.FaultSpecError, match="target='moon'"):
        faults.parse("kill@step=3,target=moon")
    (only_n2,) = faults.parse("kill@step=4,node=n2,target=node")
    assert only_n2.node == "n2" and only_n2.rank is None
    monkeypatch.setenv("SCALECTL_NODE", "n1")
    assert not faults.Injector([only_n2], rank=0, job_dir=None)
    monkeypatch.setenv("SCALECTL_NODE", "n2")
    assert faults.Injector([only_n2], rank=0, job_dir=None)
    injector = faults.Injector(parsed, rank=1, job_dir=None)
    assert injector.slowdown_s(2) == 0.0 and injector.slowdown_s(3) == injector.slowdown_s(9) == 0.5


RANK_CHILD = """
import os, sys, time
from runtime.progress import enable_stack_dumps
enable_stack_dumps()
print("ready", flush=True)
def waiting_in_a_collective():
    time.sleep(60)
waiting_in_a_collective()
"""


def test_worker_table_and_faulthandler_stacks(tmp_path: Path, monkeypatch) -> None:
    """A parent (standing in for torchrun) with one rank child: the table finds it, and
    without py-spy the faulthandler path dumps its stack, even while it is stopped."""
    log = tmp_path / "n0.3.log"
    parent = subprocess.Popen(
        [sys.executable, "-c",
         "import subprocess, sys; subprocess.run([sys.executable, '-c', sys.argv[1]])",
         RANK_CHILD],
        env={**os.environ, "RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4",
             "GROUP_WORLD_SIZE": "2", "TORCHELASTIC_RESTART_COUNT": "2"},
        stdout=open(log, "w"), stderr=subprocess.STDOUT,  # noqa: SIM115
    )  # fmt: skip
    try:
        wait_for(lambda: "ready" in log.read_text(), timeout_s=30)
        (worker,) = procs.WorkerTable().scan(parent.pid)
        assert (worker.rank, worker.local_rank, worker.world_size, worker.nodes) == (3, 1, 4, 2)
        assert worker.restart_count == 2
        from runtime.progress import STACK_DUMP_SIGNAL

        assert processes.catches(worker.pid, STACK_DUMP_SIGNAL)
        assert not processes.catches(parent.pid, STACK_DUMP_SIGNAL)
        os.kill(worker.pid, signal.SIGSTOP)
        wait_for(lambda: processes.state(worker.pid) == "T", timeout_s=10, poll_s=0.01)
        monkeypatch.setattr(stacks, "py_spy_path", lambda: None)
        job = JobDir(tmp_path / "job")
        path, method = stacks.dump(job, "n0", 3, worker.pid, log)
        assert method == "faulthandler" and path is not None
        assert "waiting_in_a_collective" in path.read_text()
        monkeypatch.undo()
        if stacks.py_spy_path() is not None:  # a [dev] dependency
            path, method = stacks.dump(job, "n0", 3, worker.pid, log)
            assert method == "py-spy" and path is not None
            assert "waiting_in_a_collective" in path.read_text()
    finally:
        for pid in processes.children(parent.pid):
            processes.kill(pid)
        parent.kill()
        parent.wait()


def test_summary_from_a_job_directory(tmp_path: Path) -> None:
    job = JobDir(tmp_path)
    job.create()
    t0 = 1000.0

    def event(ts: float, name: str, **fields: object) -> None:
        append_jsonl(job.events, {"ts": t0 + ts, "event": name, **fields})

    event(0, "agent_started", source="agent", node="n0")
    for step in range(1, 8):  # first attempt: steps 1..7, then a crash
        append_jsonl(job.progress_file(0), {"ts": t0 + step, "step": step, "step_time_s": 0.5})
    event(7.5, "fault_injected", kind="kill", spec="kill@step=8,rank=1")
    event(8, "restarted", source="agent", node="n0", cause="signal", detected_ts=t0 + 7.7)
    event(8.1, "restarted", source="agent", node="n1", cause="peer_failure")
    for step in range(6, 11):  # resumed from step 5
        append_jsonl(job.progress_file(0), {"ts": t0 + 20 + step, "step": step, "step_time_s": 0.5})
    for seq, energy in enumerate((1000.0, 1600.0)):  # 20 W from t0 to t0 + 30
        gpu = {"index": 0, "uuid": "G", "energy_j": energy}
        append_jsonl(job.telemetry_file("n0"), {"seq": seq, "ts": t0 + 30 * seq, "gpus": [gpu]})
    plan = {
        "cluster": {"num_gpus": 1},
        "estimate": {"step": {"time_s": 0.5, "gpu_power_w": 40.0}, "train": {"energy_mwh": 1e-6}},
    }
    (job.root / "plan.json").write_text(json.dumps(plan))
    result = job_summary(job, t0 + 40)
    assert result["wall_s"] == pytest.approx(40, abs=0.01)
    assert (
        result["productive_s"] == 5.0 and result["steps_lost"] == 2 and result["final_step"] == 10
    )
    assert result["restarts_by_cause"] == {"signal": 1} and result["peer_restarts"] == 1
    (fault,) = result["faults"]
    assert fault["fault"] == "kill@step=8,rank=1" and fault["last_step_before"] == 7
    assert fault["resumed_at_step"] == 5 and fault["steps_lost"] == 2
    assert fault["time_to_recover_s"] == pytest.approx(26 - 7.5)
    energy = result["energy"]
    assert energy["measured_j"] == 600.0 and energy["planned_mwh"] == 1e-6
    # The final attempt's steps 6..10 run from t0+26 to t0+30: 4 steps, 80 J at 20 W.
    assert energy["per_step"] == {
        "steps": 4,
        "seconds": 4.0,
        "measured_j_per_step": 20.0,
        "measured_w_per_gpu": 20.0,
        "planned_j_per_step": 20.0,
        "planned_w_per_gpu": 40.0,
        "j_per_step_ratio": 1.0,
        "power_ratio": 0.5,
    }
    assert "GPU energy per step 20.0 J at 20 W/GPU; plan 20.0 J at 40 W/GPU" in format_summary(
        result
    )


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "scalectl", "agent", "--job-dir", str(tmp_path),
         "--restarts", "-2", "--", "--nproc-per-node=1", "x.py"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 2 and run.stderr.strip().startswith("error: --restarts")
    assert "Traceback" not in run.stderr
    run = subprocess.run(
        [sys.executable, "-m", "scalectl", "agent", "--job-dir", str(tmp_path), "--",
         "--max-restarts=2", "x.py"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 2 and "--restarts N" in run.stderr
    assert not (tmp_path / "events.jsonl").exists()


def test_cli_mistakes_in_options_are_one_line_too(tmp_path: Path) -> None:
    for options, fragment in (
        (["--restarts", "x"], "argument --restarts: invalid int value: 'x'"),
        (["--bogus", "1"], "unrecognized arguments: --bogus 1"),
        (["--restarts"], "argument --restarts: expected one argument"),
    ):
        run = subprocess.run(
            [sys.executable, "-m", "scalectl", "agent", "--job-dir", str(tmp_path), *options,
             "--", "--nproc-per-node=1", "x.py"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        lines = run.stderr.strip().splitlines()
        assert run.returncode == 2 and len(lines) == 1 and fragment in lines[0], run.stderr
    assert not (tmp_path / "events.jsonl").exists()


def test_python_m_scalectl_agent_starts_without_typer() -> None:
    # Every backend starts `python -m scalectl agent` on every node: the fast path skips
    # typer (and the pydantic it converts options with).
    probe = (
        "import runpy, sys\n"
        "sys.argv = ['scalectl', 'agent', '--help']\n"
        "try:\n"
        "    runpy.run_module('scalectl', run_name='__main__')\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
        "print('LOADED=' + ','.join(m for m in ('typer', 'pydantic') if m in sys.modules))\n"
    )
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "--stop-grace-s" in run.stdout and run.stdout.rstrip().endswith("LOADED=")


def test_one_subreaper_reaper_and_scan_for_a_jobs_processes(tmp_path: Path) -> None:
    """A subreaper adopts the orphan its child leaves; the marker scan finds it (and not
    a process without the marker); kill_marked kills and reaps it."""
    script = (
        "import os, subprocess, sys, time\n"
        "from runtime import processes\n"
        "processes.become_subreaper()\n"
        "env = {**os.environ, 'SCALECTL_JOB_ID': 'scan-test', 'SCALECTL_NODE': 'n9'}\n"
        "subprocess.run(['sh', '-c', 'sleep 60 & exit 0'], env=env, check=True)\n"
        "orphans = processes.job_pids('scan-test', 'n9')\n"
        "assert len(orphans) == 1, orphans\n"
        "assert processes.children(os.getpid()) == orphans, 'not adopted'\n"
        "assert processes.job_pids('scan-test', 'other') == []\n"
        "killed = processes.kill_marked({'SCALECTL_JOB_ID': 'scan-test'})\n"
        "assert killed == orphans and processes.job_pids('scan-test') == []\n"
        "assert processes.state(orphans[0]) is None, 'not reaped'\n"
        "print('ok')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "SCALECTL_JOB_ID"}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stdout + done.stderr


def test_reap_children_keeps_the_child_popen_waits_for() -> None:
    kept = subprocess.Popen([sys.executable, "-c", "pass"])
    other = subprocess.Popen([sys.executable, "-c", "pass"])
    wait_for(lambda: processes.state(kept.pid) == processes.state(other.pid) == "Z", 30, 0.01)
    processes.reap_children(keep=kept.pid)
    assert processes.state(other.pid) is None  # reaped
    assert processes.state(kept.pid) == "Z" and kept.wait() == 0  # left for its Popen
    other.returncode = 0


def test_policy_is_chosen_by_flag_or_environment(tmp_path: Path) -> None:
    from runtime.agent.policies import choose_policy
    from runtime.agent.policy import KubernetesPolicy, LocalPolicy
    from runtime.agent.slurm_policy import SlurmPolicy

    def cfg(**kw: object) -> AgentConfig:
        return AgentConfig(job_dir=tmp_path, node="n0", **kw)  # type: ignore[arg-type]

    assert type(choose_policy(cfg(), {})) is LocalPolicy
    assert type(choose_policy(cfg(), {"KUBERNETES_SERVICE_HOST": "10.0.0.1"})) is KubernetesPolicy
    assert type(choose_policy(cfg(policy="local"), {"KUBERNETES_SERVICE_HOST": "x"})) is (
        LocalPolicy
    )
    slurm = choose_policy(cfg(policy="slurm", preempt_signal="USR1"), {"SLURM_JOB_ID": "7"})
    assert isinstance(slurm, SlurmPolicy)
    assert signal.SIGUSR1 in slurm.stop_signals() and signal.SIGTERM in slurm.stop_signals()
    assert signal.SIGUSR1 in slurm.torchrun_ignored()
    assert slurm.torchrun_env() == {"PET_SIGNALS_TO_HANDLE": "SIGTERM,SIGINT,SIGHUP,SIGQUIT"}
    # torchrun killed from outside is a lost node under Slurm, a fault to restart locally
    assert slurm.torchrun_lost(-9, killed_by_agent=False)
    assert not slurm.torchrun_lost(-9, killed_by_agent=True)
    assert not slurm.torchrun_lost(1, killed_by_agent=False)
    assert not choose_policy(cfg(), {}).torchrun_lost(-9, killed_by_agent=False)
    local = choose_policy(cfg(), {"SCALECTL_SIGNALS_REACH_ALL": "1"})
    assert local.signals_reach_all() and local.torchrun_ignored() == {signal.SIGUSR2}
    assert choose_policy(cfg(), {}).torchrun_ignored() == set()


def test_policy_options_are_checked(tmp_path: Path) -> None:
    with pytest.raises(AgentInputError, match="--policy must be one of"):
        AgentConfig(job_dir=tmp_path, node="n0", policy="pbs")
    with pytest.raises(AgentInputError, match="--preempt-signal 'KILL'"):
        AgentConfig(job_dir=tmp_path, node="n0", preempt_signal="KILL")


def test_nnodes_from_torchrun_args() -> None:
    assert torchrun.nnodes(["--nnodes=1:2", "--nproc-per-node=2", "-m", "x"]) == (1, 2)
    assert torchrun.nnodes(["--nnodes", "3", "-m", "x", "--nnodes=9"]) == (3, 3)
    assert torchrun.nnodes(["--nproc-per-node=2", "train.py"]) is None


TORCHRUN_REPORT = (
    "[E1206 02:50:20.123456 77 torch/distributed/elastic/multiprocessing/api.py:1003] "
    "failed (exitcode: -9) local_rank: 1 (pid: {pid}) of binary: /usr/bin/python3\n"
)


def _rank(pid: int, rank: int, attempt: int) -> procs.Worker:
    return procs.Worker(
        pid=pid, rank=rank, local_rank=rank, world_size=2, nodes=1,
        restart_count=attempt, start_ticks=0,
    )  # fmt: skip


def test_a_restart_seen_before_torchruns_report_is_recorded_with_its_failure(
    tmp_path: Path,
) -> None:
    """torchrun logs a round's failure, then starts the next round. On a busy machine the
    agent's scan can see the new workers before its output thread has read that line; the
    restart must still be recorded once, with the failure's cause, and the summary time
    the recovery (it used to record a restart of cause "unknown", then a second one for
    "signal" at the very end, whose time_to_recover_s was None)."""
    job = JobDir(tmp_path / "job")
    job.create()
    agent = NodeAgent(
        AgentConfig(job_dir=job.root, node="n0", restarts=3),
        ["--nproc-per-node=2", "-m", "runtime.train"],
    )
    t0 = time.time()
    append_event(job, EventKind.AGENT_STARTED, source="agent", node="n0")
    read_fd, write_fd = os.pipe()
    copied = io.StringIO()
    with os.fdopen(read_fd, "rb") as pipe:
        # The output thread is never started: the worst scheduling there is.
        output = TorchrunOutput(pipe, copied, agent._on_failure_report)
        generation = agent._observe([_rank(100, 0, 0), _rank(101, 1, 0)], output, None)
        assert generation == (0, 2)
        append_jsonl(job.progress_file(0), {"ts": t0, "step": 7, "step_time_s": 0.1})
        append_event(job, EventKind.FAULT_INJECTED, kind="kill", spec="kill@step=8,rank=1")
        os.write(write_fd, TORCHRUN_REPORT.format(pid=101).encode())  # torchrun reports,
        restarted = [_rank(200, 0, 1), _rank(201, 1, 1)]  # then restarts the workers
        assert agent._observe(restarted, output, generation) == (1, 2)
        os.write(write_fd, b"a last line without a newline")
        os.close(write_fd)
        assert output.drain() is False
    assert copied.getvalue() == TORCHRUN_REPORT.format(pid=101) + "a last line without a newline"
    records = [e.record for e in read_events(job)]
    kinds = [r["event"] for r in records if r.get("source") == "agent"]
    assert kinds == [EventKind.AGENT_STARTED, EventKind.RANK_FAILED, EventKind.RESTARTED]
    failed, restart = records[-2:]
    assert (failed["rank"], failed["cause"], failed["signal"]) == (1, "signal", "SIGKILL")
    assert (restart["cause"], restart["by"], restart["attempt"]) == ("signal", "torchrun", 1)
    assert agent.pending is None and agent.restarts_used == 1  # nothing left to record late
    append_jsonl(job.progress_file(0), {"ts": time.time() + 1, "step": 6, "step_time_s": 0.1})
    summary = job_summary(job, time.time() + 2)
    assert summary["restarts_by_cause"] == {"signal": 1}
    (fault,) = summary["faults"]
    assert fault["kind"] == "signal" and fault["fault"] == "kill@step=8,rank=1"
    assert fault["time_to_recover_s"] is not None and fault["time_to_recover_s"] > 0
    assert fault["steps_lost"] == 2  # steps 6 and 7 run again


def test_bad_input_reported_with_restarted_workers_is_not_recorded_as_a_restart(
    tmp_path: Path,
) -> None:
    """Read in the same look, a bad-input failure wins over the restart torchrun already
    made: the agent stops torchrun instead of recording a restart it will not allow."""
    job = JobDir(tmp_path / "job")
    job.create()
    agent = NodeAgent(
        AgentConfig(job_dir=job.root, node="n0", restarts=3), ["--nproc-per-node=2", "x.py"]
    )
    job.log_file("n0", 1).parent.mkdir(parents=True, exist_ok=True)
    job.log_file("n0", 1).write_text("error: --steps 0: must be at least 1\n")
    read_fd, write_fd = os.pipe()
    with os.fdopen(read_fd, "rb") as pipe:
        output = TorchrunOutput(pipe, io.StringIO(), agent._on_failure_report)
        generation = agent._observe([_rank(100, 0, 0), _rank(101, 1, 0)], output, None)
        os.write(write_fd, TORCHRUN_REPORT.replace("-9", "2").format(pid=101).encode())
        os.close(write_fd)
        again = agent._observe([_rank(200, 0, 1), _rank(201, 1, 1)], output, generation)
    assert again == generation and agent.pending is not None
    assert agent.pending["cause"] == "bad_input"
    assert [e.record["event"] for e in read_events(job)] == [EventKind.RANK_FAILED]


def test_recovery_is_timed_from_the_failure_not_from_when_the_restart_was_recorded(
    tmp_path: Path,
) -> None:
    """A restart recorded late (after the new workers' first steps, or at the end when no
    scan saw them) is timed from when its failure was seen, like one recorded at once."""
    job = JobDir(tmp_path)
    job.create()
    t0 = 1000.0
    append_jsonl(job.events, {"ts": t0, "event": "agent_started", "source": "agent"})
    for step in range(1, 8):
        append_jsonl(job.progress_file(0), {"ts": t0 + step, "step": step, "step_time_s": 0.5})
    append_jsonl(job.events, {"ts": t0 + 7.5, "event": "fault_injected", "spec": "kill@step=8"})
    for step in range(6, 11):  # the new workers resumed from step 5 before the record below
        append_jsonl(job.progress_file(0), {"ts": t0 + 20 + step, "step": step})
    late = {"source": "agent", "node": "n0", "cause": "signal", "detected_ts": t0 + 7.7}
    append_jsonl(job.events, {"ts": t0 + 31, "event": "restarted", **late})
    (fault,) = job_summary(job, t0 + 40)["faults"]
    assert fault["fault"] == "kill@step=8" and fault["time_to_recover_s"] == pytest.approx(18.5)
    assert fault["resumed_at_step"] == 5 and fault["steps_lost"] == 2


def test_a_restart_whose_failed_round_was_never_seen_is_recorded_once_as_attempt_1(
    tmp_path: Path,
) -> None:
    """A script that fails at once: the first round's workers end between two scans, so
    the first round the agent sees is torchrun's restart (restart count 1). That round is
    the restart: recorded once, attempt 1, with the failure's cause; nothing is left to be
    recorded again when torchrun exits 0 (it used to add attempt 2 then)."""
    job = JobDir(tmp_path / "job")
    job.create()
    agent = NodeAgent(
        AgentConfig(job_dir=job.root, node="n0", restarts=1),
        ["--nproc-per-node=2", "-m", "runtime.train"],
    )
    append_event(job, EventKind.AGENT_STARTED, source="agent", node="n0")
    read_fd, write_fd = os.pipe()
    with os.fdopen(read_fd, "rb") as pipe:
        output = TorchrunOutput(pipe, io.StringIO(), agent._on_failure_report)
        assert agent._observe([], output, None) is None  # round 0 came and went unseen
        os.write(write_fd, TORCHRUN_REPORT.format(pid=101).encode())
        generation = agent._observe([_rank(200, 0, 1), _rank(201, 1, 1)], output, None)
        assert generation == (1, 2)
        os.close(write_fd)
    assert agent.pending is None and agent.restarts_used == 1
    records = [e.record for e in read_events(job) if e.record.get("source") == "agent"]
    restarts = [r for r in records if r["event"] == EventKind.RESTARTED]
    assert [(r["attempt"], r["cause"], r["by"]) for r in restarts] == [(1, "signal", "torchrun")]


def test_secondary_failures_are_told_from_a_ranks_own() -> None:
    from runtime.agent.classify import is_secondary

    assert is_secondary("RuntimeError: [gloo/transport/tcp/pair.cc:537] Read error "
                        "[127.0.0.1]:50079: Connection reset by peer")  # fmt: skip
    assert is_secondary("DistBackendError: Watchdog caught collective operation timeout")
    assert not is_secondary("FaultInjected: injected crash at step 7 on rank 0")
    assert not is_secondary("ValueError: bad shape")


def test_workers_up_is_said_once_every_rank_of_the_node_is_up(tmp_path: Path) -> None:
    """The first scan of a round often sees rank 0 before torchrun forked rank 1: the agent
    used to log "workers up: ranks [0] of world size 2" though both ranks started."""
    job = JobDir(tmp_path / "job")
    job.create()
    agent = NodeAgent(
        AgentConfig(job_dir=job.root, node="n0", restarts=0), ["--nproc-per-node=2", "x.py"]
    )
    said: list[str] = []
    agent.say = said.append  # type: ignore[method-assign]
    read_fd, write_fd = os.pipe()
    with os.fdopen(read_fd, "rb") as pipe:
        output = TorchrunOutput(pipe, io.StringIO(), agent._on_failure_report)
        rank0 = dataclasses.replace(_rank(100, 0, 0), local_world_size=2)
        rank1 = dataclasses.replace(_rank(101, 1, 0), local_world_size=2)
        generation = agent._observe([rank0], output, None)
        assert generation == (0, 2) and said == []
        agent._observe([rank0, rank1], output, generation)
        agent._observe([rank0, rank1], output, generation)
        os.close(write_fd)
    assert said == ["workers up: ranks 0, 1 of world size 2 (1 node(s)), attempt 0"]
