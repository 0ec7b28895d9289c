"""Fixtures for the Slurm backend tests: a private SCALECTL_HOME, the CLI in-process, and
cleanup of every Slurm job a test submitted (so a failing test leaves nothing queued)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class CliResult:
    code: int
    out: str
    err: str


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
    from launcher.procs import job_processes, stop_processes
    from launcher.store import Store

    with Store(path) as store:
        records = store.list_jobs()
    handles = [r.backend_job_id for r in records if r.backend == "slurm" and r.backend_job_id]
    if handles:
        subprocess.run(["scancel", *handles], capture_output=True, check=False)
    for record in records:
        stop_processes(job_processes(record.id), 1.0)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    """Run ``scalectl ARGS...`` in this process; returns exit code, stdout, stderr."""
    from scalectl.cli import main

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run
