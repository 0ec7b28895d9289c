"""Time of the kernels inside one layer: GEMMs, attention, memory-bound element-wise ops.

GEMM (a roofline with a shape-aware ceiling): a GEMM of M x K by K x N costs
2·M·N·K FLOPs and moves 2(MK + KN + MN) bytes. Its time is the larger of FLOPs over the
achievable rate and bytes over the achievable bandwidth (Williams et al. 2009, roofline).
The achievable rate is the peak times the accelerator's best-case GEMM efficiency (the
measured "MAMF" fraction, gpus.yaml) times a shape factor: small output dimensions
underfill the 128 x 128 output tiles and a short reduction dimension cannot amortise the
tile prologue/epilogue (NVIDIA, "Matrix Multiplication Background" performance guide).
Each dimension x contributes x / (x + x_half), so GEMMs after heavy tensor parallelism,
with few tokens per micro-batch, or attention's K = head_dim score GEMMs run below peak.

Fused attention (FlashAttention) is compute-bound: FLOPs over peak x the kernel's measured
efficiency (gpus.yaml), reduced for short sequences by s / (s + s_half).

Element-wise ops (norms, activation functions, residual adds, dropout, rotary, softmax of
unfused attention) are memory-bound: bytes moved over the achievable HBM bandwidth.
"""

from __future__ import annotations

from planner.formulas.ops import Num, maximum, where

FP32_BYTES = 4.0
"""Bytes of an FP32 element (the dtype eager norms, rotary and the loss upcast to)."""


def gemm_flops(m: Num, n: Num, k: Num, count: Num) -> Num:
    """FLOPs of ``count`` GEMMs of shape (m x k) @ (k x n)."""
    return 2 * m * n * k * count


def gemm_shape_factor(m: Num, n: Num, k: Num, mn_half: Num, k_half: Num) -> Num:
    """Fraction of the best-case GEMM rate reached at this shape (1 for large GEMMs)."""
    return m / (m + mn_half) * n / (n + mn_half) * k / (k + k_half)


def gemm_time(
    m: Num,
    n: Num,
    k: Num,
    count: Num,
    peak_flops: Num,
    gemm_eff: Num,
    mem_bw: Num,
    elem_bytes: Num,
    mn_half: Num,
    k_half: Num,
) -> Num:
    """Seconds for ``count`` GEMMs (m x k)@(k x n): roofline of compute and memory.

    ``mem_bw`` is the achievable HBM bandwidth (B/s); ``elem_bytes`` the operand size.
    """
    compute_s = gemm_flops(m, n, k, count) / (
        peak_flops * gemm_eff * gemm_shape_factor(m, n, k, mn_half, k_half)
    )
    memory_s = elem_bytes * count * (m * k + k * n + m * n) / mem_bw
    return maximum(compute_s, memory_s)


def fused_attention_time(
    flops: Num, peak_flops: Num, efficiency: Num, keys: Num, seq_half: Num
) -> Num:
    """Seconds for a fused attention kernel doing ``flops`` over ``keys``-long sequences."""
    return flops / (peak_flops * efficiency * keys / (keys + seq_half))


def memory_bound_time(bytes_moved: Num, mem_bw: Num) -> Num:
    """Seconds to stream ``bytes_moved`` through HBM at the achievable bandwidth."""
    return bytes_moved / mem_bw


def layer_elementwise_bytes_fwd(
    tokens: Num,
    hidden: Num,
    q_dim: Num,
    kv_dim: Num,
    ffn_active: Num,
    gated: Num,
    rope: Num,
    tp: Num,
    sp_share: Num,
    hidden_dropout: Num,
    moe: Num,
    top_k: Num,
    fp8: Num,
    act_bytes: Num,
    mask_bytes: Num,
    fp8_cast_bytes: Num,
) -> Num:
    """HBM bytes of one layer's element-wise kernels, forward, one micro-batch (no attention core).

    ``sp_share`` is 1/tp with sequence parallelism, else 1: without it every TP rank
    repeats the norms, residual adds and dropouts on the full activation (Korthikanti
    et al. 2022, Sec. 4.2.2). Kernels: two norms (read + write), two residual adds with
    fused bias and dropout (read two, write one, plus the mask), rotary on Q and K, the
    activation function (GELU: read 1 write 1; SwiGLU: read 2 write 1, over the active FFN
    width), MoE token permute/unpermute, and FP8 casts of the four GEMM inputs.
    """
    x = tokens * hidden
    norms = 2 * 2 * act_bytes * x * sp_share
    residual = 2 * (3 * act_bytes + mask_bytes * hidden_dropout) * x * sp_share
    rotary = rope * 2 * act_bytes * tokens * (q_dim + kv_dim) / tp
    activation = (2 + gated) * act_bytes * tokens * ffn_active / tp
    permute = moe * 4 * act_bytes * x * top_k * sp_share
    casts = fp8 * fp8_cast_bytes * (2 * x * sp_share + tokens * (q_dim + ffn_active) / tp)
    return norms + residual + rotary + activation + permute + casts


def fp8_dynamic_scaling_bytes(
    tokens: Num, hidden: Num, q_dim: Num, kv_dim: Num, ffn_active: Num, gated: Num,
    tp: Num, sp_share: Num, act_bytes: Num,
) -> tuple[Num, Num]:  # fmt: skip
    """(forward, backward) HBM bytes of one layer, one micro-batch, that dynamic per-tensor
    FP8 scaling moves beyond the delayed-scaling casts of :func:`layer_elementwise_bytes_fwd`
    (one read of the BF16 tensor, one FP8 write, with the scale from past steps' amax).

    torchao's Float8Linear with dynamic tensorwise scaling (torchao eab345c, the torchtitan
    2024-12 benchmark's: ``float8_scaling_utils.hp_tensor_to_float8_dynamic`` takes the
    amax of the whole tensor, then casts with the scale it gives; ``float8_ops.
    preprocess_addmm`` makes ``_scaled_mm``'s first operand row-major and its second
    column-major with ``.contiguous()`` copies):

    * forward: each GEMM input is read once more for its amax before the cast;
    * backward: each GEMM output gradient is read for its amax, and it and the saved FP8
      input are copied (read 1 byte, write 1) into the transposed layouts of the
      weight-gradient GEMM (grad_out^T row-major, input column-major).

    Per token, GEMM inputs: the two norm outputs and the attention and activation
    outputs; output gradients: Q, K, V, gate/up (cut by tp) and the two row-parallel
    outputs (hidden wide). Under sequence parallelism the amax and cast of a norm output
    or row-parallel gradient run on the rank's sequence share before the FP8 all-gather
    (torchao ``float8_tensor_parallel``: Float8ColwiseParallel casts its input,
    Float8RowwiseParallel its output gradient, before redistributing), the layout
    copies on the gathered tensor. The weights' casts are left out (once per
    micro-batch, not per token).
    """
    amax_fwd, amax_bwd = fp8_amax_bytes(
        tokens, hidden, q_dim, kv_dim, ffn_active, gated, tp, sp_share, act_bytes
    )
    inputs_full = 2 * hidden + (q_dim + ffn_active) / tp
    grads_full = 2 * hidden + (q_dim + 2 * kv_dim + (1 + gated) * ffn_active) / tp
    return amax_fwd, amax_bwd + tokens * (2.0 * grads_full + 2.0 * inputs_full)


def fp8_amax_bytes(
    tokens: Num, hidden: Num, q_dim: Num, kv_dim: Num, ffn_active: Num, gated: Num,
    tp: Num, sp_share: Num, act_bytes: Num,
) -> tuple[Num, Num]:  # fmt: skip
    """(forward, backward) HBM bytes of one layer, one micro-batch, that Transformer
    Engine's per-tensor current scaling moves beyond delayed scaling: one more BF16 read of
    each GEMM input (forward) and output gradient (backward) for its amax.

    Transformer Engine ``Float8CurrentScalingQuantizer::quantize_impl``
    (transformer_engine/pytorch/csrc/quantizer.cpp, v2.x): ``nvte_compute_amax`` over the
    input, the scale from that amax, then ``nvte_quantize_v2``, whose cast writes the
    row-wise and the transposed column-wise FP8 data in one kernel, as the delayed-scaling
    cast_transpose does, so unlike torchao (:func:`fp8_dynamic_scaling_bytes`) no layout
    copies follow. The tensors are those of :func:`fp8_dynamic_scaling_bytes`; under
    sequence parallelism the norm outputs and the row-parallel gradients are cast on the
    rank's sequence share before the FP8 all-gather (the amax all-reduced over the TP group,
    ``amax_reduction_group``: one float, not counted here)."""
    column = (q_dim + ffn_active) / tp
    inputs_cast = 2 * hidden * sp_share + column
    column = (q_dim + 2 * kv_dim + (1 + gated) * ffn_active) / tp
    grads_cast = 2 * hidden * sp_share + column
    return act_bytes * tokens * inputs_cast, act_bytes * tokens * grads_cast


def upcast_bytes(act_bytes: Num) -> Num:
    """HBM bytes per element of one dtype cast between the activation dtype and FP32
    (``x.float()`` or ``.type_as(x)``: read one, write the other); none when already FP32."""
    return where(act_bytes < FP32_BYTES, act_bytes + FP32_BYTES, 0.0)


def eager_extra_bytes_fwd(
    tokens: Num, hidden: Num, q_dim: Num, kv_dim: Num, ffn_active: Num, gated: Num,
    rope: Num, layernorm: Num, tp: Num, sp_share: Num, act_bytes: Num,
) -> Num:  # fmt: skip
    """HBM bytes one layer's element-wise ops move in PyTorch eager mode beyond their fused
    kernels (:func:`layer_elementwise_bytes_fwd`), forward, one micro-batch.

    Per op of the eager decomposition (torchtitan models/llama and models/norms.py at
    9dec370, the 2024-12 benchmark's commit; torch.nn.RMSNorm is the same composite):

    * RMSNorm ``(x.float() * rsqrt(x.float().pow(2).mean(-1) + eps)).type_as(x) * w``:
      cast up, pow (read 4, write 4), mean (read 4), multiply (read 4, write 4), cast
      down, multiply by the weight (read and write the activation), against the fused
      kernel's one read and one write. LayerNorm is one native kernel in eager mode too
      (``torch.nn.functional.layer_norm``): nothing extra.
    * rotary through complex FP32 (``view_as_complex(x.float()) * freqs_cis``, then
      ``type_as``): cast up, complex multiply (read 4, write 4), cast down, on Q and K.
    * SwiGLU ``w2(silu(w1 x) * w3 x)``: silu and the product are two kernels, so the silu
      output is written and read back once more (GELU is one kernel either way).
    * GQA: ``repeat_kv`` copies K and V to every query head before SDPA (read kv, write q
      wide, for K and V).
    """
    f32 = 2 * FP32_BYTES
    rms = 2 * upcast_bytes(act_bytes) + f32 + FP32_BYTES + f32 + 2 * act_bytes
    norms = (1.0 - layernorm) * 2 * (rms - 2 * act_bytes) * tokens * hidden * sp_share
    rotary = rope * (2 * upcast_bytes(act_bytes) + f32 - 2 * act_bytes)
    rotary = rotary * tokens * (q_dim + kv_dim) / tp
    glu = gated * 2 * act_bytes * tokens * ffn_active / tp
    gqa = where(kv_dim < q_dim, 2 * act_bytes * (q_dim + kv_dim), 0.0) * tokens / tp
    return norms + rotary + glu + gqa


def eager_loss_extra_bytes(act_bytes: Num) -> Num:
    """HBM bytes per logit an eager cross-entropy moves beyond the fused one (forward and
    backward): the logits cast to FP32 and the gradient cast back (torchtitan's
    ``output(h).float()``), plus log_softmax's separate max and sum passes over the FP32
    logits forward and backward and the dense FP32 gradient nll_loss writes (read or
    written once each: 3 x 4 bytes; PyTorch's unfused log_softmax / nll_loss kernels)."""
    return 2 * upcast_bytes(act_bytes) + 3 * FP32_BYTES


def attention_core_elementwise_bytes_fwd(
    tokens: Num,
    keys: Num,
    heads_local: Num,
    q_dim_local: Num,
    attention_dropout: Num,
    unfused: Num,
    act_bytes: Num,
    mask_bytes: Num,
) -> Num:
    """HBM bytes of unfused attention's memory-bound kernels, forward (0 when fused).

    Fused scale-mask-softmax reads and writes every score; attention dropout reads and
    writes it again and writes a byte mask; the context is copied back to [s, b, h]
    layout (Megatron-LM's core attention).
    """
    scores = tokens * keys * heads_local
    softmax = 2 * act_bytes * scores
    dropout = attention_dropout * (2 * act_bytes + mask_bytes) * scores
    layout_copy = 2 * act_bytes * tokens * q_dim_local
    return unfused * (softmax + dropout + layout_copy)


def saturating_fit(seq_lens: list[float], rates: list[float]) -> tuple[float, float]:
    """Least-squares fit of rate(s) = rate_max · s / (s + s_half) to measured points.

    The model is linear in 1/s after taking reciprocals: 1/rate = 1/rate_max +
    (s_half/rate_max)·(1/s), so ordinary least squares on (1/s, 1/rate) gives both
    parameters in closed form. Returns (rate_max, s_half).
    """
    xs = [1.0 / s for s in seq_lens]
    ys = [1.0 / r for r in rates]
    n = len(xs)
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mean_x) ** 2 for x in xs)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / sxx
    intercept = mean_y - slope * mean_x
    return 1.0 / intercept, slope / intercept


def backward_rates(fwd: list[float], fwd_bwd: list[float], bwd_flops_ratio: float) -> list[float]:
    """Backward FLOP rates from forward and forward+backward rates at the same shapes.

    Time adds: (1 + r)/rate_fb = 1/rate_f + r/rate_b, with r the backward/forward FLOP
    ratio the benchmark counts (2.5 for FlashAttention, Dao 2023 Sec. 3.1).
    """
    return [
        bwd_flops_ratio / ((1 + bwd_flops_ratio) / fb - 1 / f)
        for f, fb in zip(fwd, fwd_bwd, strict=True)
    ]


def ring_attention_merge_bytes(q_bytes: Num, kv_bytes: Num, cp: Num) -> tuple[Num, Num]:
    """(forward, backward) HBM bytes one layer's ring attention moves beyond its kernels:
    at each step the largest of the CP ranks' passes (each step's exchange makes the ranks
    wait for the slowest).

    Transformer Engine's ``AttnFuncWithCPAndKVP2P`` (``AttnFuncWithCP`` in 1.x; read in
    ``transformer_engine/pytorch/attention.py`` at v1.4 and v1.8 and
    ``attention/dot_product_attention/context_parallel.py`` at v2.9) splits the causal
    attention of the local 2 of 2·cp sequence chunks into cp kernel calls and merges their
    partial results with element-wise passes; ``q_bytes`` is the local query (and output,
    and their gradients), ``kv_bytes`` the local K and V together. The last CP rank takes
    the "q full, first half of K/V" branch at every later step (``i <= rank``), so its
    output and dQ passes are full-size; rank 0 accumulates the full dK/dV:

    * forward: K and V concatenated into the first send buffer (``torch.cat``, read and
      write: 2 KV); at each of the cp - 1 later steps the first half of the received K/V
      made contiguous for the kernel (``kv[:, 0, ...].contiguous()``: KV); the outputs
      merged by their log-sum-exp (``flash_attn_fwd_out_correction``: the first step read
      and written, 2 Q, each later one read, the running output read and written, 3 Q);
    * backward: K/V copied into the P2P buffer (``p2p_comm_buffers[0][0].copy_(kv)``:
      2 KV), the same half copies (KV each later step), dQ copied then accumulated per step
      (``dq.copy_`` 2 Q, ``dq.add_`` 3 Q), dK/dV likewise (2 KV, then 3 KV).

    Not counted: the FP32 log-sum-exp merges (4 bytes per token and head against the
    output's 2·head_dim), TE 1.x's zero-filled output and ``torch.cat`` of dK and dV (one
    and two more passes), and the copies of Q, O and dO halves that the bshd layout needs
    and Megatron-Core's sbhd layout does not (``q[1]`` is contiguous there)."""
    later = cp - 1.0
    fwd = 2.0 * kv_bytes + later * kv_bytes + 2.0 * q_bytes + 3.0 * later * q_bytes
    bwd = (2.0 + later + 2.0 + 3.0 * later) * kv_bytes + (2.0 + 3.0 * later) * q_bytes
    return where(cp > 1, fwd, 0.0), where(cp > 1, bwd, 0.0)


def torch_ring_attention_bytes(q_bytes: Num, kv_bytes: Num, cp: Num) -> tuple[Num, Num]:
    """(forward, backward) HBM bytes one layer's ring attention moves beyond its kernels
    under torch's ``context_parallel`` (``_templated_ring_attention`` and its backward, read
    in ``torch/distributed/tensor/experimental/_attention.py`` at torch 2.6 and
    ``_context_parallel/_attention.py`` at 2.13, the same code): what scalectl's trainer and
    torchtitan run. ``q_bytes`` is the local query (and output, and their gradients) in
    the activation dtype, ``kv_bytes`` the local K and V together as passed to SDPA (GQA
    heads already repeated by the model). Unlike Transformer Engine's ring
    (:func:`ring_attention_merge_bytes`) the partial results are merged and the gradients
    accumulated in FP32 (``_cp_options.convert_to_f32``), and every half-size update is
    written back through ``torch.cat`` of the whole tensor (``_partial_update``).

    * forward, on the CP rank that takes the "q full, first half of K/V" branch at every
      later step (the last, whose merges are full-size): step 0's output cast to FP32 (read
      Q, write 2 Q) and the final cast back (3 Q); at each of the cp - 1 later steps the
      block output cast (3 Q), ``out - block_out`` (6 Q), the sigmoid-weighted product
      (4 Q) and the subtraction (6 Q): 19 Q; K and V concatenated into a send buffer at
      each step but the last (``torch.cat``: 2 KV; the all-gather rotater uses only the
      first);
    * backward, per step the slower branch (the dK/dV ring makes every rank wait for its
      neighbour): FP32 zeros for dQ, dK, dV (2 Q + 2 KV); step 0 the K/V send buffer
      (2 KV), dK/dV accumulated (read FP32 and BF16, write FP32: 5 KV), concatenated for
      the send (4 KV), dQ accumulated (5 Q); each later step the dK/dV send buffer (4 KV)
      plus either a half dK/dV update and its ``torch.cat`` (6.5 KV) with a full dQ
      update (5 Q), or a full dK/dV update (5 KV) with a half dQ update and its
      ``torch.cat`` (6.5 Q); the K/V send buffer at all but the last step (2 KV); the
      final casts of dQ and of dK/dV to the activation dtype (3 Q + 3 KV).

    Not counted: the log-sum-exp merges (4 bytes per token and head against the output's
    2·head_dim), copies a caller's non-contiguous K/V need (``key.contiguous()``), and
    the flash backward's own copies of non-contiguous output and gradient halves.
    Checked against torch 2.13's code run on CPU with every op's bytes counted
    (tests/planner/test_torch_ring_source.py): at cp 2, 4 and 8 the last rank's backward
    is this to the byte (68, 128 and 248 Q), its forward 1.6-2.0 % above (the log-sum-exp
    ops), and no rank moves more."""
    later = cp - 1.0
    fwd = 6.0 * q_bytes + 19.0 * later * q_bytes + 2.0 * later * kv_bytes
    half_kv = 6.5 * kv_bytes + 5.0 * q_bytes  # the half K/V branch (i <= rank)
    half_q = 5.0 * kv_bytes + 6.5 * q_bytes  # the half query branch (i > rank)
    per_step = 4.0 * kv_bytes + maximum(half_kv, half_q)
    bwd = (
        10.0 * q_bytes + 16.0 * kv_bytes + later * per_step
        + 2.0 * maximum(later - 1.0, 0.0) * kv_bytes
    )  # fmt: skip
    return where(cp > 1, fwd, 0.0), where(cp > 1, bwd, 0.0)
