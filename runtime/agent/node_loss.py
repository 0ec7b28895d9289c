"""Membership: a new generation of workers (a restart, a node lost or joined) is
recorded as ``restarted``/``resized``; a smaller world after a peer failure means a node
was lost (``node_lost``), a larger one that a node joined (``node_joined``)."""

from __future__ import annotations

import time

from contract.events import EventKind
from runtime.agent import procs
from runtime.agent.base import AgentBase

_SECONDARY = ("peer_failure", "torchrun_exit", "unknown")
"""Causes that, followed by a smaller world, mean a node was lost."""


class Membership(AgentBase):
    """Watches the workers' generation (torchrun's restart count, world size)."""

    def announce_workers(self, workers: list[procs.Worker]) -> None:
        """Say which ranks run here once every rank of the node is up (called each scan)."""
        if self.unannounced is None or not workers:
            return
        if len(workers) < workers[0].local_world_size:
            return
        attempt, world = self.unannounced
        self.unannounced = None
        ranks = ", ".join(str(w.rank) for w in workers)
        self.say(
            f"workers up: ranks {ranks} of world size {world} "
            f"({workers[0].nodes} node(s)), attempt {attempt}"
        )

    def _on_generation(
        self,
        before: tuple[int, int] | None,
        now: tuple[int, int],
        workers: list[procs.Worker],
    ) -> None:
        self.watcher.new_generation(time.time())
        self.stragglers.clear()
        self.generation_workers = len(workers)
        nodes = workers[0].nodes
        self.unannounced = now
        self.announce_workers(workers)
        previous_world = self.world_size
        self.world_size = now[1]
        shrank = previous_world is not None and now[1] < previous_world
        if before is None and self.agent_restart is not None:
            incident = self.agent_restart
            self.agent_restart = None
            if shrank and incident["cause"] in _SECONDARY:
                incident = {**incident, "cause": "node_lost"}
            self.event(EventKind.RESTARTED, world_size=now[1], nodes=nodes, **incident)
        # torchrun restarted its workers in place after a failure; when this agent never
        # saw the failed round's workers (they ended between two scans), the first round it
        # sees already carries torchrun's restart count, and that round is the restart.
        restarts_before = before[0] if before is not None else 0
        if now[0] > restarts_before:
            self.restarts_used += now[0] - restarts_before
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
