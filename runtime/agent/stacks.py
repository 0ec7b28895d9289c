"""Python stacks of stuck ranks, written to ``<job_dir>/stacks/``.

py-spy (``py-spy dump --nonblocking``) when it is on PATH or beside the Python running
the agent: it reads the stacks from outside, works on a stopped process and needs
nothing from the rank. Otherwise faulthandler: if the rank registered
``runtime.progress.enable_stack_dumps`` (the reference trainer does; the agent checks
``SigCgt`` so it never sends the signal to a process that would die of it), the agent
sends the signal, sends SIGCONT as well if the rank is stopped (a stopped process runs
its handler only when continued; it is about to be killed anyway), and copies what the
handler appended to the rank's log.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from contract.jobdir import JobDir
from runtime import processes
from runtime.progress import STACK_DUMP_SIGNAL

PY_SPY_TIMEOUT_S = 20.0
FAULTHANDLER_WAIT_S = 2.0


def py_spy_path() -> str | None:
    found = shutil.which("py-spy")
    if found:
        return found
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.is_file() and os.access(beside, os.X_OK) else None


def stacks_file(job: JobDir, node: str, rank: int, now_s: float) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%S", time.localtime(now_s))
    return job.stacks_dir / f"{stamp}.{node}.rank{rank}.txt"


def dump(job: JobDir, node: str, rank: int, pid: int, log_path: Path) -> tuple[Path | None, str]:
    """Write the stacks of ``pid`` (global ``rank``) to a file; returns (file, method).

    ``method`` is ``py-spy``, ``faulthandler`` or why neither worked.
    """
    job.stacks_dir.mkdir(parents=True, exist_ok=True)
    target = stacks_file(job, node, rank, time.time())
    spy = py_spy_path()
    if spy is not None:
        try:
            result = subprocess.run(
                [spy, "dump", "--nonblocking", "--pid", str(pid)],
                capture_output=True,
                text=True,
                timeout=PY_SPY_TIMEOUT_S,
            )
            if result.returncode == 0 and result.stdout.strip():
                target.write_text(result.stdout)
                return target, "py-spy"
        except (OSError, subprocess.TimeoutExpired):
            pass
    if not processes.catches(pid, STACK_DUMP_SIGNAL):
        return None, "unavailable: no py-spy and no faulthandler registered in the rank"
    return _faulthandler_dump(pid, log_path, target)


def _faulthandler_dump(pid: int, log_path: Path, target: Path) -> tuple[Path | None, str]:
    try:
        start = log_path.stat().st_size
    except OSError:
        return None, f"unavailable: cannot read {log_path}"
    processes.kill(pid, STACK_DUMP_SIGNAL)
    if processes.state(pid) in ("T", "t"):
        processes.kill(pid, signal.SIGCONT)
    deadline = time.monotonic() + FAULTHANDLER_WAIT_S
    size = start
    while time.monotonic() < deadline:
        time.sleep(0.1)
        try:
            new = log_path.stat().st_size
        except OSError:
            break
        if new > start and new == size:
            break  # grew, then stopped growing: the handler has finished writing
        size = new
    with open(log_path, "rb") as handle:
        handle.seek(start)
        text = handle.read().decode("utf-8", errors="replace")
    if not text.strip():
        return None, "unavailable: the faulthandler dump did not arrive"
    target.write_text(text)
    return target, "faulthandler"
