"""Helpers shared by the launcher tests (imported by name: tests dirs have no __init__)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from polling import wait_for as wait_for  # the launcher tests import it from here

PYTHON = sys.executable


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
