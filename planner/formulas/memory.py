"""Memory per GPU: model states under each sharding mode, activations, and overheads.

Model states (Rajbhandari et al. 2020, ZeRO, Sec. 3.1 and 5): per parameter, a BF16
weight, a gradient buffer (FP32 in Megatron-LM and FSDP2's default reduce dtype), and the
optimizer's FP32 master weight plus states (Adam: K = 12 bytes). ZeRO-1 shards the
optimizer over the data-parallel group, ZeRO-2 also the gradients, ZeRO-3 (FSDP full
shard) also the weights; HSDP does ZeRO-3 inside groups of hsdp_shard_size. Expert
weights are sharded over the expert-data-parallel group (dp·cp / ep).

Activations per layer and micro-batch follow Korthikanti et al. 2022, Sec. 4 (sbh(34 +
5as/h) bytes for GPT with TP t and no recompute: 10sbh replicated + 24sbh/t + 5as²b/t),
written per stored tensor so that it generalises:

* norm inputs and outputs (4 x 2 bytes x s·b·h): replicated across TP unless sequence
  parallelism shards them (Sec. 4.2.2);
* Q, K, V (GQA: K and V are kv_heads·head_dim wide), the attention context, and the
  MLP intermediates (GELU: FC1 output and GELU output; SwiGLU: gate, up and their
  product; MoE: top_k routed copies plus a shared expert), all split by TP;
* the attention core: unfused kernels store softmax output (2 bytes), dropout mask (1)
  and dropout output (2) per score, 5·a·s²·b; fused kernels store only the FP32
  log-sum-exp per query and head (Dao 2023);
* dropout masks after attention and MLP (1 byte each) when dropout > 0.

Selective recomputation drops the attention core (under torchtitan's op policy it keeps
only the block input, the odd matmuls' outputs and the attention output:
:func:`op_policy_saved_bytes`); full recomputation keeps only each layer's input (2sbh,
/t with SP). Context parallelism divides s by cp for the queries
(scores are s/cp x s). The pipeline schedule multiplies by the micro-batches in flight:
1F1B stage r holds min(p - r, m) (Narayanan 2021); interleaved with v chunks stage r
holds 2(p - r - 1) + (v - 1)p + 1 chunks of L/(pv) layers (Megatron-LM's warm-up), which
for the first stage is Korthikanti's L(1 + (p-1)/pv); with Megatron's micro-batch groups
of N per chunk, (v - 1)N replaces (v - 1)p; GPipe holds all m micro-batches. Uneven first
and last stages, activation offload and kept stage outputs are applied per stage in
:mod:`planner.terms.activations`.
"""

from __future__ import annotations

from planner.formulas.kernels import FP32_BYTES
from planner.formulas.ops import Num, maximum, minimum, where

RECOMPUTE_SELECTIVE = 1.0
RECOMPUTE_FULL = 2.0


ACTIVATION_ROWS: tuple[tuple[str, str, str], ...] = (
    (
        "norms",
        "inputs of the two norms and their outputs (the QKV and FC1 inputs): "
        "4 x s·b·h, /t with SP (the sharded norm output is re-gathered in backward)",
        "Korthikanti et al. 2022, Sec. 4.1 and 4.2.2; Megatron-LM theoretical_memory_usage.py",
    ),
    (
        "qkv",
        "Q, K and V after rotary (flash) or as QKᵀ and PV inputs (unfused): "
        "s·b·(q + 2·kv)/t, GQA's K and V kv_heads·head_dim wide",
        "Korthikanti Sec. 4.1 (4sbh + 2sbh for MHA); Ainslie et al. 2023 (GQA)",
    ),
    (
        "context",
        "attention output, input of the output projection: s·b·q/t",
        "Korthikanti Sec. 4.1 (2sbh)",
    ),
    (
        "dropout_masks",
        "1-byte masks after attention and after the MLP, only with "
        "hidden dropout > 0: 2 x s·b·h, /t with SP",
        "Korthikanti Sec. 4.1 (sbh each); absent in Llama-style models (no dropout)",
    ),
    (
        "attention_core",
        "unfused: softmax output (2), dropout mask (1) and output (2) per "
        "score, a·s_q·s_k·b/t; fused: the FP32 log-sum-exp per query and head",
        "Korthikanti Sec. 4.1 (5as²b); Dao 2023, FlashAttention-2, Sec. 3.1",
    ),
    (
        "mlp",
        "GELU: FC1 output and GELU output (2 x ffn); SwiGLU: gate and up output and "
        "their product (3 x ffn, its own ffn width); MoE: top_k routed copies of the "
        "expert MLP and its input, the shared expert, the FP32 router logits",
        "Korthikanti Sec. 4.1 (8sbh + 8sbh for ffn = 4h); Shazeer 2020; Megatron-LM "
        "theoretical_memory_usage.py (18 + 4·ffn/h per sbh)",
    ),
)
"""Saved tensors of one transformer layer per micro-batch: (row, what, source), in the
order :func:`activation_rows` returns them. The norms' FP32 statistics (mean and rstd per
token, < 0.01 % of the rest) and bias vectors are not counted, as in Korthikanti's count."""


def activation_rows(
    tokens: Num,
    keys: Num,
    hidden: Num,
    heads: Num,
    q_dim: Num,
    kv_dim: Num,
    ffn: Num,
    gated: Num,
    moe: Num,
    top_k: Num,
    moe_ffn: Num,
    shared_ffn: Num,
    experts: Num,
    tp: Num,
    sp_share: Num,
    flash: Num,
    hidden_dropout: Num,
    attention_dropout: Num,
    act_bytes: Num,
    mask_bytes: Num,
    stat_bytes: Num,
) -> dict[str, Num]:
    """Bytes of each row of :data:`ACTIVATION_ROWS` for one layer and micro-batch of
    ``tokens`` local tokens attending over ``keys`` keys, without recomputation."""
    x = tokens * hidden
    scores = tokens * keys * heads / tp
    unfused_core = (act_bytes + attention_dropout * (mask_bytes + act_bytes)) * scores
    fused_core = stat_bytes * tokens * heads / tp
    dense_mlp = act_bytes * tokens * ffn * (2 + gated) / tp
    routed = top_k * act_bytes * tokens * (moe_ffn * (2 + gated) + hidden) / tp
    shared = act_bytes * tokens * shared_ffn * (2 + gated) / tp
    router = 4 * tokens * experts
    return {
        "norms": 4 * act_bytes * x * sp_share,
        "qkv": act_bytes * tokens * (q_dim + 2 * kv_dim) / tp,
        "context": act_bytes * tokens * q_dim / tp,
        "dropout_masks": 2 * mask_bytes * hidden_dropout * x * sp_share,
        "attention_core": where(flash > 0, fused_core, unfused_core),
        # ``moe``: the share of MoE layers (1 or 0, or an average with dense first layers)
        "mlp": where(moe > 0, moe * (routed + shared + router) + (1 - moe) * dense_mlp, dense_mlp),
    }


def layer_activation_bytes(*shape: Num, **named: Num) -> tuple[Num, Num]:
    """(bytes stored without recompute, bytes of the attention core) for one layer and
    micro-batch: the sum of :func:`activation_rows`, called with the same arguments."""
    rows = activation_rows(*shape, **named)
    core = rows["attention_core"]
    total = (
        rows["norms"] + rows["qkv"] + rows["context"] + rows["dropout_masks"] + core
        + rows["mlp"]
    )  # fmt: skip
    return total, core


def op_policy_saved_bytes(
    tokens: Num, hidden: Num, q_dim: Num, kv_dim: Num, ffn: Num, gated: Num, tp: Num,
    sp_share: Num, act_bytes: Num, fused_core: Num,
) -> Num:  # fmt: skip
    """Bytes one layer keeps under torchtitan's op-level selective checkpointing: the
    block input (the checkpoint's own), the outputs of the odd matmuls (Q, V, the MLP's
    first matrix, and with SwiGLU the down projection: the 7th), the attention output and
    its log-sum-exp (``fused_core``); everything else is recomputed (torchtitan
    parallelize_llama.py ``_save_list`` and ``_custom_policy`` at 9dec370)."""
    block_io = (1.0 + gated) * hidden * sp_share
    return act_bytes * tokens * (block_io + (2 * q_dim + kv_dim + ffn) / tp) + fused_core


def stored_layer_activation_bytes(
    no_recompute: Num, core: Num, tokens: Num, hidden: Num, sp_share: Num,
    recompute: Num, act_bytes: Num, op_saved: Num = 0.0,
) -> Num:  # fmt: skip
    """Bytes one layer keeps for backward under the recompute mode; ``op_saved`` > 0 is
    what selective keeps under torchtitan's op policy (:func:`op_policy_saved_bytes`)."""
    full = act_bytes * tokens * hidden * sp_share
    selective = where(op_saved > 0, op_saved, no_recompute - core)
    return where(
        recompute >= RECOMPUTE_FULL,
        full,
        where(recompute >= RECOMPUTE_SELECTIVE, selective, no_recompute),
    )


def chunks_in_flight(
    stage: Num, pp: Num, interleave: Num, micro_batches: Num, group: Num = None,
    gpipe: Num = 0.0,
) -> Num:  # fmt: skip
    """Model chunks whose activations stage ``stage`` (0-based) holds at its peak.

    Interleaved 1F1B: Megatron-LM's warm-up of 2(p - r - 1) + (v - 1)·N chunk forwards
    plus the one of the steady state, N the micro-batches a chunk runs before the next
    (``microbatch_group_size_per_vp_stage``, default p; Llama 3's N, Sec. 3.3.2). 1F1B:
    p - r (Narayanan et al. 2021, Sec. 2.2.1). GPipe runs every forward before the first
    backward: all m micro-batches (Huang et al. 2019).
    """
    n = pp if group is None else group
    interleaved = 2 * (pp - stage - 1) + (interleave - 1) * n + 1
    plain = where(gpipe > 0, micro_batches, pp - stage)
    return minimum(where(interleave > 1, interleaved, plain), micro_batches * interleave)


def model_state_bytes(
    dense_params: Num,
    expert_params: Num,
    sharding: Num,
    shard_group: Num,
    expert_shard_group: Num,
    weight_bytes: Num,
    fp8_cache_bytes: Num,
    grad_bytes: Num,
    optimizer_bytes: Num,
) -> tuple[Num, Num, Num]:
    """(weights, gradients, optimizer states) in bytes on one GPU.

    ``sharding`` codes: 0 none, 1 ZeRO-1, 2 ZeRO-2, 3 ZeRO-3, 4 HSDP.
    """

    def local(params_dense: Num, params_expert: Num, from_stage: float) -> Num:
        sharded = sharding >= from_stage
        return where(sharded, params_dense / shard_group, params_dense) + where(
            sharded, params_expert / expert_shard_group, params_expert
        )

    weights = local(dense_params, expert_params, 3.0) * (weight_bytes + fp8_cache_bytes)
    grads = local(dense_params, expert_params, 2.0) * grad_bytes
    optimizer = local(dense_params, expert_params, 1.0) * optimizer_bytes
    return weights, grads, optimizer


def chunked_logits_bytes(unchunked: float, loss_chunks: int, eager: bool) -> float:
    """Bytes per logit the loss holds at once: ``unchunked`` (the logits in the compute
    dtype plus the FP32 copy the cross-entropy keeps, constants.yaml
    ``logits_stored_bytes``), or with ``loss_chunks`` compiled chunks the logits in the
    compute dtype plus one chunk's gradient in it: torchtune's CEWithChunkedOutputLoss
    (torchtune/modules/loss/ce_chunked_output_loss.py, pytorch/torchtune#1390) keeps the
    BF16 logits of every chunk for the backward and compiles each chunk's
    ``cross_entropy(logits.float())``, whose generated kernels upcast in registers (the
    forward keeps a log-sum-exp per row; the backward reads the BF16 chunk and writes its
    BF16 gradient), so no FP32 chunk is materialised. torchtune's README (1814feb17a,
    "Optimization flags") bears this out: its LoRA and QLoRA rows (8.5 and 4.6 GiB) leave
    2.0 GiB beside the weights, adapters and their states, the BF16 logits of 2 x 4096
    tokens (1.96 GiB) and no FP32 chunk (0.24 GiB in BF16 and 0.49 in FP32 for 8 chunks).
    Eager chunks save their FP32 log-probabilities for the backward, so they change
    nothing (planner.specs.TrainingSpec.loss_chunks); an eager loss in one piece holds
    :data:`EAGER_LOSS_PEAK_BYTES` at the start of its backward."""
    if eager and loss_chunks == 1:
        return EAGER_LOSS_PEAK_BYTES
    if loss_chunks == 1 or eager:
        return unchunked
    return (unchunked - FP32_BYTES) * (1.0 + 1.0 / loss_chunks)


EAGER_LOSS_PEAK_BYTES = 3 * FP32_BYTES
"""Bytes per logit an eager, unchunked ``F.cross_entropy(logits.float())`` holds at the
start of its backward: the FP32 log-probabilities ``log_softmax`` saves, the dense FP32
gradient ``nll_loss_backward`` writes, and the FP32 gradient
``_log_softmax_backward_data`` writes before the engine frees the other two (PyTorch
derivatives.yaml: both nodes save the log-probabilities, each writes a new logits-sized
tensor). bench/loss_memory.py measured 12.27 bytes per logit in BF16 and 12.53 in FP32
for the whole loss, forward and backward (bench/RESULTS.md, 2026-12-06)."""


def eager_saved_extra_bytes(
    tokens: Num, hidden: Num, q_dim: Num, kv_dim: Num, ffn_active: Num, gated: Num,
    layernorm: Num, trained_norms: Num, tp: Num, sp_share: Num, act_bytes: Num,
) -> Num:  # fmt: skip
    """Bytes one layer saves for backward in PyTorch eager mode beyond the fused count of
    :func:`activation_rows`, per micro-batch. Autograd saves each op's inputs that its
    backward formula reads (derivatives.yaml; a product with a constant, as rotary's
    ``x * cos``, saves only the constant), in the Llama modules of torchtune
    (rms_norm.py, attention.py, feed_forward.py at 1814feb17a), torchtitan and the
    reference trainer alike:

    * RMSNorm ``(x.float() * rsqrt(x.float().pow(2).mean(-1) + eps)).type_as(x) * w``:
      ``pow`` and the first product save the FP32 input (4 bytes, not the compute-dtype
      input the fused count has), the product with a trained ``w`` its normalised
      operand; the output is the next matmul's input either way. LayerNorm is one eager
      kernel (``F.layer_norm``, which saves its input): nothing beyond.
    * SwiGLU ``w2(silu(w1 x) * w3 x)``: the product saves the silu output besides the
      two matmul outputs.
    * GQA: K and V copied to every query head (torchtune's ``expand().flatten()``,
      torchtitan's ``repeat_kv``) are what the attention saves: q-wide, not kv-wide.

    Not counted: the ``.contiguous()`` copy of the attention output the output
    projection saves after torch SDPA or flex attention (layout ``[b, heads, s, d]``),
    which kernels writing ``[b, s, heads, d]`` (flash-attn, llm-foundry's Triton
    FlashAttention) do not make.
    """
    upcast = maximum(act_bytes, FP32_BYTES)
    norm = (1.0 - layernorm) * (upcast + trained_norms * act_bytes - act_bytes)
    norms = 2 * norm * tokens * hidden * sp_share
    glu = gated * act_bytes * tokens * ffn_active / tp
    gqa = 2 * act_bytes * tokens * maximum(q_dim - kv_dim, 0.0) / tp
    return norms + glu + gqa


def torch_ring_workspace_bytes(q_bytes: Num, kv_bytes: Num, cp: Num) -> Num:
    """Bytes torch's ring attention backward (``_templated_ring_attention_backward``,
    torch 2.6-2.13) holds beyond the layer's saved tensors at its peak, on the last CP
    rank (the full-size branch), for the local query ``q_bytes`` and K and V together
    ``kv_bytes`` in the activation dtype (GQA heads repeated, as the ring receives them):

    * the all-gathered K/V of every rank, kept for the whole loop (cp KV), and the send
      copy of the current K/V (``torch.cat``: KV);
    * dK/dV in FP32 up to five times over (2 KV each): the buffer received from the
      previous rank, its half-update written back through ``torch.cat``, the
      concatenation sent on, the receive buffer of the exchange in flight, and the
      previous send, which stays allocated until its collective completes;
    * dQ accumulated in FP32 (2 Q) and the step's kernel gradients (dQ, and dK/dV of the
      half K/V: Q + KV / 2);
    * the flash kernel's own FP32 dQ accumulator (2 Q; FlashAttention-2's ``dq_accum``).

    Measured on torch 2.13's code on CPU (tests/planner/test_torch_ring_source.py), each
    exchange awaited at once: the peak of the tensors it allocates, at cp 2, 4 and 8 and
    on every rank, is all of this but the flash accumulator, or 2 KV less where gloo had
    already let go of the previous send. The forward's gathered K/V and FP32 merges are
    freed before the backward's peak."""
    return where(cp > 1, (cp + 11.5) * kv_bytes + 5.0 * q_bytes, 0.0)
