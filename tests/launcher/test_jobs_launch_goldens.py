"""``scalectl jobs`` and ``scalectl launch --dry-run`` as a user sees them at 80 and 120
columns (golden files in tests/launcher/golden/cli_*.txt; tests/golden_text.py says how
to regenerate them), no line wider than the terminal, and no ANSI codes in a pipe or
colour under NO_COLOR."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from golden_text import WIDTHS, assert_fits, check_golden

from launcher.progress_view import ProgressSnapshot
from launcher.states import JobState
from launcher.store import Store
from launcher.store.records import NewJob

GOLDEN = Path(__file__).resolve().parent / "golden"
NOW_S = 1_800_000_000.0
"""The clock of the AGE column, fixed (2027-01-15 08:00 UTC)."""
JOBS = [  # id, name, state, reason, age in seconds, nodes, ranks per node, GPUs per node
    ("20270115-060000-0a1b", "faulty", JobState.FAILED,
     "rank 1 exited with code 1 (RuntimeError: injected fault at step 8)", 7200, 1, 2, 0),
    ("20270115-063000-2c3d", "faulty2", JobState.FAILED,
     "restart budget of 0 spent after signal 9 on rank 0", 5400, 1, 2, 0),
    ("20270115-070000-4e5f", "llama3-8b-pretrain-long-context", JobState.COMPLETED, "",
     3600, 2, 8, 8),
    ("20270115-075500-6a7b", "tiny", JobState.CANCELLED, "cancelled by the user", 300, 1, 1, 0),
]  # fmt: skip


def make_registry(home: Path) -> None:
    with Store() as store:
        for job_id, name, state, reason, age_s, nodes, ranks, gpus in JOBS:
            store.add(
                NewJob(id=job_id, name=name, backend="local", job_dir=home / "jobs" / job_id,
                       nodes_min=nodes, nodes_max=nodes, procs_per_node=ranks,
                       gpus_per_node=gpus, spec_json="{}"),
                now_s=NOW_S - age_s,
            )  # fmt: skip
            store.transition(job_id, JobState.RUNNING, now_s=NOW_S - age_s + 5)
            store.transition(job_id, state, reason, exit_code=1, now_s=NOW_S - 60)


def fake_progress(job_dir: Path) -> ProgressSnapshot:
    """Progress of the finished job, fixed (the others never reported a step)."""
    if Path(job_dir).name == "20270115-070000-4e5f":
        return ProgressSnapshot(step=1200, loss=2.3456, tokens=10**9, tokens_per_s=123456.7)
    return ProgressSnapshot()


def render(cli: Any, monkeypatch: pytest.MonkeyPatch, width: int, *args: str) -> str:
    monkeypatch.setenv("COLUMNS", str(width))
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(name, raising=False)
    result = cli(*args)
    assert result.code == 0, result.err
    return str(result.out)


@pytest.mark.parametrize("width", WIDTHS)
def test_jobs(cli: Any, scalectl_home: Path, monkeypatch: pytest.MonkeyPatch, width: int) -> None:
    import launcher.cli
    import launcher.cli_table

    make_registry(scalectl_home)
    monkeypatch.setattr(launcher.cli_table, "clock", lambda: NOW_S)
    monkeypatch.setattr(launcher.cli, "read_progress", fake_progress)
    out = render(cli, monkeypatch, width, "jobs")
    assert_fits(out, width)
    rows = out.splitlines()
    # Issue 20 item 8: at 80 columns 'faulty' and 'faulty2' both read 'fau…', and a
    # failure reason 'FAILED ra…'.
    assert any(" faulty " in row for row in rows) and any(" faulty2 " in row for row in rows)
    assert "FAILED     rank 1 exited with" in out
    check_golden(GOLDEN, f"cli_jobs_{width}.txt", out)


@pytest.mark.parametrize("width", WIDTHS)
def test_launch_dry_run(cli: Any, monkeypatch: pytest.MonkeyPatch, width: int) -> None:
    """The local backend's command lines break between words (a shell reads them as
    one); the job id, host, CPUs and interpreter are fixed so the golden is portable."""
    import launcher.api
    import launcher.backends.local as local

    monkeypatch.setattr(launcher.api, "new_job_id", lambda: "20270115-080000-abcd")
    monkeypatch.setattr(local, "host_name", lambda: "node")
    monkeypatch.setattr(local, "cpus_available", lambda: 8)
    monkeypatch.setattr(sys, "executable", "/venv/bin/python")
    out = render(cli, monkeypatch, width, "launch", "--dry-run", "--name", "demo", "--nodes",
                 "2", "--nproc-per-node", "2", "--job-dir", "/scratch/demo",
                 "--module", "runtime.train", "--", "--steps", "50")  # fmt: skip
    # A shell script's width, whatever the terminal; only a word longer than a line
    # (torchrun's --rdzv-conf=...) stands alone on a longer one.
    lines = out.splitlines()
    wide = [line for line in lines if len(line) > 80]
    assert all(len(line.removesuffix(" \\").split()) == 1 for line in wide), wide
    assert_fits("\n".join(line for line in lines if line not in wide), 80)
    assert len(lines) > 6  # the command lines were broken, not printed whole
    check = subprocess.run(["bash", "-n"], input=out, text=True, capture_output=True)
    assert check.returncode == 0, check.stderr
    check_golden(GOLDEN, f"cli_launch_dry_run_{width}.txt", out)


def test_launch_dry_run_json(cli: Any, scalectl_home: Path) -> None:
    import json

    result = cli("launch", "--dry-run", "--json", "--name", "demo", "--module",
                 "runtime.train", "--", "--steps", "5")  # fmt: skip
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert data["backend"] == "local" and data["spec"]["name"] == "demo"
    assert data["job_id"] in data["submit"] and data["plan"] is None
    assert not scalectl_home.exists()
    refused = cli("launch", "--json", "--name", "demo", "--module", "runtime.train")
    assert refused.code == 2 and "--dry-run" in refused.err


def _run_on_a_terminal(argv: list[str], env: dict[str, str]) -> str:
    """``argv``'s output when stdout is a terminal (a pseudo-terminal)."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(argv, stdout=follower, stderr=subprocess.DEVNULL, env=env)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    proc.wait(timeout=60)
    os.close(leader)
    return b"".join(chunks).decode("utf-8", "replace")


def test_colour_only_on_a_terminal_and_never_under_no_color(scalectl_home: Path) -> None:
    make_registry(scalectl_home)
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "NO_COLOR")}
    env["COLUMNS"] = "120"
    argv = [sys.executable, "-m", "scalectl", "jobs"]
    piped = subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stdout
    assert "FAILED" in piped and "\x1b[" not in piped
    coloured = _run_on_a_terminal(argv, env)
    assert "\x1b[1;31mFAILED" in coloured  # bold red: the terminal gets colour
    plain = _run_on_a_terminal(argv, {**env, "NO_COLOR": "1"})
    assert "FAILED" in plain and "31m" not in plain and "35m" not in plain
