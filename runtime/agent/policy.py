"""What differs between backends on a node, behind one small interface.

The node agent is the only process between the scheduler and torchrun on every backend;
the few things the backend decides (who delivers stop signals, what an outside kill of
torchrun means, what the agent's exit status must tell the scheduler, which events the
backend's own readers need) are answered by a :class:`BackendPolicy`, so the agent's
loop has no backend branches. The policy is chosen by ``scalectl agent --policy``
(``auto``: ``kubernetes`` inside a pod, else ``local``; the sbatch script passes
``slurm``) in ``runtime.agent.policies``, the registry.
"""

from __future__ import annotations

import signal
from collections.abc import Mapping
from typing import TYPE_CHECKING

from contract.env import signals_reach_all

if TYPE_CHECKING:
    from runtime.agent.base import AgentBase
    from runtime.agent.config import AgentConfig

POLICIES = ("auto", "local", "slurm", "kubernetes")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR2)
"""Signals that make the agent stop the ranks (they checkpoint) and exit 128+N."""


class BackendPolicy:
    """The local behaviour; backends override what differs."""

    name = "local"

    def __init__(self, cfg: AgentConfig, environ: Mapping[str, str]) -> None:
        self.cfg = cfg
        self.environ = environ

    def signals_reach_all(self) -> bool:
        """Whether the scheduler signals every process of the job, ranks included."""
        # SCALECTL_SIGNALS_REACH_ALL=1: for schedulers the agent has no policy for (the
        # Slurm policy knows it without the variable).
        return signals_reach_all(self.environ)

    def stop_signals(self) -> tuple[int, ...]:
        """Signals the agent handles as "stop: checkpoint and exit"."""
        return STOP_SIGNALS

    def torchrun_ignored(self) -> set[int]:
        """Signals torchrun is started with ignored (ignored signals stay ignored on exec)."""
        if self.signals_reach_all():
            # The scheduler signals torchrun too; a stop signal torchrun does not handle
            # (SIGUSR2) would kill it under its ranks.
            return {signal.SIGUSR2}
        return set()

    def torchrun_env(self) -> dict[str, str]:
        """Environment added for torchrun (and so the ranks)."""
        return {}

    def on_start(self, agent: AgentBase) -> None:
        """The agent is up (signals handled, subreaper); before torchrun starts."""

    def on_signal(self, agent: AgentBase, signum: int) -> None:
        """A signal the agent handles arrived (called from its loop, not the handler)."""

    def torchrun_lost(self, code: int, killed_by_agent: bool) -> bool:
        """torchrun ended with ``code``: True when that means this node left the job, so
        the agent must not restart it. Locally, torchrun killed from outside is a fault
        like any other: restarted within the budget."""
        return False

    def exit_code(self, agent: AgentBase, code: int, leftovers: int) -> int:
        """The agent's exit status for the backend, given its own (see ``runtime.agent``)."""
        return code


class LocalPolicy(BackendPolicy):
    """This machine (``launcher.backends.local``): the local supervisor sends SIGTERM to
    the agent only, and the agent passes one stop signal on to each rank."""

    name = "local"


class KubernetesPolicy(BackendPolicy):
    """A pod: the agent is the container's command, PID 1, so it already reaps every
    orphan, and the kubelet sends SIGTERM to PID 1 only (then SIGKILL after
    ``terminationGracePeriodSeconds``): the agent passes the stop signal to the ranks,
    as locally. A pod killed outside is replaced by its controller, not by the agent."""

    name = "kubernetes"
