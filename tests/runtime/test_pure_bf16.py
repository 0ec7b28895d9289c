"""The trainer's ``--precision bf16-pure``: the model, its gradients and its AdamW states
in bf16 with no fp32 copy (what the planner's TrainingSpec.precision 'bf16-pure' counts),
and a run that learns like the fp32 one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from polling import run_to_end
from trainer_harness import REPO, TINY, describe, losses_by_step, progress, trainer_env

from runtime.train import parallel
from runtime.train.build import to_pure_bf16
from runtime.train.model import ModelConfig, Transformer


def test_weights_gradients_and_adamw_states_are_bf16() -> None:
    torch.manual_seed(0)
    model = Transformer(ModelConfig(
        layers=2, hidden=32, heads=4, kv_heads=2, ffn_hidden=64, vocab=300, seq_len=16,
        tied=False,
    ))  # fmt: skip
    to_pure_bf16(model)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert all(b.dtype != torch.bfloat16 for b in model.buffers())  # rotary tables stay fp32
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    tokens = torch.randint(0, 300, (2, 16))
    model(tokens).float().logsumexp(-1).mean().backward()
    optimizer.step()
    assert {p.grad.dtype for p in model.parameters() if p.grad is not None} == {torch.bfloat16}
    states = [t for s in optimizer.state.values() for k, t in s.items() if k != "step"]
    assert states and {t.dtype for t in states} == {torch.bfloat16}
    # No FSDP mixed-precision policy: the parameters are bf16 already.
    assert parallel.mixed_precision("bf16-pure", torch.device("cpu")) is None


def _train(job: Path, precision: str) -> subprocess.CompletedProcess[str]:
    args = ["--job-dir", str(job), "--precision", precision, "--steps", "20",
            "--log-every", "1", "--lr", "1e-2", "--ckpt-every", "0", "--seed", "3"]  # fmt: skip
    return run_to_end([sys.executable, "-m", "runtime.train", *TINY, *args],
                      env=trainer_env(None), cwd=REPO)  # fmt: skip


@pytest.mark.slow
def test_pure_bf16_run_learns_like_fp32(tmp_path: Path) -> None:
    runs = {}
    for precision in ("fp32", "bf16-pure"):
        run = _train(tmp_path / precision, precision)
        assert run.returncode == 0, describe(run)
        runs[precision] = losses_by_step(progress(tmp_path / precision))
    fp32, pure = runs["fp32"], runs["bf16-pure"]
    # Same initial weights: the first loss differs by bf16 rounding only.
    assert pure[1] == pytest.approx(fp32[1], rel=1e-2)
    # bf16 updates (no fp32 master copy) still train: the loss falls as fp32's does.
    assert pure[20] < pure[1] - 1.0
    assert pure[20] == pytest.approx(fp32[20], rel=0.1)
    assert pure[20] != fp32[20]  # and it did train in bf16
