"""Rich tables for ``scalectl plan search`` and ``scalectl plan capacity`` (terminal only)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

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
    result: SearchResult, defaults: list[str], console: Console | None = None
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
        for column in ("GiB", "step s", "MFU", "days", "cost"):
            table.add_column(column, justify="right")
        table.add_column("why it loses to #1", overflow="fold")
        for i, (est, why) in enumerate(zip(result.ranked, result.why_not, strict=True)):
            table.add_row(
                str(i + 1),
                *([str(est.layout.num_gpus)] if many else []),
                short_layout(est),
                f"{est.memory_gib.total:.1f}",
                f"{est.step.time_s:.3g}",
                f"{est.step.mfu:.1%}",
                f"{_expected_days(est):,.1f}",
                money(_expected_cost(est)),
                why or "[green]best[/]",
            )
        console.print(table)
        render_totals(result.ranked[0], console, title="The best layout: the whole run")
    if result.pareto:
        front = Table(title="Pareto front: expected wall time against cost")
        front.add_column("GPUs", justify="right")
        front.add_column("layout")
        for column in ("days", "cost", "MFU"):
            front.add_column(column, justify="right")
        for est in result.pareto:
            front.add_row(str(est.layout.num_gpus), short_layout(est),
                          f"{_expected_days(est):,.1f}", money(_expected_cost(est)),
                          f"{est.step.mfu:.1%}")  # fmt: skip
        console.print(front)
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
