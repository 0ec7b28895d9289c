"""The node agent inside a Slurm allocation: the one task ``srun`` starts on every node.

What only Slurm makes hard, answered for the agent (``runtime.agent.policy``):

* **Signals.** Slurm delivers a job's signals (``--signal=USR2@T`` before the time limit,
  ``scancel --signal``, the SIGTERM of ``scancel``/kill-on-bad-exit/preemption) to *every*
  process of the step — proctrack/cgroup and proctrack/linuxproc signal the whole
  process tree, torchrun's workers included, although torchrun starts them in sessions
  of their own. So each rank already has the signal; whoever forwards it again makes it
  the rank's *second* signal, which the reference trainer (rightly) treats as "stop
  now, no checkpoint". Hence the agent sends the ranks nothing (it only freezes
  torchrun and waits for them to checkpoint and exit), torchrun is started with the
  preemption signal (``slurm.signal``) ignored and told not to handle it
  (``PET_SIGNALS_TO_HANDLE``). Only where Slurm signals just the task's process group
  (proctrack/pgid) does the agent send the ranks the signal itself, once. SIGTERM is
  left to torchrun (its default forwarding), so a plain ``scancel`` stops without a
  checkpoint; ``scalectl cancel`` sends the stop signal first.
* **Zombie ranks.** The agent is a child subreaper (on every backend): ranks orphaned by
  a dying torchrun stay in the step's process tree, and when torchrun is gone the agent
  kills every leftover process it started (``runtime.processes``).
* **Node loss.** torchrun killed from outside (not by the agent) is this node leaving
  the job; the agent does not restart it. When the job is elastic (``--nnodes`` minimum
  below the allocation) the agent exits 0, so ``--kill-on-bad-exit`` leaves the other
  nodes running and their torchruns re-form the rendezvous at the smaller size;
  otherwise it exits 1 and the step (then the end helper, which requeues for a lost
  node) takes over. A node lost for real takes the agent with it: the end helper counts
  a node that started and never ended as lost. The agent's own environment (what
  ``srun`` gave it) has no ``SCALECTL_NODE``, which only its children carry, so killing
  "every process of the job on a node" (fault injection, the tests) spares it.

Every agent records ``slurm_node_started`` and ``slurm_node_ended`` (with its outcome:
completed, preempted, stopped, lost, failed) in events.jsonl, tagged with the Slurm job
id and ``SLURM_RESTART_COUNT``; the end helper (``launcher.backends.slurm_task end``)
decides from them whether to requeue.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from contract.events import EventKind
from runtime.agent import torchrun
from runtime.agent.policy import STOP_SIGNALS, BackendPolicy

if TYPE_CHECKING:
    from runtime.agent.base import AgentBase
    from runtime.agent.config import AgentConfig

TORCHRUN_HANDLES = ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT")
"""torchrun's default ``--signals-to-handle`` (signals it forwards to its workers)."""


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


def torchrun_signals(stop_signal: str) -> str:
    """``PET_SIGNALS_TO_HANDLE`` for torchrun: its defaults without the stop signal."""
    name = "SIG" + stop_signal
    return ",".join(s for s in TORCHRUN_HANDLES if s != name)


def outcome(code: int, stop_signal: int | None, preempt_signal: int, lost: bool) -> str:
    """This node's outcome for the end helper, from the agent's own exit code (pure)."""
    if code == 0:
        return "completed"
    if stop_signal is not None:
        return "preempted" if stop_signal == preempt_signal else "stopped"
    if lost:
        return "lost"
    return "failed"


def exit_code(outcome_name: str, code: int, *, nodes_min: int, num_nodes: int) -> int:
    """The task's exit status for ``srun`` (pure): 0 wherever the step must go on or the
    end helper decides (``--kill-on-bad-exit`` would end the other nodes' tasks)."""
    if outcome_name in ("completed", "preempted"):
        return 0
    if outcome_name == "lost":
        # Elastic slack: the other nodes go on without us (kill-on-bad-exit stays off).
        return 0 if nodes_min < num_nodes else 1
    if outcome_name == "stopped":
        return 143
    return code if 0 < code < 256 else 1


class SlurmPolicy(BackendPolicy):
    """See the module docstring."""

    name = "slurm"

    def __init__(self, cfg: AgentConfig, environ: Mapping[str, str]) -> None:
        super().__init__(cfg, environ)
        self.ctx = SlurmContext.from_env(environ)
        self.preempt_name = cfg.preempt_signal or "USR2"
        self.preempt = signal.Signals["SIG" + self.preempt_name]
        self._reach_all: bool | None = None

    def signals_reach_all(self) -> bool:
        if self._reach_all is None:
            self._reach_all = not _slurm_skips_descendants()
        return self._reach_all

    def stop_signals(self) -> tuple[int, ...]:
        return tuple(dict.fromkeys((*STOP_SIGNALS, self.preempt)))

    def torchrun_ignored(self) -> set[int]:
        return {*super().torchrun_ignored(), self.preempt}

    def torchrun_env(self) -> dict[str, str]:
        return {"PET_SIGNALS_TO_HANDLE": torchrun_signals(self.preempt_name)}

    def on_start(self, agent: AgentBase) -> None:
        agent.say(
            f"slurm task of job {self.ctx.slurm_job_id} (run {self.ctx.restart}), "
            f"node {self.ctx.node_index} of {self.ctx.num_nodes}, pid {os.getpid()}"
        )
        agent.event(
            EventKind.SLURM_NODE_STARTED,
            pid=os.getpid(),
            rdzv_endpoint=next(
                (a.split("=", 1)[1] for a in agent.args if a.startswith("--rdzv-endpoint=")),
                None,
            ),
            nodes=self.ctx.num_nodes,
            **self.ctx.tags(),
        )
        if self.ctx.node_index == 0:
            agent.event(
                EventKind.STARTED,
                backend="slurm",
                nodelist=self.environ.get("SLURM_JOB_NODELIST"),
                command=torchrun.torchrun_argv(sys.executable, agent.args, agent.cfg.restarts),
                **self.ctx.tags(),
            )

    def on_signal(self, agent: AgentBase, signum: int) -> None:
        agent.event(EventKind.SLURM_SIGNAL, signal=signal.Signals(signum).name, **self.ctx.tags())

    def torchrun_lost(self, code: int, killed_by_agent: bool) -> bool:
        return code < 0 and not killed_by_agent

    def exit_code(self, agent: AgentBase, code: int, leftovers: int) -> int:
        lost = agent.lost_exit is not None
        result = outcome(code, agent.stop_signal, self.preempt, lost)
        stop = agent.stop_signal
        agent.event(
            EventKind.SLURM_NODE_ENDED,
            outcome=result,
            node_command_exit=code,
            signal=signal.Signals(stop).name if stop is not None else None,
            leftovers_killed=leftovers,
            **self.ctx.tags(),
        )
        if result == "lost":
            reason = f"torchrun killed (exit {agent.lost_exit})"
            agent.event(EventKind.NODE_LOST, reason=reason, **self.ctx.tags())
        sizes = torchrun.nnodes(agent.args)
        nodes_min = sizes[0] if sizes is not None else self.ctx.num_nodes
        final = exit_code(result, code, nodes_min=nodes_min, num_nodes=self.ctx.num_nodes)
        agent.say(f"slurm task ends: {result} (agent exit {code}, task exit {final})")
        return final


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
