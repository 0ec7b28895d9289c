"""FLOPs per token: model FLOPs (the MFU basis) and hardware FLOPs (the HFU basis).

Matmul FLOPs: 2 per weight a token multiplies through, forward; backward is twice the
forward (activation and weight gradients), so training is 6 per active weight (Kaplan
et al. 2020, Sec. 2.1). The output layer is a GEMM even when tied; the input embedding is
a lookup (0 FLOPs).

Attention FLOPs: QK^T and (softmax)V cost 2·s_kv·d each per query and head, forward.
Causal masking is explicit: a model needs on average (s + 1)/2 keys per query, so the
*model* count halves the full-matrix figure (PaLM, Chowdhery et al. 2022, App. B counts
the full matrix; we count what a causal model needs). What the *hardware* executes
depends on the kernel: unfused attention (Megatron-LM 2021-22) computes the whole s x s
matrix; fused causal kernels (FlashAttention) skip fully masked tiles and compute the
diagonal tiles in full, (s + block)/2s of the matrix. FlashAttention's backward
recomputes QK^T, 2.5x the forward instead of 2x (Dao 2023, Sec. 3.1).

Sliding-window layers (ModelSpec.sliding_window; Beltagy et al. 2020, Sec. 3.1) attend
to at most w keys: Σ_i min(i, w) = w·s − w(w − 1)/2 pairs over s queries, which is the
causal count when w ≥ s. A fused kernel with a window skips the tiles left of it as it
skips those above the diagonal (flash-attn's ``window_size``): a row of query tiles
computes the tiles of its w keys plus one. Unfused attention masks the full matrix and
computes all of it. A model mixing windowed and full layers counts each kind over its share of
the layers.

Recomputation (Korthikanti et al. 2022): full recompute reruns each layer's forward
(matmuls and attention, not the output layer); selective reruns the attention core.
With full recompute and unfused attention the hardware count equals Narayanan et al.
2021, eq. 3: 96·B·s·l·h²·(1 + s/6h + V/16lh) per step.

Fine-tuning (TrainingSpec.finetune): full fine-tuning is costed as pre-training (6N).
LoRA/QLoRA freeze the base weights: forward 2N, backward the activation gradients only
(2N; frozen matrices take no weight gradients, saving 2N), plus the adapters' 6·r·(d_in +
d_out) per targeted matrix (Hu et al. 2021, Sec. 4), rerun forward under full recompute.
MFU counts the model FLOPs a step actually executes: 4N + attention + adapters for
LoRA/QLoRA, not 6N (:func:`finetune_flops_per_token`); QLoRA's dequantisation moves bytes
and adds no FLOPs.
"""

from __future__ import annotations

from planner.formulas.ops import Num, minimum, where

RECOMPUTE_SELECTIVE = 1.0
RECOMPUTE_FULL = 2.0


def matmul_flops_fwd_per_token(
    layers: Num, layer_matmul_active: Num, vocab: Num, hidden: Num
) -> Num:
    """Forward GEMM FLOPs per token: all layers' active weights plus the output layer."""
    return 2 * (layers * layer_matmul_active + vocab * hidden)


def attention_flops_fwd_per_token(
    layers: Num, heads: Num, head_dim: Num, seq: Num, key_fraction: Num
) -> Num:
    """Forward QK^T and AV FLOPs per token, for the given fraction of the s keys."""
    return 4 * layers * heads * head_dim * seq * key_fraction


def causal_key_fraction(seq: Num) -> Num:
    """Mean fraction of keys a causal query attends to: (s + 1) / 2s."""
    return (seq + 1) / (2 * seq)


def windowed_key_fraction(seq: Num, window: Num) -> Num:
    """Mean fraction of the s keys a query attends to within a causal window of w keys
    (itself and the w - 1 before it): (w·s - w(w - 1)/2) / s², (s + 1)/2s for w >= s."""
    w = minimum(window, seq)
    return (w * seq - w * (w - 1) / 2) / (seq * seq)


def layer_mix(full: Num, windowed: Num, windowed_share: Num) -> Num:
    """A per-layer quantity averaged over full-attention and windowed layers (exactly
    ``full`` without windowed layers, so a window-free problem compiles ``windowed`` out)."""
    mixed = (1 - windowed_share) * full + windowed_share * windowed
    return where(windowed_share > 0, mixed, full)


def model_key_fraction(seq: Num, window: Num = 0.0, windowed_share: Num = 0.0) -> Num:
    """Mean over the layers of the key fraction a query needs: causal layers and the
    ``windowed_share`` of them that attend to a ``window`` of keys."""
    windowed = windowed_key_fraction(seq, window)
    return layer_mix(causal_key_fraction(seq), windowed, windowed_share)


def executed_key_fraction(seq: Num, flash: Num, causal_block: Num) -> Num:
    """Fraction of the s x s score matrix the attention kernel computes in a causal layer."""
    return where(flash > 0, minimum((seq + causal_block) / (2 * seq), 1.0), 1.0)


def windowed_executed_key_fraction(seq: Num, flash: Num, causal_block: Num, window: Num) -> Num:
    """Fraction of the s x s score matrix the attention kernel computes in a windowed layer.

    Fused: a row of query tiles runs the tiles of its window's w keys plus one, and the
    first w/block rows fewer: (w + block)(s - w/2) / s² (w <= s, a multiple of the tile;
    the causal (s + block)/2s at w = s). Unfused: the whole matrix."""
    w = minimum(window, seq)
    fused = minimum((w + causal_block) * (seq - w / 2) / (seq * seq), 1.0)
    return where(flash > 0, fused, 1.0)


def model_flops_per_token(
    layers: Num,
    layer_matmul_active: Num,
    vocab: Num,
    hidden: Num,
    heads: Num,
    head_dim: Num,
    seq: Num,
    window: Num = 0.0,
    windowed_share: Num = 0.0,
) -> Num:
    """Training FLOPs the model needs per token (forward + backward, no recompute);
    ``windowed_share`` of the layers attend to ``window`` keys (0: none)."""
    mm = matmul_flops_fwd_per_token(layers, layer_matmul_active, vocab, hidden)
    fraction = model_key_fraction(seq, window, windowed_share)
    attn = attention_flops_fwd_per_token(layers, heads, head_dim, seq, fraction)
    return 3 * (mm + attn)


def hardware_flops_per_token(
    layers: Num,
    layer_matmul_active: Num,
    vocab: Num,
    hidden: Num,
    heads: Num,
    head_dim: Num,
    seq: Num,
    flash: Num,
    recompute: Num,
    causal_block: Num,
    flash_bwd_ratio: Num,
    op_recompute_matmul: Num = 0.0,
    window: Num = 0.0,
    windowed_share: Num = 0.0,
) -> Num:
    """FLOPs the GPUs execute per token, recomputation and masked-out scores included.

    ``op_recompute_matmul``: matmul parameters per layer that selective recomputation
    repeats instead of the attention core (torchtitan's op policy,
    TrainingSpec.selective_recompute 'op'); 0 for the attention-core mode.
    ``windowed_share`` of the layers attend to ``window`` keys (0: none)."""
    mm = matmul_flops_fwd_per_token(layers, layer_matmul_active, vocab, hidden)
    op = where((recompute >= RECOMPUTE_SELECTIVE) & (op_recompute_matmul > 0), 1.0, 0.0)
    mm_recompute = where(
        recompute >= RECOMPUTE_FULL,
        2 * layers * layer_matmul_active,
        op * 2 * layers * op_recompute_matmul,
    )
    causal = executed_key_fraction(seq, flash, causal_block)
    windowed = windowed_executed_key_fraction(seq, flash, causal_block, window)
    executed = layer_mix(causal, windowed, windowed_share)
    attn_fwd = attention_flops_fwd_per_token(layers, heads, head_dim, seq, executed)
    attn_bwd_ratio = where(flash > 0, flash_bwd_ratio, 2.0)
    attn_recompute = where(recompute >= RECOMPUTE_FULL, 1.0, where(op > 0, 0.0, 1.0))
    attn_recompute = where(recompute >= RECOMPUTE_SELECTIVE, attn_recompute, 0.0)
    return 3 * mm + mm_recompute + attn_fwd * (1 + attn_bwd_ratio + attn_recompute)


def finetune_flops_per_token(
    frozen: Num, matmul_fwd: Num, layers: Num, rank: Num, width: Num, recompute: Num = 0.0
) -> Num:
    """FLOPs per token that LoRA/QLoRA add to the 6N count (negative: the frozen weights'
    gradients not computed, ``-frozen·matmul_fwd``; plus the adapters' 6·r·Σ(d_in + d_out)
    per layer, 8 under full recompute, which reruns their forward). ``matmul_fwd`` is
    :func:`matmul_flops_fwd_per_token`; 0 for pre-training and full fine-tuning."""
    adapter_fwd = 2 * layers * rank * width
    rerun = where(recompute >= RECOMPUTE_FULL, 1.0, 0.0)
    return frozen * ((3 + rerun) * adapter_fwd - matmul_fwd)
