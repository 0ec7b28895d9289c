"""The node agent: runs the elastic torchrun of one node and keeps it alive.

See ``runtime/agent/__init__.py`` for the design; this module is the loop. One agent per
node; it never talks to the other agents (torchrun's rendezvous does that): it sees its
own torchrun, its own ranks and the shared job directory.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from types import FrameType
from typing import IO, Any

from contract.env import (
    AGENT_PID_ENV,
    JOB_DIR_ENV,
    JOB_ID_ENV,
    NODE_ENV,
    RESTART_BACKOFF_ENV,
    format_restart_backoff,
    signals_reach_all,
)
from contract.env import job_id as env_job_id
from contract.events import EventKind, append_event
from contract.jobdir import JobDir, read_all_jsonl, read_tail, write_json_atomic
from runtime.agent import classify, procs, stacks, torchrun
from runtime.agent.config import AgentConfig
from runtime.agent.summary import format_summary, job_summary
from runtime.agent.watch import ProgressWatcher, find_stragglers, stalled

SOURCE = "agent"
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR2)
RANK_STOP_SIGNAL: dict[int, int] = {
    signal.SIGTERM: signal.SIGTERM,
    signal.SIGUSR2: signal.SIGUSR2,
    signal.SIGINT: signal.SIGTERM,
    signal.SIGHUP: signal.SIGTERM,
}
"""What the ranks are sent for each stop signal the agent gets (the trainer checkpoints
and exits on SIGTERM and SIGUSR2)."""

_SECONDARY = ("peer_failure", "torchrun_exit", "unknown")
"""Causes that, followed by a smaller world, mean a node was lost."""

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
"""Also when the ranks failed with the trainer's bad-input status 2 (not restarted)."""


def stop_exit_code(signum: int) -> int:
    """Exit status after a stop signal: 128 + signum (143 SIGTERM, 140 SIGUSR2), the
    status backends treat as "preempted: requeue"."""
    return 128 + signum


class NodeAgent:
    def __init__(self, cfg: AgentConfig, torchrun_args: list[str], out: IO[str] | None = None):
        self.cfg = cfg
        self.args = torchrun.check_args(list(torchrun_args))
        self.job = JobDir(cfg.job_dir.absolute())
        self.out = out or sys.stdout
        self.job_id = env_job_id() or f"agent-{os.getpid()}-{int(time.time())}"
        self.restarts_used = 0
        self.stop_signal: int | None = None
        self.stop_ts: float | None = None
        # The scheduler delivered the stop signal to every process of the job: the ranks
        # already have it, and a second one means "stop now, no checkpoint" to the trainer.
        self.reach_all = signals_reach_all()
        self.inherited_ignored: list[int] = []
        """Stop signals the agent was started with ignored: torchrun gets them ignored too."""
        self.watcher = ProgressWatcher(self.job, cfg.straggler_window)
        self.failures: deque[tuple[float, torchrun.FailureReport]] = deque()
        self.pending: dict[str, Any] | None = None
        """The incident the next restart is for: cause, detail, fault/detected ts."""
        self.agent_killed: set[int] = set()
        self.stragglers: set[int] = set()
        self.workers_seen: dict[int, procs.Worker] = {}
        self.world_size: int | None = None
        self.generation_workers = 0
        """Most local workers seen at once in this generation."""
        self.agent_restart: dict[str, Any] | None = None
        """The agent's own restart of torchrun, recorded once its workers are up."""
        self.started_ts = time.time()

    # -- output ---------------------------------------------------------------------

    def say(self, message: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        print(f"[{stamp}] scalectl agent {self.cfg.node}: {message}", file=self.out, flush=True)

    def event(self, name: EventKind, **fields: Any) -> dict[str, Any]:
        try:
            return append_event(
                self.job, name, source=SOURCE, node=self.cfg.node, job_id=self.job_id, **fields
            )
        except OSError as exc:
            self.say(f"cannot write event {name}: {exc}")
            return {}

    # -- main -----------------------------------------------------------------------

    def run(self) -> int:
        self.job.create()
        _become_subreaper()
        for signum in STOP_SIGNALS:
            if signal.getsignal(signum) == signal.SIG_IGN:
                self.inherited_ignored.append(signum)
            signal.signal(signum, self._on_signal)
        self.event(
            EventKind.AGENT_STARTED,
            pid=os.getpid(),
            restarts=self.cfg.restarts,
            restart_mode=self.cfg.restart_mode,
            hang_floor_s=self.cfg.hang_floor_s,
            torchrun_args=self.args,
        )
        telemetry = self._start_telemetry()
        try:
            code = self._supervise()
        finally:
            self._kill_leftovers()
            if telemetry is not None:
                with contextlib.suppress(Exception):
                    telemetry.stop()
        summary = job_summary(self.job, time.time())
        summary["node"] = self.cfg.node
        summary["exit_code"] = code
        with contextlib.suppress(OSError):
            write_json_atomic(self.job.summary_json, summary)
        self.event(EventKind.AGENT_FINISHED, exit_code=code, restarts_used=self.restarts_used)
        self.say("summary:\n" + format_summary(summary))
        return code

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.stop_signal is None:
            self.stop_signal = signum
            self.stop_ts = time.time()

    def _start_telemetry(self) -> Any:
        if self.cfg.telemetry_interval_s is None:
            return None
        try:
            from runtime.telemetry import run_sampler

            run = run_sampler(
                self.job,
                node=self.cfg.node,
                interval_s=self.cfg.telemetry_interval_s,
                metrics_port=self.cfg.metrics_port,
                metrics_addr=self.cfg.metrics_addr,
                on_notice=lambda message: self.say(f"telemetry: {message}"),
            )
        except Exception as exc:  # telemetry must never stop training
            self.say(f"telemetry unavailable: {type(exc).__name__}: {exc}")
            self.event(EventKind.TELEMETRY_UNAVAILABLE, error=f"{type(exc).__name__}: {exc}")
            return None
        if run.metrics_port is not None:
            self.say(f"metrics on http://{self.cfg.metrics_addr}:{run.metrics_port}/metrics")
        return run

    def _supervise(self) -> int:
        while True:
            remaining = self.cfg.restarts - self.restarts_used
            in_place = remaining if self.cfg.restart_mode == "torchrun" else 0
            code = self._run_torchrun(in_place)
            if self.agent_restart is not None:  # torchrun ended before new workers came up
                self.event(EventKind.RESTARTED, **self.agent_restart)
                self.agent_restart = None
            if self.stop_signal is not None:
                return self._finish_stop(code)
            if code == 0:
                self.say("training finished")
                return EXIT_OK
            if self._completed_since_start():
                # The work is done and recorded: a rank that aborts in its teardown, or a
                # torchrun whose rendezvous host left after the end (a node that returned
                # late), must not make a finished job fail or train again.
                self.say(f"torchrun exited with code {code} after training_complete: finished")
                self.pending = None
                return EXIT_OK
            incident = self.pending or self._torchrun_incident(code)
            self.pending = None
            if incident["cause"] == "bad_input":
                self.say(f"ranks failed on bad input ({incident['detail']}); not restarting")
                return EXIT_BAD_INPUT
            if self.restarts_used >= self.cfg.restarts:
                self.say(
                    f"restart budget of {self.cfg.restarts} spent; giving up "
                    f"({incident['cause']}: {incident['detail']})"
                )
                self.event(EventKind.GAVE_UP, restarts_used=self.restarts_used, **incident)
                return EXIT_FAILED
            self.restarts_used += 1
            backoff = self.cfg.backoff_for(self.restarts_used)
            self.say(
                f"restarting torchrun ({self.restarts_used}/{self.cfg.restarts}) after "
                f"{incident['cause']}: {incident['detail']}; back-off {backoff:g}s"
            )
            self._sleep(backoff)
            if self.stop_signal is not None:
                return self._finish_stop(code)
            # Recorded when the new workers are up, so it can say at what size.
            self.agent_restart = {
                "by": "agent",
                "attempt": self.restarts_used,
                "backoff_s": backoff,
                "restarts_left": self.cfg.restarts - self.restarts_used,
                **incident,
            }

    def _completed_since_start(self) -> bool:
        """Whether the job recorded ``training_complete`` while this agent ran."""
        return any(
            e.get("event") == EventKind.TRAINING_COMPLETE and e.get("ts", 0) >= self.started_ts
            for e in read_all_jsonl(self.job.events)
        )

    def _torchrun_incident(self, code: int) -> dict[str, Any]:
        now = time.time()
        return {
            "cause": "torchrun_exit",
            "detail": f"torchrun exited with code {code} without a rank failure "
            "(rendezvous or store lost?)",
            "detected_ts": round(now, 3),
        }

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while self.stop_signal is None and time.monotonic() < end:
            time.sleep(min(0.1, end - time.monotonic()))

    # -- one torchrun -----------------------------------------------------------------

    def _run_torchrun(self, max_restarts: int) -> int:
        argv = torchrun.torchrun_argv(sys.executable, self.args, max_restarts)
        env = dict(os.environ)
        env.update(
            {
                AGENT_PID_ENV: str(os.getpid()),
                JOB_ID_ENV: self.job_id,
                JOB_DIR_ENV: str(self.job.root),
                NODE_ENV: self.cfg.node,
                # rank_exec sleeps the back-off of torchrun's in-place restarts (the agent
                # cannot delay those itself).
                RESTART_BACKOFF_ENV: format_restart_backoff(
                    self.cfg.backoff_s, self.cfg.backoff_max_s
                ),
                "PYTHONUNBUFFERED": "1",
                # torch ≥ 2.4 shares one TCPStore across rendezvous rounds by default, so
                # a restarted gloo rank can read the dead peer's address of the previous
                # round (connectFullMesh: connection refused). Unshared, rank 0 of each
                # round hosts a fresh store on a fresh port.
                "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1",
            }
        )
        # torchrun's grace for the SIGTERM it sends workers when the membership changes
        # (the trainer checkpoints then); 30 s by default.
        env.setdefault("PET_SHUTDOWN_TIMEOUT", str(max(1, int(self.cfg.stop_grace_s))))
        ignored = set(self.inherited_ignored)
        if self.reach_all:
            # The scheduler signals torchrun too; a stop signal torchrun does not handle
            # (SIGUSR2) would kill it under its ranks. Ignored signals stay ignored on exec.
            ignored.add(signal.SIGUSR2)

        def keep_ignored() -> None:
            for signum in ignored:
                signal.signal(signum, signal.SIG_IGN)

        self.say(f"starting: {' '.join(argv)}")
        proc = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            process_group=0,  # signals reach torchrun only through the agent
            preexec_fn=keep_ignored if ignored else None,
        )
        reader = threading.Thread(target=self._pump, args=(proc,), daemon=True)
        reader.start()
        table = procs.WorkerTable()
        self.watcher.new_generation(time.time())
        generation: tuple[int, int] | None = None
        stop_began: float | None = None
        stop_ranks: list[int] = []
        workers: list[procs.Worker] = []
        next_progress = 0.0
        while proc.poll() is None:
            now_m = time.monotonic()
            workers = table.scan(proc.pid)
            if workers:
                for worker in workers:
                    self.workers_seen[worker.pid] = worker
                current = (min(w.restart_count for w in workers), workers[0].world_size)
                if current != generation and len(workers) == len({w.local_rank for w in workers}):
                    self._on_generation(generation, current, workers)
                    generation = current
            self._handle_failures()
            if self.pending is not None and self.pending["cause"] == "bad_input":
                self.say("bad input: stopping torchrun")
                self._kill_tree(proc)
                break
            if self.stop_signal is not None:
                if stop_began is None:
                    stop_began = now_m
                    stop_ranks = [w.pid for w in workers]
                    self._begin_stop(proc, stop_ranks)
                else:
                    alive = [pid for pid in stop_ranks if procs.state(pid) not in (None, "Z", "X")]
                    if not alive:
                        self.say("the ranks have exited; stopping torchrun")
                        self._kill_tree(proc)
                        break
                    if now_m - stop_began > self.cfg.stop_grace_s:
                        self.say(f"grace over, ranks {alive} still running: killing them")
                        self._kill_tree(proc)
                        break
            elif now_m >= next_progress and workers:
                next_progress = now_m + self.cfg.poll_s
                self.watcher.poll()
                self._check_hang(workers)
                self._check_stragglers(workers)
            time.sleep(min(0.1, self.cfg.poll_s))
        code = proc.wait()
        if self.stop_signal is not None:
            self._await_ranks(stop_ranks or [w.pid for w in workers], stop_began)
        reader.join(timeout=5)
        self._handle_failures()
        if code == 0 and self.pending is not None and self.stop_signal is None:
            self._on_unseen_restart(generation, workers)
        return code

    def _on_unseen_restart(
        self, generation: tuple[int, int] | None, workers: list[procs.Worker]
    ) -> None:
        """torchrun restarted the workers after a failure and they finished before a scan
        saw them (a quick step, or a script): torchrun's success after a reported failure
        is the proof of the restart, so it is recorded as one."""
        incident, self.pending = self.pending or {}, None
        attempt = (generation[0] if generation is not None else 0) + 1
        self.restarts_used += 1
        self.event(
            EventKind.RESTARTED,
            by="torchrun",
            attempt=attempt,
            restarts_left=self.cfg.restarts - self.restarts_used,
            world_size=generation[1] if generation is not None else None,
            nodes=workers[0].nodes if workers else None,
            **incident,
        )

    def _await_ranks(self, pids: list[int], since: float | None) -> None:
        """torchrun is gone during a stop: its ranks (now the agent's, as subreaper) may be
        mid-checkpoint; give them the rest of the grace before the leftovers are killed."""
        deadline = (since or time.monotonic()) + self.cfg.stop_grace_s
        while time.monotonic() < deadline:
            _reap_children()
            if all(procs.state(pid) in (None, "Z", "X") for pid in pids):
                return
            time.sleep(0.1)

    def _begin_stop(self, proc: subprocess.Popen[bytes], ranks: list[int]) -> None:
        """Freeze torchrun, then (unless the scheduler did) send the ranks their stop
        signal, once, directly.

        Frozen, torchrun can neither restart the ranks when they exit after their
        checkpoint (it would: to torchrun an exit status of 143 is a failure) nor signal
        them a second time; and no torchrun version or option is needed for the signal to
        reach them (SIGUSR2 included, and without torchrun's 30 s shutdown limit).
        """
        assert self.stop_signal is not None
        got = signal.Signals(self.stop_signal).name
        send = RANK_STOP_SIGNAL.get(self.stop_signal, signal.SIGTERM)
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGSTOP)
        if self.reach_all:
            how = "delivered to every process by the scheduler"
        else:
            for pid in ranks:
                procs.kill(pid, send)
            how = f"sent {signal.Signals(send).name} to ranks"
        self.say(f"{got}: torchrun frozen, {how} {ranks}; grace {self.cfg.stop_grace_s:g}s")
        self.event(
            EventKind.STOP_REQUESTED,
            signal=got,
            sent=None if self.reach_all else signal.Signals(send).name,
            rank_pids=ranks,
            grace_s=self.cfg.stop_grace_s,
        )

    def _pump(self, proc: subprocess.Popen[bytes]) -> None:
        """Copy torchrun's output to ours, and note its worker-failure reports."""
        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            line = raw.decode("utf-8", errors="replace")
            self.out.write(line)
            self.out.flush()
            report = torchrun.parse_failure(line)
            if report is not None:
                self.failures.append((time.time(), report))

    # -- events from what was seen ------------------------------------------------------

    def _on_generation(
        self,
        before: tuple[int, int] | None,
        now: tuple[int, int],
        workers: list[procs.Worker],
    ) -> None:
        self.watcher.new_generation(time.time())
        self.stragglers.clear()
        self.generation_workers = len(workers)
        ranks = [w.rank for w in workers]
        nodes = workers[0].nodes
        self.say(
            f"workers up: ranks {ranks} of world size {now[1]} ({nodes} node(s)), attempt {now[0]}"
        )
        previous_world = self.world_size
        self.world_size = now[1]
        shrank = previous_world is not None and now[1] < previous_world
        if before is None and self.agent_restart is not None:
            incident = self.agent_restart
            self.agent_restart = None
            if shrank and incident["cause"] in _SECONDARY:
                incident = {**incident, "cause": "node_lost"}
            self.event(EventKind.RESTARTED, world_size=now[1], nodes=nodes, **incident)
        if before is not None and now[0] > before[0]:
            # torchrun restarted its workers in place after a failure
            self.restarts_used += now[0] - before[0]
            incident = self.pending or {"cause": "unknown", "detail": "torchrun restarted workers"}
            self.pending = None
            if (
                previous_world is not None
                and now[1] < previous_world
                and incident["cause"]
                in (
                    "peer_failure",
                    "unknown",
                )
            ):
                incident = {**incident, "cause": "node_lost"}
            self.event(
                EventKind.RESTARTED,
                by="torchrun",
                attempt=now[0],
                restarts_left=self.cfg.restarts - self.restarts_used,
                world_size=now[1],
                nodes=nodes,
                **incident,
            )
        if previous_world is not None and previous_world != now[1]:
            cause = "node_lost" if now[1] < previous_world else "node_joined"
            self.event(
                EventKind.RESIZED,
                world_size_then=previous_world,
                world_size=now[1],
                nodes=nodes,
                cause=cause,
            )

    def _handle_failures(self) -> None:
        while self.failures:
            seen_ts, report = self.failures.popleft()
            worker = self.workers_seen.get(report.pid)
            rank = worker.rank if worker is not None else None
            if report.pid in self.agent_killed:
                continue  # a hung rank the agent killed: hang_detected says why
            log_path = self.job.log_file(
                self.cfg.node, rank if rank is not None else report.local_rank
            )
            cause = classify.classify(report.exit_code, read_tail(log_path, 32768), report.pid)
            signum = classify.signal_of(report.exit_code)
            self.say(
                f"rank {rank} (local {report.local_rank}, pid {report.pid}) failed: "
                f"{cause.cause}: {cause.detail}"
            )
            self.event(
                EventKind.RANK_FAILED,
                rank=rank,
                local_rank=report.local_rank,
                pid=report.pid,
                exit_code=report.exit_code,
                signal=classify.signal_name(signum) if signum else None,
                cause=cause.cause,
                detail=cause.detail,
                attempt=worker.restart_count if worker else None,
            )
            if self.pending is None or self.pending["cause"] in ("peer_failure", "unknown"):
                self.pending = {
                    "cause": cause.cause,
                    "detail": cause.detail,
                    "rank": rank,
                    "detected_ts": round(seen_ts, 3),
                }

    def _check_hang(self, workers: list[procs.Worker]) -> None:
        self.generation_workers = max(self.generation_workers, len(workers))
        if not self.watcher.ever_progressed or self.pending is not None:
            return
        if self.watcher.completed:
            return  # after the last step ranks save, tear down and exit: no steps to wait for
        if len(workers) < self.generation_workers:
            # A rank has exited while the others run: the job is finishing (ranks leave
            # one by one after the last step) or failing (torchrun acts on that), not hung.
            return
        timeout = self.watcher.timeout_s(self.cfg.hang_floor_s, self.cfg.hang_multiplier)
        now = time.time()
        stalls = stalled(
            [w.rank for w in workers],
            self.watcher.last_seen(),
            self.watcher.generation_start_ts,
            now,
            timeout,
            self.cfg.hang_startup_s,
        )
        if not stalls:
            return
        by_rank = {w.rank: w for w in workers}
        stopped = [s.rank for s in stalls if procs.state(by_rank[s.rank].pid) == "T"]
        dumps: dict[str, str] = {}
        for stall in stalls:
            worker = by_rank[stall.rank]
            path, method = stacks.dump(
                self.job,
                self.cfg.node,
                stall.rank,
                worker.pid,
                self.job.log_file(self.cfg.node, stall.rank),
            )
            dumps[str(stall.rank)] = str(path) if path is not None else method
        last_ts = [self.watcher.last_seen()[s.rank][1] for s in stalls if s.last_step is not None]
        fault_ts = max(last_ts) if last_ts else self.watcher.generation_start_ts
        detail = (
            f"no step from rank(s) {[s.rank for s in stalls]} for "
            f"{max(s.silent_s for s in stalls):.1f}s (timeout {stalls[0].allowed_s:.1f}s)"
            + (f"; stopped (SIGSTOP): {stopped}" if stopped else "")
        )
        self.say(f"hang: {detail}; stacks: {dumps}; killing them")
        self.event(
            EventKind.HANG_DETECTED,
            ranks=[s.rank for s in stalls],
            last_steps={str(s.rank): s.last_step for s in stalls},
            silent_s=max(s.silent_s for s in stalls),
            timeout_s=stalls[0].allowed_s,
            stopped_ranks=stopped,
            stacks=dumps,
        )
        for stall in stalls:
            pid = by_rank[stall.rank].pid
            self.agent_killed.add(pid)
            procs.kill(pid, signal.SIGKILL)
        self.pending = {
            "cause": "hang",
            "detail": detail,
            "fault_ts": round(fault_ts, 3),
            "detected_ts": round(now, 3),
        }

    def _check_stragglers(self, workers: list[procs.Worker]) -> None:
        medians = self.watcher.medians()
        live = {w.rank for w in workers}
        slow = find_stragglers(
            medians, self.cfg.straggler_threshold, self.cfg.straggler_min_excess_s
        )
        for rank, ratio in slow.items():
            if rank in live and rank not in self.stragglers:
                self.stragglers.add(rank)
                self.say(f"straggler: rank {rank} is {ratio:.2f}x the others' compute time")
                self.event(
                    EventKind.STRAGGLER_DETECTED,
                    rank=rank,
                    ratio=ratio,
                    median_s=round(medians[rank], 6),
                    window=self.cfg.straggler_window,
                    threshold=self.cfg.straggler_threshold,
                )
        for rank in list(self.stragglers):
            if rank in medians and rank not in slow:
                self.stragglers.discard(rank)
                self.event(EventKind.STRAGGLER_CLEARED, rank=rank, median_s=round(medians[rank], 6))

    # -- stopping -----------------------------------------------------------------------

    def _finish_stop(self, code: int) -> int:
        assert self.stop_signal is not None and self.stop_ts is not None
        name = signal.Signals(self.stop_signal).name
        preempted = [
            e
            for e in read_all_jsonl(self.job.events)
            if e.get("event") == EventKind.PREEMPTED and e.get("ts", 0) >= self.stop_ts
        ]
        latest = self.job.latest_checkpoint()
        saved = preempted[-1].get("step") if preempted else None
        self.event(
            EventKind.STOPPED,
            signal=name,
            torchrun_exit_code=code,
            checkpointed=bool(preempted),
            checkpoint_step=saved if saved is not None else (latest[0] if latest else None),
            seconds=round(time.time() - self.stop_ts, 3),
            detected_ts=round(self.stop_ts, 3),
            fault_ts=round(self.stop_ts, 3),
        )
        self.say(
            f"stopped by {name}: "
            + ("ranks checkpointed" if preempted else "ranks did not confirm a checkpoint")
            + f"; "
            f"exit {stop_exit_code(self.stop_signal)} (requeue)"
        )
        return stop_exit_code(self.stop_signal)

    def _kill_tree(self, proc: subprocess.Popen[bytes]) -> None:
        for pid in self._my_processes():
            procs.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)

    def _my_processes(self) -> list[int]:
        """Every live process started under this agent (they carry its pid in their env)."""
        mine = f"{AGENT_PID_ENV}={os.getpid()}".encode()
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                with open(f"/proc/{entry}/environ", "rb") as handle:
                    if mine in handle.read().split(b"\0"):
                        found.append(int(entry))
            except OSError:
                continue
        return [pid for pid in found if procs.state(pid) not in (None, "Z")]

    def _kill_leftovers(self) -> None:
        _reap_children()
        left = self._my_processes()
        if left:
            self.say(f"killing {len(left)} leftover process(es): {left}")
            for pid in left:
                procs.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 5
            while self._my_processes() and time.monotonic() < deadline:
                time.sleep(0.05)
                _reap_children()


def _become_subreaper() -> None:
    """Orphans of this node's job (ranks of a killed torchrun) are re-parented to the
    agent instead of init, so they stay findable and get reaped (Linux prctl)."""
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER


def _reap_children() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def run_agent(cfg: AgentConfig, torchrun_args: list[str]) -> int:
    """Run the node agent until training ends; returns its exit code."""
    return NodeAgent(cfg, torchrun_args).run()
