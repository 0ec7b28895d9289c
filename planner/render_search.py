"""Rich tables for ``scalectl plan search`` and ``scalectl plan capacity`` (terminal only)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from planner.error_band import error_band
from planner.layout_search import SearchResult, describe_layout
from planner.result import Estimate
from planner.units import format_count


def money(value: float) -> str:
    """``1234567`` -> ``$1.23M``."""
    for suffix, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"${value / scale:.3g}{suffix}"
    return f"${value:,.0f}"


def _expected_days(est: Estimate) -> float:
    return est.train.days / est.train.goodput


def _expected_cost(est: Estimate) -> float:
    return est.train.cost_usd / est.train.goodput


def short_layout(est: Estimate) -> str:
    """The estimate's layout in a few words."""
    return describe_layout(est.layout)


def render_search(
    result: SearchResult,
    defaults: list[str],
    console: Console | None = None,
    front: bool = True,
) -> None:
    """The top layouts (why each loses to the first), the Pareto front, and the counts."""
    console = console or Console()
    acc = result.cluster.accelerator()
    counts = (
        f"GPU counts up to {result.constraints.max_gpus}"
        if result.constraints.max_gpus
        else f"{result.cluster.num_gpus} GPUs"
    )
    console.print(
        f"[bold]{result.model.name}[/] ({format_count(result.model.num_params)} params) on "
        f"{acc.name}, {counts}: {result.evaluated:,} layouts assessed in "
        f"{result.seconds * 1e3:.0f} ms; {result.fitting:,} fit in memory, "
        f"{result.feasible:,} meet the constraints; objective: {result.objective}"
    )
    many = bool(result.constraints.max_gpus)
    if result.ranked:
        table = Table(title=f"Top {len(result.ranked)} layouts (days and cost: expected, with "
                      "failures)")  # fmt: skip
        table.add_column("#", justify="right")
        if many:
            table.add_column("GPUs", justify="right")
        table.add_column("layout")
        for column in ("GiB", "step s", "±", "MFU", "days", "cost"):
            table.add_column(column, justify="right")
        table.add_column("why it loses to #1", overflow="fold")
        for i, (est, why) in enumerate(zip(result.ranked, result.why_not, strict=True)):
            table.add_row(
                str(i + 1),
                *([str(est.layout.num_gpus)] if many else []),
                short_layout(est),
                f"{est.memory_gib.total:.1f}",
                f"{est.step.time_s:.3g}",
                f"{error_band(result.model, result.training, est.layout).step_time_rel:.0%}",
                f"{est.step.mfu:.1%}",
                f"{_expected_days(est):,.1f}",
                money(_expected_cost(est)),
                why or "[green]best[/]",
            )
        console.print(table)
        band = error_band(result.model, result.training, result.ranked[0].layout)
        console.print(
            f"[dim]±: expected step-time error in the layout's regime (rms against published "
            f"runs, planner/data/error_bands.yaml); memory ±{band.memory_rel:.0%}[/]"
        )
        render_totals(result.ranked[0], console, title="The best layout: the whole run")
    if result.pareto and front:
        table = Table(title="Pareto front: expected wall time against cost")
        table.add_column("GPUs", justify="right")
        table.add_column("layout")
        for column in ("days", "cost", "MFU"):
            table.add_column(column, justify="right")
        for est in result.pareto:
            table.add_row(str(est.layout.num_gpus), short_layout(est),
                          f"{_expected_days(est):,.1f}", money(_expected_cost(est)),
                          f"{est.step.mfu:.1%}")  # fmt: skip
        console.print(table)
        if len(result.pareto) == 1 and not many:
            console.print(
                "[dim]On a fixed GPU count cost is proportional to time, so the front is one "
                "point; --max-gpus N trades time against cost across cluster sizes.[/]"
            )
    if result.nearest is not None:
        est = result.nearest
        nearest = Table(title="Nearest answer")
        nearest.add_column("GPUs", justify="right")
        nearest.add_column("layout")
        for column in ("GiB", "capacity", "days", "cost"):
            nearest.add_column(column, justify="right")
        nearest.add_row(str(est.layout.num_gpus), short_layout(est),
                        f"{est.memory_gib.total:.1f}", f"{est.memory_gib.capacity:.0f}",
                        f"{_expected_days(est):,.1f}", money(_expected_cost(est)))  # fmt: skip
        console.print(nearest)
    for note in defaults:
        console.print(f"[dim]default: {note}[/]")


def render_totals(est: Estimate, console: Console, title: str) -> None:
    """The run totals with and without failures."""
    train = est.train
    table = Table(title=title, show_header=True)
    table.add_column("")
    table.add_column("without failures", justify="right")
    table.add_column("with failures", justify="right")
    g = train.goodput
    rows: list[tuple[str, Any, Any]] = [
        ("wall-clock days", f"{train.days:,.1f}", f"{train.days / g:,.1f}"),
        ("GPU-hours", f"{train.gpu_hours:,.0f}", f"{train.gpu_hours / g:,.0f}"),
        ("cost", money(train.cost_usd), money(train.cost_usd / g)),
        ("energy (facility, MWh)", f"{train.energy_mwh:,.1f}", f"{train.energy_mwh / g:,.1f}"),
        ("goodput", "100%", f"{g:.1%}"),
        ("expected interruptions", "0", f"{train.expected_interruptions:,.0f}"),
        ("checkpoint every", "-", f"{train.checkpoint_interval_min:,.1f} min"),
    ]
    for name, a, b in rows:
        table.add_row(name, a, b)
    console.print(table)
    console.print(f"[dim]layout: {short_layout(est)}[/]")


def render_capacity(answer: Any, facts: Any, defaults: list[str], console: Console | None = None
                    ) -> None:  # fmt: skip
    """The smallest cluster, the sizes probed, its top layouts and the run with failures."""
    console = console or Console()
    result = answer.result
    acc = result.cluster.accelerator()
    tokens = format_count(result.training.total_tokens)
    if answer.gpus is not None:
        console.print(
            f"[bold]{result.model.name}[/] on {tokens} tokens in {answer.deadline_days:g} days "
            f"(expected, failures included): [bold green]{answer.gpus:,} x {acc.name}[/] "
            f"({answer.nodes:,} nodes of {result.cluster.gpus_per_node})"
        )
    probes = Table(title=f"Cluster sizes searched ({answer.seconds:.1f} s; FLOPs alone rule out "
                   f"fewer than {answer.lower_bound_gpus:,} GPUs)")  # fmt: skip
    probes.add_column("GPUs", justify="right")
    probes.add_column("fastest layout: days", justify="right")
    probes.add_column("meets the deadline")
    for gpus, days in sorted(answer.probes):
        meets = days is not None and days <= answer.deadline_days
        probes.add_row(f"{gpus:,}", "does not fit" if days is None else f"{days:,.1f}",
                       "[green]yes[/]" if meets else "no")  # fmt: skip
    console.print(probes)
    render_search(result, [], console, front=False)
    if facts is not None:
        console.print(
            f"reliability: job MTBF {facts.job_mtbf_h:.2f} h (per-GPU MTBF / GPUs); checkpoint "
            f"{facts.checkpoint_gb:,.0f} GB saved in {facts.checkpoint_save_s:.1f} s; restart "
            f"{facts.restart_s / 60:.1f} min with the reload (Young 1974 interval, Daly 2006 "
            "wall time)"
        )
    for note in defaults:
        console.print(f"[dim]default: {note}[/]")


def render_sizing(rows: list[Any], flops: float, budget: float | None, mfu: float | None,
                  presets: list[tuple[str, float]], console: Console | None = None
                  ) -> None:  # fmt: skip
    """Compute-optimal model size and tokens under each scaling law."""
    console = console or Console()
    spend = f" (${budget:,.0f} at {mfu:.0%} MFU)" if budget is not None and mfu else ""
    table = Table(title=f"Compute-optimal sizing for {flops:.3g} FLOPs{spend}")
    table.add_column("law")
    for column in ("parameters", "tokens", "tokens/param", "predicted loss",
                   "Chinchilla loss"):  # fmt: skip
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(row.law, format_count(row.params), format_count(row.tokens),
                      f"{row.tokens / row.params:.1f}", f"{row.loss:.3f}",
                      f"{row.chinchilla_loss:.3f}")  # fmt: skip
    console.print(table)
    console.print(
        "[dim]Losses are nats/token on each paper's data (Chinchilla: MassiveText; Kaplan: "
        "WebText2, non-embedding N): compare within a law. Chinchilla loss puts every row on "
        "one yardstick.[/]"
    )
    if presets:
        console.print(
            "closest presets to the Chinchilla optimum: "
            + ", ".join(f"{name} ({format_count(n)})" for name, n in presets)
        )
