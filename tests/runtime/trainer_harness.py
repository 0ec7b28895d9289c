"""Helpers for the reference-trainer tests: run it under torchrun (CPU, gloo), read its job dir."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from polling import run_to_end

from contract.jobdir import JobDir, read_all_jsonl
from launcher.backends.local import free_port

BIN = Path(sys.executable).parent
TORCHRUN = BIN / "torchrun"
REPO = Path(__file__).resolve().parents[2]

TINY = [
    "--layers", "2", "--hidden", "64", "--heads", "4", "--kv-heads", "2", "--seq-len", "64",
    "--micro-batch", "4", "--warmup-steps", "5", "--log-every", "5", "--eval-every", "0",
]  # fmt: skip
"""A model small enough that a step takes tens of milliseconds on one shared core."""


def trainer_env(faults: str | None = None, dump: bool = False) -> dict[str, str]:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    for name in ("SCALECTL_JOB_DIR", "SCALECTL_FAULTS", "RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(name, None)
    if faults:
        env["SCALECTL_FAULTS"] = faults
    if dump:
        env["SCALECTL_TRAIN_DUMP_STATE"] = "1"
    return env


def torchrun_cmd(
    job_dir: Path, nproc: int, args: list[str], shape: list[str] | None = None
) -> list[str]:
    """``shape``: the model and batch flags (default :data:`TINY`; fine-tuning runs take
    the model from ``--from`` and pass only batch flags)."""
    return [
        str(TORCHRUN),
        "--nnodes=1:1",
        f"--nproc-per-node={nproc}",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint=127.0.0.1:{free_port()}",
        "--max-restarts=0",
        "-m",
        "runtime.train",
        "--job-dir",
        str(job_dir),
        *(TINY if shape is None else shape),
        *args,
    ]


def run_trainer(
    job_dir: Path,
    nproc: int,
    args: list[str],
    *,
    faults: str | None = None,
    dump: bool = False,
    shape: list[str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the trainer under torchrun to completion (or failure); output captured. It
    may take minutes on a loaded machine, but not a minute without progress."""
    return run_to_end(
        torchrun_cmd(job_dir, nproc, args, shape),
        watch=job_dir,
        env=trainer_env(faults, dump),
        cwd=REPO,
    )


def describe(proc: subprocess.CompletedProcess[str]) -> str:
    out, err = proc.stdout[-4000:], proc.stderr[-4000:]
    return f"exit {proc.returncode}\n--- stdout\n{out}\n--- stderr\n{err}"


def events(job_dir: Path, name: str | None = None) -> list[dict[str, Any]]:
    records = read_all_jsonl(JobDir(job_dir).events)
    return [r for r in records if name is None or r.get("event") == name]


def progress(job_dir: Path, rank: int = 0) -> list[dict[str, Any]]:
    return read_all_jsonl(JobDir(job_dir).progress_file(rank))


def losses_by_step(records: list[dict[str, Any]]) -> dict[int, float]:
    """Step → loss; when a step was run twice (before and after a resume) the later one wins."""
    return {int(r["step"]): float(r["loss"]) for r in records if "loss" in r}


def assert_refused(
    argv: list[str],
    message: str,
    job: Path,
    capsys: Any,
    monkeypatch: Any,
) -> None:
    """The trainer, run in this process with ``argv`` and ``--job-dir job``, exits 2 with
    one stderr line that holds ``message``, and leaves no job directory behind."""
    from runtime.train.loop import main

    for name in ("RANK", "WORLD_SIZE", "SCALECTL_JOB_DIR", "SCALECTL_PLAN_FILE"):
        monkeypatch.delenv(name, raising=False)
    assert main([*argv, "--job-dir", str(job)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err, err
    assert not job.exists()
