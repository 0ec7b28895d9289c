"""Context parallelism's load-balanced sharding (Llama 3 paper, section 3.3.2): what each
cp rank holds of a sequence. The training itself is proven by numerics parity
(tests/runtime/test_train_layouts.py, the cp layouts)."""

from __future__ import annotations

import pytest
import torch

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
