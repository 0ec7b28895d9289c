"""Hangs and stragglers among this node's ranks (policies in ``runtime.agent.watch``):
a hung rank gets its stacks dumped and is killed; a straggler is reported."""

from __future__ import annotations

import signal
import time

from contract.events import EventKind
from runtime import processes
from runtime.agent import procs, stacks
from runtime.agent.base import AgentBase
from runtime.agent.watch import find_stragglers, stalled


class HangChecks(AgentBase):
    """Checks run every ``poll_s`` while the workers train."""

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
        stopped = [s.rank for s in stalls if processes.state(by_rank[s.rank].pid) == "T"]
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
            processes.kill(pid, signal.SIGKILL)
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
