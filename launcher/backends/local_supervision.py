"""What the local backend's supervisor does once it runs (see
:mod:`launcher.backends.local_supervisor` for how it starts): start the node agents,
watch them, return lost nodes, enforce the time limit, prune checkpoints, stop the job
and record how it ended."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

from contract.env import local_node_return_s
from contract.events import EventKind, append_event
from contract.job import read_job_file
from contract.jobdir import JobDir, read_tail, tail_jsonl
from launcher.backends.local import (
    cpus_available,
    free_port,
    host_name,
    local_agent_count,
    local_node_names,
    local_rendezvous,
)
from launcher.commands import node_command, rank_environment
from launcher.errors import RegistryError
from launcher.spec import JobSpec
from launcher.states import JobState
from launcher.store import Store
from runtime.processes import job_processes, redirect_output, stop_processes

POLL_S = 0.2
PRUNE_EVERY_S = 5.0
NODE_RETURN_S = 5.0
"""Delay before a lost node's agent is started again (``SCALECTL_LOCAL_NODE_RETURN_S``
overrides it: tests make the node stay away long enough to see the job shrink)."""


def node_return_s() -> float:
    try:
        configured = local_node_return_s()
        return max(0.0, NODE_RETURN_S if configured is None else configured)
    except ValueError:
        return NODE_RETURN_S


def say(message: str) -> None:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    print(f"[{stamp}] supervisor: {message}", flush=True)


def checkpoints_to_prune(complete: list[tuple[int, Path]], keep_last: int) -> list[Path]:
    """Committed checkpoints beyond the newest ``keep_last`` (``complete`` oldest first)."""
    if keep_last < 1 or len(complete) <= keep_last:
        return []
    return [path for _, path in complete[:-keep_last]]


_ROOT_CAUSE = re.compile(r"rank\s*:\s*(\d+)\s*\(local_rank:\s*\d+\)\s*exitcode\s*:\s*(-?\d+)")


def failure_reason(torchrun_log_tail: str, rank_log_tails: dict[int, str], code: int) -> str:
    """A one-line reason for a failed job: which rank failed with what, and its last line.

    torchrun's ChildFailedError report names the root-cause rank and exit code; the
    rank's own log usually ends with the exception that killed it. The report lists the
    ranks torchrun stopped afterwards ("Failures:", SIGTERM) before its "Root Cause" section,
    so the rank is read from that section when there is one.
    """
    text = " ".join(torchrun_log_tail.split())
    root = text.rfind("Root Cause")
    match = _ROOT_CAUSE.search(text, root if root >= 0 else 0)
    if match is None:
        return f"torchrun exited with code {code}"
    rank, rank_code = int(match.group(1)), int(match.group(2))
    reason = f"rank {rank} exited with code {rank_code}"
    if rank_code < 0:
        with contextlib.suppress(ValueError):
            reason = f"rank {rank} killed by {signal.Signals(-rank_code).name}"
    last = _last_line(rank_log_tails.get(rank, ""))
    if last:
        reason += f": {last}"
    return reason[:300]


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


class Supervisor:
    def __init__(self, jobdir: JobDir, registry: Path) -> None:
        self.jobdir = jobdir
        self.registry = registry
        job = read_job_file(jobdir)
        self.job_id: str = job.job_id
        self.spec = JobSpec.model_validate(job.spec)
        self.agents: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.launch: dict[str, tuple[list[str], dict[str, str], str]] = {}
        """Per node: argv, environment and working directory its agent was started with."""
        self.node_returns = 0
        self.lost_since: dict[str, float] = {}
        self.stop_signal: int | None = None
        self.stop_reason: str | None = None
        self.stop_state: JobState | None = None
        self.stop_deadline: float | None = None
        self.killed_after_grace = False
        self._store: Store | None = None

    # -- registry and events ---------------------------------------------------

    def event(self, name: EventKind, **fields: Any) -> None:
        try:
            append_event(self.jobdir, name, source="launcher", job_id=self.job_id, **fields)
        except OSError as exc:
            say(f"could not write event {name}: {exc}")

    def set_state(self, state: JobState, reason: str = "", **kwargs: Any) -> None:
        try:
            if self._store is None:
                self._store = Store(self.registry)
            self._store.transition(self.job_id, state, reason, **kwargs)
        except RegistryError as exc:
            # events.jsonl still has the truth; `scalectl jobs` reconciles from it.
            say(f"could not record state {state.value}: {exc}")

    # -- lifecycle -------------------------------------------------------------

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.stop_signal is None:
            self.stop_signal = signum

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        start_s = time.monotonic()
        try:
            self.start_agents()
        except Exception as exc:
            reason = f"could not start torchrun: {exc}"
            say(reason)
            self.event(EventKind.FAILED, state=JobState.FAILED.value, reason=reason, exit_code=None)
            self.set_state(JobState.FAILED, reason)
            self.stop_all(grace_s=0.0)
            return 1
        codes = self.watch(start_s)
        return self.finish(codes)

    def start_agents(self) -> None:
        spec = self.spec
        port = spec.local.rdzv_port or free_port()
        rendezvous = local_rendezvous(self.job_id, port)
        nodes = local_node_names(host_name(), local_agent_count(spec))
        workdir = str(spec.workdir or self.jobdir.root)
        argv: list[str] = []
        for node in nodes:
            env = {
                **os.environ,
                **rank_environment(spec, self.job_id, self.jobdir.root, node, cpus_available()),
            }
            argv = node_command(
                spec,
                self.jobdir.root,
                rendezvous,
                sys.executable,
                backend_grace_s=spec.local.stop_grace_s,
            )
            self.launch[node] = (argv, env, workdir)
            self.agents.append((node, self.spawn(node)))
        self.event(
            EventKind.STARTED,
            supervisor_pid=os.getpid(),
            agents={node: proc.pid for node, proc in self.agents},
            rdzv_endpoint=rendezvous.endpoint,
            command=argv,
        )
        self.set_state(JobState.RUNNING, "", only_from=[JobState.PENDING])

    def spawn(self, node: str) -> subprocess.Popen[bytes]:
        argv, env, workdir = self.launch[node]
        with open(self.jobdir.log_file(node, "torchrun"), "ab") as out:
            proc = subprocess.Popen(
                argv,
                env=env,
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                process_group=0,
            )
        say(f"node {node}: agent pid {proc.pid}: {' '.join(argv)}")
        return proc

    def return_lost_nodes(self, codes: list[int | None]) -> None:
        """Start again the agent of a node that was killed while the job goes on."""
        if self.stop_reason is not None or all(code is not None for code in codes):
            return
        now = time.monotonic()
        for index, ((node, _), code) in enumerate(zip(self.agents, codes, strict=True)):
            if code is None or code >= 0:
                continue
            if self.node_returns >= self.spec.max_restarts:
                continue
            since = self.lost_since.setdefault(node, now)
            if now - since < node_return_s():
                continue
            del self.lost_since[node]
            self.node_returns += 1
            say(f"node {node}: agent killed by signal {-code}; starting it again")
            self.event(EventKind.NODE_RETURNED, node=node, lost_exit_code=code)
            self.agents[index] = (node, self.spawn(node))

    def watch(self, start_s: float) -> list[int | None]:
        spec = self.spec
        next_prune = time.monotonic() + PRUNE_EVERY_S
        while True:
            codes = [proc.poll() for _, proc in self.agents]
            self.return_lost_nodes(codes)
            codes = [proc.poll() for _, proc in self.agents]
            if all(code is not None for code in codes):
                return codes
            now = time.monotonic()
            if self.stop_reason is None:
                if self.stop_signal is not None:
                    name = signal.Signals(self.stop_signal).name
                    self.begin_stop(f"stopped by {name}", JobState.CANCELLED)
                elif spec.time_limit_s is not None and now - start_s >= spec.time_limit_s:
                    self.begin_stop(
                        f"time limit of {spec.time_limit_s} s reached", JobState.TIMEOUT
                    )
            elif (
                self.stop_deadline is not None
                and now >= self.stop_deadline
                and not self.killed_after_grace
            ):
                say("grace period over; killing every process of the job")
                self.killed_after_grace = True
                self.stop_all(grace_s=0.0)
            if spec.checkpoint.keep_last is not None and now >= next_prune:
                next_prune = now + PRUNE_EVERY_S
                self.prune(spec.checkpoint.keep_last)
            time.sleep(POLL_S)

    def grace_s(self) -> float:
        """The spec's grace period, or the one ``scalectl cancel --grace`` recorded."""
        for event in reversed(tail_jsonl(self.jobdir.events, 50)):
            if event.get("event") == EventKind.CANCELLED and event.get("job_id") == self.job_id:
                value = event.get("grace_s")
                if isinstance(value, int | float) and value >= 0:
                    return float(value)
                break
        return self.spec.local.stop_grace_s

    def begin_stop(self, reason: str, state: JobState) -> None:
        grace_s = self.grace_s()
        say(f"{reason}; sending SIGTERM to the node agents (grace {grace_s:g} s)")
        self.stop_reason = reason
        self.stop_state = state
        self.stop_deadline = time.monotonic() + grace_s
        self.event(EventKind.STOPPING, reason=reason, grace_s=grace_s)
        for _, proc in self.agents:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)

    def stop_all(self, grace_s: float) -> None:
        procs = job_processes(self.job_id)
        if procs:
            report = stop_processes(procs, grace_s)
            say(
                f"stopped {len(procs)} leftover process(es): {report.exited_on_term} on "
                f"SIGTERM, {report.killed} killed, {report.survivors} survived"
            )
        for _, proc in self.agents:
            try:
                proc.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                say(f"agent pid {proc.pid} did not exit")

    def prune(self, keep_last: int) -> None:
        for path in checkpoints_to_prune(self.jobdir.complete_checkpoints(), keep_last):
            shutil.rmtree(path, ignore_errors=True)
            say(f"pruned {path.name} (keep_last={keep_last})")

    def finish(self, codes: list[int | None]) -> int:
        # Anything still marked with the job's id (a daemon a rank left behind) goes now.
        self.stop_all(grace_s=2.0)
        if self.spec.checkpoint.keep_last is not None:
            self.prune(self.spec.checkpoint.keep_last)
        exit_codes = [c if c is not None else -9 for c in codes]
        succeeded = [c for c in exit_codes if c == 0]
        code = 0 if succeeded else next((c for c in exit_codes if c != 0), 1)
        if self.stop_reason is not None and self.stop_state is not None:
            state, reason = self.stop_state, self.stop_reason
        elif succeeded:
            state = JobState.COMPLETED
            failed = len(exit_codes) - len(succeeded)
            reason = f"{failed} of {len(exit_codes)} node agents failed" if failed else ""
        else:
            state, reason = JobState.FAILED, self.describe_failure(code)
        say(f"job ended: {state.value} (exit code {code}) {reason}".rstrip())
        self.event(EventKind.FINISHED, exit_code=code, state=state.value, reason=reason)
        self.set_state(state, reason, exit_code=code)
        if self._store is not None:
            self._store.close()
        return code if 0 <= code < 256 else 1

    def describe_failure(self, code: int) -> str:
        torchrun_tail = "\n".join(
            read_tail(self.jobdir.log_file(n, "torchrun"), 16384) for n, _ in self.agents
        )
        rank_tails = {
            int(log.rank): read_tail(log.path, 4096) for log in self.jobdir.logs() if log.is_rank
        }
        return failure_reason(torchrun_tail, rank_tails, code)


def supervise(job_dir: Path, registry: Path) -> int:
    """Supervise the job in ``job_dir`` to its end; returns the exit code to leave with."""
    jobdir = JobDir(job_dir)
    redirect_output(jobdir.log_file(host_name(), "supervisor"))
    return Supervisor(jobdir, registry).run()
