"""Communication inside a layer: tensor, context and expert parallelism.

Collective costs are the alpha-beta model of :mod:`planner.formulas.comm`; what hides
under compute follows :func:`planner.formulas.step.overlapped`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from planner.formulas import comm, kernels, step
from planner.formulas.ops import maximum, minimum, where
from planner.inputs import Constants, Inputs
from planner.terms.shapes import Shapes


class TensorParallel(NamedTuple):
    """Tensor-parallel collectives of one layer (seconds)."""

    all_reduce_s: Any
    """One all-reduce of a micro-batch's hidden states."""
    all_gather_s: Any
    """One all-gather (or reduce-scatter) of them."""
    fwd_exposed_s: Any
    """Exposed forward communication of a layer."""
    bwd_exposed_s: Any
    """Exposed backward communication of a layer."""


def tensor_parallel(x: Inputs, c: Constants, s: Shapes, gemm_fwd: Any) -> TensorParallel:
    """Without SP: two all-reduces forward, two backward (Shoeybi et al. 2019, Fig. 4).
    With SP: all-gather + reduce-scatter per block forward; backward adds re-gathering
    the norm outputs for the weight gradients (Korthikanti et al. 2022, Sec. 4.2.2)."""
    tp_bw, tp_alpha = comm.group_link(
        x.tp, 1.0, x.gpus_per_node, s.intra_bw, s.inter_bw, c.alpha_intra_s, c.alpha_inter_s
    )
    tp_ar = comm.all_reduce_time(s.act_full, x.tp, tp_bw, tp_alpha)
    tp_ag = comm.all_gather_time(s.act_full, x.tp, tp_bw, tp_alpha)
    tp_fwd = where(x.sp > 0, 4 * tp_ag, 2 * tp_ar)
    tp_bwd = where(x.sp > 0, 6 * tp_ag, 2 * tp_ar)
    tp_fwd_x = step.overlapped(tp_fwd, 0.0, gemm_fwd, x.tp_comm_overlap)
    tp_bwd_x = step.overlapped(tp_bwd, 0.0, 2 * gemm_fwd, x.tp_comm_overlap)
    return TensorParallel(tp_ar, tp_ag, tp_fwd_x, tp_bwd_x)


def context_parallel(
    x: Inputs, c: Constants, s: Shapes, attn_fwd: Any, attn_bwd: Any
) -> tuple[Any, Any]:
    """(forward, backward) seconds of context parallelism beyond the attention kernels.

    Ring (``cp_impl`` ring) as Transformer Engine runs it (``TrainingSpec.ring_attention``
    te: Megatron-LM, NeMo; its ``AttnFuncWithCPAndKVP2P``, v1.4-v2.9,
    ``transformer_engine/pytorch/attention.py`` / ``dot_product_attention/
    context_parallel.py``): the attention runs as cp kernel calls, one per K/V chunk
    (Liu et al. 2023, Ring Attention, Sec. 3); each step's P2P of the next chunk
    (``flash_attn_p2p_communicate``: torch.distributed isend/irecv) hides under that
    step's kernel only, so what a step's exchange takes beyond 1/cp of the attention
    stays exposed. Forward: cp - 1 sends of K and V; backward: K and V at the first
    step, K, V and their gradients at the cp - 2 middle ones, the gradients alone at the
    last (``send_tensor[0]`` / ``send_tensor[1]``). Across a node boundary the ring's
    node-crossing hop runs NIC to NIC. The hidden P2P still slows the kernels beside it
    (NCCL kernels hold SMs: :func:`planner.formulas.step.overlap_contention_time`), and
    the per-step merges of partial outputs and gradients are memory-bound passes
    (:func:`planner.formulas.kernels.ring_attention_merge_bytes`). As torch's
    ``context_parallel`` runs it (ring_attention torch: scalectl's trainer, torchtitan):
    :func:`torch_ring`.

    All-gather (``cp_impl`` allgather; Dubey et al. 2024, "The Llama 3 Herd of Models",
    Sec. 3.3.2): the forward all-gathers the whole sequence's K and V before the
    attention, on the critical path (the paper accepts it exposed: with GQA K and V are
    small, and the gather grows as S against the attention's S^2); the backward
    reduce-scatters their gradients, and recomputation (selective or full) gathers them
    again."""
    cp_bw, cp_alpha = comm.group_link(
        x.cp, x.tp, x.gpus_per_node, s.intra_bw, s.inter_bw, c.alpha_intra_s, c.alpha_inter_s
    )
    spans = x.cp > comm.members_per_node(x.cp, x.tp, x.gpus_per_node)
    ring_bw = where(spans, minimum(s.inter_bw, s.intra_bw), s.intra_bw)
    kv_chunk = s.ab * s.tokens * 2 * s.kv_dim / x.tp
    q_local = s.q_local
    send = comm.p2p_time(kv_chunk, ring_bw, cp_alpha)
    send_both = comm.p2p_time(2 * kv_chunk, ring_bw, cp_alpha)
    later = maximum(x.cp - 1, 0.0)
    step_fwd, step_bwd = attn_fwd / x.cp, attn_bwd / x.cp
    exposed_fwd = later * maximum(send - step_fwd, 0.0)
    exposed_bwd = where(
        x.cp > 1,
        2 * maximum(send - step_bwd, 0.0)
        + maximum(x.cp - 2, 0.0) * maximum(send_both - step_bwd, 0.0),
        0.0,
    )
    hidden_fwd = later * send - exposed_fwd
    hidden_bwd = where(x.cp > 1, 2 * send + maximum(x.cp - 2, 0.0) * send_both, 0.0)
    hidden_bwd = hidden_bwd - exposed_bwd
    merge_fwd_b, merge_bwd_b = kernels.ring_attention_merge_bytes(q_local, kv_chunk, x.cp)
    ring_fwd_x = ring_pass_time(c, s, ring_bw, (exposed_fwd, hidden_fwd, merge_fwd_b))
    ring_bwd_x = ring_pass_time(c, s, ring_bw, (exposed_bwd, hidden_bwd, merge_bwd_b))
    torch_fwd, torch_bwd = torch_ring(x, c, s, (step_fwd, step_bwd), (cp_bw, cp_alpha, ring_bw))
    ring_fwd_x = where(x.torch_ring > 0, torch_fwd, ring_fwd_x)
    ring_bwd_x = where(x.torch_ring > 0, torch_bwd, ring_bwd_x)
    gather = comm.all_gather_time(kv_chunk * x.cp, x.cp, cp_bw, cp_alpha)
    gather_bwd = gather + where(x.recompute > 0, gather, 0.0)
    allgather = x.cp_allgather > 0
    return where(allgather, gather, ring_fwd_x), where(allgather, gather_bwd, ring_bwd_x)


def ring_pass_time(c: Constants, s: Shapes, ring_bw: Any, costs: tuple[Any, Any, Any]) -> Any:
    """Seconds one pass (forward or backward) of ring attention adds to its kernels, from
    its (exposed communication seconds, hidden communication seconds, merge HBM bytes):
    the exposed part, the compute the hidden part slows
    (:func:`planner.formulas.step.overlap_contention_time`) and the memory-bound merges."""
    exposed, hidden, merge_bytes = costs
    k = c.overlap_contention_per_comm_s
    return (
        exposed
        + step.overlap_contention_time(hidden, ring_bw, s.intra_bw, k)
        + kernels.memory_bound_time(merge_bytes, s.mem_bw)
    )


def torch_ring(
    x: Inputs, c: Constants, s: Shapes, step_s: tuple[Any, Any], link: tuple[Any, Any, Any]
) -> tuple[Any, Any]:
    """(forward, backward) seconds of torch's ring attention (``context_parallel``,
    ``cp_impl`` ring with ``TrainingSpec.ring_attention`` torch; torch 2.6-2.13
    ``_templated_ring_attention``) beyond its kernels, given one ring step's forward and
    backward kernel seconds ``step_s`` and the (all-gather bandwidth, latency, ring
    bandwidth) ``link``. K and V travel with every query head (the model repeats GQA
    heads before SDPA). Forward: the default all-gather rotater gathers every rank's K/V
    once, issued before step 0's kernel and awaited after it, so only step 0 hides it.
    Backward: the same gather again, and the FP32 dK/dV sent one rank on
    (``permute_tensor``) after each step, each hidden under the next step's kernel; the
    last one, awaited after the loop, is exposed whole. Hidden traffic still slows the
    kernels beside it (:func:`planner.formulas.step.overlap_contention_time`); the FP32
    merges are memory-bound passes (:func:`planner.formulas.kernels.torch_ring_attention_bytes`)."""
    step_fwd, step_bwd = step_s
    cp_bw, cp_alpha, ring_bw = link
    q_local = s.q_local
    kv_local = 2 * q_local
    gather = comm.all_gather_time(kv_local * x.cp, x.cp, cp_bw, cp_alpha)
    dkv = comm.p2p_time(2 * kv_local, ring_bw, cp_alpha)
    later = maximum(x.cp - 1, 0.0)
    gather_fwd_x = maximum(gather - step_fwd, 0.0)
    gather_bwd_x = maximum(gather - step_bwd, 0.0)
    dkv_x = later * maximum(dkv - step_bwd, 0.0) + dkv
    hidden_fwd = gather - gather_fwd_x
    hidden_bwd = gather - gather_bwd_x + later * dkv + dkv - dkv_x
    fwd_b, bwd_b = kernels.torch_ring_attention_bytes(q_local, kv_local, x.cp)
    fwd = ring_pass_time(c, s, ring_bw, (gather_fwd_x, hidden_fwd, fwd_b))
    bwd = ring_pass_time(c, s, ring_bw, (gather_bwd_x + dkv_x, hidden_bwd, bwd_b))
    on = x.cp > 1
    return where(on, fwd, 0.0), where(on, bwd, 0.0)


def expert_parallel(x: Inputs, c: Constants, s: Shapes, compute: Any) -> tuple[Any, Any]:
    """(forward, backward) exposed seconds of the MoE token exchange: dispatch and combine
    all-to-alls of top_k copies of each token (Lepikhin et al. 2020, GShard, Sec. 2.2),
    twice forward and twice backward; with ``ep_comm_overlap`` what hides under
    ``compute`` (a layer's forward + backward compute) of the adjacent micro-batch
    (:func:`planner.formulas.step.merged_micro_batch_exposed`)."""
    # Without expert TP pinned the experts split over data-parallel ranks (stride tp·cp);
    # with it (Megatron-Core MoE parallel folding, Liu et al. 2025, Sec. 3) the expert
    # ranks are laid out expert_tp-major over the stage's tp·cp·dp ranks.
    ep_stride = where(x.etp > 0, s.expert_tp, x.tp * x.cp)
    ep_per_node = comm.members_per_node(x.ep, ep_stride, x.gpus_per_node)
    a2a = comm.all_to_all_time(
        s.act_full * x.top_k * s.sp_share * x.moe_capacity, x.ep, ep_per_node, s.intra_bw,
        s.inter_bw,
        where(x.ep > ep_per_node, c.alpha_inter_s, c.alpha_intra_s),
    )  # fmt: skip
    exposed = step.merged_micro_batch_exposed(
        4 * a2a, compute, s.micro_batches, x.pp, x.interleave, x.ep_comm_overlap
    )
    # The exposed part splits between forward and backward as the all-to-alls do (2 : 2).
    ep_fwd = s.moe_share * exposed / 2
    ep_bwd = s.moe_share * exposed / 2
    return ep_fwd, ep_bwd
