"""Inside a Slurm allocation: ``python -m launcher.backends.slurm_task node|end JOB_DIR``.

``node JOB_DIR`` is the one task ``srun`` starts on every node. It starts
:func:`launcher.commands.node_command` (torchrun today; the runtime agent when it
lands) and owns what only Slurm makes hard:

* **Signals.** Slurm delivers a job's signals (``--signal=USR2@T`` before the time limit,
  ``scancel --signal``, the SIGTERM of ``scancel``/kill-on-bad-exit/preemption) to *every*
  process of the step — proctrack/cgroup and proctrack/linuxproc signal the whole
  process tree, torchrun's workers included, although torchrun starts them in sessions
  of their own. So each rank already has the signal; whoever forwards it again makes it
  the rank's *second* signal, which the reference trainer (rightly) treats as "stop
  now, no checkpoint". Hence nothing between this task and the ranks may forward the
  stop signal (``slurm.signal``): the child (torchrun, or the runtime agent) is started
  with it ignored, torchrun is told not to handle it (``PET_SIGNALS_TO_HANDLE``), and
  ``SCALECTL_SIGNALS_REACH_ALL=1`` tells a supervisor that installs its own handlers
  (the agent) that the scheduler already signalled every rank. On the stop signal this
  task waits for the node's ranks (the processes with ``LOCAL_RANK``, i.e. torchrun's
  workers) to checkpoint and exit, then sends its child one SIGTERM — torchrun, with no
  worker left to forward it to, just exits, instead of *restarting* them (with
  ``max_restarts`` it would) — and after ``slurm.stop_grace_s`` kills whatever is left.
  Only where Slurm signals just the task's process group (proctrack/pgid) does it
  forward the signal to the ranks itself, once. SIGTERM is left to torchrun (its
  default forwarding), so a plain ``scancel`` stops without a checkpoint; ``scalectl
  cancel`` sends the stop signal first.
* **Zombie ranks.** The task is a child subreaper: ranks orphaned by a dying torchrun are
  re-parented to it (so they stay in the step's process tree), and when torchrun is gone
  it kills every leftover process of this job on this node, found by the
  ``SCALECTL_JOB_ID`` + ``SCALECTL_NODE`` marker.
* **Node loss.** The node command (torchrun, or the agent) killed from outside is this
  node leaving the job. When the job is elastic (``nodes.min`` below the allocation) the
  task exits 0, so ``--kill-on-bad-exit`` leaves the other nodes running and their
  torchruns re-form the rendezvous at the smaller size; otherwise it exits 1 and the
  step (then the end helper, which requeues for a lost node) takes over.

Every task records ``slurm_node_started`` and ``slurm_node_ended`` (with its outcome:
completed, preempted, stopped, lost, failed) in events.jsonl, tagged with the Slurm job id
and ``SLURM_RESTART_COUNT``.

``end JOB_DIR STEP_RC`` runs in the batch shell after the step. From this run's node
outcomes it decides (:func:`decide_end`): COMPLETED, FAILED, or — after a preemption
signal or a lost node — ``scontrol requeue`` while the requeue budget
(``slurm.max_requeues``, counted as ``requeued`` events in the job directory) lasts. A
run that finished never requeues, and neither does one the user cancelled.

Imports stay light (stdlib, psutil, contract.jobdir; the spec model only to build the
node command), since every node pays them before torchrun starts.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from contract.env import NODE_ENV, RDZV_ENDPOINT_ENV, SIGNALS_REACH_ALL_ENV, rdzv_endpoint
from contract.events import EventKind, append_event
from contract.jobdir import JobDir, read_all_jsonl

POLL_S = 0.05
LAST_CALL_TIMEOUT_S = 5
"""c10d ``last_call_timeout`` on Slurm: once ``nodes.min`` agents joined, how long to wait
for the rest. Slurm starts every node of an allocation at once, so with all of them the
rendezvous completes at ``max`` without waiting; this only delays a re-formed, smaller
rendezvous after a node loss."""
KEEP_ALIVE_INTERVAL_S = 2
KEEP_ALIVE_MAX_ATTEMPT = 3
"""A lost node's agent counts as dead after 2 s x 3 missed heartbeats (torch's default,
5 s x 3, makes the survivors wait 15 s before they re-form the rendezvous)."""
TORCHRUN_HANDLES = ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT")
"""torchrun's default ``--signals-to-handle`` (signals it forwards to its workers)."""
END_WAIT_S = 120.0
"""How long the end helper waits to be killed after ``scontrol requeue`` or a cancel."""
_PR_SET_CHILD_SUBREAPER = 36


@dataclass(frozen=True)
class SlurmContext:
    """Where this process runs, from Slurm's environment variables."""

    slurm_job_id: str
    """``ARRAYID_INDEX`` for an array element, else the job id (the registry's handle)."""
    restart: int
    """``SLURM_RESTART_COUNT``: 0 on the first run, +1 per requeue."""
    node: str
    """This node's Slurm name (``SLURMD_NODENAME``), used in log and event names."""
    node_index: int
    """``SLURM_NODEID``: 0 on the first node of the allocation."""
    num_nodes: int
    """Nodes in the allocation."""
    cpus: int
    """CPUs this task may use."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SlurmContext:
        array, index = env.get("SLURM_ARRAY_JOB_ID"), env.get("SLURM_ARRAY_TASK_ID")
        job = f"{array}_{index}" if array and index else env.get("SLURM_JOB_ID", "0")
        node = env.get("SLURMD_NODENAME") or socket.gethostname().split(".")[0] or "node"
        cpus = env.get("SLURM_CPUS_PER_TASK") or env.get("SLURM_CPUS_ON_NODE") or ""
        return cls(
            slurm_job_id=job,
            restart=_int(env.get("SLURM_RESTART_COUNT"), 0),
            node="".join(c if c.isalnum() or c in "._-" else "-" for c in node),
            node_index=_int(env.get("SLURM_NODEID"), 0),
            num_nodes=_int(env.get("SLURM_JOB_NUM_NODES"), 1),
            cpus=_int(cpus, 0) or _cpus_available(),
        )

    def tags(self) -> dict[str, Any]:
        return {"slurm_job_id": self.slurm_job_id, "restart": self.restart}


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value else default
    except ValueError:
        return default


def _cpus_available() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def say(message: str) -> None:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    print(f"[{stamp}] slurm_task: {message}", flush=True)


def torchrun_signals(stop_signal: str) -> str:
    """``PET_SIGNALS_TO_HANDLE`` for torchrun: its defaults without the stop signal."""
    name = "SIG" + stop_signal
    return ",".join(s for s in TORCHRUN_HANDLES if s != name)


# -- node task ---------------------------------------------------------------------


class NodeTask:
    """Runs and watches this node's torchrun; see the module docstring."""

    def __init__(self, jobdir: JobDir, ctx: SlurmContext) -> None:
        from contract.job import read_job_file
        from launcher.backends.slurm_script import slurm_signal_name
        from launcher.spec import JobSpec

        self.jobdir = jobdir
        self.ctx = ctx
        job = read_job_file(jobdir)
        self.job_id: str = job.job_id
        self.spec = JobSpec.model_validate(job.spec)
        self.stop_name = slurm_signal_name(self.spec.slurm.signal)
        self.stop_signal = signal.Signals["SIG" + self.stop_name]
        self.grace_s = self.spec.slurm.stop_grace_s
        self.received: list[int] = []
        self.handled = 0
        self.preempted_by: str | None = None
        self.terminated_by: str | None = None
        self.deadline: float | None = None
        self.ranks_at_signal: list[Any] = []
        self.asked_child_to_stop = False
        self.killed_child = False
        self.hard_killed = False

    def event(self, name: EventKind, **fields: Any) -> None:
        try:
            append_event(self.jobdir, name, job_id=self.job_id, node=self.ctx.node, **fields)
        except OSError as exc:
            say(f"could not write event {name}: {exc}")

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.received.append(signum)

    def command(self) -> tuple[list[str], dict[str, str]]:
        from launcher.commands import Rendezvous, node_command, rank_environment

        endpoint = rdzv_endpoint()
        if not endpoint:
            raise SystemExit(
                f"slurm_task: {RDZV_ENDPOINT_ENV} is not set (the sbatch script sets it)"
            )
        rendezvous = Rendezvous(
            endpoint=endpoint,
            run_id=self.job_id,
            # The first node hosts the c10d store; naming it avoids every agent on a
            # shared host (or behind one address) racing to bind it.
            conf={
                "last_call_timeout": LAST_CALL_TIMEOUT_S,
                "keep_alive_interval": KEEP_ALIVE_INTERVAL_S,
                "keep_alive_max_attempt": KEEP_ALIVE_MAX_ATTEMPT,
                "is_host": 1 if self.ctx.node_index == 0 else 0,
            },
        )
        argv = node_command(
            self.spec, self.jobdir.root, rendezvous, sys.executable, backend_grace_s=self.grace_s
        )
        env = {
            **os.environ,
            **rank_environment(
                self.spec, self.job_id, self.jobdir.root, self.ctx.node, self.ctx.cpus
            ),
            "PET_SIGNALS_TO_HANDLE": torchrun_signals(self.stop_name),
            SIGNALS_REACH_ALL_ENV: "0" if _slurm_skips_descendants() else "1",
            "TORCH_ELASTIC_SHUTDOWN_TIMEOUT": str(max(1, int(self.grace_s))),
        }
        return argv, env

    def run(self) -> int:
        _become_subreaper()
        for sig in {self.stop_signal, signal.SIGTERM, signal.SIGINT}:
            signal.signal(sig, self._on_signal)
        argv, env = self.command()
        self.event(
            EventKind.SLURM_NODE_STARTED,
            pid=os.getpid(),
            rdzv_endpoint=env.get(RDZV_ENDPOINT_ENV),
            nodes=self.ctx.num_nodes,
            **self.ctx.tags(),
        )
        if self.ctx.node_index == 0:
            self.event(
                EventKind.STARTED,
                backend="slurm",
                nodelist=os.environ.get("SLURM_JOB_NODELIST"),
                command=argv,
                **self.ctx.tags(),
            )
        stop = self.stop_signal

        def ignore_stop_signal() -> None:
            signal.signal(stop, signal.SIG_IGN)

        log = self.jobdir.log_file(self.ctx.node, "torchrun")
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                argv,
                env=env,
                cwd=str(self.spec.workdir or self.jobdir.root),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=ignore_stop_signal,  # single-threaded here, so fork-safe
            )
        say(f"node command pid {proc.pid} on {self.ctx.node}: {' '.join(argv)}")
        code = self.watch(proc)
        leftovers = self.sweep()
        outcome = self.outcome(code)
        self.event(
            EventKind.SLURM_NODE_ENDED,
            outcome=outcome,
            node_command_exit=code,
            signal=self.preempted_by or self.terminated_by,
            leftovers_killed=leftovers,
            **self.ctx.tags(),
        )
        if outcome == "lost":
            reason = f"node command killed (exit {code})"
            self.event(EventKind.NODE_LOST, reason=reason, **self.ctx.tags())
        say(f"node task ends: {outcome} (node command exit {code}, {leftovers} leftovers killed)")
        return self.exit_code(outcome, code)

    def watch(self, proc: subprocess.Popen[bytes]) -> int:
        while True:
            code = proc.poll()
            if code is not None:
                return code
            while self.handled < len(self.received):
                self.on_received(self.received[self.handled])
                self.handled += 1
            if self.preempted_by and not self.asked_child_to_stop and not self.ranks_alive():
                # Every rank has checkpointed and exited: stop torchrun before it restarts
                # them. Its SIGTERM handler forwards only to live workers: none are left.
                say("the ranks exited after the stop signal; stopping the node's launcher")
                self.asked_child_to_stop = True
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
            if (
                self.deadline is not None
                and not self.hard_killed
                and time.monotonic() > self.deadline
            ):
                say(f"grace of {self.grace_s:g} s over; killing this node's processes")
                self.hard_killed = True
                self.kill_child(proc)
                self.sweep()
            self.reap_adopted(proc.pid)
            time.sleep(POLL_S)

    def ranks_alive(self) -> bool:
        return any(_alive(p) for p in self.ranks_at_signal)

    def on_received(self, signum: int) -> None:
        name = signal.Signals(signum).name
        self.event(EventKind.SLURM_SIGNAL, signal=name, **self.ctx.tags())
        say(f"received {name}")
        if self.deadline is None:
            self.deadline = time.monotonic() + self.grace_s
        if signum == self.stop_signal and self.preempted_by is None:
            self.preempted_by = name
            self.ranks_at_signal = self.node_ranks()
            say(f"waiting for {len(self.ranks_at_signal)} rank(s) to checkpoint and exit")
            if _slurm_skips_descendants():
                for rank in self.ranks_at_signal:
                    with contextlib.suppress(Exception):
                        rank.send_signal(signum)
        elif signum != self.stop_signal and self.terminated_by is None:
            # torchrun got the same SIGTERM from Slurm and forwards it to the ranks.
            self.terminated_by = name

    def node_ranks(self) -> list[Any]:
        """This node's training processes: torchrun's workers carry ``LOCAL_RANK``."""
        from launcher.procs import job_processes

        return [
            p
            for p in job_processes(self.job_id)
            if _node_of(p) == self.ctx.node and _env_of(p).get("LOCAL_RANK") is not None
        ]

    def kill_child(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            self.killed_child = True

    def reap_adopted(self, torchrun_pid: int) -> None:
        """Reap orphans re-parented to us (never torchrun: Popen must see its status)."""
        import psutil

        with contextlib.suppress(psutil.Error):
            for child in psutil.Process().children():
                if child.pid == torchrun_pid:
                    continue
                with contextlib.suppress(psutil.Error, ChildProcessError, OSError):
                    if child.status() == psutil.STATUS_ZOMBIE:
                        os.waitpid(child.pid, os.WNOHANG)

    def sweep(self) -> int:
        """Kill every process still marked with this job and this node; returns how many."""
        from launcher.procs import job_processes, stop_processes

        mine = [p for p in job_processes(self.job_id) if _node_of(p) == self.ctx.node]
        if not mine:
            return 0
        say(f"killing {len(mine)} leftover process(es) of this node")
        stop_processes(mine, 2.0)
        self.reap_adopted(-1)
        return len(mine)

    def outcome(self, code: int) -> str:
        if code == 0:
            return "completed"
        if self.preempted_by:
            return "preempted"
        if self.terminated_by:
            return "stopped"
        if code < 0 and not self.killed_child:
            return "lost"
        return "failed"

    def exit_code(self, outcome: str, code: int) -> int:
        if outcome in ("completed", "preempted"):
            return 0
        if outcome == "lost":
            # Elastic slack: the other nodes go on without us (kill-on-bad-exit stays off).
            return 0 if self.spec.nodes.min < self.ctx.num_nodes else 1
        if outcome == "stopped":
            return 143
        return code if 0 < code < 256 else 1


def _alive(proc: Any) -> bool:
    import psutil

    try:
        return bool(proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def _env_of(proc: Any) -> dict[str, str]:
    try:
        return dict(proc.environ())
    except Exception:  # psutil.Error, or the process is gone
        return {}


def _node_of(proc: Any) -> str | None:
    return _env_of(proc).get(NODE_ENV)


def _become_subreaper() -> None:
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


_PROCTRACK: list[str] = []


def _slurm_skips_descendants() -> bool:
    """True under proctrack/pgid, where Slurm signals only the task's process group
    (torchrun's workers live in sessions of their own and would miss the signal)."""
    if not _PROCTRACK:
        try:
            out = subprocess.run(
                ["scontrol", "show", "config"], capture_output=True, text=True, timeout=20
            ).stdout
        except (OSError, subprocess.TimeoutExpired):
            out = ""
        kind = next(
            (line.split("=", 1)[1].strip() for line in out.splitlines() if "ProctrackType" in line),
            "",
        )
        _PROCTRACK.append(kind)
    return "pgid" in _PROCTRACK[0]


def _redirect_output(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
    sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)


# -- end of the step ---------------------------------------------------------------


@dataclass(frozen=True)
class EndDecision:
    """What the batch shell does once the step is over."""

    requeue: bool
    """True: ``scontrol requeue`` (the budget allows it)."""
    state: str
    """Final state when not requeued (COMPLETED, FAILED, CANCELLED); REQUEUED otherwise."""
    reason: str
    """Why, in one line (shown by ``scalectl jobs``)."""
    exit_code: int
    """Exit code of the batch script (what sacct reports)."""


def run_outcomes(
    events: list[dict[str, Any]], job_id: str, slurm_job_id: str, restart: int
) -> dict[str, str]:
    """Node → outcome for this run; a node that started but never ended was lost."""
    outcomes: dict[str, str] = {}
    for event in events:
        if (
            event.get("job_id") != job_id
            or event.get("slurm_job_id") != slurm_job_id
            or event.get("restart") != restart
        ):
            continue
        node = str(event.get("node"))
        if event.get("event") == EventKind.SLURM_NODE_STARTED:
            outcomes.setdefault(node, "lost")
        elif event.get("event") == EventKind.SLURM_NODE_ENDED:
            outcomes[node] = str(event.get("outcome", "failed"))
    return outcomes


def decide_end(
    outcomes: Mapping[str, str],
    step_rc: int,
    *,
    cancelled: bool,
    requeues_used: int,
    requeue: bool,
    max_requeues: int,
) -> EndDecision:
    """The end helper's decision (pure). See the module docstring."""
    if cancelled:
        return EndDecision(False, "CANCELLED", "cancelled by user", 143)
    if not outcomes:
        return EndDecision(
            False,
            "FAILED",
            f"the srun step failed before any node task started (exit {step_rc})",
            step_rc or 1,
        )
    if step_rc == 0 and "completed" in outcomes.values():
        lost = sorted(n for n, o in outcomes.items() if o == "lost")
        note = f"finished without {', '.join(lost)} (lost)" if lost else ""
        return EndDecision(False, "COMPLETED", note, 0)
    preempted = sorted(n for n, o in outcomes.items() if o == "preempted")
    lost = sorted(n for n, o in outcomes.items() if o == "lost")
    if preempted or lost:
        why = "stopped by the preemption signal" if preempted else f"lost {', '.join(lost)}"
        if not requeue:
            return EndDecision(False, "FAILED", f"{why}; requeue is off (slurm.requeue)", 1)
        if requeues_used >= max_requeues:
            return EndDecision(False, "FAILED", f"{why}; requeue budget of {max_requeues} spent", 1)
        return EndDecision(
            True, "REQUEUED", f"{why}; requeue {requeues_used + 1} of {max_requeues}", 0
        )
    failed = ", ".join(f"{n}: {o}" for n, o in sorted(outcomes.items()) if o != "completed")
    return EndDecision(False, "FAILED", f"step exit {step_rc} ({failed})", step_rc or 1)


def run_end(jobdir: JobDir, ctx: SlurmContext, step_rc: int) -> int:
    from contract.job import read_job_file
    from launcher.spec import SlurmOptions

    job = read_job_file(jobdir)
    job_id: str = job.job_id
    slurm = SlurmOptions.model_validate(job.spec.get("slurm", {}))
    events = read_all_jsonl(jobdir.events)
    mine = [e for e in events if e.get("job_id") == job_id]
    decision = decide_end(
        run_outcomes(mine, job_id, ctx.slurm_job_id, ctx.restart),
        step_rc,
        cancelled=any(e.get("event") == EventKind.CANCELLED for e in mine),
        requeues_used=sum(1 for e in mine if e.get("event") == EventKind.REQUEUED),
        requeue=slurm.requeue,
        max_requeues=slurm.max_requeues,
    )
    say(f"step exit {step_rc}: {decision.state} {decision.reason}".rstrip())
    if decision.requeue:
        used = sum(1 for e in mine if e.get("event") == EventKind.REQUEUED)
        append_event(
            jobdir,
            EventKind.REQUEUED,
            job_id=job_id,
            reason=decision.reason,
            count=used + 1,
            max_requeues=slurm.max_requeues,
            **ctx.tags(),
        )
        result = subprocess.run(
            ["scontrol", "requeue", ctx.slurm_job_id], capture_output=True, text=True
        )
        if result.returncode == 0:
            # The requeue terminates this batch shell; wait for it rather than end the
            # job ourselves (the exit code of a requeued run is not recorded anyway).
            time.sleep(END_WAIT_S)
            return 0
        detail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        reason = f"scontrol requeue failed: {detail[0]}"
        say(reason)
        decision = EndDecision(False, "FAILED", reason, 1)
    append_event(
        jobdir,
        EventKind.FINISHED,
        job_id=job_id,
        state=decision.state,
        reason=decision.reason,
        exit_code=decision.exit_code,
        **ctx.tags(),
    )
    if decision.state == "CANCELLED":
        # `scalectl cancel` follows its stop signal with scancel; let that end the job,
        # so sacct says CANCELLED rather than an exit code.
        time.sleep(END_WAIT_S)
    return decision.exit_code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m launcher.backends.slurm_task")
    sub = parser.add_subparsers(dest="what", required=True)
    node = sub.add_parser("node", help="run this node's part of the job (one srun task)")
    node.add_argument("job_dir", type=Path)
    end = sub.add_parser("end", help="after the srun step: finish or requeue")
    end.add_argument("job_dir", type=Path)
    end.add_argument("step_rc", type=int)
    args = parser.parse_args(argv)
    ctx = SlurmContext.from_env(os.environ)
    jobdir = JobDir(args.job_dir.resolve())
    if args.what == "node":
        _redirect_output(jobdir.log_file(ctx.node, "slurm"))
        return NodeTask(jobdir, ctx).run()
    return run_end(jobdir, ctx, args.step_rc)


if __name__ == "__main__":
    sys.exit(main())
