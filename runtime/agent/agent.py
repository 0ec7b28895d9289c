"""The node agent: runs the elastic torchrun of one node and keeps it alive.

See ``runtime/agent/__init__.py`` for the design; this module is the loop, and
:class:`NodeAgent` puts the parts together: ``restarts`` (rank failures and the restarts
they cause), ``node_loss`` (generations, resizes), ``hang`` (hangs and stragglers),
``preemption`` (stop signals, the leftover sweep) and the backend's ``policy``. One
agent per node, the only process between the scheduler and torchrun; it never talks to
the other agents (torchrun's rendezvous does that): it sees its own torchrun, its own
ranks and the shared job directory.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from types import FrameType
from typing import Any

from contract.env import (
    AGENT_PID_ENV,
    JOB_DIR_ENV,
    JOB_ID_ENV,
    NODE_ENV,
    RESTART_BACKOFF_ENV,
    format_restart_backoff,
)
from contract.events import EventKind
from contract.jobdir import read_all_jsonl, write_json_atomic
from runtime import processes
from runtime.agent import procs, torchrun
from runtime.agent.config import AgentConfig
from runtime.agent.hang import HangChecks
from runtime.agent.node_loss import Membership
from runtime.agent.output import TorchrunOutput
from runtime.agent.preemption import Stopping
from runtime.agent.restarts import RestartRecords
from runtime.agent.summary import format_summary, job_summary

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
"""Also when the ranks failed with the trainer's bad-input status 2 (not restarted)."""


class NodeAgent(RestartRecords, Membership, HangChecks, Stopping):
    """One node's supervisor (see the module docstring)."""

    # -- main -----------------------------------------------------------------------

    def run(self) -> int:
        self.job.create()
        processes.become_subreaper()
        for signum in self.policy.stop_signals():
            if signal.getsignal(signum) == signal.SIG_IGN:
                self.inherited_ignored.append(signum)
            signal.signal(signum, self._on_signal)
        self.policy.on_start(self)
        self.event(
            EventKind.AGENT_STARTED,
            pid=os.getpid(),
            restarts=self.cfg.restarts,
            restart_mode=self.cfg.restart_mode,
            hang_floor_s=self.cfg.hang_floor_s,
            torchrun_args=self.args,
            policy=self.policy.name,
        )
        telemetry = self._start_telemetry()
        try:
            code = self._supervise()
        finally:
            leftovers = self._kill_leftovers()
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
        self._drain_signals()
        return self.policy.exit_code(self, code, leftovers)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.received.append(signum)
        if self.stop_signal is None:
            self.stop_signal = signum
            self.stop_ts = time.time()

    def _drain_signals(self) -> None:
        """Hand signals that arrived since the last call to the policy (outside the handler)."""
        while self.signals_seen < len(self.received):
            self.policy.on_signal(self, self.received[self.signals_seen])
            self.signals_seen += 1

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
            if self.policy.torchrun_lost(code, self.killed_torchrun):
                self.lost_exit = code
                self.say(f"torchrun killed from outside (exit {code}): this node left the job")
                return EXIT_FAILED
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
            self._drain_signals()
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
        env.update(self.policy.torchrun_env())
        ignored = set(self.inherited_ignored) | self.policy.torchrun_ignored()

        def keep_ignored() -> None:
            for signum in ignored:
                signal.signal(signum, signal.SIG_IGN)

        self.say(f"starting: {' '.join(argv)}")
        self.killed_torchrun = False
        proc = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            process_group=0,  # signals reach torchrun only through the agent
            preexec_fn=keep_ignored if ignored else None,
        )
        assert proc.stdout is not None
        output = TorchrunOutput(proc.stdout, self.out, self._on_failure_report)
        output.start()
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
            generation = self._observe(workers, output, generation)
            self._drain_signals()
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
                    alive = [pid for pid in stop_ranks if processes.alive(pid)]
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
            processes.reap_children(keep=proc.pid)  # orphans adopted as subreaper
            time.sleep(min(0.1, self.cfg.poll_s))
        code = proc.wait()
        if self.stop_signal is not None:
            self._await_ranks(stop_ranks or [w.pid for w in workers], stop_began)
        output.finish(timeout_s=5)
        self._handle_failures()
        if code == 0 and self.pending is not None and self.stop_signal is None:
            self._on_unseen_restart(generation, workers)
        return code

    def _observe(
        self,
        workers: list[procs.Worker],
        output: TorchrunOutput,
        generation: tuple[int, int] | None,
    ) -> tuple[int, int] | None:
        """Act on one scan of torchrun's workers; returns the generation now running.

        torchrun's output is read *after* the scan: torchrun reports a round's failure
        before it starts the next round, so a scan that sees restarted workers is never
        handled before the failure that restarted them (``runtime.agent.output``), and
        the ``restarted`` event carries that failure's cause and times.
        """
        for worker in workers:
            self.workers_seen[worker.pid] = worker
        output.drain()
        self._handle_failures()
        if self.pending is not None and self.pending["cause"] == "bad_input":
            return generation  # not a restart: the loop stops torchrun
        if not workers:
            return generation
        current = (min(w.restart_count for w in workers), workers[0].world_size)
        if current != generation and len(workers) == len({w.local_rank for w in workers}):
            self._on_generation(generation, current, workers)
            return current
        self.announce_workers(workers)
        return generation

    def _on_failure_report(self, report: torchrun.FailureReport) -> None:
        """torchrun reported a failed worker (called by the output reader)."""
        self.failures.append((time.time(), report))


def run_agent(cfg: AgentConfig, torchrun_args: list[str]) -> int:
    """Run the node agent until training ends; returns its exit code."""
    return NodeAgent(cfg, torchrun_args).run()
