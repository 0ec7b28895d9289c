"""Compute-optimal model size and tokens for a FLOP (or dollar) budget, and the loss the
scaling laws predict. Constants: ``data/scaling.yaml``; training compute C = 6·N·D.

* Chinchilla, Approach 3 (Hoffmann et al. 2022, Sec. 3.3): the parametric loss
  L(N, D) = E + A/N^α + B/D^β (eq. 10). Minimising it under C = 6ND gives (App. D.2,
  eq. 4) N_opt = G·(C/6)^a, D_opt = G^-1·(C/6)^b with G = (αA / βB)^(1/(α+β)),
  a = β/(α+β), b = α/(α+β).
* The ~20 tokens per parameter rule (Hoffmann et al. 2022, Sec. 3, Table 3): D = 20·N,
  so N = sqrt(C / (6·20)).
* Kaplan et al. 2020: N_opt = 1.3e9 · (C / PF-day)^0.73 (Sec. 6.1) with D = C / 6N, and
  L(N, D) = [(N_c/N)^(α_N/α_D) + D_c/D]^α_D (eq. 1.5). Kaplan's N counts non-embedding
  parameters and its losses are on WebText2: compare them with each other only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from planner.errors import PlanInputError


def _data() -> dict[str, Any]:
    from planner.catalog import read_data

    return read_data("scaling.yaml")


def chinchilla_loss(params: float, tokens: float) -> float:
    """Hoffmann et al. 2022, eq. (10): E + A/N^α + B/D^β (nats/token, MassiveText)."""
    c = _data()["chinchilla"]
    return float(c["E"] + c["A"] / params ** c["alpha"] + c["B"] / tokens ** c["beta"])


def chinchilla_optimal(flops: float) -> tuple[float, float]:
    """(N, D) minimising :func:`chinchilla_loss` for C = 6·N·D = ``flops`` (App. D.2)."""
    c = _data()["chinchilla"]
    alpha, beta = c["alpha"], c["beta"]
    g = (alpha * c["A"] / (beta * c["B"])) ** (1.0 / (alpha + beta))
    per = flops / _data()["flops_per_param_token"]
    a, b = beta / (alpha + beta), alpha / (alpha + beta)
    return float(g * per**a), float(per**b / g)


def tokens_per_param_optimal(flops: float) -> tuple[float, float]:
    """(N, D) with D = 20·N and C = 6·N·D (the Chinchilla rule of thumb)."""
    ratio = _data()["chinchilla"]["tokens_per_param"]
    params = math.sqrt(flops / (_data()["flops_per_param_token"] * ratio))
    return params, ratio * params


def kaplan_loss(params: float, tokens: float) -> float:
    """Kaplan et al. 2020, eq. (1.5) (nats/token, WebText2; non-embedding N)."""
    k = _data()["kaplan"]
    ratio = k["alpha_N"] / k["alpha_D"]
    return float(((k["N_c"] / params) ** ratio + k["D_c"] / tokens) ** k["alpha_D"])


def kaplan_optimal(flops: float) -> tuple[float, float]:
    """(N, D): N_opt = 1.3e9·(C / PF-day)^0.73 (Kaplan et al. 2020, Sec. 6.1), D = C/6N."""
    data = _data()
    k = data["kaplan"]
    params = k["optimal_n_coefficient"] * (flops / data["pf_day_flops"]) ** k["optimal_n_exponent"]
    return float(params), float(flops / (data["flops_per_param_token"] * params))


def flops_for_budget(
    budget_usd: float, price_usd_per_gpu_hour: float, peak_flops: float, mfu: float
) -> float:
    """Training FLOPs a dollar budget buys: GPU-hours x 3600 x peak x MFU."""
    if price_usd_per_gpu_hour <= 0:
        raise PlanInputError(
            "--budget: the GPU's price is 0, so dollars buy unlimited FLOPs; give --price."
        )
    return budget_usd / price_usd_per_gpu_hour * 3600.0 * peak_flops * mfu


def default_mfu() -> float:
    """The MFU assumed when converting dollars to FLOPs (data/scaling.yaml)."""
    return float(_data()["default_mfu"])


@dataclass(frozen=True)
class Sizing:
    """One law's compute-optimal answer."""

    law: str
    """Which rule gave it."""
    params: float
    """Parameters N."""
    tokens: float
    """Training tokens D."""
    loss: float
    """The law's predicted loss at (N, D), nats/token."""
    chinchilla_loss: float
    """Chinchilla's eq. (10) at (N, D): one yardstick for every row."""


def compute_optimal(flops: float) -> list[Sizing]:
    """The three answers for a budget of ``flops`` training FLOPs."""
    if not math.isfinite(flops) or flops <= 0:
        raise PlanInputError(f"--flops: must be a positive number of FLOPs, got {flops!r}.")
    rows = []
    for law, (n, d), loss in (
        ("chinchilla approach 3 (Hoffmann 2022)", chinchilla_optimal(flops), chinchilla_loss),
        ("20 tokens/parameter (Hoffmann 2022)", tokens_per_param_optimal(flops), chinchilla_loss),
        ("Kaplan 2020", kaplan_optimal(flops), kaplan_loss),
    ):
        rows.append(Sizing(law, n, d, loss(n, d), chinchilla_loss(n, d)))
    return rows
