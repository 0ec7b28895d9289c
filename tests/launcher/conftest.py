"""Fixtures for launcher tests: a private SCALECTL_HOME, the CLI in-process, cleanup.

Every test gets its own ``$SCALECTL_HOME`` under tmp_path, so nothing touches
``~/.local/state``; after each test any process still carrying the id of a job from
that registry is killed, so a failing test cannot leave jobs running.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from launcher.paths import registry_path


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
    from launcher.store import Store
    from runtime.processes import job_processes, stop_processes

    try:
        with Store(path) as store:
            ids = [r.id for r in store.list_jobs()]
    except RegistryError:
        return
    for job_id in ids:
        stop_processes(job_processes(job_id), 1.0)


@pytest.fixture
def script(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write a small Python script into tmp_path and return its path."""

    def write(name: str, body: str) -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(body))
        return path

    return write
