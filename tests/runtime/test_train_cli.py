"""``python -m runtime.train`` as a command: it learns, and bad input exits 2 with one line."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from polling import run_to_end
from trainer_harness import REPO, TINY, describe, events, progress, trainer_env

from runtime.train.data import MIN_VOCAB, build_corpus


def _train(args: list[str], faults: str | None = None) -> subprocess.CompletedProcess[str]:
    """One process, no torchrun: the trainer makes its own one-rank process group."""
    return run_to_end([sys.executable, "-m", "runtime.train", *TINY, *args],
                      env=trainer_env(faults), cwd=REPO)  # fmt: skip


def _unigram_cross_entropy() -> float:
    """Held-out loss of the best context-free model: train-split byte frequencies."""
    corpus = build_corpus("pydoc", 64)
    counts = np.bincount(corpus.train, minlength=MIN_VOCAB) + 1.0
    return float(-np.log(counts[corpus.val] / counts.sum()).mean())


@pytest.mark.slow
def test_held_out_loss_falls_below_the_unigram_baseline(tmp_path: Path) -> None:
    job = tmp_path / "job"
    args = ["--job-dir", str(job), "--micro-batch", "8", "--steps", "60", "--eval-every", "30"]
    args += ["--lr", "1e-2", "--min-lr", "1e-3", "--warmup-steps", "10", "--ckpt-every", "0"]
    run = _train(args)
    assert run.returncode == 0, describe(run)

    (started,) = events(job, "started")
    initial = started["eval_loss"]
    assert abs(initial - math.log(MIN_VOCAB)) < 0.1  # untrained: a uniform guess
    evals = [(r["step"], r["eval_loss"]) for r in progress(job) if "eval_loss" in r]
    assert [step for step, _ in evals] == [30, 60]
    final = evals[-1][1]
    # A real decrease: far below the start, and below what byte frequencies alone give,
    # so the model uses context it learned from other documents.
    assert final < initial - 2.0
    assert final < _unigram_cross_entropy() - 0.2
    (complete,) = events(job, "training_complete")
    assert complete["eval_loss"] == final and complete["step"] == 60

    # The final checkpoint was written for this shape; another shape is refused, exit 2.
    again = _train([*args, "--hidden", "32"])
    assert again.returncode == 2, describe(again)
    lines = again.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: checkpoint "), again.stderr
    assert "hidden=64 but this run has --hidden 32" in lines[0]

    # Restarting a finished job does no more steps and exits 0.
    done = _train(args)
    assert done.returncode == 0 and "nothing to do" in done.stdout, describe(done)


@pytest.mark.parametrize(
    ("args", "faults", "message"),
    [
        (["--heads", "3"], None, "error: --heads 3: must divide the hidden size 64"),
        ([], "boom@step=1", "error: SCALECTL_FAULTS entry 'boom@step=1': unknown fault kind"),
        (["--data", "/nonexistent"], None, "error: --data '/nonexistent': no such file"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    args: list[str], faults: str | None, message: str, tmp_path: Path
) -> None:
    run = _train([*args, "--job-dir", str(tmp_path / "job"), "--steps", "1"], faults)
    assert run.returncode == 2, describe(run)
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), run.stderr
    assert not (tmp_path / "job").exists()
