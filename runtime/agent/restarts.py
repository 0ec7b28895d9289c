"""The agent's record of restarts: rank failures torchrun reports, classified, and the
restart each one leads to (``rank_failed``, ``restarted``)."""

from __future__ import annotations

from contract.events import EventKind
from contract.jobdir import read_tail
from runtime.agent import classify, procs
from runtime.agent.base import AgentBase


class RestartRecords(AgentBase):
    """Turns torchrun's failure reports into events and the pending incident."""

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
