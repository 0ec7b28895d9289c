"""The node agent's state and output, shared by its parts (``runtime.agent.agent`` puts
them together: restarts, node loss, hangs, preemption; ``policy`` for the backend)."""

from __future__ import annotations

import os
import sys
import time
from collections import deque
from typing import IO, Any

from contract.env import job_id as env_job_id
from contract.events import EventKind, append_event
from contract.jobdir import JobDir
from runtime.agent import procs, torchrun
from runtime.agent.config import AgentConfig
from runtime.agent.policies import choose_policy
from runtime.agent.watch import ProgressWatcher

SOURCE = "agent"


class AgentBase:
    """What every part of the agent reads and writes."""

    def __init__(self, cfg: AgentConfig, torchrun_args: list[str], out: IO[str] | None = None):
        self.cfg = cfg
        self.args = torchrun.check_args(list(torchrun_args))
        self.job = JobDir(cfg.job_dir.absolute())
        self.out = out or sys.stdout
        self.job_id = env_job_id() or f"agent-{os.getpid()}-{int(time.time())}"
        self.restarts_used = 0
        self.stop_signal: int | None = None
        self.stop_ts: float | None = None
        self.received: list[int] = []
        """Every handled signal, in order (the loop hands new ones to the policy)."""
        self.signals_seen = 0
        self.policy = choose_policy(cfg)
        # The scheduler delivered the stop signal to every process of the job: the ranks
        # already have it, and a second one means "stop now, no checkpoint" to the trainer.
        self.reach_all = self.policy.signals_reach_all()
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
        self.unannounced: tuple[int, int] | None = None
        """(attempt, world size) of a generation whose workers are not all up yet: the
        first scan of a round often sees rank 0 before torchrun has forked the rest."""
        self.killed_torchrun = False
        """The agent itself killed the current torchrun (bad input, a stop)."""
        self.lost_exit: int | None = None
        """torchrun's exit code when the policy took its end for this node's loss."""
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
