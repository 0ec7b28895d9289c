"""Measured attention-kernel speed as the efficiencies the cost model uses.

For the fused kernels named in TrainingSpec.attention_kernel ('fa2', 'fa3', 'cudnn',
'cudnn8.9', 'triton') on
an accelerator whose catalog entry names a measured table (gpus.yaml
``attention_benchmarks``; tables in constants.yaml ``attention_kernels``), the kernel's
forward rate at the model's head dimension is fitted to rate_max · s / (s + s_half)
(:func:`planner.formulas.kernels.saturating_fit`), so the cost model's
``fused_attention_time`` reproduces the measured curve at any sequence length, and the
backward rate is the forward's times the FlashAttention-2 backward/forward ratio measured
on the same GPU. Head dimensions between the measured ones interpolate the fitted
parameters linearly in log2(head_dim); outside, the nearest is used.

The benchmarks count half the score matrix for a causal mask; the cost model divides the
FLOPs the kernel executes (diagonal tiles in full, planner.formulas.flops) by the rate, so
each measured point is scaled by executed/counted = (s + block)/s before fitting.

'cudnn8.9' (cuDNN 8.9's flash attention, before the Hopper rewrite of cuDNN 9.0) is the
'cudnn' curve at the rate cuDNN 9.0's release notes state it gained over 8.9.7 on Hopper
(constants.yaml ``cudnn9_flash_speedup_over_8_9_hopper``): both passes, every length.

'triton' (FlashAttention in Triton: flash-attn 1.x's ``flash_attn_triton``, llm-foundry's
``attn_impl: triton`` in 2023) is the 'fa2' curve over the forward and backward speed-ups
FlashAttention-2 has over it (constants.yaml ``fa2_speedup_over_triton``: Dao 2023,
Sec. 4.1, measured on A100 80GB; no H100 figure was published, so the A100 ratio is
carried over as it stands).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

from planner.formulas.kernels import backward_rates, saturating_fit

MEASURED_KERNELS = ("fa2", "fa3", "cudnn", "cudnn8.9", "triton")
"""Kernels timed from measured tables where the accelerator has one."""
OLDER_RELEASES = {
    "cudnn8.9": ("cudnn", "cudnn9_flash_speedup_over_8_9_hopper"),
    "triton": ("fa2", "fa2_speedup_over_triton"),
}
"""A kernel timed as a newer kernel's table over the speed-up its release notes or paper
state: one number for both passes, or a mapping with ``fwd`` and ``bwd``."""
RATIO_KERNEL = "fa2"
"""The kernel whose forward and forward+backward were both measured (constants.yaml)."""


def _fit(
    table: dict[str, Any], kernel: str, head_dim: int, block: float, bwd_ratio: float
) -> tuple[float, float, float]:
    seq = [float(s) for s in table["seq_len"]]

    def executed(rates: list[float]) -> list[float]:
        return [r * (s + block) / s for r, s in zip(rates, seq, strict=True)]

    fwd = saturating_fit(seq, executed(table["fwd"][kernel][head_dim]))
    ratio_dim = min(table["fwd_bwd"][RATIO_KERNEL], key=lambda d: abs(math.log2(d / head_dim)))
    f2 = table["fwd"][RATIO_KERNEL][ratio_dim]
    bwd2 = backward_rates(f2, table["fwd_bwd"][RATIO_KERNEL][ratio_dim], bwd_ratio)
    ratio = saturating_fit(seq, bwd2)[0] / saturating_fit(seq, f2)[0]
    return fwd[0], fwd[0] * ratio, fwd[1]


def _speedups(value: Any) -> tuple[float, float]:
    """(forward, backward) speed-up of the newer kernel: one figure for both, or a
    ``{fwd, bwd}`` mapping."""
    if isinstance(value, dict):
        return float(value["fwd"]), float(value["bwd"])
    return float(value), float(value)


@lru_cache(maxsize=64)
def measured_attention(
    table_key: str | None, kernel: str, head_dim: int, peak_tflops: float
) -> tuple[float, float, float] | None:
    """(forward efficiency, backward efficiency, s_half) of ``kernel``, or None when the
    accelerator has no measured table or the kernel is not a measured one.

    Efficiencies are fractions of ``peak_tflops`` (the accelerator's BF16 dense spec), as
    gpus.yaml's attention efficiencies are.
    """
    if table_key is None or kernel not in MEASURED_KERNELS:
        return None
    from planner.catalog import constants_data

    data = constants_data()
    slow_fwd = slow_bwd = 1.0
    if kernel in OLDER_RELEASES:
        kernel, speedup_key = OLDER_RELEASES[kernel]
        slow_fwd, slow_bwd = _speedups(data[speedup_key])
    table = data["attention_kernels"][table_key]
    block, bwd_ratio = float(data["flash_causal_block"]), float(data["flash_bwd_flops_ratio"])
    dims = sorted(int(d) for d in table["fwd"][kernel])
    x = math.log2(head_dim)
    lo = max([d for d in dims if d <= head_dim], default=dims[0])
    hi = min([d for d in dims if d >= head_dim], default=dims[-1])
    a = _fit(table, kernel, lo, block, bwd_ratio)
    b = _fit(table, kernel, hi, block, bwd_ratio)
    w = 0.0 if hi == lo else (x - math.log2(lo)) / (math.log2(hi) - math.log2(lo))
    fwd, bwd, s_half = (p + w * (q - p) for p, q in zip(a, b, strict=True))
    fwd, bwd = fwd / slow_fwd, bwd / slow_bwd
    return min(fwd / peak_tflops, 1.0), min(bwd / peak_tflops, 1.0), s_half
