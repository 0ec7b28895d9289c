"""A micro-batch through one stage (forward, backward, recomputation) and the pipeline
around it (bubble, stage-to-stage sends; Narayanan et al. 2021, Sec. 2.2)."""

from __future__ import annotations

from typing import Any, NamedTuple

from planner.formulas import comm, flops, step
from planner.formulas.ops import maximum, where
from planner.inputs import Constants, Inputs
from planner.terms.layer_comm import TensorParallel
from planner.terms.shapes import UNEVEN_LAYERS, Shapes


class MicroBatch(NamedTuple):
    """Seconds of one micro-batch on the slowest stage, and the parts the step sums."""

    layer_fwd: Any
    layer_bwd: Any
    """A layer's backward, recomputation included."""
    recompute_layer: Any
    """Forward work a layer repeats in backward under the recompute mode."""
    recompute_comm: Any
    """Communication inside ``recompute_layer`` (not busy compute, for power)."""
    head_comm: Any
    """Tensor-parallel collective of the output layer."""
    head_weight: Any
    """Share of the output layer's time on the critical path: 1, or with uneven stages
    what it adds beyond the layer the last stage gave up (0 when that layer takes longer)."""
    fwd: Any
    bwd: Any
    total: Any
    head_bwd_gemm: Any
    """The output layer's backward GEMMs (twice its forward; once when frozen)."""


def layer_time(
    c: Constants, gemm: tuple[Any, Any], attn: tuple[Any, Any], ew: tuple[Any, Any],
    tp: TensorParallel, cp: tuple[Any, Any], ep: tuple[Any, Any],
) -> tuple[Any, Any, Any]:  # fmt: skip
    """(forward, backward without recomputation, kernel launches) seconds of one layer.

    Backward launches twice the kernels. ``gemm``, ``attn``, ``ew``, ``cp``, ``ep`` are
    (forward, backward) pairs (:func:`planner.terms.compute.layer_gemm_bwd`); ``ew``'s
    backward includes gradient accumulation.
    """
    gemm_fwd, gemm_bwd = gemm
    kernel_fwd = c.kernels_per_layer_fwd * c.kernel_overhead_s
    layer_fwd = gemm_fwd + attn[0] + ew[0] + tp.fwd_exposed_s + cp[0] + ep[0] + kernel_fwd
    layer_bwd_core = gemm_bwd + attn[1] + ew[1] + tp.bwd_exposed_s + cp[1] + ep[1] + 2 * kernel_fwd
    return layer_fwd, layer_bwd_core, kernel_fwd


def micro_batch_time(
    x: Inputs, s: Shapes, layer: tuple[Any, Any], core_fwd: Any, comm_fwd: Any,
    tp: TensorParallel, head: tuple[Any, Any],
) -> MicroBatch:  # fmt: skip
    """One micro-batch through a stage's layers and the output layer.

    Full recomputation repeats a layer's forward in backward, selective only its attention
    core (Korthikanti et al. 2022, Sec. 5); ``layer`` is (forward, backward without
    recomputation), ``core_fwd`` what selective recomputation repeats (the attention
    core's forward, kernel and element-wise; or torchtitan's op policy's share,
    :func:`planner.terms.compute.op_recompute_gemm_fwd` plus the element-wise forward),
    ``comm_fwd`` the exposed forward communication of a layer (TP + CP + EP).
    """
    layer_fwd, layer_bwd_core = layer
    recompute_layer = where(
        x.recompute >= flops.RECOMPUTE_FULL,
        layer_fwd,
        where(x.recompute >= flops.RECOMPUTE_SELECTIVE, core_fwd, 0.0),
    )
    recompute_comm = where(x.recompute >= flops.RECOMPUTE_FULL, comm_fwd, 0.0)
    layer_bwd = layer_bwd_core + recompute_layer
    t_head, loss_ew = head
    # Vocab-parallel logits: an all-reduce (all-gather with SP) of the final hidden states.
    head_comm = where(x.sp > 0, 2 * tp.all_gather_s, tp.all_reduce_s)
    head_fwd = t_head + loss_ew
    head_bwd = (2.0 - x.frozen) * t_head  # a frozen output layer: input gradients only
    # Uneven stages: the last stage runs one layer fewer plus the output layer, the others
    # a full stage; the slower of the two sets the pace (Llama 3 paper, Sec. 3.3.2).
    head_total = head_fwd + head_bwd + head_comm
    head_weight = where(
        x.uneven > 0,
        maximum(1.0 - UNEVEN_LAYERS * (layer_fwd + layer_bwd) / head_total, 0.0),
        1.0,
    )
    t_mb_fwd = s.layers_stage * layer_fwd + head_fwd * head_weight
    t_mb_bwd = s.layers_stage * layer_bwd + head_bwd * head_weight
    return MicroBatch(
        layer_fwd, layer_bwd, recompute_layer, recompute_comm, head_comm, head_weight,
        t_mb_fwd, t_mb_bwd, t_mb_fwd + t_mb_bwd + head_comm * head_weight, head_bwd,
    )  # fmt: skip


def pipeline_link(x: Inputs, c: Constants, s: Shapes) -> tuple[Any, Any]:
    """(bandwidth, latency) between neighbouring stages: ranks are ordered tp, cp, dp, pp,
    so stages are tp·cp·dp ranks apart (:mod:`planner.formulas.comm`)."""
    pp_stride = x.tp * x.cp * x.dp
    pp_bw = where(pp_stride >= x.gpus_per_node, s.inter_bw, s.intra_bw)
    pp_alpha = where(pp_stride >= x.gpus_per_node, c.alpha_inter_s, c.alpha_intra_s)
    return pp_bw, pp_alpha


def pipeline_time(
    x: Inputs, s: Shapes, t_micro_batch: Any, pp_bw: Any, pp_alpha: Any
) -> tuple[Any, Any]:
    """(bubble, exposed stage-to-stage sends) seconds per step: bubble (p-1)/v · t_mb
    (Narayanan et al. 2021, Sec. 2.2.1); each rank sends its 1/t share of the
    activations, all of them with SP (scatter/gather optimisation, Sec. 4.1)."""
    group = where(x.mb_group > 0, x.mb_group, x.pp)
    bubble = step.bubble_time(x.pp, x.interleave, t_micro_batch) + step.group_idle_time(
        s.micro_batches, x.pp, x.interleave, group, t_micro_batch
    )
    p2p_send = comm.p2p_time(s.act_full * s.sp_share / where(x.sp > 0, 1.0, x.tp), pp_bw, pp_alpha)
    p2p = step.p2p_exposed_time(s.micro_batches, x.pp, x.interleave, p2p_send)
    return bubble, p2p
