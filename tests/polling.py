"""Waiting in tests for something another process does: one helper for every folder.

Importable as ``polling`` from any test (``tests/`` is on ``sys.path`` because the root
``conftest.py`` lives there).

Every wait has a ceiling of at most :data:`CEILING_S`. A wait for something that takes
long but shows steady progress (a training job running to its end on a loaded machine)
passes ``progress`` (e.g. :func:`job_activity`): then the ceiling is on the time
*without progress*, so a slow machine is waited for and a stuck job still fails within
a minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

CEILING_S = 60.0
"""The longest any test waits for one thing to happen (issue 15)."""


class _Clock:
    """The deadline of one wait, pushed back whenever ``progress`` changes."""

    def __init__(self, timeout_s: float, progress: Callable[[], Any] | None) -> None:
        if not 0 < timeout_s <= CEILING_S:
            raise ValueError(f"timeout_s={timeout_s:g}: a test waits at most {CEILING_S:g} s")
        self.timeout_s = timeout_s
        self.progress = progress
        self.seen = progress() if progress is not None else None
        self.deadline = time.monotonic() + timeout_s

    def expired(self) -> bool:
        now = time.monotonic()
        if self.progress is not None:
            value = self.progress()
            if value != self.seen:
                self.seen, self.deadline = value, now + self.timeout_s
        return now > self.deadline

    def failure(self, predicate: Callable[[], Any]) -> AssertionError:
        still = f" without progress (last: {self.seen!r})" if self.progress is not None else ""
        waited = f"timed out after {self.timeout_s:g} s{still}"
        return AssertionError(f"{waited} waiting for {predicate}")


def wait_for(
    predicate: Callable[[], Any],
    timeout_s: float = CEILING_S,
    poll_s: float = 0.1,
    progress: Callable[[], Any] | None = None,
) -> Any:
    """Call ``predicate`` until it returns something truthy and return that; fail the test
    with an AssertionError naming the predicate after ``timeout_s`` (at most
    :data:`CEILING_S`), counted from the last change of ``progress()`` when given."""
    clock = _Clock(timeout_s, progress)
    while True:
        value = predicate()
        if value:
            return value
        if clock.expired():
            raise clock.failure(predicate)
        time.sleep(poll_s)


async def wait_for_async(
    predicate: Callable[[], Any],
    timeout_s: float = CEILING_S,
    poll_s: float = 0.05,
    pause: Callable[[float], Awaitable[Any]] = asyncio.sleep,
) -> Any:
    """:func:`wait_for` inside an event loop (a Textual pilot passes ``pilot.pause``, so
    the app runs while the test waits)."""
    clock = _Clock(timeout_s, None)
    while True:
        value = predicate()
        if value:
            return value
        if clock.expired():
            raise clock.failure(predicate)
        await pause(poll_s)


def job_activity(job_dir: Path) -> int:
    """Bytes in a job's ``events.jsonl`` and ``progress/*.jsonl``: they grow while the job
    trains or changes state, so this serves as ``progress`` for a wait on a whole job.
    Telemetry and logs are left out: they grow while a job is stuck too."""
    total = 0
    for path in [job_dir / "events.jsonl", *job_dir.glob("progress/*.jsonl")]:
        with contextlib.suppress(OSError):
            total += path.stat().st_size
    return total


def run_to_end(
    args: list[str],
    *,
    watch: Path | None = None,
    timeout_s: float = CEILING_S,
    poll_s: float = 0.1,
    **popen: Any,
) -> subprocess.CompletedProcess[str]:
    """``subprocess.run(args, capture_output=True, text=True, **popen)`` for a process that
    may run for minutes (a training job on a loaded machine): its ceiling is on time
    without progress, where progress is its output growing or (given ``watch``, a job
    directory) :func:`job_activity`. Past the ceiling the process is killed and the test
    fails, naming the command."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(args, stdout=out, stderr=err, **popen)

        def activity() -> tuple[int, int, int]:
            return (
                os.fstat(out.fileno()).st_size,
                os.fstat(err.fileno()).st_size,
                job_activity(watch) if watch is not None else 0,
            )

        def ended() -> bool:
            return proc.poll() is not None

        ended.__qualname__ = f"the end of {' '.join(map(str, args))[:200]}"
        try:
            wait_for(ended, timeout_s, poll_s, progress=activity)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(
            args,
            proc.returncode,
            out.read().decode("utf-8", "replace"),
            err.read().decode("utf-8", "replace"),
        )
