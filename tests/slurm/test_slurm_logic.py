"""Pure parts of the Slurm backend: squeue/sacct parsing and state mapping, the end-of-step
decision (finish, fail, requeue within the budget), and the node agent's Slurm policy
(its environment, its outcome and exit status)."""

from __future__ import annotations

import signal

import pytest

from launcher.backends.slurm_state import (
    SlurmRecord,
    map_slurm_state,
    parse_exit_code,
    parse_sacct,
    parse_squeue,
)
from launcher.backends.slurm_task import decide_end, run_outcomes
from launcher.states import JobState
from runtime.agent.slurm_policy import SlurmContext, exit_code, outcome, torchrun_signals


def test_parse_squeue_and_sacct() -> None:
    assert parse_squeue("", "5") is None
    live = parse_squeue("5|PENDING|Priority\n", "5")
    assert live == SlurmRecord("5", "PENDING", "Priority")
    assert parse_squeue("12_1|RUNNING|None\n12_2|PENDING|JobArrayTaskLimit\n", "12_2") == (
        SlurmRecord("12_2", "PENDING", "JobArrayTaskLimit")
    )
    done = parse_sacct("7|CANCELLED by 0|0:15|None\n", "7")
    assert done == SlurmRecord("7", "CANCELLED", "", -15, source="sacct")
    assert parse_sacct("9|FAILED|1:0|NonZeroExitCode\n", "9").exit_code == 1  # type: ignore[union-attr]
    assert parse_exit_code("0:0") == 0 and parse_exit_code("2:0") == 2
    assert parse_exit_code("0:9") == -9 and parse_exit_code("x") is None


@pytest.mark.parametrize(
    ("state", "reason", "source", "expected"),
    [
        ("PENDING", "Resources", "squeue", (JobState.PENDING, "Resources")),
        ("PENDING", "Priority", "squeue", (JobState.PENDING, "Priority")),
        ("CONFIGURING", "", "squeue", (JobState.PENDING, "configuring nodes")),
        ("RUNNING", "", "squeue", (JobState.RUNNING, "")),
        ("COMPLETING", "", "squeue", (JobState.COMPLETING, "")),
        ("SUSPENDED", "", "squeue", (JobState.PENDING, "suspended by Slurm")),
        ("PREEMPTED", "", "squeue", (JobState.PREEMPTED, "")),
        ("PREEMPTED", "", "sacct", (JobState.CANCELLED, "preempted by Slurm and not requeued")),
        ("REQUEUE_HOLD", "JobHeldAdmin", "squeue", (JobState.REQUEUED, "JobHeldAdmin")),
        ("COMPLETED", "", "sacct", (JobState.COMPLETED, "")),
        ("FAILED", "", "sacct", (JobState.FAILED, "exit code 3")),
        ("OUT_OF_MEMORY", "", "sacct", (JobState.FAILED, "out of memory")),
        ("NODE_FAIL", "", "sacct", (JobState.FAILED, "a node failed")),
        ("TIMEOUT", "", "sacct", (JobState.TIMEOUT, "time limit reached")),
        ("CANCELLED", "", "sacct", (JobState.CANCELLED, "cancelled in Slurm")),
        ("WEIRD", "", "sacct", (JobState.UNKNOWN, "Slurm state WEIRD")),
    ],
)
def test_state_mapping(state, reason, source, expected) -> None:
    status = map_slurm_state(SlurmRecord("1", state, reason, 3, source), [])
    assert (status.state, status.reason) == expected


def test_events_explain_requeues_and_verdicts() -> None:
    requeued = [{"event": "requeued", "reason": "stopped by the preemption signal; requeue 1 of 3"}]
    pending = map_slurm_state(SlurmRecord("1", "PENDING", "BeginTime"), requeued)
    assert pending.state is JobState.REQUEUED and pending.reason == "requeued 1x: BeginTime"
    running = map_slurm_state(SlurmRecord("1", "RUNNING", ""), requeued)
    assert running.state is JobState.RUNNING and running.reason == "requeued 1x"
    spent = [*requeued, {"event": "finished", "reason": "requeue budget of 1 spent"}]
    failed = map_slurm_state(SlurmRecord("1", "FAILED", "", 1, "sacct"), spent)
    assert failed.state is JobState.FAILED and failed.reason == "requeue budget of 1 spent"


def outcomes_of(*pairs: tuple[str, str]) -> dict[str, str]:
    return dict(pairs)


def decide(outcomes, step_rc=0, *, cancelled=False, used=0, requeue=True, budget=3):
    return decide_end(
        outcomes,
        step_rc,
        cancelled=cancelled,
        requeues_used=used,
        requeue=requeue,
        max_requeues=budget,
    )


def test_a_finished_run_never_requeues() -> None:
    done = decide(outcomes_of(("node1", "completed"), ("node2", "completed")))
    assert (done.requeue, done.state, done.exit_code) == (False, "COMPLETED", 0)
    # The preemption signal arrived as the last step finished: still finished.
    late = decide(outcomes_of(("node1", "completed"), ("node2", "completed")), used=3)
    assert not late.requeue and late.state == "COMPLETED"
    lost_one = decide(outcomes_of(("node1", "completed"), ("node2", "lost")))
    assert lost_one.state == "COMPLETED" and "node2" in lost_one.reason


def test_preemption_requeues_within_the_budget() -> None:
    first = decide(outcomes_of(("node1", "preempted"), ("node2", "preempted")))
    assert first.requeue and first.reason.endswith("requeue 1 of 3")
    last = decide(outcomes_of(("node1", "preempted")), used=2)
    assert last.requeue and last.reason.endswith("requeue 3 of 3")
    spent = decide(outcomes_of(("node1", "preempted")), used=3)
    assert not spent.requeue and spent.state == "FAILED" and "budget of 3 spent" in spent.reason
    off = decide(outcomes_of(("node1", "preempted")), requeue=False)
    assert not off.requeue and "requeue is off" in off.reason


def test_node_loss_requeues_and_failure_does_not() -> None:
    lost = decide(outcomes_of(("node1", "failed"), ("node2", "lost")), step_rc=1)
    assert lost.requeue and "lost node2" in lost.reason
    failed = decide(outcomes_of(("node1", "failed"), ("node2", "stopped")), step_rc=1)
    assert not failed.requeue and failed.state == "FAILED" and failed.exit_code == 1
    nothing = decide({}, step_rc=2)
    assert nothing.state == "FAILED" and "before any node task started" in nothing.reason


def test_a_cancelled_run_never_requeues() -> None:
    cancelled = decide(outcomes_of(("node1", "preempted")), cancelled=True)
    assert not cancelled.requeue and cancelled.state == "CANCELLED"


def test_run_outcomes_belong_to_this_run_only() -> None:
    base = {"job_id": "J", "slurm_job_id": "7"}
    events = [
        {**base, "restart": 0, "event": "slurm_node_started", "node": "node1"},
        {**base, "restart": 0, "event": "slurm_node_ended", "node": "node1",
         "outcome": "preempted"},
        {**base, "restart": 1, "event": "slurm_node_started", "node": "node1"},
        {**base, "restart": 1, "event": "slurm_node_started", "node": "node2"},
        {**base, "restart": 1, "event": "slurm_node_ended", "node": "node1", "outcome": "failed"},
        {"job_id": "other", "slurm_job_id": "7", "restart": 1, "event": "slurm_node_started",
         "node": "node3"},
    ]  # fmt: skip
    assert run_outcomes(events, "J", "7", 1) == {"node1": "failed", "node2": "lost"}
    assert run_outcomes(events, "J", "7", 0) == {"node1": "preempted"}


def test_torchrun_does_not_forward_the_stop_signal() -> None:
    assert torchrun_signals("USR2") == "SIGTERM,SIGINT,SIGHUP,SIGQUIT"
    assert torchrun_signals("TERM") == "SIGINT,SIGHUP,SIGQUIT"


def test_node_outcome_and_task_exit_status() -> None:
    usr2, term = signal.SIGUSR2, signal.SIGTERM
    assert outcome(0, None, usr2, lost=False) == "completed"
    assert outcome(0, usr2, usr2, lost=False) == "completed"  # the last step beat the signal
    assert outcome(140, usr2, usr2, lost=False) == "preempted"
    assert outcome(143, term, usr2, lost=False) == "stopped"
    assert outcome(1, None, usr2, lost=True) == "lost"
    assert outcome(1, None, usr2, lost=False) == "failed"
    # completed and preempted end the task with 0: kill-on-bad-exit must not end the others
    assert exit_code("completed", 0, nodes_min=1, num_nodes=2) == 0
    assert exit_code("preempted", 140, nodes_min=2, num_nodes=2) == 0
    # a lost node of an elastic job leaves the others running; of a rigid one, it ends the step
    assert exit_code("lost", 1, nodes_min=1, num_nodes=2) == 0
    assert exit_code("lost", 1, nodes_min=2, num_nodes=2) == 1
    assert exit_code("stopped", 143, nodes_min=1, num_nodes=2) == 143
    assert exit_code("failed", 2, nodes_min=1, num_nodes=2) == 2
    assert exit_code("failed", -9, nodes_min=1, num_nodes=2) == 1


def test_context_from_slurm_environment() -> None:
    env = {
        "SLURM_JOB_ID": "42",
        "SLURM_ARRAY_JOB_ID": "40",
        "SLURM_ARRAY_TASK_ID": "2",
        "SLURM_RESTART_COUNT": "1",
        "SLURMD_NODENAME": "gpu-001",
        "SLURM_NODEID": "1",
        "SLURM_JOB_NUM_NODES": "4",
        "SLURM_CPUS_PER_TASK": "16",
    }
    ctx = SlurmContext.from_env(env)
    assert ctx == SlurmContext("40_2", 1, "gpu-001", 1, 4, 16)
    plain = SlurmContext.from_env({"SLURM_JOB_ID": "42", "SLURMD_NODENAME": "n1"})
    assert (plain.slurm_job_id, plain.restart, plain.node_index, plain.num_nodes) == (
        "42",
        0,
        0,
        1,
    )


def test_sbatch_error_keeps_the_specific_complaint() -> None:
    from launcher.backends.slurm import sbatch_error

    stderr = (
        "sbatch: error: invalid partition specified: nope\n"
        "sbatch: error: Batch job submission failed: Invalid partition name specified\n"
    )
    assert sbatch_error(stderr) == "invalid partition specified: nope"
    assert sbatch_error("something odd\n") == "something odd"
    assert sbatch_error("") == "no output"


def test_requeue_is_refused_when_off_or_spent_before_asking_slurm(tmp_path) -> None:
    import json
    import time

    from contract.events import append_event
    from contract.jobdir import JobDir
    from launcher.backends.slurm import SlurmBackend
    from launcher.errors import JobActionError
    from launcher.spec import spec_from_mapping
    from launcher.store import JobRecord

    def record(slurm: dict[str, object]) -> JobRecord:
        spec = spec_from_mapping(
            {"name": "r", "backend": "slurm", "entrypoint": {"module": "m"}, "slurm": slurm}
        )
        return JobRecord(
            id="20260101-000000-abcd", name="r", backend="slurm", backend_job_id="77",
            state=JobState.RUNNING, reason="", job_dir_text=str(tmp_path), nodes_min=1,
            nodes_max=1, procs_per_node=1, gpus_per_node=0, created_ts=time.time(),
            updated_ts=time.time(), started_ts=None, ended_ts=None, exit_code=None,
            spec_json=json.dumps(spec.to_json()),
        )  # fmt: skip

    backend = SlurmBackend()
    with pytest.raises(JobActionError, match=r"slurm\.requeue is off"):
        backend.requeue(record({"requeue": False}))
    append_event(JobDir(tmp_path), "requeued", job_id="20260101-000000-abcd", count=1)
    with pytest.raises(JobActionError, match=r"budget \(slurm\.max_requeues = 1\) is spent"):
        backend.requeue(record({"max_requeues": 1}))


def test_the_node_agents_command_is_completed_from_job_json(tmp_path) -> None:
    """What srun's short ``scalectl agent --policy=slurm --job-dir=D`` becomes on a node:
    the agent options and torchrun arguments of node_command, plus the Slurm policy, the
    preemption signal, the node's name and whether it hosts the rendezvous store."""
    from contract.job import JobFile, write_job_file
    from launcher.backends.slurm_node import agent_args
    from launcher.spec import spec_from_mapping
    from runtime.agent.main import parse

    spec = spec_from_mapping(
        {"name": "r", "backend": "slurm", "entrypoint": {"module": "runtime.train"},
         "args": ["--steps", "5"], "nodes": "1:2", "max_restarts": 2,
         "env": {"PLAIN": "yes"}, "slurm": {"signal": "USR1", "stop_grace_s": 30}}
    )  # fmt: skip
    write_job_file(tmp_path, JobFile(job_id="J1", spec=spec.to_json()))
    env = {"SCALECTL_RDZV_ENDPOINT": "10.0.0.1:20007", "SLURM_JOB_ID": "7",
           "SLURMD_NODENAME": "gpu 2", "SLURM_NODEID": "1", "SLURM_JOB_NUM_NODES": "2",
           "SLURM_CPUS_PER_TASK": "8"}  # fmt: skip
    args, added, workdir = agent_args(tmp_path, env, "/venv/bin/python")
    cfg, torchrun_args = parse(args)
    assert (cfg.policy, cfg.preempt_signal, cfg.node, cfg.restarts) == ("slurm", "USR1", "gpu-2", 2)
    assert cfg.stop_grace_s == 25 and cfg.job_dir == tmp_path.resolve()
    assert "--nnodes=1:2" in torchrun_args and "--rdzv-endpoint=10.0.0.1:20007" in torchrun_args
    conf = next(a for a in torchrun_args if a.startswith("--rdzv-conf="))
    assert "is_host=0" in conf and "last_call_timeout=5" in conf
    assert torchrun_args[-3:] == ["runtime.train", "--steps", "5"]
    assert added["SCALECTL_NODE"] == "gpu-2" and added["SCALECTL_JOB_ID"] == "J1"
    assert added["PLAIN"] == "yes" and added["TORCH_ELASTIC_SHUTDOWN_TIMEOUT"] == "30"
    assert workdir == tmp_path.resolve()
    head, *_ = agent_args(tmp_path, {**env, "SLURM_NODEID": "0"}, "/venv/bin/python")
    assert "is_host=1" in next(a for a in head if a.startswith("--rdzv-conf="))
    with pytest.raises(SystemExit, match="SCALECTL_RDZV_ENDPOINT is not set"):
        agent_args(tmp_path, {"SLURM_JOB_ID": "7"}, "/venv/bin/python")
