"""The rank processes under one torchrun, read straight from ``/proc`` (Linux).

torchrun starts each worker in a session of its own, as a direct child; the worker is
``runtime.rank_exec``, which execs the entrypoint, so the child *is* the rank. Its global
rank and attempt are in its environment (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``,
``GROUP_WORLD_SIZE``, ``TORCHELASTIC_RESTART_COUNT``), read once per pid.
The generic ``/proc`` readers live in :mod:`runtime.processes`.
"""

from __future__ import annotations

from dataclasses import dataclass

from runtime.processes import children, read_environ, stat_fields, state

_WANTED = (
    "RANK",
    "LOCAL_RANK",
    "WORLD_SIZE",
    "GROUP_WORLD_SIZE",
    "TORCHELASTIC_RESTART_COUNT",
)


@dataclass(frozen=True)
class Worker:
    """One rank process of this node."""

    pid: int
    rank: int
    """Global rank (``RANK``)."""
    local_rank: int
    world_size: int
    nodes: int
    """Nodes in the current rendezvous round (``GROUP_WORLD_SIZE``)."""
    restart_count: int
    """torchrun's failure-restart count (membership changes do not raise it)."""
    start_ticks: int
    """Start time in clock ticks since boot (``/proc/<pid>/stat`` field 22): pid reuse guard."""
    local_world_size: int = 1
    """Ranks torchrun starts on this node (``LOCAL_WORLD_SIZE``)."""


class WorkerTable:
    """Workers of one torchrun, with each pid's environment read once."""

    def __init__(self) -> None:
        self._known: dict[int, Worker | None] = {}

    def scan(self, torchrun_pid: int) -> list[Worker]:
        workers: list[Worker] = []
        alive = set()
        for pid in children(torchrun_pid):
            alive.add(pid)
            if self._known.get(pid) is None:
                # Between fork and exec a child still shows torchrun's environment.
                self._known[pid] = _worker(pid)
            worker = self._known[pid]
            if worker is not None and state(pid) not in (None, "Z", "X"):
                workers.append(worker)
        for pid in list(self._known):
            if pid not in alive:
                del self._known[pid]
        workers.sort(key=lambda w: w.local_rank)
        return workers


def _worker(pid: int) -> Worker | None:
    env = read_environ(pid)
    if "RANK" not in env or "LOCAL_RANK" not in env:
        return None
    fields = stat_fields(pid)

    def number(key: str, default: int) -> int:
        value = env.get(key, "")
        return int(value) if value.lstrip("-").isdigit() else default

    return Worker(
        pid=pid,
        rank=number("RANK", 0),
        local_rank=number("LOCAL_RANK", 0),
        world_size=number("WORLD_SIZE", 1),
        nodes=number("GROUP_WORLD_SIZE", 1),
        restart_count=number("TORCHELASTIC_RESTART_COUNT", 0),
        start_ticks=int(fields[19]) if fields and len(fields) > 19 else 0,
        local_world_size=number("LOCAL_WORLD_SIZE", 1),
    )
