"""Stopping on a signal (preemption, cancel): freeze torchrun, let the ranks checkpoint,
record ``stopped`` and exit 128+N; and the end of every run: no process the agent
started outlives it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time

from contract.env import AGENT_PID_ENV
from contract.events import EventKind
from contract.jobdir import read_all_jsonl
from runtime import processes
from runtime.agent.base import AgentBase

RANK_STOP_SIGNAL: dict[int, int] = {
    signal.SIGTERM: signal.SIGTERM,
    signal.SIGUSR2: signal.SIGUSR2,
    signal.SIGINT: signal.SIGTERM,
    signal.SIGHUP: signal.SIGTERM,
}
"""What the ranks are sent for each stop signal the agent gets (the trainer checkpoints
and exits on SIGTERM and SIGUSR2)."""


def stop_exit_code(signum: int) -> int:
    """Exit status after a stop signal: 128 + signum (143 SIGTERM, 140 SIGUSR2), the
    status backends treat as "preempted: requeue"."""
    return 128 + signum


class Stopping(AgentBase):
    """A stop signal's path, and the leftover sweep."""

    def _await_ranks(self, pids: list[int], since: float | None) -> None:
        """torchrun is gone during a stop: its ranks (now the agent's, as subreaper) may be
        mid-checkpoint; give them the rest of the grace before the leftovers are killed."""
        deadline = (since or time.monotonic()) + self.cfg.stop_grace_s
        while time.monotonic() < deadline:
            processes.reap_children()
            if all(processes.state(pid) in (None, "Z", "X") for pid in pids):
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
                processes.kill(pid, send)
            how = f"sent {signal.Signals(send).name} to ranks"
        self.say(f"{got}: torchrun frozen, {how} {ranks}; grace {self.cfg.stop_grace_s:g}s")
        self.event(
            EventKind.STOP_REQUESTED,
            signal=got,
            sent=None if self.reach_all else signal.Signals(send).name,
            rank_pids=ranks,
            grace_s=self.cfg.stop_grace_s,
        )

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
        self.killed_torchrun = True
        for pid in processes.marked_pids(self.marker()):
            processes.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)

    def marker(self) -> dict[str, str]:
        """Every process started under this agent carries its pid in its environment."""
        return {AGENT_PID_ENV: str(os.getpid())}

    def _kill_leftovers(self) -> int:
        """SIGKILL whatever this agent started that still runs; returns how many."""
        left = processes.kill_marked(self.marker())
        if left:
            self.say(f"killed {len(left)} leftover process(es): {left}")
        return len(left)
