"""Rich tables for ``scalectl plan`` (terminal output only; no logic)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from planner.error_band import error_band
from planner.estimator import host_memory_gib
from planner.result import Plan
from planner.specs import AcceleratorSpec, ModelSpec
from planner.units import format_count

_BAR_WIDTH = 24


def _bar(fraction: float) -> str:
    filled = max(0, min(_BAR_WIDTH, round(fraction * _BAR_WIDTH)))
    return "█" * filled + "·" * (_BAR_WIDTH - filled)


def _seconds(value: float) -> str:
    if value >= 1:
        return f"{value:.2f} s"
    if value >= 1e-3:
        return f"{value * 1e3:.1f} ms"
    return f"{value * 1e6:.0f} µs"


def render_plan(plan: Plan, defaults: list[str], console: Console | None = None) -> None:
    """Memory against capacity, the step-time breakdown, and the run totals."""
    console = console or Console()
    est, lo = plan.estimate, plan.layout
    gpu = plan.cluster.gpu if isinstance(plan.cluster.gpu, str) else plan.cluster.gpu.name
    console.print(
        f"[bold]{plan.model.name}[/] ({format_count(plan.model.num_params)} params) on "
        f"{plan.cluster.num_gpus} x {gpu}: dp={lo.dp} tp={lo.tp} pp={lo.pp} cp={lo.cp} "
        f"ep={lo.ep} sharding={lo.sharding} micro_batch={lo.micro_batch} "
        f"recompute={lo.recompute} interleave={lo.interleave} "
        f"sp={'on' if lo.sequence_parallel else 'off'}"
        + (" uneven_stages=on" if lo.uneven_stages else "")
        + (f" offload={lo.activation_offload:g}" if lo.activation_offload else "")
        + (" schedule=gpipe" if lo.schedule == "gpipe" else "")
        + (f" microbatch_group={lo.microbatch_group}" if lo.microbatch_group else "")
    )
    mem = est.memory_gib
    table = Table(title="Memory per GPU (GiB, most loaded pipeline stage)")
    table.add_column("part")
    table.add_column("GiB", justify="right")
    table.add_column(f"share of {mem.capacity:.0f} GiB")
    for part in ("params", "grads", "optimizer", "activations", "other"):
        value = getattr(mem, part)
        table.add_row(part, f"{value:.2f}", _bar(value / mem.capacity))
    verdict = "[green]fits[/]" if est.fits else "[red]does not fit[/]"
    host_gib, host_capacity_gib = host_memory_gib(plan.model, plan.cluster, plan.training, lo)
    host_full = host_gib > host_capacity_gib
    if host_full and mem.total <= mem.capacity:
        verdict = "[red]does not fit (host memory)[/]"
    table.add_row(
        "[bold]total[/]", f"[bold]{mem.total:.2f}[/]", f"{_bar(mem.total / mem.capacity)} {verdict}"
    )
    console.print(table)
    if host_gib > 0:
        console.print(
            f"Offloaded activations in host memory: {host_gib:.0f} of "
            f"{host_capacity_gib:.0f} GiB per node" + (" [red](exceeds it)[/]" if host_full else "")
        )

    step = est.step
    band = error_band(plan.model, plan.training, lo)
    times = Table(title=f"One step: {_seconds(step.time_s)} ±{band.step_time_rel:.0%}")
    times.add_column("where the time goes")
    times.add_column("per step", justify="right")
    times.add_column("share")
    for key, value in step.breakdown.items():
        if value > 0:
            share = value / step.time_s
            times.add_row(key.removesuffix("_s"), _seconds(value), f"{_bar(share)} {share:5.1%}")
    console.print(times)

    totals = Table(title="Throughput and the whole run", show_header=False)
    totals.add_column("metric")
    totals.add_column("value", justify="right")
    train = est.train
    rows = (
        ("tokens/s (job)", f"{step.tokens_per_s:,.0f}"),
        ("MFU / HFU", f"{step.mfu:.1%} / {step.hfu:.1%}"),
        ("model / hardware TFLOP/s per GPU",
         f"{step.model_tflops_per_gpu:.0f} / {step.hardware_tflops_per_gpu:.0f}"),
        ("pipeline bubble", f"{step.bubble_fraction:.1%}"),
        ("exposed communication", _seconds(step.exposed_comm_s)),
        ("tokens", format_count(train.tokens)),
        ("steps", f"{train.steps:,}"),
        ("days", f"{train.days:,.1f}"),
        ("GPU-hours", f"{train.gpu_hours:,.0f}"),
        ("energy (facility, MWh)", f"{train.energy_mwh:,.1f}"),
        ("energy (GPU-hours x TDP, MWh)", f"{train.energy_mwh_tdp:,.1f}"),
        ("cost (USD)", f"{train.cost_usd:,.0f}"),
        ("CO2 (t)", f"{train.co2_t:,.1f}"),
        ("goodput (failures, checkpoints, restarts)", f"{train.goodput:.1%}"),
        ("days with failures", f"{train.days / train.goodput:,.1f}"),
        ("expected interruptions", f"{train.expected_interruptions:,.0f}"),
        ("checkpoint every (Young 1974)", f"{train.checkpoint_interval_min:,.1f} min"),
    )  # fmt: skip
    for name, value in rows:
        totals.add_row(name, value)
    console.print(totals)
    console.print(
        f"expected error ({band.regime}): step time and throughput ±{band.step_time_rel:.0%} "
        f"(rms over {band.step_time_runs} published runs, group '{band.basis}'), memory "
        f"±{band.memory_rel:.0%} ({band.memory_runs} figures); MFU counts causal attention "
        "as half the s x s matrix"
    )
    for note in defaults:
        console.print(f"[dim]default: {note}[/]")


def render_gpus(specs: list[AcceleratorSpec], console: Console | None = None) -> None:
    """The accelerator catalog."""
    console = console or Console()
    table = Table(title="Accelerators (planner/data/gpus.yaml); TFLOP/s dense, GB/s per direction")
    table.add_column("name", no_wrap=True)
    for column in ("BF16", "FP8", "GiB", "TB/s", "intra", "inter", "TDP W", "$/h"):
        table.add_column(column, justify="right")
    for s in specs:
        table.add_row(
            s.name,
            f"{s.bf16_dense_tflops:g}",
            f"{s.fp8_dense_tflops:g}" if s.fp8_dense_tflops else "-",
            f"{s.hbm_gib:g}",
            f"{s.hbm_tb_s:g}",
            f"{s.intra_node_gb_s:g}",
            f"{s.inter_node_gb_s_per_gpu:g}",
            f"{s.tdp_w:g}",
            f"{s.price_usd_per_gpu_hour:.2f}",
        )
    console.print(table)


def render_models(specs: list[ModelSpec], console: Console | None = None) -> None:
    """The model presets."""
    console = console or Console()
    table = Table(title="Model presets (planner/data/models.yaml)")
    table.add_column("name", no_wrap=True)
    for column in ("params", "active", "layers", "hidden", "heads", "kv", "ffn", "act",
                   "vocab", "experts"):  # fmt: skip
        table.add_column(column)
    for m in specs:
        table.add_row(
            m.name,
            format_count(m.num_params),
            format_count(m.num_active_params),
            str(m.num_layers),
            str(m.hidden_size),
            str(m.num_attention_heads),
            str(m.num_kv_heads),
            str(m.ffn_hidden_size),
            m.activation,
            str(m.vocab_size),
            f"{m.num_experts} (top {m.top_k})" if m.is_moe else "-",
        )
    console.print(table)
