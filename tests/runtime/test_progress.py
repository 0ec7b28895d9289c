"""runtime.progress: the reporting API a training script calls."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from contract.jobdir import JobDir, read_all_jsonl
from runtime import progress


@pytest.fixture(autouse=True)
def _fresh_reporter(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("SCALECTL_JOB_DIR", "RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    progress.close()
    monkeypatch.setattr(progress, "_reporter", None)
    yield
    progress.close()


def test_without_job_dir_nothing_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    progress.report(step=1, loss=2.0, tokens=10, step_time_s=0.1)
    progress.event("started")
    assert not progress.is_enabled()
    assert list(tmp_path.iterdir()) == []


def test_env_job_dir_and_rank(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCALECTL_JOB_DIR", str(tmp_path))
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    progress.report(step=7, loss=1.5, tokens=4096, step_time_s=0.25, lr=1e-3)
    progress.report(step=8, loss=None, tokens=None, step_time_s=None)
    records = read_all_jsonl(JobDir(tmp_path).progress_file(3))
    assert records[0].keys() == {
        "ts",
        "rank",
        "step",
        "loss",
        "tokens",
        "step_time_s",
        "world_size",
        "lr",
    }
    assert (records[0]["rank"], records[0]["step"], records[0]["world_size"]) == (3, 7, 4)
    assert (records[0]["loss"], records[0]["tokens"], records[0]["lr"]) == (1.5, 4096, 1e-3)
    assert records[1].keys() == {"ts", "rank", "step", "world_size"}


def test_configure_overrides_env_and_events_go_to_events_jsonl(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCALECTL_JOB_DIR", str(tmp_path / "elsewhere"))
    assert progress.configure(tmp_path, rank=1, world_size=2)
    progress.event("checkpoint_saved", step=5, path=tmp_path / "ck")
    (record,) = read_all_jsonl(JobDir(tmp_path).events)
    assert record["event"] == "checkpoint_saved" and record["rank"] == 1
    assert record["path"] == str(tmp_path / "ck")
    assert not (tmp_path / "elsewhere").exists()


def test_values_with_item_nan_and_unknown_objects(tmp_path: Path) -> None:
    class Scalar:
        def item(self) -> float:
            return 0.5

    class Opaque:
        def __str__(self) -> str:
            return "opaque"

    progress.configure(tmp_path, rank=0, world_size=1)
    progress.report(step=1, loss=math.nan, grad_norm=Scalar(), note=Opaque())
    (record,) = read_all_jsonl(JobDir(tmp_path).progress_file(0))
    assert math.isnan(record["loss"]) and record["grad_norm"] == 0.5
    assert record["note"] == "opaque"


def test_set_enabled_pauses_reporting(tmp_path: Path) -> None:
    progress.configure(tmp_path, rank=0, world_size=1)
    progress.set_enabled(False)
    progress.report(step=1, loss=1.0)
    progress.set_enabled(True)
    progress.report(step=2, loss=1.0)
    assert [r["step"] for r in read_all_jsonl(JobDir(tmp_path).progress_file(0))] == [2]


def test_unwritable_job_dir_warns_once_and_turns_off(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    progress.configure(blocker, rank=0, world_size=1)
    progress.report(step=1, loss=1.0)
    progress.report(step=2, loss=1.0)
    err = capsys.readouterr().err
    assert err.count("progress reporting is off") == 1
    assert not progress.is_enabled()


def test_every_line_is_whole_with_concurrent_writers(tmp_path: Path) -> None:
    """Four processes append 500 long records each to one file: no torn or mixed lines."""
    script = (
        "import sys\n"
        "from runtime import progress\n"
        "progress.configure(sys.argv[1], rank=0, world_size=1)\n"
        "for i in range(500):\n"
        "    progress.report(step=i, loss=1.0, writer=sys.argv[2], pad='x' * 2000)\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(tmp_path), str(w)]) for w in range(4)
    ]
    assert all(p.wait(timeout=60) == 0 for p in procs)
    lines = (tmp_path / "progress" / "0.jsonl").read_bytes().split(b"\n")
    assert lines[-1] == b""
    records = [json.loads(line) for line in lines[:-1]]
    assert len(records) == 2000
    for writer in "0123":
        assert [r["step"] for r in records if r["writer"] == writer] == list(range(500))


def test_progress_module_imports_no_torch() -> None:
    code = "import sys, runtime.progress; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
