"""Wire the formulas into one evaluation: memory, step time, FLOPs and run totals.

``evaluate(x, c)`` is the single place where the formulas of :mod:`planner.formulas` are
combined. ``x`` is an :class:`~planner.inputs.Inputs` of Python floats (one candidate,
used by ``planner.estimate``) or of numpy arrays (many candidates at once, used by the
layout search); the result has the same kind. It assumes the layout is valid
(``planner.checks``): per-replica batch divisible by the micro-batch, and so on.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from planner.formulas import comm, flops, kernels, memory, params, reliability, step
from planner.formulas.ops import ceil, maximum, minimum, where
from planner.inputs import Constants, Inputs
from planner.units import GIB, SECONDS_PER_DAY, SECONDS_PER_HOUR, TERA, W_PER_MW

BREAKDOWN_KEYS = (
    "gemm_s",
    "attention_s",
    "memory_bound_s",
    "recompute_s",
    "tp_comm_s",
    "cp_comm_s",
    "ep_comm_s",
    "pp_p2p_s",
    "pipeline_bubble_s",
    "dp_comm_s",
    "optimizer_s",
)
"""Components of the step time, in seconds per step; they add up to step_time_s."""


class Outputs(NamedTuple):
    """Everything one evaluation produces (floats or arrays); units in the names."""

    params_gib: Any
    grads_gib: Any
    optimizer_gib: Any
    activations_gib: Any
    other_gib: Any
    total_gib: Any
    capacity_gib: Any
    fits: Any
    step_time_s: Any
    model_tflops_per_gpu: Any
    hardware_tflops_per_gpu: Any
    mfu: Any
    hfu: Any
    tokens_per_s: Any
    bubble_fraction: Any
    exposed_comm_s: Any
    gemm_s: Any
    attention_s: Any
    memory_bound_s: Any
    recompute_s: Any
    tp_comm_s: Any
    cp_comm_s: Any
    ep_comm_s: Any
    pp_p2p_s: Any
    pipeline_bubble_s: Any
    dp_comm_s: Any
    optimizer_s: Any
    train_tokens: Any
    steps: Any
    days: Any
    gpu_hours: Any
    energy_mwh: Any
    energy_mwh_tdp: Any
    cost_usd: Any
    co2_t: Any
    micro_batches: Any
    gpu_power_w: Any
    goodput: Any
    checkpoint_interval_min: Any
    expected_interruptions: Any
    checkpoint_save_s: Any
    job_mtbf_h: Any


def candidate(outputs: Outputs, index: int) -> tuple[float, ...]:
    """One candidate's outputs as Python floats (scalar outputs are shared by all)."""
    import numpy as np

    return tuple(
        float(np.asarray(value).reshape(-1)[index] if np.ndim(value) else value)
        for value in outputs
    )


def evaluate(x: Inputs, c: Constants) -> Outputs:
    """Memory, step time and run totals of the candidate(s) in ``x``."""
    ab = x.act_bytes
    moe = where(x.experts > 1, 1.0, 0.0)
    q_dim = x.heads * x.head_dim
    kv_dim = x.kv_heads * x.head_dim
    ffn_active = where(moe > 0, x.top_k * x.moe_ffn + x.shared_ffn, x.ffn)
    rope = where(x.learned_pos_rows > 0, 0.0, 1.0)
    sp_share = where(x.sp > 0, 1.0 / x.tp, 1.0)
    # The dense peak of the training precision: BF16 (mixed), FP8 GEMMs, or plain FP32.
    peak_main = where(x.fp32 > 0, x.peak_fp32_flops, x.peak_flops)
    peak_mfu = where(x.fp8 > 0, x.peak_fp8_flops, peak_main)
    # Compute kernels run at the sustained (power-capped) clock; MFU keeps the spec peak.
    peak_gemm = peak_mfu * x.sustained_clock
    peak_bf16 = peak_main * x.sustained_clock  # attention and unfused kernels (not FP8)
    eff_gemm = where(x.fp8 > 0, x.fp8_gemm_eff, x.gemm_eff)
    mem_bw = x.hbm_bytes_s * x.hbm_eff
    intra_bw = x.intra_bytes_s * x.intra_eff
    inter_bw = x.inter_bytes_s * x.inter_eff

    # --- shapes of one micro-batch on one GPU -------------------------------------------
    seq_local = x.seq / x.cp
    tokens = x.micro_batch * seq_local
    micro_batches = x.batch_seqs / (x.dp * x.micro_batch)
    layers_stage = ceil(x.layers / (x.pp * x.interleave)) * x.interleave
    heads_local = x.heads / x.tp

    def gemm(m: Any, n: Any, k: Any, count: Any = 1.0) -> Any:
        return kernels.gemm_time(
            m, n, k, count, peak_gemm, eff_gemm, mem_bw, ab, c.gemm_mn_half, c.gemm_k_half
        )

    # --- per-layer compute ------------------------------------------------------------------
    t_qkv = gemm(tokens, (q_dim + 2 * kv_dim) / x.tp, x.hidden)
    t_proj = gemm(tokens, x.hidden, q_dim / x.tp)
    t_dense_mlp = gemm(tokens, (1 + x.gated) * x.ffn / x.tp, x.hidden) + gemm(
        tokens, x.hidden, x.ffn / x.tp
    )
    local_experts = x.experts / x.ep
    expert_tokens = tokens * x.top_k / local_experts
    shared_w = maximum(x.shared_ffn, 1.0)
    t_moe_mlp = (
        gemm(expert_tokens, (1 + x.gated) * x.moe_ffn / x.tp, x.hidden, local_experts)
        + gemm(expert_tokens, x.hidden, x.moe_ffn / x.tp, local_experts)
        + where(
            x.shared_ffn > 0,
            gemm(tokens, (1 + x.gated) * shared_w / x.tp, x.hidden)
            + gemm(tokens, x.hidden, shared_w / x.tp),
            0.0,
        )
        + gemm(tokens, x.experts, x.hidden)
    )
    gemm_fwd = t_qkv + t_proj + where(moe > 0, t_moe_mlp, t_dense_mlp)

    exec_fraction = flops.executed_key_fraction(x.seq, x.flash, c.flash_causal_block)
    flash_flops = 4 * tokens * x.seq * heads_local * x.head_dim * exec_fraction
    # With context parallelism each ring step runs the kernel on s/cp keys (Liu 2023, Ring
    # Attention, Sec. 3): its efficiency is that of the shorter sequence.
    attn_fwd_flash = kernels.fused_attention_time(
        flash_flops, peak_bf16, x.attn_fwd_eff, seq_local, x.attn_seq_half
    )
    attn_bwd_flash = kernels.fused_attention_time(
        c.flash_bwd_flops_ratio * flash_flops,
        peak_bf16,
        x.attn_bwd_eff,
        seq_local,
        x.attn_seq_half,
    )
    attn_count = x.micro_batch * heads_local
    attn_fwd_unfused = kernels.gemm_time(
        seq_local, x.seq, x.head_dim, attn_count, peak_bf16, x.gemm_eff, mem_bw, ab,
        c.gemm_mn_half, c.gemm_k_half,
    ) + kernels.gemm_time(
        seq_local, x.head_dim, x.seq, attn_count, peak_bf16, x.gemm_eff, mem_bw, ab,
        c.gemm_mn_half, c.gemm_k_half,
    )  # fmt: skip
    attn_fwd = where(x.flash > 0, attn_fwd_flash, attn_fwd_unfused)
    attn_bwd = where(x.flash > 0, attn_bwd_flash, 2 * attn_fwd_unfused)

    ew_layer = kernels.layer_elementwise_bytes_fwd(
        tokens, x.hidden, q_dim, kv_dim, ffn_active, x.gated, rope, x.tp, sp_share,
        x.hidden_dropout, moe, x.top_k, x.fp8, ab, c.mask_bytes, c.fp8_cast_bytes,
    )  # fmt: skip
    ew_core = kernels.attention_core_elementwise_bytes_fwd(
        tokens, x.seq, heads_local, q_dim / x.tp, x.attention_dropout, 1.0 - x.flash, ab,
        c.mask_bytes,
    )  # fmt: skip
    ew_core_fwd = kernels.memory_bound_time(ew_core, mem_bw)
    ew_fwd = kernels.memory_bound_time(ew_layer, mem_bw) + ew_core_fwd
    ew_bwd = c.elementwise_bwd_ratio * ew_fwd

    # --- per-layer communication -------------------------------------------------------------
    tp_bw, tp_alpha = comm.group_link(
        x.tp, 1.0, x.gpus_per_node, intra_bw, inter_bw, c.alpha_intra_s, c.alpha_inter_s
    )
    act_full = ab * tokens * x.hidden
    tp_ar = comm.all_reduce_time(act_full, x.tp, tp_bw, tp_alpha)
    tp_ag = comm.all_gather_time(act_full, x.tp, tp_bw, tp_alpha)
    # Without SP: two all-reduces forward, two backward (Shoeybi 2019, Fig. 4). With SP:
    # all-gather + reduce-scatter per block forward; backward adds re-gathering the
    # norm outputs for the weight gradients (Korthikanti 2022, Sec. 4.2.2).
    tp_fwd = where(x.sp > 0, 4 * tp_ag, 2 * tp_ar)
    tp_bwd = where(x.sp > 0, 6 * tp_ag, 2 * tp_ar)
    tp_fwd_x = step.overlapped(tp_fwd, 0.0, gemm_fwd, x.tp_comm_overlap)
    tp_bwd_x = step.overlapped(tp_bwd, 0.0, 2 * gemm_fwd, x.tp_comm_overlap)

    cp_bw, cp_alpha = comm.group_link(
        x.cp, x.tp, x.gpus_per_node, intra_bw, inter_bw, c.alpha_intra_s, c.alpha_inter_s
    )
    kv_chunk = ab * tokens * 2 * kv_dim / x.tp
    cp_fwd = (x.cp - 1) * comm.p2p_time(kv_chunk, cp_bw, cp_alpha)
    cp_fwd_x = maximum(cp_fwd - attn_fwd, 0.0)
    cp_bwd_x = maximum(2 * cp_fwd - attn_bwd, 0.0)

    ep_stride = x.tp * x.cp
    ep_per_node = comm.members_per_node(x.ep, ep_stride, x.gpus_per_node)
    a2a = comm.all_to_all_time(
        act_full * x.top_k * sp_share, x.ep, ep_per_node, intra_bw, inter_bw,
        where(x.ep > ep_per_node, c.alpha_inter_s, c.alpha_intra_s),
    )  # fmt: skip
    ep_fwd = moe * 2 * a2a
    ep_bwd = moe * 2 * a2a

    # --- parameters per GPU (before data-parallel sharding) --------------------------------
    layer_dense = params.layer_dense_params(
        x.hidden, x.heads, x.kv_heads, x.head_dim, x.ffn, x.gated, x.experts, x.shared_ffn,
        x.bias,
    ) / x.tp + params.layer_replicated_params(x.hidden, x.experts, x.layernorm)  # fmt: skip
    layer_expert = params.layer_expert_params(
        x.hidden, x.experts, x.moe_ffn, x.gated, x.bias, x.experts
    ) / (x.tp * x.ep)
    dp_size = x.dp * x.cp
    is_hsdp = x.sharding > 3.5
    shard_group = where(is_hsdp, x.hsdp_shard * x.cp, dp_size)
    # The weight-gradient GEMM accumulates into the gradient buffer every micro-batch
    # (C += A·B in the buffer's dtype: Megatron's gradient_accumulation_fusion, autograd's
    # .grad accumulation): read and write of the local gradient per parameter.
    grads_sharded = where(x.sharding > 1.5, 1.0 / shard_group, 1.0)
    grad_accum = kernels.memory_bound_time(
        2 * x.grad_bytes * (layer_dense + layer_expert) * grads_sharded, mem_bw
    )
    ew_bwd = ew_bwd + grad_accum
    kernel_fwd = c.kernels_per_layer_fwd * c.kernel_overhead_s

    layer_fwd = gemm_fwd + attn_fwd + ew_fwd + tp_fwd_x + cp_fwd_x + ep_fwd + kernel_fwd
    layer_bwd_core = (
        2 * gemm_fwd + attn_bwd + ew_bwd + tp_bwd_x + cp_bwd_x + ep_bwd + 2 * kernel_fwd
    )
    recompute_layer = where(
        x.recompute >= flops.RECOMPUTE_FULL,
        layer_fwd,
        where(x.recompute >= flops.RECOMPUTE_SELECTIVE, attn_fwd + ew_core_fwd, 0.0),
    )
    recompute_comm = where(x.recompute >= flops.RECOMPUTE_FULL, tp_fwd_x + cp_fwd_x + ep_fwd, 0.0)
    layer_bwd = layer_bwd_core + recompute_layer

    # --- output layer and loss (last stage) ------------------------------------------------
    t_head = gemm(tokens, x.vocab / x.tp, x.hidden)
    loss_ew = kernels.memory_bound_time(
        x.loss_bytes * tokens * x.vocab / x.tp + 4 * ab * act_full * sp_share, mem_bw
    )
    head_comm = where(x.sp > 0, 2 * tp_ag, tp_ar)
    head_fwd = t_head + loss_ew
    head_bwd = 2 * t_head
    t_mb_fwd = layers_stage * layer_fwd + head_fwd
    t_mb_bwd = layers_stage * layer_bwd + head_bwd
    t_micro_batch = t_mb_fwd + t_mb_bwd + head_comm

    # --- pipeline ---------------------------------------------------------------------------
    bubble = step.bubble_time(x.pp, x.interleave, t_micro_batch)
    pp_stride = x.tp * x.cp * x.dp
    pp_bw = where(pp_stride >= x.gpus_per_node, inter_bw, intra_bw)
    pp_alpha = where(pp_stride >= x.gpus_per_node, c.alpha_inter_s, c.alpha_intra_s)
    p2p_send = comm.p2p_time(act_full * sp_share / where(x.sp > 0, 1.0, x.tp), pp_bw, pp_alpha)
    p2p = step.p2p_exposed_time(micro_batches, x.pp, x.interleave, p2p_send)

    # --- stage parameters ---------------------------------------------------------------------
    embed = x.vocab * x.hidden / x.tp + x.learned_pos_rows * x.hidden
    head_params = where((x.tied > 0) & (x.pp == 1), 0.0, x.vocab * x.hidden / x.tp) + (
        params.norm_params(x.hidden, x.layernorm)
    )
    dense_first = layers_stage * layer_dense + embed + where(x.pp == 1, head_params, 0.0)
    dense_last = layers_stage * layer_dense + head_params + where(x.pp == 1, embed, 0.0)
    dense_stage = maximum(dense_first, dense_last)
    expert_stage = layers_stage * layer_expert

    # --- data-parallel communication ---------------------------------------------------------
    expert_dp = maximum(dp_size / x.ep, 1.0)
    expert_shard = maximum(shard_group / x.ep, 1.0)
    dp_bw, dp_alpha = comm.group_link(
        dp_size, x.tp, x.gpus_per_node, intra_bw, inter_bw, c.alpha_intra_s, c.alpha_inter_s
    )
    edp_bw, edp_alpha = comm.group_link(
        expert_dp, x.tp * x.ep, x.gpus_per_node, intra_bw, inter_bw,
        c.alpha_intra_s, c.alpha_inter_s,
    )  # fmt: skip
    sh_bw, sh_alpha = comm.group_link(
        shard_group, x.tp, x.gpus_per_node, intra_bw, inter_bw, c.alpha_intra_s,
        c.alpha_inter_s,
    )  # fmt: skip
    replicas = dp_size / shard_group
    rep_bw, rep_alpha = comm.group_link(
        replicas, x.tp * shard_group, x.gpus_per_node, intra_bw, inter_bw,
        c.alpha_intra_s, c.alpha_inter_s,
    )  # fmt: skip
    bucket = c.grad_bucket_bytes
    g_dense = x.grad_bytes * dense_stage
    g_expert = x.grad_bytes * expert_stage
    w_dense = x.weight_bytes * dense_stage
    w_expert = x.weight_bytes * expert_stage
    window_bwd = t_mb_bwd * x.overlap_grad_reduce
    window_fwd = t_mb_fwd * x.overlap_grad_reduce
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

    ddp_x = step.overlapped(ar(g_dense) + e_ar(g_expert), ar(small(g_dense)), window_bwd, ov)
    rs_x = step.overlapped(ag(g_dense) + e_ag(g_expert), ag(small(g_dense)), window_bwd, ov)
    param_ag_x = step.overlapped(ag(w_dense) + e_ag(w_expert), ag(small(w_dense)), window_fwd, ov)
    zero1_x = rs_x + param_ag_x
    zero2_x = micro_batches * rs_x + param_ag_x
    # FSDP: per-layer gathers/scatters inside the shard group (all of dp for ZeRO-3).
    per_layer = (dense_stage + expert_stage) / layers_stage
    fsdp_gather = comm.all_gather_time(x.weight_bytes * per_layer, shard_group, sh_bw, sh_alpha)
    fsdp_scatter = comm.all_gather_time(x.grad_bytes * per_layer, shard_group, sh_bw, sh_alpha)
    fsdp_x = micro_batches * step.fsdp_exposed_per_micro_batch(
        layers_stage, fsdp_gather, fsdp_scatter, layer_fwd, layer_bwd, ov
    )
    replica_ar = comm.all_reduce_time(
        (g_dense + g_expert) / shard_group, replicas, rep_bw, rep_alpha
    )
    hsdp_x = fsdp_x + step.overlapped(replica_ar, 0.0, window_bwd, ov)
    dp_x = where(
        x.sharding < 0.5,
        ddp_x,
        where(
            x.sharding < 1.5,
            zero1_x,
            where(x.sharding < 2.5, zero2_x, where(x.sharding < 3.5, fsdp_x, hsdp_x)),
        ),
    )
    # Tied embeddings split across first and last stage: their gradients are all-reduced.
    embed_sync = where(
        (x.tied > 0) & (x.pp > 1),
        comm.all_reduce_time(x.grad_bytes * x.vocab * x.hidden / x.tp, 2.0, pp_bw, pp_alpha),
        0.0,
    )

    # --- optimizer ---------------------------------------------------------------------------
    weights_b, grads_b, optimizer_b = memory.model_state_bytes(
        dense_stage, expert_stage, x.sharding, shard_group, expert_shard,
        x.weight_bytes, x.fp8 * c.fp8_weight_cache_bytes, x.grad_bytes,
        x.optimizer_state_bytes,
    )  # fmt: skip
    local_opt_params = optimizer_b / x.optimizer_state_bytes
    t_optimizer = (
        kernels.memory_bound_time(x.optimizer_step_bytes * local_opt_params, mem_bw)
        + x.step_overhead_s  # per-step overhead fitted by `plan calibrate` (planner.profile)
    )

    # --- the step ------------------------------------------------------------------------------
    mb = micro_batches
    gemm_s = mb * (layers_stage * 3 * gemm_fwd + 3 * t_head)
    attention_s = mb * layers_stage * (attn_fwd + attn_bwd)
    memory_bound_s = mb * (layers_stage * (ew_fwd + ew_bwd + 3 * kernel_fwd) + loss_ew)
    recompute_s = mb * layers_stage * recompute_layer
    tp_comm_s = mb * (layers_stage * (tp_fwd_x + tp_bwd_x) + head_comm)
    cp_comm_s = mb * layers_stage * (cp_fwd_x + cp_bwd_x)
    ep_comm_s = mb * layers_stage * (ep_fwd + ep_bwd)
    dp_comm_s = dp_x + embed_sync
    step_time = (
        gemm_s + attention_s + memory_bound_s + recompute_s + tp_comm_s + cp_comm_s
        + ep_comm_s + p2p + bubble + dp_comm_s + t_optimizer
    )  # fmt: skip
    exposed_comm = (
        tp_comm_s + cp_comm_s + ep_comm_s + p2p + dp_comm_s
        + mb * layers_stage * recompute_comm
    )  # fmt: skip

    # --- FLOPs and utilisation ------------------------------------------------------------
    layer_mm = params.layer_matmul_params_active(
        x.hidden, x.heads, x.kv_heads, x.head_dim, x.ffn, x.gated, x.experts, x.top_k,
        x.moe_ffn, x.shared_ffn,
    )  # fmt: skip
    step_tokens = x.batch_seqs * x.seq
    model_flops = step_tokens * flops.model_flops_per_token(
        x.layers, layer_mm, x.vocab, x.hidden, x.heads, x.head_dim, x.seq
    )
    hardware_flops = step_tokens * flops.hardware_flops_per_token(
        x.layers, layer_mm, x.vocab, x.hidden, x.heads, x.head_dim, x.seq, x.flash,
        x.recompute, c.flash_causal_block, c.flash_bwd_flops_ratio,
    )  # fmt: skip
    gpu_seconds = step_time * x.gpus
    model_tflops = model_flops / gpu_seconds / TERA
    hardware_tflops = hardware_flops / gpu_seconds / TERA

    # --- memory ---------------------------------------------------------------------------
    act_none, act_core = memory.layer_activation_bytes(
        tokens, x.seq, x.hidden, x.heads, q_dim, kv_dim, x.ffn, x.gated, moe, x.top_k,
        x.moe_ffn, x.shared_ffn, x.experts, x.tp, sp_share, x.flash, x.hidden_dropout,
        x.attention_dropout, ab, c.mask_bytes, c.softmax_stat_bytes,
    )  # fmt: skip
    act_layer = memory.stored_layer_activation_bytes(
        act_none, act_core, tokens, x.hidden, sp_share, x.recompute, ab
    )
    layers_per_chunk = layers_stage / x.interleave
    first_chunks = memory.chunks_in_flight(0.0, x.pp, x.interleave, micro_batches)
    last_chunks = memory.chunks_in_flight(x.pp - 1, x.pp, x.interleave, micro_batches)
    logits = x.logits_bytes * tokens * x.vocab / x.tp
    act_first = first_chunks * layers_per_chunk * act_layer + where(x.pp == 1, logits, 0.0)
    act_last = last_chunks * layers_per_chunk * act_layer + logits
    workspace = where(
        x.recompute >= flops.RECOMPUTE_FULL,
        act_none,
        where(x.recompute >= flops.RECOMPUTE_SELECTIVE, act_core, 0.0),
    ) + where(
        (x.sharding > 2.5) & (shard_group > 1),
        (2 * x.weight_bytes + x.grad_bytes) * per_layer,
        0.0,
    )
    groups = (
        where(x.tp > 1, 1.0, 0.0) + where(x.cp > 1, 1.0, 0.0) + where(dp_size > 1, 1.0, 0.0)
        + where(x.pp > 1, 1.0, 0.0) + where(x.ep > 1, 1.0, 0.0)
    )  # fmt: skip
    fixed_other = (x.runtime_reserved_gib + x.comm_buffer_gib_per_group * groups) * GIB
    frag = c.allocator_fragmentation
    states_b = weights_b + grads_b + optimizer_b
    # Model states on the first and last stage differ by embedding vs output layer.
    scale_first = dense_first / dense_stage
    scale_last = dense_last / dense_stage
    other_first = fixed_other + workspace + frag * (act_first + workspace)
    other_last = fixed_other + workspace + frag * (act_last + workspace)
    total_first = states_b * scale_first + act_first + other_first
    total_last = states_b * scale_last + act_last + other_last
    first_worse = total_first >= total_last
    scale = where(first_worse, scale_first, scale_last)
    act_b = where(first_worse, act_first, act_last)
    other_b = where(first_worse, other_first, other_last)
    total_b = where(first_worse, total_first, total_last)
    total_gib = total_b / GIB

    # --- run totals ---------------------------------------------------------------------
    steps = ceil(x.total_tokens / step_tokens)
    train_s = steps * step_time
    gpu_hours = x.gpus * train_s / SECONDS_PER_HOUR
    busy = (gemm_s + attention_s + memory_bound_s + t_optimizer) + (
        recompute_s - mb * layers_stage * recompute_comm
    )
    power = step.gpu_power_w(
        x.idle_w, x.tdp_w, busy / step_time, exposed_comm / step_time, c.comm_power_fraction
    )
    nodes = ceil(x.gpus / x.gpus_per_node)
    site_w = (x.gpus * power + nodes * x.node_overhead_w) * x.pue
    energy_mwh = site_w * train_s / SECONDS_PER_HOUR / W_PER_MW
    energy_mwh_tdp = gpu_hours * x.tdp_w / W_PER_MW

    # --- failures, checkpoints, restarts (planner.formulas.reliability) ---------------------
    # A checkpoint holds the weights and the optimizer states (FP32 master included).
    checkpoint_bytes = params.total_params(
        x.layers, x.hidden, x.heads, x.kv_heads, x.head_dim, x.ffn, x.gated, x.vocab, x.tied,
        x.experts, x.top_k, x.moe_ffn, x.shared_ffn, x.layernorm, x.bias, x.learned_pos_rows,
    ) * (x.weight_bytes + x.optimizer_state_bytes)  # fmt: skip
    storage_bw = minimum(nodes * x.ckpt_node_bytes_s, x.ckpt_max_bytes_s)
    checkpoint_s = checkpoint_bytes / storage_bw
    job_mtbf = reliability.job_mtbf_s(x.mtbf_gpu_s, x.gpus)
    # Checkpoints are taken between steps: at least one step apart.
    interval = maximum(reliability.young_interval_s(checkpoint_s, job_mtbf), step_time)
    wall_s = reliability.daly_wall_time_s(
        train_s, interval, checkpoint_s, x.restart_s + checkpoint_s, job_mtbf
    )

    return Outputs(
        params_gib=weights_b * scale / GIB,
        grads_gib=grads_b * scale / GIB,
        optimizer_gib=optimizer_b * scale / GIB,
        activations_gib=act_b / GIB,
        other_gib=other_b / GIB,
        total_gib=total_gib,
        capacity_gib=x.hbm_gib + 0.0 * total_gib,
        fits=total_gib <= x.hbm_gib,
        step_time_s=step_time,
        model_tflops_per_gpu=model_tflops,
        hardware_tflops_per_gpu=hardware_tflops,
        mfu=model_flops / (gpu_seconds * peak_mfu),
        hfu=hardware_flops / (gpu_seconds * peak_mfu),
        tokens_per_s=step_tokens / step_time,
        bubble_fraction=bubble / step_time,
        exposed_comm_s=exposed_comm,
        gemm_s=gemm_s,
        attention_s=attention_s,
        memory_bound_s=memory_bound_s,
        recompute_s=recompute_s,
        tp_comm_s=tp_comm_s,
        cp_comm_s=cp_comm_s,
        ep_comm_s=ep_comm_s,
        pp_p2p_s=p2p,
        pipeline_bubble_s=bubble,
        dp_comm_s=dp_comm_s,
        optimizer_s=t_optimizer,
        train_tokens=steps * step_tokens,
        steps=steps,
        days=train_s / SECONDS_PER_DAY,
        gpu_hours=gpu_hours,
        energy_mwh=energy_mwh,
        energy_mwh_tdp=energy_mwh_tdp,
        cost_usd=gpu_hours * x.price_usd_per_gpu_hour,
        co2_t=where(x.co2_tdp_basis > 0, energy_mwh_tdp, energy_mwh) * x.grid_kg_per_kwh,
        micro_batches=micro_batches,
        gpu_power_w=power,
        goodput=train_s / wall_s,
        checkpoint_interval_min=interval / 60.0,
        expected_interruptions=wall_s / job_mtbf,
        checkpoint_save_s=checkpoint_s,
        job_mtbf_h=job_mtbf / SECONDS_PER_HOUR,
    )
