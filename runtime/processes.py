"""Process supervision on one machine: the one subreaper, the one reaper and the one scan
for a job's processes, used by the node agent, the backends, fault injection and tests.

torchrun starts each worker in a session of its own, so one process group never holds
a whole job. Every process of a job carries ``SCALECTL_JOB_ID`` in its environment
(set by the backend and inherited by the agent, torchrun, the ranks and anything they
spawn, even daemons that call ``setsid``), and everything under one node agent carries
``SCALECTL_AGENT_PID``; scanning ``/proc/<pid>/environ`` for such markers
(:func:`marked_pids`) finds them all, orphans re-parented to init included.

``/proc/<pid>/environ`` is the environment a process was *started* with: a marker a
process adds to its own ``os.environ`` later is seen only in its children.

Linux only (``/proc``, ``prctl``). psutil is imported only by the functions that return
or wait for psutil processes, so a rank that injects a fault does not pay for it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from contract.env import JOB_ID_ENV, NODE_ENV

if TYPE_CHECKING:
    import psutil

JOB_ENV = JOB_ID_ENV
PR_SET_CHILD_SUBREAPER = 36
"""``prctl`` option number, from ``<linux/prctl.h>`` (Linux 3.4+)."""


# -- reading /proc ----------------------------------------------------------------------


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (``/proc/<pid>/task/*/children``)."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/children") as handle:
            found.extend(int(x) for x in handle.read().split())
    return found


def read_environ(pid: int) -> dict[str, str]:
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            raw = handle.read()
    except OSError:
        return {}
    env: dict[str, str] = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            env[key.decode(errors="replace")] = value.decode(errors="replace")
    return env


def stat_fields(pid: int) -> list[str] | None:
    """Fields of ``/proc/<pid>/stat`` after the command name (field 3 onwards)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            text = handle.read()
    except OSError:
        return None
    return text[text.rfind(")") + 2 :].split()


def state(pid: int) -> str | None:
    """Process state letter: ``R`` running, ``S`` sleeping, ``T`` stopped, ``Z`` zombie..."""
    fields = stat_fields(pid)
    return fields[0] if fields else None


def alive(pid: int) -> bool:
    """The process exists and is not a zombie (or dead, ``X``)."""
    return state(pid) not in (None, "Z", "X")


def catches(pid: int, signum: int) -> bool:
    """Whether ``pid`` has a handler installed for ``signum`` (``SigCgt`` in its status)."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    except (OSError, ValueError):
        pass
    return False


def kill(pid: int, signum: int = signal.SIGKILL) -> bool:
    try:
        os.kill(pid, signum)
        return True
    except (ProcessLookupError, PermissionError):
        return False


# -- the scan ---------------------------------------------------------------------------


def marked_pids(marks: Mapping[str, str], exclude: Iterable[int] = ()) -> list[int]:
    """Live processes (not zombies) whose start environment holds every ``KEY=VALUE`` of
    ``marks``, this process excluded; ascending pids. Other users' processes are skipped
    (their environ is unreadable)."""
    want = {f"{key}={value}".encode() for key, value in marks.items()}
    if not want:
        return []
    skip = {os.getpid(), *exclude}
    found: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in skip:
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as handle:
                env = set(handle.read().split(b"\0"))
        except OSError:
            continue
        if want <= env and alive(int(entry)):
            found.append(int(entry))
    return sorted(found)


def job_pids(job_id: str, node: str | None = None, exclude: Iterable[int] = ()) -> list[int]:
    """Pids of ``job_id`` on this machine (of one node of it, when ``node`` is given)."""
    marks = {JOB_ENV: job_id} if node is None else {JOB_ENV: job_id, NODE_ENV: node}
    return marked_pids(marks, exclude) if job_id else []


def job_processes(job_id: str, exclude: Iterable[int] = ()) -> list[psutil.Process]:
    """:func:`job_pids` as psutil processes (for signalling and waiting on them)."""
    import psutil

    found: list[psutil.Process] = []
    for pid in job_pids(job_id, exclude=exclude):
        with contextlib.suppress(psutil.Error):
            found.append(psutil.Process(pid))
    return found


def process_of_job(pid: int, job_id: str) -> psutil.Process | None:
    """The live process ``pid`` if it belongs to ``job_id`` (guards against pid reuse)."""
    import psutil

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        if proc.environ().get(JOB_ENV) != job_id:
            return None
        return proc
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
        return None


# -- subreaper and reaper ----------------------------------------------------------------


def become_subreaper() -> None:
    """Orphans of this process's descendants (ranks of a killed torchrun) are re-parented
    to it instead of init, so they stay in its tree, findable, and get reaped."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def reap_children(keep: int | None = None) -> None:
    """Collect the exit status of every child that has ended (adopted orphans included),
    except ``keep``: a child whose status its ``Popen`` must still read."""
    if keep is None:
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
    for pid in children(os.getpid()):
        if pid != keep and state(pid) == "Z":
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)


# -- stopping ---------------------------------------------------------------------------


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
    import psutil

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
    import psutil

    if not procs:
        return StopReport(0, 0, 0)
    if term:
        signal_processes(procs, signal.SIGTERM)
    _, alive_now = psutil.wait_procs(procs, timeout=max(0.0, grace_s))
    exited = len(procs) - len(alive_now)
    if not alive_now:
        return StopReport(exited, 0, 0)
    signal_processes(alive_now, signal.SIGKILL)
    _, still = psutil.wait_procs(alive_now, timeout=5.0)
    return StopReport(exited, len(alive_now) - len(still), len(still))


def kill_marked(marks: Mapping[str, str], wait_s: float = 5.0) -> list[int]:
    """SIGKILL every process with ``marks`` and wait up to ``wait_s`` for them to go,
    reaping those that were this process's children; returns the pids killed."""
    import time

    reap_children()
    victims = marked_pids(marks)
    for pid in victims:
        kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + wait_s
    while any(alive(pid) for pid in victims) and time.monotonic() < deadline:
        time.sleep(0.05)
    reap_children()
    return victims


def redirect_output(path: Path) -> None:
    """Send this process's stdout and stderr (file descriptors 1 and 2, and Python's
    streams, line-buffered) to ``path`` in append mode: a detached supervisor or a node
    agent writes its own log, which survives its restarts."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
    sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
