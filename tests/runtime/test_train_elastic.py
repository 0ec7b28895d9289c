"""The reference trainer under torchrun (CPU, gloo): elastic resume, torn checkpoints, signals.

Every run is a real torchrun with real processes; faults are injected deterministically
at a step through SCALECTL_FAULTS (runtime.faults).
"""

from __future__ import annotations

import itertools
import math
import os
import signal
import subprocess
from pathlib import Path

import pytest
import torch
from polling import run_to_end, wait_for
from torch.distributed.checkpoint.api import CheckpointException
from trainer_harness import (
    REPO,
    TINY,
    describe,
    events,
    losses_by_step,
    progress,
    run_trainer,
    torchrun_cmd,
    trainer_env,
)

from contract.jobdir import JobDir
from runtime.train import checkpoint
from runtime.train.config import parse_config
from runtime.train.model import Transformer

pytestmark = pytest.mark.slow

INITIAL_LOSS = math.log(257)
"""Cross-entropy of a uniform guess over the 257 tokens, where an untrained model starts."""


def _assert_states_equal(a: dict, b: dict, what: str) -> None:
    assert a.keys() == b.keys(), what
    for key in a:
        left, right = a[key], b[key]
        if isinstance(left, dict):
            _assert_states_equal(left, right, f"{what}.{key}")
        elif isinstance(left, torch.Tensor):
            assert torch.equal(left, right), f"{what}.{key} differs"
        else:
            assert left == right, f"{what}.{key}: {left!r} != {right!r}"


def _dump(job: Path, kind: str, step: int) -> dict:
    return torch.load(job / "debug" / f"{kind}_step_{step}.pt", weights_only=False)


def test_resume_after_kill_with_2_then_1_then_3_processes(tmp_path: Path) -> None:
    job = tmp_path / "job"
    args = ["--steps", "20", "--ckpt-every", "5", "--keep-checkpoints", "10"]

    first = run_trainer(job, 2, args, faults="crash@step=13,rank=1", dump=True)
    assert first.returncode != 0, describe(first)
    assert [s for s, _ in JobDir(job).complete_checkpoints()] == [5, 10]

    second = run_trainer(job, 1, args, faults="crash@step=18", dump=True)
    assert second.returncode != 0, describe(second)
    assert [s for s, _ in JobDir(job).complete_checkpoints()] == [5, 10, 15]

    third = run_trainer(job, 3, args, dump=True)
    assert third.returncode == 0, describe(third)
    assert "resumed from" in third.stdout and "world size 1 then, 3 now" in third.stdout

    resumed = [(e["step"], e["world_size_then"], e["world_size"]) for e in events(job, "resumed")]
    assert resumed == [(10, 2, 1), (15, 1, 3)]
    assert [e["step"] for e in events(job, "training_complete")] == [20]
    assert [(e["kind"], e["step"]) for e in events(job, "fault_injected")] == [
        ("crash", 13),
        ("crash", 18),
    ]

    # Parameters and optimizer state right after each resume equal those at the save,
    # although the world size changed in between (DCP resharded them).
    for step in (10, 15):
        saved, loaded = _dump(job, "saved", step), _dump(job, "resumed", step)
        _assert_states_equal(saved["model"], loaded["model"], f"model@{step}")
        _assert_states_equal(saved["optim"], loaded["optim"], f"optim@{step}")

    # The checkpoint itself loads in one plain process into an unsharded model.
    cfg = parse_config([*TINY, *args])
    plain = Transformer(cfg.model_config())
    checkpoint.load_model_single_process(JobDir(job).checkpoint_dir(10), plain)
    _assert_states_equal(plain.state_dict(), _dump(job, "saved", 10)["model"], "dcp@10")

    # The loss continues where it was: each restart's first losses sit near the losses the
    # previous world size had reached at those steps, far below the untrained loss.
    records = progress(job)
    cuts = [0.0, *(e["ts"] for e in events(job, "resumed")), math.inf]
    first_losses, second_losses, third_losses = (
        losses_by_step([r for r in records if lo < r["ts"] < hi])
        for lo, hi in itertools.pairwise(cuts)
    )
    assert sorted(first_losses) == list(range(1, 13))
    assert sorted(second_losses) == list(range(11, 18))
    assert sorted(third_losses) == list(range(16, 21))
    assert first_losses[1] > INITIAL_LOSS - 0.2
    for before, after, step in (
        (first_losses, second_losses, 11),
        (second_losses, third_losses, 16),
    ):
        assert after[step] < INITIAL_LOSS - 1.0
        assert abs(after[step] - before[step]) < 0.15 * before[step]

    # Cumulative global tokens continue across world sizes: 10 steps x 2 + 5 x 1 + 5 x 3 ranks.
    per_rank_step = 4 * 64
    assert progress(job, 2)[-1]["tokens"] == (10 * 2 + 5 * 1 + 5 * 3) * per_rank_step


def test_crash_while_writing_checkpoint_resumes_from_previous_one(tmp_path: Path) -> None:
    job = tmp_path / "job"
    # Also covers a tied embedding and gradient accumulation under FSDP2 and DCP.
    args = ["--steps", "12", "--ckpt-every", "5", "--tied-embeddings", "--grad-accum", "2"]
    fault = "crash_in_checkpoint@step=10,rank=1"

    first = run_trainer(job, 2, args, faults=fault)
    assert first.returncode != 0, describe(first)
    jobdir = JobDir(job)
    assert [s for s, _ in jobdir.complete_checkpoints()] == [5]
    assert jobdir.latest_checkpoint() == (5, jobdir.checkpoint_dir(5))
    torn = jobdir.checkpoints_dir / "tmp-step_10"
    assert any(torn.glob("*.distcp")), "the fault should fire after the shards are written"
    assert not (torn / ".metadata").exists()
    plain = Transformer(parse_config([*TINY, *args]).model_config())
    with pytest.raises(CheckpointException, match="metadata"):
        checkpoint.load_model_single_process(torn, plain)

    # Same environment: the one-shot marker keeps the fault from firing a second time.
    second = run_trainer(job, 2, args, faults=fault)
    assert second.returncode == 0, describe(second)
    assert "removed incomplete checkpoint debris: tmp-step_10" in second.stdout
    assert [e["step"] for e in events(job, "resumed")] == [5]
    assert len(events(job, "fault_injected")) == 1
    assert not torn.exists()
    assert [s for s, _ in jobdir.complete_checkpoints()] == [5, 10, 12]

    # Same world size and data order: the replayed steps 6..10 give the same losses.
    resumed_ts = events(job, "resumed")[0]["ts"]
    records = progress(job)
    before = losses_by_step([r for r in records if r["ts"] < resumed_ts])
    after = losses_by_step([r for r in records if r["ts"] > resumed_ts])
    for step in range(6, 11):
        assert after[step] == pytest.approx(before[step], rel=1e-5), step


def test_signal_to_one_rank_checkpoints_and_stops_all_ranks(tmp_path: Path) -> None:
    job = tmp_path / "job"
    args = ["--steps", "12", "--ckpt-every", "5"]
    fault = "signal@step=8,rank=1,sig=USR2"

    first = run_trainer(job, 2, args, faults=fault)
    assert first.returncode != 0, describe(first)
    assert "exitcode  : 140" in first.stderr, describe(first)
    (preempted,) = events(job, "preempted")
    assert (preempted["step"], preempted["signal"], preempted["exit_code"]) == (8, "SIGUSR2", 140)
    assert [s for s, _ in JobDir(job).complete_checkpoints()] == [5, 8]
    saved = events(job, "checkpoint_saved")[-1]
    assert (saved["step"], saved["reason"]) == (8, "signal")
    assert progress(job, 0)[-1]["step"] == progress(job, 1)[-1]["step"] == 8

    second = run_trainer(job, 2, args, faults=fault)
    assert second.returncode == 0, describe(second)
    assert [e["step"] for e in events(job, "resumed")] == [8]


def test_sigterm_to_torchrun_checkpoints_at_a_step_boundary(tmp_path: Path) -> None:
    job = tmp_path / "job"
    cmd = torchrun_cmd(job, 2, ["--steps", "100000", "--ckpt-every", "1000"])
    proc = subprocess.Popen(
        cmd, env=trainer_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:

        def at_step_3() -> bool:
            assert proc.poll() is None, proc.communicate()[0]
            return bool(progress(job)) and progress(job)[-1]["step"] >= 3

        wait_for(at_step_3, poll_s=0.2)
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    (preempted,) = events(job, "preempted")
    assert (preempted["signal"], preempted["exit_code"]) == ("SIGTERM", 143), output
    step = preempted["step"]
    assert JobDir(job).latest_checkpoint() == (step, JobDir(job).checkpoint_dir(step))
    assert checkpoint.is_complete(JobDir(job).checkpoint_dir(step))
    assert progress(job, 0)[-1]["step"] == progress(job, 1)[-1]["step"] == step


ABORT_AT_EXIT = """\
import atexit, os
if os.environ.get("RANK") == os.environ.get("ABORT_AT_EXIT_RANK"):
    open(os.environ["ABORT_AT_EXIT_ARMED"], "a").write(os.environ["RANK"] + "\\n")
    atexit.register(os.abort)
"""
"""A ``sitecustomize`` that makes one rank abort (SIGABRT) while the interpreter tears
down, as torch 2.13's gloo teardown sometimes does ("terminate called without an active
exception") after the rank finished its work."""


def test_rank_aborting_at_teardown_after_its_work_does_not_fail_the_job(tmp_path: Path) -> None:
    job = tmp_path / "job"
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(ABORT_AT_EXIT)
    armed = tmp_path / "armed"
    env = trainer_env()
    env.update(
        PYTHONPATH=os.pathsep.join([str(hooks), env.get("PYTHONPATH", "")]),
        ABORT_AT_EXIT_RANK="1",
        ABORT_AT_EXIT_ARMED=str(armed),
    )
    done = run_to_end(torchrun_cmd(job, 2, ["--steps", "6", "--ckpt-every", "3"]),
                      watch=job, env=env, cwd=REPO)  # fmt: skip
    assert armed.read_text() == "1\n"  # the abort was armed in rank 1, and only there
    assert done.returncode == 0, describe(done)
    assert [e["step"] for e in events(job, "training_complete")] == [6]
    assert progress(job, 0)[-1]["step"] == progress(job, 1)[-1]["step"] == 6


def test_rank_crashing_ends_with_status_1_even_when_its_teardown_would_abort(
    tmp_path: Path,
) -> None:
    """An exception in a rank ends it with status 1 and its traceback, whatever gloo's
    teardown would have done: a SIGABRT at exit would read as a killed rank (cause
    ``signal``) instead of the exception (seen in CI: test_agent_faults' crash test)."""
    job = tmp_path / "job"
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(ABORT_AT_EXIT)
    armed = tmp_path / "armed"
    env = trainer_env(faults="crash@step=2,rank=0")
    env.update(
        PYTHONPATH=os.pathsep.join([str(hooks), env.get("PYTHONPATH", "")]),
        ABORT_AT_EXIT_RANK="0",
        ABORT_AT_EXIT_ARMED=str(armed),
    )
    done = run_to_end(torchrun_cmd(job, 2, ["--steps", "6", "--ckpt-every", "3"]),
                      watch=job, env=env, cwd=REPO)  # fmt: skip
    assert armed.read_text() == "0\n"
    assert done.returncode != 0, describe(done)
    output = done.stdout + done.stderr
    assert "exitcode  : 1 (pid" in output, describe(done)
    assert "SIGABRT" not in output, describe(done)
    assert "FaultInjected: injected crash at step 2 on rank 0" in output, describe(done)
