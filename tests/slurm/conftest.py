"""Fixtures for the Slurm backend tests: a private SCALECTL_HOME, the CLI in-process, and
cleanup of every Slurm job a test submitted (so a failing test leaves nothing queued)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def scalectl_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "scalectl-home"
    monkeypatch.setenv("SCALECTL_HOME", str(home))
    monkeypatch.delenv("SCALECTL_JOBS_ROOT", raising=False)
    monkeypatch.delenv("SCALECTL_JOB_ID", raising=False)
    yield home
    _cancel_leftover_slurm_jobs()


def _cancel_leftover_slurm_jobs() -> None:
    from launcher.paths import registry_path

    path = registry_path()
    if not path.exists():
        return
    from launcher.store import Store
    from runtime.processes import job_processes, stop_processes

    with Store(path) as store:
        records = store.list_jobs()
    handles = [r.backend_job_id for r in records if r.backend == "slurm" and r.backend_job_id]
    if handles:
        subprocess.run(["scancel", *handles], capture_output=True, check=False)
    for record in records:
        stop_processes(job_processes(record.id), 1.0)
