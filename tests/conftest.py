"""Session-wide fixtures: the real local Slurm cluster, the CI-strict skip policy, and the
CLI run in-process (``cli``).

Tests marked ``slurm`` get the ``slurm_cluster`` fixture automatically. On a laptop
without root (or without Debian packages) they skip with the reason; under ``CI=true``
a cluster that cannot come up fails them instead, because CI must exercise real Slurm.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SLURM_SCRIPT = REPO_ROOT / "scripts" / "slurm-local.sh"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@dataclass(frozen=True)
class SlurmCluster:
    """What tests need to know about the running local cluster."""

    nodes: tuple[str, ...]
    partition: str


def _cluster_ready() -> bool:
    if shutil.which("sinfo") is None:
        return False
    result = subprocess.run(
        ["sinfo", "-h", "-N", "-o", "%N %t"], capture_output=True, text=True, timeout=30
    )
    states = dict(line.split() for line in result.stdout.splitlines() if line.strip())
    return result.returncode == 0 and all(
        states.get(node) in {"idle", "mix", "alloc"} for node in ("node1", "node2")
    )


def _bring_up() -> str | None:
    """Start the cluster if we can; return why not, or None when it is up."""
    if _cluster_ready():
        return None
    if os.geteuid() != 0:
        return "the local Slurm cluster is not running and starting it needs root (sudo make test)"
    result = subprocess.run([str(SLURM_SCRIPT), "up"], capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        return f"scripts/slurm-local.sh up failed (exit {result.returncode}): {' | '.join(tail)}"
    return None if _cluster_ready() else "cluster started but nodes are not idle"


@pytest.fixture(scope="session")
def slurm_cluster() -> SlurmCluster:
    reason = _bring_up()
    if reason is not None:
        if in_ci():
            pytest.fail(f"CI=true requires the local Slurm cluster: {reason}", pytrace=False)
        pytest.skip(f"no Slurm: {reason}")
    return SlurmCluster(nodes=("node1", "node2"), partition="debug")


@pytest.fixture(autouse=True)
def _slurm_marker(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("slurm") is not None:
        request.getfixturevalue("slurm_cluster")


@dataclass(frozen=True)
class CliResult:
    """What one ``scalectl`` run in-process gave: exit code, stdout, stderr."""

    code: int
    out: str
    err: str


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
