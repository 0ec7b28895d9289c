"""Submission without submitit: the script file, sbatch's answer, secrets only in
sbatch's environment, and refusals as one line. A stand-in ``sbatch`` on PATH records
what it was given, so no cluster is needed."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from launcher.backends.slurm import _sbatch
from launcher.errors import BackendUnavailableError

SCRIPT = "#!/bin/bash\n#SBATCH --nodes=1\nsrun true\n"


def fake_sbatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> Path:
    """An ``sbatch`` first on PATH running ``body``; it records its argv and $HF_TOKEN."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    seen = tmp_path / "seen"
    path = bin_dir / "sbatch"
    path.write_text(
        "#!/bin/bash\n"
        f'printf "%s\\n" "$1" "${{HF_TOKEN:-unset}}" > {seen}\n'
        f'cp "$1" {seen}.script\n'
        f"{body}\n"
    )
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    return seen


def test_the_script_is_submitted_and_kept_under_its_slurm_id(tmp_path, monkeypatch) -> None:
    seen = fake_sbatch(tmp_path, monkeypatch, 'echo "Submitted batch job 4242"')
    folder = tmp_path / "job" / "slurm"
    assert _sbatch(SCRIPT, folder, {"HF_TOKEN": "s3cr3t"}) == "4242"
    submitted, token = seen.read_text().splitlines()
    assert token == "s3cr3t"  # in sbatch's environment ...
    assert Path(f"{seen}.script").read_text() == SCRIPT
    assert [p.name for p in folder.iterdir()] == ["4242_submission.sh"]
    assert (folder / "4242_submission.sh").read_text() == SCRIPT  # ... never in a file
    assert "HF_TOKEN" not in os.environ and Path(submitted).parent == folder


def test_a_refusal_is_one_line_and_leaves_no_file(tmp_path, monkeypatch) -> None:
    fake_sbatch(
        tmp_path,
        monkeypatch,
        "echo 'sbatch: error: Invalid partition name specified' >&2\n"
        "echo 'sbatch: error: Batch job submission failed' >&2\nexit 1",
    )
    folder = tmp_path / "slurm"
    with pytest.raises(BackendUnavailableError) as info:
        _sbatch(SCRIPT, folder, {})
    assert str(info.value) == "sbatch refused the job: Invalid partition name specified"
    assert list(folder.iterdir()) == []


def test_an_answer_without_a_job_id_is_an_error(tmp_path, monkeypatch) -> None:
    fake_sbatch(tmp_path, monkeypatch, "echo 'queued somewhere'")
    folder = tmp_path / "slurm"
    with pytest.raises(BackendUnavailableError, match="names no job id"):
        _sbatch(SCRIPT, folder, {})
    assert list(folder.iterdir()) == []


def test_no_sbatch_on_path_says_where_to_run(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BackendUnavailableError, match="sbatch is not on PATH"):
        _sbatch(SCRIPT, tmp_path / "slurm", {})
