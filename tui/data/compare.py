"""Plan against reality: what ``plan.json`` predicted next to what the job measures.

The prediction is the planner's ``Estimate`` stored in the job directory (``estimate.step``:
``time_s``, ``tokens_per_s``, ``mfu``; ``estimate.memory_gib.total``; ``estimate.train``:
``steps``, ``energy_mwh``; ``estimate.step.gpu_power_w`` for the GPUs' own energy).
The measurements come from the progress files (step time,
tokens/s) and telemetry (GPU memory, GPU power); reading is tolerant, a missing number is
shown as missing. The reference trainer's newer figures add rows only where a job has
them: the pipeline bubble (pipelines), the ranks' parameter/gradient/optimizer state
against the plan's ``params + grads + optimizer`` (``contract.run_facts``), and a line
each for MoE routing (:func:`moe_text`) and fine-tuning (:func:`finetune_text`).

The document is read and validated by ``contract.plan`` (an invalid plan shows no
prediction), and the plan-against-measured arithmetic (measured MFU, the GPUs' energy per
step, facility energy per step) is computed there, as the agent's summary and
``scalectl jobs`` compute it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contract.plan import Plan, PlanError, PlanLayout, parse_plan, ratio
from contract.plan import measured_mfu as contract_measured_mfu
from contract.run_facts import (
    FinetuneRun,
    pipelined,
    planned_bubble_fraction,
    planned_state_mib,
)
from launcher.progress_view import ProgressSnapshot
from tui import text
from tui.text import finite

MIB_PER_GIB = 1024.0


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
    pipelined: bool = False
    """The plan has more than one pipeline stage."""
    bubble_fraction: float | None = None
    """Planned share of a step the pipeline idles (pipelines only)."""
    state_mib: float | None = None
    """Planned parameters + gradients + optimizer state per GPU, MiB."""


def layout_text(layout: Any) -> str | None:
    """``dp8 tp2 pp1 zero3 mb1 recompute=selective`` from a Layout's JSON form."""
    if not isinstance(layout, dict):
        return None
    try:
        return PlanLayout.model_validate(layout).text()
    except ValueError:
        return None


def plan_facts(plan: Any) -> PlanFacts:
    """The facts of a plan.json document (a planner ``Plan`` in JSON form, or a parsed
    contract Plan); a document that is not a valid Plan gives no facts."""
    try:
        document = plan if isinstance(plan, Plan) else parse_plan(plan)
    except PlanError:
        return PlanFacts()
    step, train = document.step, document.estimate.train
    memory = document.estimate.memory_gib
    return PlanFacts(
        model=document.model.name,
        gpu=document.cluster.gpu_name,
        num_gpus=document.cluster.num_gpus,
        layout=document.layout_text(),
        step_time_s=finite(step.time_s),
        tokens_per_s=finite(step.tokens_per_s),
        mfu=finite(step.mfu),
        memory_gib=finite(memory.total) if memory else None,
        capacity_gib=finite(memory.capacity) if memory else None,
        steps=train.steps if train else None,
        energy_per_step_j=document.facility_energy_per_step_j(),
        gpu_energy_per_step_j=document.gpu_energy_per_step_j(),
        pipelined=pipelined(document),
        bubble_fraction=finite(planned_bubble_fraction(document)),
        state_mib=finite(planned_state_mib(document)),
    )


def measured_mfu(
    facts: PlanFacts, tokens_per_s: float | None, gpus_measured: int | None
) -> float | None:
    """MFU of the running job from its throughput (contract.plan.measured_mfu)."""
    return contract_measured_mfu(
        facts.mfu, facts.tokens_per_s, facts.num_gpus, tokens_per_s, gpus_measured
    )


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
    bubble_fraction: float | None = None
    """Median measured pipeline bubble of the lead rank (progress records)."""
    state_mib: float | None = None
    """Largest parameter + gradient + optimizer state of a rank, MiB (progress records)."""


@dataclass(frozen=True)
class CompareRow:
    metric: str
    predicted: str
    measured: str
    ratio: str
    style: str
    """Colour of the ratio: green within 10 %, yellow within 25 %, red beyond."""


def _ratio(measured: float | None, predicted: float | None) -> tuple[str, str]:
    value = ratio(measured, predicted)
    if value is None:
        return text.MISSING, "dim"
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
    # The trainer's newer figures: a row only where the job has them, so a dense
    # pre-training job's table is as it always was.
    if facts.pipelined or measured.bubble_fraction is not None:
        add(
            "pipeline bubble",
            facts.bubble_fraction,
            measured.bubble_fraction,
            lambda v: text.percent(v, 1),
        )
    if measured.state_mib is not None:
        add("params+grads+optim", facts.state_mib, measured.state_mib, mebibytes)
    return rows


def mebibytes(value: float | None) -> str:
    """``812 MiB`` below a GiB, ``15.25 GiB`` from there."""
    if value is None:
        return text.MISSING
    if value < MIB_PER_GIB:
        return f"{value:.3g} MiB"
    return f"{value / MIB_PER_GIB:.2f} GiB"


def moe_text(progress: ProgressSnapshot) -> str | None:
    """``MoE step 120: load max/mean ×1.18, dropped 312 (0.4%), aux loss 0.0102``; None
    for a dense model (no routing figures)."""
    loads = progress.moe_tokens_per_expert
    if loads is None and progress.moe_aux_loss is None:
        return None
    parts = []
    if progress.moe_load_imbalance is not None:
        parts.append(f"load max/mean ×{progress.moe_load_imbalance:.2f}")
    dropped = progress.moe_dropped_tokens
    if dropped is not None:
        routed = sum(loads) + dropped if loads else 0
        share = f" ({text.percent(dropped / routed, 1)})" if routed else ""
        parts.append(f"dropped {text.number(dropped)}{share}")
    if progress.moe_aux_loss is not None:
        parts.append(f"aux loss {progress.moe_aux_loss:.4g}")
    return f"MoE step {text.number(progress.step)}: " + ", ".join(parts)


def finetune_text(run: FinetuneRun, home: Path | None = None) -> str:
    """``fine-tune lora r16 attn (base nf4): 21.0M of 8.03G params trained`` then, once
    training completed, ``; export → <dir>`` (merged/ and adapter/ in it)."""
    head = f"fine-tune {run.mode}"
    if run.lora_rank is not None:
        head += f" r{run.lora_rank}"
    if run.lora_targets:
        head += f" {run.lora_targets}"
    if run.base_format:
        head += f" (base {run.base_format})"
    if run.trained_params is not None:
        of = f" of {text.si(run.params)}" if run.params is not None else ""
        head += f": {text.si(run.trained_params)}{of} params trained"
    if run.export:
        head += f"; export → {text.short_path(run.export, home)}"
    return head


def _joules(value: float | None) -> str:
    if value is None:
        return text.MISSING
    return text.si(value) + "J"
