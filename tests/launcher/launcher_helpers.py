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


def launch_plan(cli: Any, plan: Path, *trainer_args: str) -> tuple[Any, Any, dict[str, Any]]:
    """``scalectl launch --plan plan -f -- trainer_args``, finished with exit 0: the job's
    record, its JobDir and the trainer's ``layout_applied`` event."""
    from contract.jobdir import JobDir, read_all_jsonl
    from launcher.store import Store

    run = cli("launch", "--plan", str(plan), "-f", "--", *trainer_args)
    assert run.code == 0, run.out + run.err
    with Store() as store:
        record = store.get(job_id_from(run.out))
    assert record is not None
    job = JobDir(record.job_dir)
    (applied,) = [e for e in read_all_jsonl(job.events) if e.get("event") == "layout_applied"]
    return record, job, applied


def jobs_json_entry(cli: Any, job_id: str) -> dict[str, Any]:
    """The job's entry of ``scalectl jobs --json``."""
    shown = cli("jobs", "--json")
    assert shown.code == 0, shown.err
    (mine,) = [j for j in json.loads(shown.out) if j["id"] == job_id]
    return mine
