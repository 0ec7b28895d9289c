"""torch's ring attention (``context_parallel``, what scalectl's trainer and torchtitan
run under ``cp_impl`` ring) priced from its source: FP32 merges and dK/dV ring, the K/V
all-gather hidden under step 0 only, GQA heads repeated before the ring
(``TrainingSpec.ring_attention`` torch), against Transformer Engine's (te)."""

from __future__ import annotations

import pytest

import planner
from planner.formulas.kernels import torch_ring_attention_bytes

MODEL = planner.get_model("llama3-8b")


def _estimate(ring: str, gpus: int, tp: int, cp: int, impl: str = "ring") -> planner.Estimate:
    training = planner.TrainingSpec(
        seq_len=131072,
        global_batch_seqs=8,
        total_tokens=1e10,
        ring_attention=ring,  # type: ignore[arg-type]
    )
    layout = planner.Layout(dp=gpus // (tp * cp), tp=tp, cp=cp, sharding="zero3",
                            recompute="full", cp_impl=impl)  # type: ignore[arg-type]  # fmt: skip
    cluster = planner.ClusterSpec(gpu="H100-SXM-80GB", num_gpus=gpus)
    return planner.estimate(MODEL, cluster, training, layout)


def test_bytes_follow_the_source_step_by_step() -> None:
    q, kv = 1.0, 2.0  # GQA heads repeated: K and V together are twice the query
    # cp 2: forward = step 0 cast (3 Q) + final cast (3 Q) + one merge (19 Q) + one K/V
    # send buffer (2 KV). Backward = zeros (2 Q + 2 KV) + step 0 (11 KV + 5 Q) + the
    # later step's dK/dV send buffer (4 KV) and its slower branch (6.5 KV + 5 Q against
    # 5 KV + 6.5 Q) + final casts (3 Q + 3 KV); no K/V send at the last step.
    fwd, bwd = torch_ring_attention_bytes(q, kv, 2.0)
    assert fwd == pytest.approx(6 + 19 + 2 * 2)
    assert bwd == pytest.approx((2 + 4) + (22 + 5) + (8 + 13 + 5) + (3 + 6))
    # Each further rank adds one step: one more merge and send buffer forward, one more
    # dK/dV step and K/V send buffer backward.
    fwd4, bwd4 = torch_ring_attention_bytes(q, kv, 4.0)
    assert fwd4 - fwd == pytest.approx(2 * (19 + 4))
    assert bwd4 - bwd == pytest.approx(2 * (8 + 13 + 5 + 4))
    assert torch_ring_attention_bytes(q, kv, 1.0) == (0.0, 0.0)


def test_torch_ring_costs_more_than_transformer_engines() -> None:
    """FP32 merges and the all-gather of every query head's K/V, inside one node."""
    te, torch = _estimate("te", 8, 1, 8), _estimate("torch", 8, 1, 8)
    assert torch.step.breakdown["cp_comm_s"] > 2 * te.step.breakdown["cp_comm_s"]
    assert torch.step.time_s > te.step.time_s
    # Without context parallelism the choice changes nothing.
    assert _estimate("te", 8, 1, 1).step.time_s == _estimate("torch", 8, 1, 1).step.time_s


def test_across_nodes_the_gather_of_repeated_heads_is_exposed() -> None:
    """tp 8 fills a node, so the cp 8 ring crosses NICs: step 0's kernel (1/8 of a short
    per-GPU attention) cannot hide the all-gather of 32 heads' K/V, while scalectl's
    allgather implementation sends the 8 KV heads before repeating them."""
    torch = _estimate("torch", 64, 8, 8)
    allgather = _estimate("torch", 64, 8, 8, impl="allgather")
    assert torch.step.breakdown["cp_comm_s"] > 2 * allgather.step.breakdown["cp_comm_s"]
    # Transformer Engine's ring passes only the KV heads, step by step.
    assert _estimate("te", 64, 8, 8).step.time_s < torch.step.time_s


@pytest.mark.parametrize("ring", ["te", "torch"])
def test_the_search_prices_the_ring_as_the_estimate_does(ring: str) -> None:
    """The search's compiled path fixes ``torch_ring`` per problem: its figure for a
    layout is the one-layout estimate's."""
    from planner.layout_search import search

    training = planner.TrainingSpec(
        seq_len=131072,
        global_batch_seqs=8,
        total_tokens=1e10,
        ring_attention=ring,  # type: ignore[arg-type]
    )
    cluster = planner.ClusterSpec(gpu="H100-SXM-80GB", num_gpus=8)
    found = search(MODEL, cluster, training, pinned={"cp": 8, "cp_impl": "ring"}, top_k=3)
    assert found.ranked
    for est in found.ranked:
        alone = planner.estimate(MODEL, cluster, training, est.layout)
        assert est.step.time_s == pytest.approx(alone.step.time_s, rel=1e-9)
        assert est.step.breakdown["cp_comm_s"] > 0.0


def test_the_backward_holds_the_gathered_keys_and_fp32_gradients() -> None:
    """On a pipeline stage without the loss the ring's backward buffers add to the peak:
    cp 4 all-gathered K/V of 32 heads plus FP32 dQ, dK/dV and the step's gradients
    (memory.torch_ring_workspace_bytes: (cp + 11.5) KV + 5 Q, K and V twice the query)."""
    from planner.formulas.memory import torch_ring_workspace_bytes

    def total(ring: str, impl: str = "ring") -> float:
        training = planner.TrainingSpec(
            seq_len=131072,
            global_batch_seqs=8,
            total_tokens=1e10,
            ring_attention=ring,  # type: ignore[arg-type]
        )
        layout = planner.Layout(dp=1, tp=8, pp=2, cp=4, sharding="zero1", recompute="full",
                                cp_impl=impl)  # type: ignore[arg-type]  # fmt: skip
        cluster = planner.ClusterSpec(gpu="H100-SXM-80GB", num_gpus=64)
        return planner.estimate(MODEL, cluster, training, layout).memory_gib.total

    q = 2 * (131072 // 4) * 4096 / 8  # bf16 x local tokens x query width / tp
    held_gib = torch_ring_workspace_bytes(q, 2 * q, 4) / 2**30
    assert held_gib == pytest.approx(36 * q / 2**30)
    more = total("torch") - total("te")
    assert held_gib <= more <= held_gib * 1.1  # plus the allocator's fragmentation
    # The allgather implementation holds its own gathered K/V instead (test_cp_impl.py).
    assert total("torch", "allgather") == total("te", "allgather")


@pytest.mark.parametrize("ring", ["torch", "te"])
def test_a_search_with_ring_layouts_says_whose_ring_it_priced(ring: str) -> None:
    from rich.console import Console

    from planner.render_search import RING_PRICED, render_search

    cluster = planner.ClusterSpec(gpu="H100-SXM-80GB", num_gpus=64)

    def shown(seq_len: int, **pinned: int) -> str:
        training = planner.TrainingSpec(
            seq_len=seq_len,
            global_batch_seqs=64,
            total_tokens=1e10,
            ring_attention=ring,  # type: ignore[arg-type]
        )
        console = Console(record=True, width=200)
        result = planner.search(MODEL, cluster, training, top_k=10, pinned=pinned)
        render_search(result, [], console)
        return console.export_text()

    assert RING_PRICED[ring] in shown(131072)  # the fastest layouts split the sequence
    assert "cp rings priced" not in shown(131072, cp=1)  # no ring, nothing to say
