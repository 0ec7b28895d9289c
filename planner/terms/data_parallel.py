"""Data-parallel communication of one step: gradient reduction, parameter gathering.

DDP all-reduces gradients (Li et al. 2020, PyTorch DDP, Sec. 3.2); ZeRO-1/2 reduce-scatter
gradients and all-gather updated weights (Rajbhandari et al. 2020, Sec. 5), ZeRO-2 once
per micro-batch; FSDP gathers weights and scatters gradients per layer (Zhao et al. 2023,
Sec. 3.3); HSDP adds an all-reduce across replicas; FSDP1 adds its gradient pre-divide
(:func:`planner.formulas.step.fsdp1_predivide_time`). Expert parameters reduce over the
expert-data-parallel group dp·cp/ep. What hides under backward (forward for gathers) is
:func:`planner.formulas.step.overlapped`; what hides still slows the compute beside it
(:func:`planner.formulas.step.overlap_contention_time`). Only these NCCL collectives are
charged so: Megatron's TP overlap runs on Transformer Engine's userbuffers (copy-engine
ring exchange, or a fixed 16-SM partition the GEMM is launched around: TE
``module/base.py`` ``initialize_ub``), and charging every hidden TP, CP and EP collective
at the NVLink rate put the Megatron README 32b/70b and DeepSeek-V3 rows 18-33 % low.
Context parallelism's ring P2P is an NCCL isend/irecv and is charged so in its own term
(:func:`planner.terms.layer_comm.context_parallel`).
"""

from __future__ import annotations

from typing import Any

from planner.formulas import comm, step
from planner.formulas.ops import maximum, where
from planner.inputs import Constants, Inputs
from planner.terms import states
from planner.terms.schedule import MicroBatch
from planner.terms.shapes import (
    SHARDING_HSDP,
    SHARDS_GRADIENTS,
    SHARDS_OPTIMIZER,
    SHARDS_WEIGHTS,
    Shapes,
)
from planner.terms.states import StageParams


def fsdp_time(
    x: Inputs, c: Constants, s: Shapes, p: StageParams, mb: MicroBatch
) -> tuple[tuple[Any, Any], tuple[Any, Any]]:
    """(FSDP/ZeRO-3, HSDP), each (exposed seconds, compute seconds lost to contention) per
    step."""
    sh_bw, sh_alpha = comm.group_link(
        s.shard_group, x.tp, x.gpus_per_node, s.intra_bw, s.inter_bw, c.alpha_intra_s,
        c.alpha_inter_s,
    )  # fmt: skip
    replicas = s.dp_size / s.shard_group
    rep_bw, rep_alpha = comm.group_link(
        replicas, x.tp * s.shard_group, x.gpus_per_node, s.intra_bw, s.inter_bw,
        c.alpha_intra_s, c.alpha_inter_s,
    )  # fmt: skip
    ov = x.overlap_grad_reduce
    # FSDP: per-layer gathers/scatters inside the shard group (all of dp for ZeRO-3).
    per_layer = layer_params(s, p)
    # LoRA/QLoRA: the frozen weights are gathered in their storage format (QLoRA's NF4),
    # and only the adapters' gradients are reduce-scattered.
    trainable = where(x.frozen > 0, states.adapter_layer_params(x), per_layer)
    gather_b = where(
        x.frozen > 0, x.base_weight_bytes * per_layer + x.weight_bytes * trainable,
        gathered_weight_bytes(x, c) * per_layer,
    )  # fmt: skip
    fsdp_gather = comm.all_gather_time(gather_b, s.shard_group, sh_bw, sh_alpha)
    fsdp_scatter = comm.all_gather_time(x.grad_bytes * trainable, s.shard_group, sh_bw, sh_alpha)
    fsdp_grad_passes = (
        x.fsdp1 * s.layers_stage * step.fsdp1_predivide_time(trainable, x.grad_bytes, s.mem_bw)
    ) + s.layers_stage * step.fsdp_reduce_cast_time(
        trainable, x.weight_bytes, x.grad_bytes, s.mem_bw
    )
    fsdp_mb = step.fsdp_exposed_per_micro_batch(
        s.layers_stage, fsdp_gather, fsdp_scatter, mb.layer_fwd, mb.layer_bwd, ov
    )
    fsdp_x = s.micro_batches * (fsdp_mb + fsdp_grad_passes)
    # What the layers' gathers and scatters do not leave exposed runs beside compute.
    fsdp_hidden = maximum(s.layers_stage * (2 * fsdp_gather + fsdp_scatter) - fsdp_mb, 0.0)
    fsdp_c = step.overlap_contention_time(
        s.micro_batches * fsdp_hidden, sh_bw, s.intra_bw, c.overlap_contention_per_comm_s
    )
    replica_ar = comm.all_reduce_time(
        x.grad_bytes * where(x.frozen > 0, s.layers_stage * trainable, p.dense + p.expert)
        / s.shard_group,
        replicas, rep_bw, rep_alpha,
    )  # fmt: skip
    replica_x = step.overlapped(replica_ar, 0.0, mb.bwd * ov, ov)
    replica_c = step.overlap_contention_time(
        replica_ar - replica_x, rep_bw, s.intra_bw, c.overlap_contention_per_comm_s
    )
    return (fsdp_x, fsdp_c), (fsdp_x + replica_x, fsdp_c + replica_c)


def gathered_weight_bytes(x: Inputs, c: Constants) -> Any:
    """Bytes per parameter of the weights' all-gathers: the FP8 weight itself under
    TrainingSpec.fp8_param_gather (Megatron ``--fp8-param-gather``: the distributed
    optimizer and Megatron-FSDP gather FP8 weight buffers), else the compute copy."""
    return where(x.fp8_params > 0, c.fp8_weight_cache_bytes, x.weight_bytes)


def layer_params(s: Shapes, p: StageParams) -> Any:
    """Parameters of one layer of the stage on one GPU (FSDP's unit of gathering)."""
    return (p.dense + p.expert) / s.layers_stage


def data_parallel_time(
    x: Inputs, c: Constants, s: Shapes, p: StageParams, mb: MicroBatch
) -> tuple[Any, Any]:
    """(exposed data-parallel seconds, compute seconds lost to the hidden collectives'
    contention) per step under the layout's sharding mode."""
    dp_size = s.dp_size
    expert_dp = maximum(dp_size * x.tp / (x.ep * s.expert_tp), 1.0)
    dp_bw, dp_alpha = comm.group_link(
        dp_size, x.tp, x.gpus_per_node, s.intra_bw, s.inter_bw, c.alpha_intra_s, c.alpha_inter_s
    )
    edp_bw, edp_alpha = comm.group_link(
        expert_dp, s.expert_tp * x.ep, x.gpus_per_node, s.intra_bw, s.inter_bw,
        c.alpha_intra_s, c.alpha_inter_s,
    )  # fmt: skip
    bucket = c.grad_bucket_bytes
    # LoRA/QLoRA reduce and update the adapters only (the frozen weights never change).
    frozen = x.frozen > 0
    dense = where(frozen, s.layers_stage * states.adapter_layer_params(x), p.dense)
    expert = where(frozen, 0.0, p.expert)
    g_dense, g_expert = x.grad_bytes * dense, x.grad_bytes * expert
    w_bytes = where(frozen, x.weight_bytes, gathered_weight_bytes(x, c))
    w_dense, w_expert = w_bytes * dense, w_bytes * expert
    window_bwd, window_fwd = mb.bwd * x.overlap_grad_reduce, mb.fwd * x.overlap_grad_reduce
    ov = x.overlap_grad_reduce

    def ar(size: Any) -> Any:
        return comm.all_reduce_time(size, dp_size, dp_bw, dp_alpha)

    def ag(size: Any) -> Any:
        return comm.all_gather_time(size, dp_size, dp_bw, dp_alpha)

    def e_ar(size: Any) -> Any:
        return comm.all_reduce_time(size, expert_dp, edp_bw, edp_alpha)

    def e_ag(size: Any) -> Any:
        return comm.all_gather_time(size, expert_dp, edp_bw, edp_alpha)

    def small(size: Any) -> Any:
        return where(size < bucket, size, bucket)

    def exposed_and_contention(dense: Any, expert: Any, least: Any, window: Any) -> Any:
        """(exposed, contention) of a dense and an expert collective hiding together; each
        part's hidden seconds are charged at its own link's rate."""
        exposed = step.overlapped(dense + expert, least, window, ov)
        hidden = dense + expert - exposed
        share = dense / maximum(dense + expert, 1e-30)
        k = c.overlap_contention_per_comm_s
        return exposed, step.overlap_contention_time(
            hidden * share, dp_bw, s.intra_bw, k
        ) + step.overlap_contention_time(hidden * (1.0 - share), edp_bw, s.intra_bw, k)

    ddp = exposed_and_contention(ar(g_dense), e_ar(g_expert), ar(small(g_dense)), window_bwd)
    rs = exposed_and_contention(ag(g_dense), e_ag(g_expert), ag(small(g_dense)), window_bwd)
    param_ag = exposed_and_contention(ag(w_dense), e_ag(w_expert), ag(small(w_dense)), window_fwd)
    zero1 = (rs[0] + param_ag[0], rs[1] + param_ag[1])
    zero2 = (s.micro_batches * rs[0] + param_ag[0], s.micro_batches * rs[1] + param_ag[1])
    fsdp, hsdp = fsdp_time(x, c, s, p, mb)

    def pick(i: int) -> Any:
        return where(
            x.sharding < SHARDS_OPTIMIZER,
            ddp[i],
            where(
                x.sharding < SHARDS_GRADIENTS,
                zero1[i],
                where(
                    x.sharding < SHARDS_WEIGHTS,
                    zero2[i],
                    where(x.sharding < SHARDING_HSDP, fsdp[i], hsdp[i]),
                ),
            ),
        )

    return pick(0), pick(1)


def tied_embedding_sync_time(x: Inputs, pp_bw: Any, pp_alpha: Any) -> Any:
    """Tied embeddings split across first and last stage: their gradients are all-reduced
    between the two (Shoeybi et al. 2019; Megatron-LM's embedding group)."""
    return where(
        (x.tied > 0) & (x.pp > 1),
        comm.all_reduce_time(x.grad_bytes * x.vocab * x.hidden / x.tp, 2.0, pp_bw, pp_alpha),
        0.0,
    )
