"""Fit the GEMM shape factor's constants (gemm_mn_half, gemm_k_half) from measured GEMMs.

    python scripts/fit_gemm_shape.py            # print the fit per source
    python scripts/fit_gemm_shape.py --check    # exit 1 if gpus.yaml disagrees with the fit

The data are planner/data/gemm_measured.yaml (measured BF16 TFLOP/s by m, n, k). The model
is the planner's own (planner.formulas.kernels): one GEMM takes

    2·m·n·k / (R · f(m, n, k)) + t0,   f = m/(m + a) · n/(n + a) · k/(k + b)

with R the accelerator's best-case GEMM rate (gpus.yaml: bf16_dense_tflops x
gemm_efficiency, the MAMF; both are short benchmarks, so no sustained-clock derating) and
t0 the per-kernel launch gap and tail the planner adds to every kernel
(constants.yaml kernel_overhead_s). The fit chooses the integers a (gemm_mn_half) and b
(gemm_k_half) in 1..1024 that minimise the root-mean-square log error of the time over
the points whose measured time is at least MIN_TIME_S: below it the fixed cost t0 is a
fifth or more of the kernel and the shape factor is not identifiable (training GEMMs of
the validated runs take 50 us to several ms).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from planner.catalog import constants_data, get_gpu  # noqa: E402

DATA = ROOT / "planner" / "data" / "gemm_measured.yaml"
MIN_TIME_S = 20e-6
"""Shortest measured GEMM the fit uses (5x the 4 us fixed cost per kernel)."""
GRID = np.arange(1, 1025, dtype=float)
"""Candidate half-efficiency sizes (elements)."""


class Fit(NamedTuple):
    """The fitted constants of one source and how well they reproduce its points."""

    mn_half: int
    k_half: int
    rms_log_error: float
    points_used: int


def load_sources(path: Path = DATA) -> dict[str, Any]:
    """The measured sources of gemm_measured.yaml by name."""
    return dict(yaml.safe_load(path.read_text())["sources"])


def fit(points: np.ndarray, rate_flops: float, fixed_s: float) -> Fit:
    """Grid least squares of log time over (mn_half, k_half) for ``points`` [m, n, k, TFLOP/s]."""
    m, n, k, tflops = points.T
    flops = 2 * m * n * k
    measured_s = flops / (tflops * 1e12)
    use = measured_s >= MIN_TIME_S
    m, n, k, flops, measured_s = m[use], n[use], k[use], flops[use], measured_s[use]
    a = GRID[:, None, None]
    b = GRID[None, :, None]
    factor = m / (m + a) * n / (n + a) * k / (k + b)
    predicted_s = flops / (rate_flops * factor) + fixed_s
    rms = np.sqrt(np.mean(np.log(predicted_s / measured_s) ** 2, axis=-1))
    i, j = np.unravel_index(int(np.argmin(rms)), rms.shape)
    return Fit(int(GRID[i]), int(GRID[j]), float(rms[i, j]), int(use.sum()))


def fit_source(source: dict[str, Any]) -> Fit:
    """Fit one source against the first accelerator it names."""
    gpu = get_gpu(source["accelerators"][0])
    rate = gpu.bf16_dense_tflops * 1e12 * gpu.gemm_efficiency
    fixed = float(constants_data()["kernel_overhead_s"])
    return fit(np.array(source["points"], dtype=float), rate, fixed)


def main(argv: list[str]) -> int:
    bad = 0
    for name, source in load_sources().items():
        result = fit_source(source)
        print(
            f"{name}: gemm_mn_half {result.mn_half}, gemm_k_half {result.k_half} "
            f"(rms log error {result.rms_log_error:.3f} over {result.points_used} points)"
        )
        for acc in source["accelerators"]:
            gpu = get_gpu(acc)
            held = (gpu.gemm_mn_half, gpu.gemm_k_half)
            if held != (result.mn_half, result.k_half):
                bad += 1
                print(f"  {acc}: gpus.yaml holds {held}, the fit gives "
                      f"({result.mn_half}, {result.k_half})")  # fmt: skip
    return 1 if bad and "--check" in argv else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
