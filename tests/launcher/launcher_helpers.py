"""Helpers shared by the launcher tests (imported by name: tests dirs have no __init__)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

PYTHON = sys.executable


def wait_for(predicate: Callable[[], object], timeout_s: float = 60.0, poll_s: float = 0.1):
    """Poll until ``predicate()`` is truthy; return its value or fail after the timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {predicate}")
        time.sleep(poll_s)


def events(job_dir: Path, name: str | None = None) -> list[dict[str, Any]]:
    path = job_dir / "events.jsonl"
    if not path.exists():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in records if name is None or r.get("event") == name]


def job_id_from(output: str) -> str:
    """The id in ``launched job <id> (...)``."""
    for line in output.splitlines():
        if line.startswith("launched job "):
            return line.split()[2]
    raise AssertionError(f"no 'launched job' line in: {output!r}")
