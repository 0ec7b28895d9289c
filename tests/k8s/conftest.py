"""Fixtures for the Kubernetes tests: a fake API server, a kubeconfig pointing at it, a
private SCALECTL_HOME and the CLI in-process. No real cluster is ever contacted."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_apiserver import FakeApiServer


@pytest.fixture(autouse=True)
def scalectl_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "scalectl-home"
    monkeypatch.setenv("SCALECTL_HOME", str(home))
    monkeypatch.delenv("SCALECTL_JOBS_ROOT", raising=False)
    monkeypatch.delenv("SCALECTL_JOB_ID", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    # Never fall back to a real ~/.kube/config: tests that need one write their own.
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    return home


@pytest.fixture
def fake_api() -> Iterator[FakeApiServer]:
    with FakeApiServer() as server:
        yield server


@pytest.fixture
def kubeconfig(fake_api: FakeApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = fake_api.write_kubeconfig(tmp_path / "kubeconfig")
    monkeypatch.setenv("KUBECONFIG", str(path))
    return path
