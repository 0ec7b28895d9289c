"""Kernel time of one layer and of the output layer for one micro-batch on one GPU.

GEMMs are roofline-timed with a shape factor, fused attention is compute-bound and the
rest is memory-bound (:mod:`planner.formulas.kernels` cites the sources).
"""

from __future__ import annotations

from typing import Any

from planner.formulas import flops, kernels, params
from planner.formulas.ops import maximum, minimum, where
from planner.inputs import Constants, Inputs
from planner.terms.shapes import Shapes


def gemm(x: Inputs, s: Shapes, m: Any, n: Any, k: Any, count: Any = 1.0) -> Any:
    """Seconds of ``count`` (m x k)@(k x n) GEMMs at the training precision."""
    return kernels.gemm_time(
        m, n, k, count, s.peak_gemm, s.eff_gemm, s.mem_bw, s.ab, x.gemm_mn_half, x.gemm_k_half
    )


def moe_mlp_gemm_fwd(x: Inputs, c: Constants, s: Shapes) -> Any:
    """Forward GEMMs of an MoE block: each local expert's share of top_k routed tokens
    (Fedus et al. 2021, Switch Transformer, Sec. 2.1; Lepikhin et al. 2020, GShard), the
    shared expert on every token (Dai et al. 2024, DeepSeekMoE, Sec. 3.2) and the router."""
    tokens = s.tokens
    local_experts = x.experts / x.ep
    # With expert TP e < tp, the tp ranks' tokens spread over tp/e expert-TP groups.
    expert_tokens = tokens * x.top_k / local_experts * x.moe_capacity * (s.expert_tp / x.tp)
    e = s.expert_tp
    shared_w = maximum(x.shared_ffn, 1.0)
    return (
        gemm(x, s, expert_tokens, (1 + x.gated) * x.moe_ffn / e, x.hidden, local_experts)
        + gemm(x, s, expert_tokens, x.hidden, x.moe_ffn / e, local_experts)
        + where(
            x.shared_ffn > 0,
            gemm(x, s, tokens, (1 + x.gated) * shared_w / x.tp, x.hidden)
            + gemm(x, s, tokens, x.hidden, shared_w / x.tp),
            0.0,
        )
        + gemm(x, s, tokens, x.experts, x.hidden)
    )


def layer_gemm_fwd(x: Inputs, c: Constants, s: Shapes) -> Any:
    """Forward GEMMs of one layer: QKV, output projection, MLP (GELU: 2 matrices, SwiGLU:
    3; Shazeer 2020), each column/row split by TP (Shoeybi et al. 2019, Sec. 3)."""
    tokens = s.tokens
    t_qkv = gemm(x, s, tokens, (s.q_dim + 2 * s.kv_dim) / x.tp, x.hidden)
    t_proj = gemm(x, s, tokens, x.hidden, s.q_dim / x.tp)
    t_dense_mlp = gemm(x, s, tokens, (1 + x.gated) * x.ffn / x.tp, x.hidden) + gemm(
        x, s, tokens, x.hidden, x.ffn / x.tp
    )
    mlp = where(
        s.moe > 0, params.mixed(moe_mlp_gemm_fwd(x, c, s), t_dense_mlp, s.moe_share), t_dense_mlp
    )
    return t_qkv + t_proj + mlp


def adapter_gemm_fwd(x: Inputs, c: Constants, s: Shapes) -> Any:
    """Forward GEMMs of one layer's LoRA adapters: x·A (d_in x r) and (xA)·B (r x d_out) per
    targeted matrix, 2·r·Σ(d_in + d_out) FLOPs per token (Hu et al. 2021, Sec. 4), timed
    as one thin GEMM of that size (0 without adapters)."""
    rank = maximum(x.lora_rank, 1.0)
    width = maximum(x.lora_width, 1.0)  # no adapters: a 1 x 1 stand-in, multiplied by 0
    return where(x.frozen > 0, gemm(x, s, s.tokens, rank, width / x.tp), 0.0)


def layer_gemm_bwd(x: Inputs, base_fwd: Any, adapter_fwd: Any) -> Any:
    """Backward GEMMs of one layer: input and weight gradients of each matrix (twice the
    forward; Narayanan et al. 2021, Sec. 5.1); frozen base weights (LoRA/QLoRA) need the
    input gradients only (once the forward), their adapters both."""
    return (2.0 - x.frozen) * base_fwd + 2.0 * adapter_fwd


def dequant_time(x: Inputs, s: Shapes, layer_params: Any) -> Any:
    """Seconds of dequantising one layer's frozen weights to BF16 before its GEMMs (QLoRA,
    Dettmers et al. 2023, Sec. 3: bitsandbytes reads the NF4 weights and block constants and
    writes BF16, in forward and again in backward): memory-bound, 0 without ``dequant``."""
    return x.dequant * kernels.memory_bound_time(
        (x.base_weight_bytes + x.act_bytes) * layer_params, s.mem_bw
    )


def attention_time(x: Inputs, c: Constants, s: Shapes) -> tuple[Any, Any]:
    """(forward, backward) seconds of the attention core of one layer.

    Fused: 4·s_q·s_k·h FLOPs forward over the executed (causal-skipping) key blocks, the
    backward ``flash_bwd_flops_ratio`` times that (Dao 2023, FlashAttention-2, Sec. 3);
    sliding-window layers (ModelSpec.sliding_window) over their window's blocks, each kind
    of layer weighted by its share of the layers.
    Unfused: the two batched GEMMs QKᵀ and PV per head, backward twice the forward.
    """
    block = c.flash_causal_block

    def fused(exec_fraction: Any, keys: Any) -> tuple[Any, Any]:
        fwd_flops = 4 * s.tokens * x.seq * s.heads_local * x.head_dim * exec_fraction
        fwd = kernels.fused_attention_time(
            fwd_flops, s.peak_bf16, x.attn_fwd_eff, keys, x.attn_seq_half
        )
        bwd = kernels.fused_attention_time(
            c.flash_bwd_flops_ratio * fwd_flops, s.peak_bf16, x.attn_bwd_eff, keys,
            x.attn_seq_half,
        )  # fmt: skip
        return fwd, bwd

    # With context parallelism each ring step runs the kernel on s/cp keys (Liu 2023, Ring
    # Attention, Sec. 3): its efficiency is that of the shorter sequence.
    full_fwd, full_bwd = fused(flops.executed_key_fraction(x.seq, x.flash, block), s.seq_local)
    # A windowed query tile loops over w + block keys, as a causal one of a 2w + block
    # sequence does on average: the measured rate at that length.
    win_fwd, win_bwd = fused(
        flops.windowed_executed_key_fraction(x.seq, x.flash, block, x.window),
        minimum(s.seq_local, 2 * x.window + block),
    )
    attn_fwd_flash = flops.layer_mix(full_fwd, win_fwd, x.windowed_share)
    attn_bwd_flash = flops.layer_mix(full_bwd, win_bwd, x.windowed_share)
    attn_count = x.micro_batch * s.heads_local
    seq_local, peak_bf16, mem_bw, ab = s.seq_local, s.peak_bf16, s.mem_bw, s.ab
    attn_fwd_unfused = kernels.gemm_time(
        seq_local, x.seq, x.head_dim, attn_count, peak_bf16, x.gemm_eff, mem_bw, ab,
        x.gemm_mn_half, x.gemm_k_half,
    ) + kernels.gemm_time(
        seq_local, x.head_dim, x.seq, attn_count, peak_bf16, x.gemm_eff, mem_bw, ab,
        x.gemm_mn_half, x.gemm_k_half,
    )  # fmt: skip
    attn_fwd = where(x.flash > 0, attn_fwd_flash, attn_fwd_unfused)
    attn_bwd = where(x.flash > 0, attn_bwd_flash, 2 * attn_fwd_unfused)
    return attn_fwd, attn_bwd


def elementwise_time(x: Inputs, c: Constants, s: Shapes) -> tuple[Any, Any, Any]:
    """(forward, attention-core forward, backward) seconds of a layer's memory-bound ops.

    Bytes moved over the achievable HBM bandwidth (Williams et al. 2009, roofline); the
    backward moves ``elementwise_bwd_ratio`` times the forward's bytes. Eager PyTorch
    (TrainingSpec.kernels) adds what its unfused ops move beyond the fused kernels, and
    dynamic FP8 scaling (TrainingSpec.fp8_scaling) its amax passes and layout copies,
    Transformer Engine's current scaling its amax passes.
    """
    ew_layer = kernels.layer_elementwise_bytes_fwd(
        s.tokens, x.hidden, s.q_dim, s.kv_dim, s.ffn_active, x.gated, s.rope, x.tp,
        s.sp_share, x.hidden_dropout, s.moe_share, x.top_k, x.fp8, s.ab, c.mask_bytes,
        c.fp8_cast_bytes,
    )  # fmt: skip
    ew_core = kernels.attention_core_elementwise_bytes_fwd(
        s.tokens, x.seq, s.heads_local, s.q_dim / x.tp, x.attention_dropout, 1.0 - x.flash,
        s.ab, c.mask_bytes,
    )  # fmt: skip
    eager = where(x.eager > 0, kernels.eager_extra_bytes_fwd(
        s.tokens, x.hidden, s.q_dim, s.kv_dim, s.ffn_active, x.gated, s.rope, x.layernorm,
        x.tp, s.sp_share, s.ab,
    ), 0.0)  # fmt: skip
    dyn_fwd, dyn_bwd = kernels.fp8_dynamic_scaling_bytes(
        s.tokens, x.hidden, s.q_dim, s.kv_dim, s.ffn_active, x.gated, x.tp, s.sp_share, s.ab
    )
    ew_core_fwd = kernels.memory_bound_time(ew_core, s.mem_bw)
    ew_fwd = kernels.memory_bound_time(ew_layer + eager, s.mem_bw) + ew_core_fwd
    ew_bwd = c.elementwise_bwd_ratio * ew_fwd
    ew_bwd = ew_bwd + where(x.fp8_dynamic > 0, kernels.memory_bound_time(dyn_bwd, s.mem_bw), 0.0)
    ew_fwd = ew_fwd + where(x.fp8_dynamic > 0, kernels.memory_bound_time(dyn_fwd, s.mem_bw), 0.0)
    cur_fwd, cur_bwd = kernels.fp8_amax_bytes(
        s.tokens, x.hidden, s.q_dim, s.kv_dim, s.ffn_active, x.gated, x.tp, s.sp_share, s.ab
    )
    ew_bwd = ew_bwd + where(x.fp8_current > 0, kernels.memory_bound_time(cur_bwd, s.mem_bw), 0.0)
    ew_fwd = ew_fwd + where(x.fp8_current > 0, kernels.memory_bound_time(cur_fwd, s.mem_bw), 0.0)
    return ew_fwd, ew_core_fwd, ew_bwd


def output_layer_time(x: Inputs, c: Constants, s: Shapes) -> tuple[Any, Any]:
    """(output GEMM forward, loss element-wise) seconds on the last stage: logits h x V/t
    (vocab-parallel, Shoeybi et al. 2019, Sec. 3), the cross-entropy reading and writing
    the logits in ``loss_bytes`` and the final norm and its gradient.

    The output GEMM runs at the BF16 rate in FP8 runs too: Megatron-Core's GPTModel builds
    it as a tensor_parallel.ColumnParallelLinear, not a Transformer Engine module, so TE's
    fp8_autocast leaves it in BF16 (megatron/core/models/gpt/gpt_model.py); torchtitan's
    Float8 conversion skips it (float8 converter filter_fqns=["output"])."""
    t_head = kernels.gemm_time(
        s.tokens, x.vocab / x.tp, x.hidden, 1.0, s.peak_bf16, x.gemm_eff, s.mem_bw, s.ab,
        x.gemm_mn_half, x.gemm_k_half,
    )  # fmt: skip
    loss_ew = kernels.memory_bound_time(
        x.loss_bytes * s.tokens * x.vocab / x.tp + 4 * s.ab * s.act_full * s.sp_share, s.mem_bw
    )
    return t_head, loss_ew


def op_recompute_gemm_fwd(x: Inputs, c: Constants, s: Shapes) -> Any:
    """Forward GEMMs torchtitan's op-level selective checkpointing repeats in backward
    (TrainingSpec.selective_recompute 'op'): its policy saves the output of every odd
    ``aten.mm`` of a block and recomputes the even ones (torchtitan
    parallelisms/parallelize_llama.py ``_custom_policy`` at 9dec370). A block's matmuls run
    Q, K, V, output projection, then the MLP's (SwiGLU: gate, up, down; GELU: up, down),
    so the 2nd, 4th and 6th are K, the output projection and one h x ffn MLP matrix."""
    tokens = s.tokens
    return (
        gemm(x, s, tokens, s.kv_dim / x.tp, x.hidden)
        + gemm(x, s, tokens, x.hidden, s.q_dim / x.tp)
        + gemm(x, s, tokens, s.ffn_active / x.tp, x.hidden)
    )


def tp_overlap_chunk_time(x: Inputs, s: Shapes) -> tuple[Any, Any]:
    """(forward, backward) seconds that TP communication overlap adds to one layer's GEMMs
    by running them in chunks (0 without ``tp_comm_overlap``, sequence parallelism or TP).

    Transformer Engine's userbuffers overlap splits the all-gather-side GEMMs into tp ring
    steps, one per sequence shard (``RingExchangeOverlapCfg``: qkv_fprop, fc1_fprop,
    proj_dgrad, fc2_dgrad), and the reduce-scatter-side forward GEMMs (proj_fprop,
    fc2_fprop) into ``num_splits`` = 4 pipelined chunks or tp ring steps, in every H100
    configuration of Megatron-Bridge r0.2.0 (0ded2888b src/megatron/bridge/training/
    comm_overlap.py: userbuffers_{bf16,fp8}_h100_h8192_tp4_mbs1_seqlen8192,
    userbuffers_{bf16,fp8}_h100_h16384_tp8_cp2_mbs1_seqlen8192); torch's async TP
    (``fused_all_gather_matmul`` / ``fused_matmul_reduce_scatter``) also runs one matmul
    per rank's shard. Each chunk is a GEMM of tokens/chunks rows, timed with the same
    shape factor as any GEMM (:func:`planner.formulas.kernels.gemm_shape_factor`); the
    reduce-scatter side is charged at min(tp, 4) chunks, the fewer of the two. Weight
    gradients and the bulk-overlapped qkv/fc1 input gradients run whole. MoE layers'
    expert GEMMs are not split (their tokens move by all-to-all)."""
    tokens, tp = s.tokens, x.tp
    rs_chunks = minimum(tp, 4.0)

    def extra(n: Any, k: Any, chunks: Any) -> Any:
        return gemm(x, s, tokens / chunks, n, k, chunks) - gemm(x, s, tokens, n, k)

    ffn_in = (1 + x.gated) * x.ffn / tp
    dense = 1.0 - s.moe_share
    fwd = (
        extra((s.q_dim + 2 * s.kv_dim) / tp, x.hidden, tp)
        + extra(x.hidden, s.q_dim / tp, rs_chunks)
        + dense * (extra(ffn_in, x.hidden, tp) + extra(x.hidden, x.ffn / tp, rs_chunks))
    )
    bwd = extra(s.q_dim / tp, x.hidden, tp) + dense * extra(x.ffn / tp, x.hidden, tp)
    on = (x.tp_comm_overlap > 0) & (x.sp > 0) & (tp > 1)
    return where(on, fwd, 0.0), where(on, bwd, 0.0)
