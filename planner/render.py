"""Rich tables for ``scalectl plan`` (terminal output only; no logic)."""

from __future__ import annotations

from rich.console import Console

from planner.error_band import error_band
from planner.estimator import host_memory_gib
from planner.render_table import print_line, print_table
from planner.result import Plan
from planner.specs import AcceleratorSpec, ModelSpec
from planner.table_fit import Cell, Column, count_cell
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


def _window_cell(model: ModelSpec) -> Cell:
    """A preset's sliding window: its width, and which layers attend in full."""
    if model.sliding_window is None:
        return "-"
    every = model.full_attention_every
    if every is None:
        return f"{model.sliding_window} (every layer)", f"{model.sliding_window}"
    return (
        f"{model.sliding_window} (1 layer in {every} full)",
        f"{model.sliding_window} 1/{every} full",
    )


def _ordinal(n: int) -> str:
    """2nd, 3rd, 4th, 11th, 21st."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def window_line(model: ModelSpec, seq_len: int) -> str:
    """The attention pattern of a model with sliding-window layers, in words."""
    every = model.full_attention_every
    full = f", every {_ordinal(every)} full" if every else ""
    wider = "" if model.windows_at(seq_len) else " (no shorter than the sequence: full causal)"
    return (
        f"attention: a {model.sliding_window:,}-token sliding window in "
        f"{model.windowed_layers} of {model.num_layers} layers{full}{wider}"
    )


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
        + (" cp_impl=allgather" if lo.cp > 1 and lo.cp_impl == "allgather" else "")
        + (f" ring={plan.training.ring_attention}" if lo.cp > 1 and lo.cp_impl == "ring" else "")
        + (f" microbatch_group={lo.microbatch_group}" if lo.microbatch_group else "")
    )
    from planner.finetune import describe

    tuned = describe(plan.training, plan.model)
    if tuned:
        console.print(tuned)
    if plan.model.windowed_layers:
        console.print(window_line(plan.model, plan.training.seq_len))
    mem = est.memory_gib
    rows: list[list[Cell]] = []
    for part in ("params", "grads", "optimizer", "activations", "other"):
        value = getattr(mem, part)
        rows.append([part, f"{value:.2f}", _bar(value / mem.capacity)])
    verdict = "fits" if est.fits else "does not fit"
    host_gib, host_capacity_gib = host_memory_gib(plan.model, plan.cluster, plan.training, lo)
    host_full = host_gib > host_capacity_gib
    if host_full and mem.total <= mem.capacity:
        verdict = "does not fit (host memory)"
    rows.append(["total", f"{mem.total:.2f}", f"{_bar(mem.total / mem.capacity)} {verdict}"])
    share = f"share of {mem.capacity:.0f} GiB"
    print_table(
        console,
        [Column("part"), Column("GiB", justify="right"), Column(share, priority=1)],
        rows,
        title="Memory per GPU (GiB, most loaded pipeline stage)",
        styles={"part": _bold_total, share: _verdict_style},
    )
    if host_gib > 0:
        print_line(
            console,
            f"Offloaded activations in host memory: {host_gib:.0f} of "
            f"{host_capacity_gib:.0f} GiB per node" + (" (exceeds it)" if host_full else ""),
            "red" if host_full else "",
        )

    step = est.step
    band = error_band(plan.model, plan.training, lo)
    times: list[list[Cell]] = []
    for key, value in step.breakdown.items():
        if value > 0:
            fraction = value / step.time_s
            times.append([key.removesuffix("_s"), _seconds(value),
                          f"{_bar(fraction)} {fraction:5.1%}"])  # fmt: skip
    print_table(
        console,
        [Column("where the time goes"), Column("per step", justify="right"),
         Column("share", priority=1)],
        times,
        title=f"One step: {_seconds(step.time_s)} ±{band.step_time_rel:.0%}",
    )  # fmt: skip

    train = est.train
    totals = (
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
    print_table(
        console,
        [Column("metric", shrink="end", min_width=30), Column("value", justify="right")],
        [[name, value] for name, value in totals],
        title="Throughput and the whole run",
        show_header=False,
    )
    print_line(
        console,
        f"expected error ({band.regime}): step time and throughput ±{band.step_time_rel:.0%} "
        f"(rms over {band.step_time_runs} published runs, group '{band.basis}'), memory "
        f"±{band.memory_rel:.0%} ({band.memory_runs} figures); MFU counts causal attention "
        "as half the s x s matrix",
    )
    for note in defaults:
        print_line(console, f"default: {note}", "dim")


def _bold_total(text: str) -> str:
    return "bold" if text == "total" else ""


def _verdict_style(text: str) -> str:
    return "red" if "does not fit" in text else ("green" if text.endswith("fits") else "")


def render_gpus(specs: list[AcceleratorSpec], console: Console | None = None) -> None:
    """The accelerator catalog."""
    console = console or Console()
    columns = [
        Column("name", shrink="middle", min_width=16),
        Column("BF16", justify="right"),
        Column("FP8", justify="right", priority=3),
        Column("GiB", justify="right"),
        Column("TB/s", justify="right", priority=2),
        Column("intra", justify="right", priority=2),
        Column("inter", justify="right", priority=2),
        Column("TDP W", justify="right", priority=3),
        Column("$/h", justify="right", priority=1),
    ]
    rows: list[list[Cell]] = [
        [
            s.name,
            f"{s.bf16_dense_tflops:g}",
            f"{s.fp8_dense_tflops:g}" if s.fp8_dense_tflops else "-",
            f"{s.hbm_gib:g}",
            f"{s.hbm_tb_s:g}",
            f"{s.intra_node_gb_s:g}",
            f"{s.inter_node_gb_s_per_gpu:g}",
            f"{s.tdp_w:g}",
            f"{s.price_usd_per_gpu_hour:.2f}",
        ]
        for s in specs
    ]
    title = "Accelerators (planner/data/gpus.yaml); TFLOP/s dense, GB/s per direction"
    print_table(console, columns, rows, title=title)


def render_models(specs: list[ModelSpec], console: Console | None = None) -> None:
    """The model presets."""
    console = console or Console()
    columns = [
        Column("name", shrink="middle", min_width=16),
        Column("params", justify="right"),
        Column("active", justify="right", priority=2),
        Column("layers", justify="right"),
        Column("hidden", justify="right"),
        Column("heads", justify="right", priority=1),
        Column("kv", justify="right", priority=1),
        Column("ffn", justify="right", priority=2),
        Column("act", priority=3),
        Column("vocab", justify="right", priority=3),
        Column("experts", priority=1),
        Column("window", priority=2),
    ]
    rows: list[list[Cell]] = [
        [
            m.name,
            format_count(m.num_params),
            format_count(m.num_active_params),
            count_cell(m.num_layers),
            count_cell(m.hidden_size),
            count_cell(m.num_attention_heads),
            count_cell(m.num_kv_heads),
            count_cell(m.ffn_hidden_size),
            m.activation,
            count_cell(m.vocab_size),
            (f"{m.num_experts} (top {m.top_k})", f"{m.num_experts}/top{m.top_k}")
            if m.is_moe
            else "-",
            _window_cell(m),
        ]
        for m in specs
    ]
    print_table(console, columns, rows, title="Model presets (planner/data/models.yaml)")
