"""Fixtures for launcher tests: a private SCALECTL_HOME, the CLI in-process, cleanup.

Every test gets its own ``$SCALECTL_HOME`` under tmp_path, so nothing touches
``~/.local/state``; after each test any process still carrying the id of a job from
that registry is killed, so a failing test cannot leave jobs running.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from launcher.paths import registry_path


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
    _kill_leftovers(registry_path())


def _kill_leftovers(path: Path) -> None:
    if not path.exists():
        return
    from launcher.errors import RegistryError
    from launcher.procs import job_processes, stop_processes
    from launcher.store import Store

    try:
        with Store(path) as store:
            ids = [r.id for r in store.list_jobs()]
    except RegistryError:
        return
    for job_id in ids:
        stop_processes(job_processes(job_id), 1.0)


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


@pytest.fixture
def script(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write a small Python script into tmp_path and return its path."""

    def write(name: str, body: str) -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(body))
        return path

    return write
