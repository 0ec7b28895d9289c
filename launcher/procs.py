"""Finding and stopping every process of a job on this machine.

torchrun starts each worker in a session of its own, so one process group never holds
a whole job. Every process of a job carries ``SCALECTL_JOB_ID`` in its environment
(set by the backend and inherited by torchrun, the ranks and anything they spawn, even
daemons that call ``setsid``), so scanning ``/proc`` for it finds them all, including
orphans re-parented to init.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterable
from dataclasses import dataclass

import psutil

from contract.env import JOB_ID_ENV

JOB_ENV = JOB_ID_ENV


def job_processes(job_id: str, exclude: Iterable[int] = ()) -> list[psutil.Process]:
    """Live processes of this user whose environment has ``SCALECTL_JOB_ID=job_id``."""
    skip = {os.getpid(), *exclude}
    found: list[psutil.Process] = []
    for proc in psutil.process_iter():
        if proc.pid in skip:
            continue
        try:
            if proc.environ().get(JOB_ENV) != job_id:
                continue
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
            continue
        found.append(proc)
    return found


def process_of_job(pid: int, job_id: str) -> psutil.Process | None:
    """The live process ``pid`` if it belongs to ``job_id`` (guards against pid reuse)."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        if proc.environ().get(JOB_ENV) != job_id:
            return None
        return proc
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
        return None


@dataclass(frozen=True)
class StopReport:
    """What stopping a set of processes took."""

    exited_on_term: int
    """Processes that exited within the grace period after SIGTERM."""
    killed: int
    """Processes that needed SIGKILL."""
    survivors: int
    """Processes still alive after SIGKILL (should be 0; e.g. stuck in the kernel)."""


def signal_processes(procs: Iterable[psutil.Process], sig: int) -> None:
    """Send ``sig`` to each process and, where it leads its group, to the whole group."""
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError):
            if sig == signal.SIGKILL:
                pgid = os.getpgid(proc.pid)
                if pgid == proc.pid and pgid != os.getpgrp():
                    os.killpg(pgid, sig)
            proc.send_signal(sig)


def stop_processes(procs: list[psutil.Process], grace_s: float, *, term: bool = True) -> StopReport:
    """SIGTERM (unless ``term`` is False: the caller already asked them to stop), wait up
    to ``grace_s`` for them to exit, then SIGKILL the rest and wait for them to go."""
    if not procs:
        return StopReport(0, 0, 0)
    if term:
        signal_processes(procs, signal.SIGTERM)
    _, alive = psutil.wait_procs(procs, timeout=max(0.0, grace_s))
    exited = len(procs) - len(alive)
    if not alive:
        return StopReport(exited, 0, 0)
    signal_processes(alive, signal.SIGKILL)
    _, still = psutil.wait_procs(alive, timeout=5.0)
    return StopReport(exited, len(alive) - len(still), len(still))
