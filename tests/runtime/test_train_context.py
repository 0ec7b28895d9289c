"""Context parallelism's load-balanced sharding (Llama 3 paper, section 3.3.2): what each
cp rank holds of a sequence, and a cp checkpoint resumed without cp. The training itself
is proven by numerics parity (tests/runtime/test_train_layouts.py, the cp layouts)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from trainer_harness import describe, events, losses_by_step, progress, run_trainer

from runtime.train import context
from runtime.train.parallel import LayoutError


def test_rank_i_holds_chunks_i_and_2cp_minus_1_minus_i() -> None:
    # 16 tokens, cp 2: 4 chunks of 4; rank 0 holds chunks 0 and 3, rank 1 chunks 1 and 2.
    assert context.load_balanced_positions(16, 2, 0).tolist() == [0, 1, 2, 3, 12, 13, 14, 15]
    assert context.load_balanced_positions(16, 2, 1).tolist() == [4, 5, 6, 7, 8, 9, 10, 11]


@pytest.mark.parametrize("cp", [1, 2, 4, 8])
def test_the_ranks_hold_every_position_once_with_equal_causal_work(cp: int) -> None:
    seq = 64
    held = [context.load_balanced_positions(seq, cp, rank) for rank in range(cp)]
    assert sorted(torch.cat(held).tolist()) == list(range(seq))
    # A query at position p attends p + 1 keys: every rank gets the same number of pairs.
    work = {int((positions + 1).sum()) for positions in held}
    assert len(work) == 1


def test_ring_attention_is_refused_off_cuda() -> None:
    context.check_cp(2, "allgather", "cpu")
    context.check_cp(1, "ring", "cpu")  # no context parallelism: nothing to refuse
    with pytest.raises(LayoutError, match="--cp-impl ring: torch's context_parallel"):
        context.check_cp(2, "ring", "cpu")


@pytest.mark.slow
def test_a_cp_checkpoint_resumes_under_dp4_and_the_held_out_loss_matches(tmp_path: Path) -> None:
    """Written under cp2 x dp2 (parameters sharded over dp_shard x cp), resumed under dp4:
    the training losses continue as a dp4 run that was never interrupted, and the held-out
    loss evaluated with the sequence split over the cp ranks equals dp4's."""
    common = ["--layers", "2", "--seq-len", "32", "--micro-batch", "2", "--warmup-steps",
              "50", "--ckpt-every", "0", "--eval-every", "3", "--eval-sequences", "8"]  # fmt: skip
    job, straight = tmp_path / "job", tmp_path / "straight"
    legs = [
        (["--cp", "2", "--grad-accum", "2", "--steps", "3"]),
        (["--grad-accum", "1", "--steps", "6"]),
    ]
    for args in legs:
        run = run_trainer(job, 4, [*common, *args])
        assert run.returncode == 0, describe(run)
    run = run_trainer(straight, 4, [*common, "--grad-accum", "1", "--steps", "6"])
    assert run.returncode == 0, describe(run)
    applied = [(e["cp"], e["dp_shard"]) for e in events(job, "layout_applied")]
    assert applied == [(2, 2), (1, 4)]
    got, want = losses_by_step(progress(job)), losses_by_step(progress(straight))
    assert sorted(got) == sorted(want) == list(range(1, 7))
    rel = max(abs(got[s] - want[s]) / want[s] for s in want)
    assert rel <= 1e-4, f"{got} against an uninterrupted dp4 run {want}"
    held_out = {r["step"]: r["eval_loss"] for r in progress(job) if "eval_loss" in r}
    reference = {r["step"]: r["eval_loss"] for r in progress(straight) if "eval_loss" in r}
    assert sorted(held_out) == sorted(reference) == [3, 6]
    assert held_out[3] == pytest.approx(reference[3], rel=1e-4)
