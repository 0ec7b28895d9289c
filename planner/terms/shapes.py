"""Rates of the hardware and shapes of one micro-batch on one GPU."""

from __future__ import annotations

from typing import Any, NamedTuple

from planner.formulas import params
from planner.formulas.ops import ceil, where
from planner.inputs import Inputs

# Sharding codes are 0 none, 1 ZeRO-1, 2 ZeRO-2, 3 ZeRO-3/FSDP, 4 HSDP (inputs.py); the
# thresholds sit half-way between codes so that the comparisons hold for float inputs.
SHARDS_OPTIMIZER = 0.5
"""``x.sharding`` above this shards the optimizer states (ZeRO-1 and up)."""
SHARDS_GRADIENTS = 1.5
"""``x.sharding`` above this shards gradients as well (ZeRO-2 and up)."""
SHARDS_WEIGHTS = 2.5
"""``x.sharding`` above this shards weights as well (ZeRO-3/FSDP and HSDP)."""
SHARDING_HSDP = 3.5
"""``x.sharding`` above this is HSDP: ZeRO-3 inside groups of hsdp_shard ranks."""
UNEVEN_LAYERS = 1.0
"""Layers the first and the last stage hold fewer than the others with uneven stages (one
each: Llama 3 paper, Sec. 3.3.2)."""


class Shapes(NamedTuple):
    """Derived rates (per second) and per-GPU shapes shared by the terms."""

    ab: Any
    moe: Any
    moe_share: Any
    """Share of MoE layers on the slowest stage: with pipelining a stage of MoE layers
    only (the dense first layers sit on the first stage, and a dense layer costs less: the
    same active MLP width, no all-to-all), without it all layers' average."""
    q_dim: Any
    kv_dim: Any
    ffn_active: Any
    rope: Any
    sp_share: Any
    peak_mfu: Any
    peak_gemm: Any
    peak_bf16: Any
    eff_gemm: Any
    mem_bw: Any
    intra_bw: Any
    inter_bw: Any
    seq_local: Any
    tokens: Any
    micro_batches: Any
    layers_stage: Any
    heads_local: Any
    act_full: Any
    q_local: Any
    """Bytes of one micro-batch's queries on one GPU: what ring attention's merges and
    K/V passes scale with."""
    dp_size: Any
    shard_group: Any
    expert_tp: Any
    """Tensor-parallel degree of the experts (the layout's, or tp)."""


def shapes(x: Inputs) -> Shapes:
    """Peaks, achievable bandwidths and the shapes of one micro-batch on one GPU.

    Layers per stage: ceil(L / (p·v)) per chunk times v chunks (Narayanan et al. 2021,
    Sec. 2.2), on the fullest stage; with uneven stages the first and the last stage hold
    one layer fewer, so the others hold ceil((L + 2) / (p·v)) per chunk. Context
    parallelism splits the sequence (Liu et al. 2023, Ring Attention).
    """
    ab = x.act_bytes
    moe = where(x.experts > 1, 1.0, 0.0)
    moe_share = where(x.pp > 1, moe, params.moe_layer_share(x.layers, x.dense_layers, x.experts))
    # The dense peak of the training precision: BF16 (mixed), FP8 GEMMs, or plain FP32.
    peak_main = where(x.fp32 > 0, x.peak_fp32_flops, x.peak_flops)
    peak_mfu = where(x.fp8 > 0, x.peak_fp8_flops, peak_main)
    seq_local = x.seq / x.cp
    tokens = x.micro_batch * seq_local
    dp_size = x.dp * x.cp
    return Shapes(
        ab=ab,
        moe=moe,
        moe_share=moe_share,
        q_dim=x.heads * x.head_dim,
        kv_dim=x.kv_heads * x.head_dim,
        ffn_active=params.mixed(x.top_k * x.moe_ffn + x.shared_ffn, x.ffn, moe_share),
        rope=x.rope,
        sp_share=where(x.sp > 0, 1.0 / x.tp, 1.0),
        peak_mfu=peak_mfu,
        # Compute kernels run at the sustained (power-capped) clock; MFU keeps the peak.
        peak_gemm=peak_mfu * x.sustained_clock,
        peak_bf16=peak_main * x.sustained_clock,  # attention and unfused kernels (not FP8)
        eff_gemm=where(x.fp8 > 0, x.fp8_gemm_eff, x.gemm_eff),
        mem_bw=x.hbm_bytes_s * x.hbm_eff,
        intra_bw=x.intra_bytes_s * x.intra_eff,
        inter_bw=x.inter_bytes_s * x.inter_eff,
        seq_local=seq_local,
        tokens=tokens,
        micro_batches=x.batch_seqs / (x.dp * x.micro_batch),
        layers_stage=where(
            x.uneven > 0,
            ceil((x.layers + 2 * UNEVEN_LAYERS) / (x.pp * x.interleave)),
            ceil(x.layers / (x.pp * x.interleave)),
        )
        * x.interleave,
        heads_local=x.heads / x.tp,
        act_full=ab * tokens * x.hidden,
        q_local=ab * tokens * x.heads * x.head_dim / x.tp,
        dp_size=dp_size,
        shard_group=where(x.sharding > SHARDING_HSDP, x.hsdp_shard * x.cp, dp_size),
        expert_tp=where(x.etp > 0, x.etp, x.tp),
    )
