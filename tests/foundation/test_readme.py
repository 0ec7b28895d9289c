"""README.md is executable: every ``bash`` block runs as written, top to bottom, in one
shell per block against a private ``SCALECTL_HOME``, the way a new user would follow it.

A block preceded by ``<!-- readme-test: skip: REASON -->`` is not run (the reason must
say what covers it instead); ``<!-- readme-test: slurm -->`` runs only with the local
Slurm cluster (a failure under ``CI=true`` when it is missing, like every Slurm test);
``<!-- readme-test: faults -->`` injects faults, so the ranks' own logs (lines prefixed
``[node.rank]``) may show the killed rank's peers' tracebacks, never scalectl's.
Blocks share a working directory and a registry, so a later block can use a job or a
file an earlier one made (``plan.json``, the job named ``first``). Each command must
exit 0 and print no Python traceback.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.polling import run_to_end

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
_BLOCK = re.compile(
    r"(?:<!-- readme-test: (?P<mark>[^>]*?) -->\n)?```(?P<lang>\w*)\n(?P<body>.*?)```", re.S
)


@dataclass(frozen=True)
class Block:
    line: int
    """Line of the opening fence in README.md."""
    mark: str | None
    """``skip: reason``, ``slurm`` or None."""
    body: str


def blocks(text: str, lang: str = "bash") -> list[Block]:
    return [
        Block(text.count("\n", 0, m.start("body")), m.group("mark"), m.group("body"))
        for m in _BLOCK.finditer(text)
        if m.group("lang") == lang
    ]


def test_the_block_reader_sees_marks_and_lines() -> None:
    text = "a\n<!-- readme-test: skip: no -->\n```bash\nfalse\n```\n```bash\ntrue\n```\n"
    found = blocks(text)
    assert [(b.line, b.mark, b.body) for b in found] == [
        (3, "skip: no", "false\n"),
        (6, None, "true\n"),
    ]


def test_every_skip_says_why() -> None:
    for block in blocks(README.read_text()):
        if block.mark in (None, "slurm", "faults"):
            continue
        assert re.fullmatch(r"skip: .{20,}", block.mark), (block.line, block.mark)


def test_the_job_yaml_shown_is_the_example_file() -> None:
    (shown,) = [b.body for b in blocks(README.read_text(), "yaml") if "job.yaml" in b.body]
    assert shown == (ROOT / "examples" / "job.yaml").read_text()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A user's checkout: the repository's files seen through links, so what the commands
    write (plan.json, cpu.yaml, front.png) lands here and not in the repository."""
    work = tmp_path_factory.mktemp("readme")
    for entry in ROOT.iterdir():
        if entry.name not in {".git", "plan.json", "cpu.yaml", "front.png"}:
            (work / entry.name).symlink_to(entry)
    if not (work / ".venv").exists():  # the suite runs from a venv elsewhere
        (work / ".venv").mkdir()
        (work / ".venv" / "bin").symlink_to(Path(sys.executable).parent)
    (work / "home").mkdir()
    yield work
    _stop_jobs(work / "home")


def _stop_jobs(home: Path) -> None:
    """Whatever a failed block left running (README starts a long job to cancel it)."""
    registry = home / "registry.sqlite3"
    if not registry.exists():
        return
    from launcher.store import Store
    from runtime.processes import job_processes, stop_processes

    with Store(registry) as store:
        for record in store.list_jobs():
            stop_processes(job_processes(record.id), 1.0)


def _env(work: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["SCALECTL_HOME"] = str(work / "home")
    env.pop("SCALECTL_JOBS_ROOT", None)
    env["PYTHONPATH"] = str(ROOT)
    env["COLUMNS"] = "100"
    return env


def _run(block: Block, work: Path) -> None:
    script = "set -euo pipefail\n" + block.body
    result = run_to_end(["bash", "-c", script], watch=None, cwd=work, env=_env(work), timeout_s=60)
    where = f"README.md block at line {block.line}"
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{where} exited {result.returncode}:\n{output[-4000:]}"
    rank_line = re.compile(r"^\[[^\]\s]+\.\d+\] ")
    ours = [
        line
        for line in output.splitlines()
        if "Traceback" in line and not (block.mark == "faults" and rank_line.match(line))
    ]
    assert not ours, f"{where} printed a traceback:\n{output[-4000:]}"


README_BLOCKS = blocks(README.read_text())


@pytest.mark.parametrize(
    "block",
    [
        pytest.param(
            b,
            id=f"line{b.line}",
            marks=(
                [pytest.mark.skip(reason=b.mark)]
                if b.mark and b.mark.startswith("skip")
                else [pytest.mark.slurm]
                if b.mark == "slurm"
                else []
                if b.mark in (None, "faults")
                else [pytest.mark.xfail(strict=True, reason=f"unknown mark {b.mark!r}")]
            ),
        )
        for b in README_BLOCKS
    ],
)
def test_readme_block_runs_as_written(block: Block, workdir: Path) -> None:
    _run(block, workdir)


def test_the_readme_runs_something() -> None:
    ran = [b for b in README_BLOCKS if not (b.mark or "").startswith("skip")]
    assert len(ran) >= 5
    text = "".join(b.body for b in ran)
    for command in ("plan search", "launch --plan", "plan calibrate", "cancel", "logs"):
        assert command in text, command


def test_a_failing_command_fails_the_block(tmp_path: Path) -> None:
    (tmp_path / "home").mkdir()
    with pytest.raises(AssertionError, match="exited 2"):
        _run(Block(1, None, ".venv/bin/scalectl jobs --state bogus\n"), _linked(tmp_path))
    subprocess.run(["true"], check=True)


def _linked(work: Path) -> Path:
    (work / ".venv").mkdir(exist_ok=True)
    bin_dir = work / ".venv" / "bin"
    if not bin_dir.exists():
        bin_dir.symlink_to(Path(sys.executable).parent)
    return work
