"""Plan against reality: what ``plan.json`` predicted next to what the job measures.

The prediction is the planner's ``Estimate`` stored in the job directory (``estimate.step``:
``time_s``, ``tokens_per_s``, ``mfu``; ``estimate.memory_gib.total``; ``estimate.train``:
``steps``, ``energy_mwh``; ``estimate.step.gpu_power_w`` for the GPUs' own energy).
The measurements come from the progress files (step time,
tokens/s) and telemetry (GPU memory, GPU power); reading is tolerant, a missing number is
shown as missing.

Measured MFU is not reported by anyone; it follows from the definition (Chowdhery et al.
2022, "PaLM", Appendix B: MFU = observed tokens/s x model FLOPs per token / (GPUs x peak
FLOP/s)). Model FLOPs per token and the peak are the plan's, so with ``n`` GPUs

    mfu_measured = mfu_planned x (tokens_per_s_measured / tokens_per_s_planned)
                   x (gpus_planned / gpus_measured)

which needs no FLOP count in the UI and stays right when an elastic job runs on fewer
GPUs than planned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tui import text
from tui.text import finite

MIB_PER_GIB = 1024.0
J_PER_MWH = 3.6e9


def _get(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


@dataclass(frozen=True)
class PlanFacts:
    """The numbers of a plan.json the UI compares against (None when absent)."""

    model: str | None = None
    gpu: str | None = None
    num_gpus: int | None = None
    layout: str | None = None
    step_time_s: float | None = None
    tokens_per_s: float | None = None
    mfu: float | None = None
    memory_gib: float | None = None
    capacity_gib: float | None = None
    steps: int | None = None
    energy_per_step_j: float | None = None
    """Facility energy of the run (GPUs + hosts, times PUE) divided by its steps."""
    gpu_energy_per_step_j: float | None = None
    """The GPUs' own energy per step: the plan's mean power per GPU x GPUs x step time
    (plans written before ``estimate.step.gpu_power_w`` existed lack it)."""


def layout_text(layout: Any) -> str | None:
    """``dp8 tp2 pp1 zero3 mb1 recompute=selective`` from a Layout's JSON form."""
    if not isinstance(layout, dict):
        return None
    parts = [f"{key}{layout.get(key, 1)}" for key in ("dp", "tp", "pp", "cp")]
    sharding = layout.get("sharding")
    if sharding and sharding != "none":
        parts.append(str(sharding))
    parts.append(f"mb{layout.get('micro_batch', 1)}")
    if layout.get("recompute") not in (None, "none"):
        parts.append(f"rc={layout['recompute']}")
    if (layout.get("interleave") or 1) > 1:
        parts.append(f"vpp{layout['interleave']}")
    if (layout.get("ep") or 1) > 1:
        parts.append(f"ep{layout['ep']}")
    return " ".join(parts)


def plan_facts(plan: Any) -> PlanFacts:
    """Read a plan.json document (a planner ``Plan`` in JSON form), tolerantly."""
    if not isinstance(plan, dict):
        return PlanFacts()
    gpu = _get(plan, "cluster", "gpu")
    gpu_name = gpu.get("name") if isinstance(gpu, dict) else gpu
    steps = finite(_get(plan, "estimate", "train", "steps"))
    energy_mwh = finite(_get(plan, "estimate", "train", "energy_mwh"))
    gpus = finite(_get(plan, "cluster", "num_gpus"))
    step_time_s = finite(_get(plan, "estimate", "step", "time_s"))
    gpu_power_w = finite(_get(plan, "estimate", "step", "gpu_power_w"))
    return PlanFacts(
        model=_get(plan, "model", "name") if isinstance(_get(plan, "model", "name"), str) else None,
        gpu=str(gpu_name) if gpu_name is not None else None,
        num_gpus=int(gpus) if gpus is not None else None,
        layout=layout_text(plan.get("layout") or _get(plan, "estimate", "layout")),
        step_time_s=step_time_s,
        tokens_per_s=finite(_get(plan, "estimate", "step", "tokens_per_s")),
        mfu=finite(_get(plan, "estimate", "step", "mfu")),
        memory_gib=finite(_get(plan, "estimate", "memory_gib", "total")),
        capacity_gib=finite(_get(plan, "estimate", "memory_gib", "capacity")),
        steps=int(steps) if steps is not None else None,
        energy_per_step_j=(
            energy_mwh * J_PER_MWH / steps
            if energy_mwh is not None and steps is not None and steps > 0
            else None
        ),
        gpu_energy_per_step_j=(
            gpu_power_w * gpus * step_time_s
            if gpu_power_w is not None and gpus is not None and step_time_s is not None
            else None
        ),
    )


def measured_mfu(
    facts: PlanFacts, tokens_per_s: float | None, gpus_measured: int | None
) -> float | None:
    """MFU of the running job from its throughput (see module docstring)."""
    if (
        facts.mfu is None
        or facts.tokens_per_s is None
        or facts.tokens_per_s <= 0
        or tokens_per_s is None
    ):
        return None
    scale = 1.0
    if facts.num_gpus and gpus_measured:
        scale = facts.num_gpus / gpus_measured
    return facts.mfu * tokens_per_s / facts.tokens_per_s * scale


@dataclass(frozen=True)
class Measured:
    step_time_s: float | None = None
    tokens_per_s: float | None = None
    world_size: int | None = None
    gpu_memory_mib: float | None = None
    """Most loaded GPU's memory in use (telemetry), when the job has GPU telemetry."""
    rank_rss_mib: float | None = None
    """Largest peak resident memory of a rank (progress records), for CPU jobs."""
    gpu_power_w: float | None = None
    """Mean board power of all the job's GPUs (telemetry)."""


@dataclass(frozen=True)
class CompareRow:
    metric: str
    predicted: str
    measured: str
    ratio: str
    style: str
    """Colour of the ratio: green within 10 %, yellow within 25 %, red beyond."""


def _ratio(measured: float | None, predicted: float | None) -> tuple[str, str]:
    if measured is None or predicted is None or predicted == 0:
        return text.MISSING, "dim"
    value = measured / predicted
    off = abs(value - 1.0)
    style = "green" if off <= 0.10 else "yellow" if off <= 0.25 else "red"
    return f"×{value:.2f}", style


def compare(facts: PlanFacts, measured: Measured) -> list[CompareRow]:
    """Rows of the predicted-against-measured table (same order every time)."""
    rows: list[CompareRow] = []

    def add(metric: str, pred: float | None, meas: float | None, fmt: Any) -> None:
        ratio, style = _ratio(meas, pred)
        rows.append(CompareRow(metric, fmt(pred), fmt(meas), ratio, style))

    add("step time", facts.step_time_s, measured.step_time_s, text.seconds)
    add("tokens/s", facts.tokens_per_s, measured.tokens_per_s, text.si)
    mfu = measured_mfu(facts, measured.tokens_per_s, measured.world_size)
    add("MFU", facts.mfu, mfu, lambda v: text.percent(v, 1))
    if measured.gpu_memory_mib is not None:
        memory, label = measured.gpu_memory_mib / MIB_PER_GIB, "GPU memory"
    elif measured.rank_rss_mib is not None:
        memory, label = measured.rank_rss_mib / MIB_PER_GIB, "memory (rank RSS)"
    else:
        memory, label = None, "memory/GPU"
    add(label, facts.memory_gib, memory, lambda v: f"{v:.2f} GiB" if v is not None else "–")
    energy = (
        measured.gpu_power_w * measured.step_time_s
        if measured.gpu_power_w is not None and measured.step_time_s is not None
        else None
    )
    if facts.gpu_energy_per_step_j is not None:
        add("GPU energy/step", facts.gpu_energy_per_step_j, energy, _joules)
    else:
        # An older plan carries facility energy only (GPUs + hosts, times PUE): not the
        # basis NVML measures, so both are shown and no ratio is claimed.
        predicted = _joules(facts.energy_per_step_j)
        rows.append(CompareRow("energy/step", predicted, _joules(energy), "≠basis", "dim"))
    return rows


def _joules(value: float | None) -> str:
    if value is None:
        return text.MISSING
    return text.si(value) + "J"
