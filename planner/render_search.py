"""Rich tables for ``scalectl plan search`` and ``scalectl plan capacity`` (terminal only)."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from planner.error_band import error_band
from planner.layout_search import SearchResult, describe_layout
from planner.render import window_line
from planner.render_table import print_dropped, print_line, print_table
from planner.result import Estimate
from planner.search_legend import Row, collapse, legend
from planner.table_fit import Cell, Column, Fitted
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


RING_PRICED = {
    "torch": "cp rings priced as torch's context_parallel (scalectl run, torchtitan); "
    "--ring-attention te for Megatron-LM and NeMo",
    "te": "cp rings priced as Transformer Engine's (Megatron-LM, NeMo); --ring-attention "
    "torch for scalectl run and torchtitan",
}
"""What a search with ring layouts says about whose ring it priced."""


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
    if result.model.windowed_layers:
        console.print(window_line(result.model, result.training.seq_len))
    if any(e.layout.cp > 1 and e.layout.cp_impl == "ring" for e in result.ranked):
        console.print(f"[dim]{RING_PRICED[result.training.ring_attention]}[/]")
    many = bool(result.constraints.max_gpus)
    shown = [short_layout(e) for e in [*result.ranked, *result.pareto]]
    if result.nearest is not None:
        shown.append(short_layout(result.nearest))
    if result.ranked:
        rows = collapse(result.ranked, result.why_not)
        codes = legend(shown, any(r.count > 1 for r in rows))
        if "±" not in _print_ranked(result, rows, many, codes, console).dropped:
            band = error_band(result.model, result.training, result.ranked[0].layout)
            print_line(
                console,
                "±: expected step-time error in the layout's regime (rms against published "
                f"runs, planner/data/error_bands.yaml); memory ±{band.memory_rel:.0%}",
                "dim",
            )
        render_totals(result.ranked[0], console, title="The best layout: the whole run")
    if result.pareto and front:
        columns = [Column("GPUs", justify="right"), Column("layout", shrink="wrap", min_width=24),
                   Column("days", justify="right"), Column("cost", justify="right"),
                   Column("MFU", justify="right", priority=1)]  # fmt: skip
        print_table(
            console,
            columns,
            [[str(e.layout.num_gpus), short_layout(e), f"{_expected_days(e):,.1f}",
              money(_expected_cost(e)), f"{e.step.mfu:.1%}"] for e in result.pareto],
            title="Pareto front: expected wall time against cost",
        )  # fmt: skip
        if len(result.pareto) == 1 and not many:
            print_line(
                console,
                "On a fixed GPU count cost is proportional to time, so the front is one "
                "point; --max-gpus N trades time against cost across cluster sizes.",
                "dim",
            )
    if result.nearest is not None:
        est = result.nearest
        columns = [Column("GPUs", justify="right"), Column("layout", shrink="wrap", min_width=24),
                   Column("GiB", justify="right"), Column("capacity", justify="right"),
                   Column("days", justify="right", priority=1),
                   Column("cost", justify="right", priority=1)]  # fmt: skip
        print_table(
            console,
            columns,
            [[str(est.layout.num_gpus), short_layout(est), f"{est.memory_gib.total:.1f}",
              f"{est.memory_gib.capacity:.0f}", f"{_expected_days(est):,.1f}",
              money(_expected_cost(est))]],
            title="Nearest answer",
        )  # fmt: skip
        if not result.ranked:
            print_line(console, legend(shown), "dim")
    for note in defaults:
        console.print(f"[dim]default: {note}[/]")


def _print_ranked(
    result: SearchResult, rows: list[Row], many: bool, codes: str, console: Console
) -> Fitted:
    """The top layouts and the legend of their ``codes``; on a narrow terminal 'why it
    loses' goes under them."""
    why_header = "why it loses to #1"
    columns = [
        Column("#", justify="right"),
        *([Column("GPUs", justify="right")] if many else []),
        Column("layout", shrink="wrap", min_width=60),  # one line while columns can drop
        Column("GiB", justify="right"),
        Column("step s", justify="right"),
        Column("±", justify="right", priority=3),
        Column("MFU", justify="right", priority=2),
        Column("days", justify="right"),
        Column("cost", justify="right", priority=1),
        Column(why_header, shrink="wrap", min_width=24, priority=4),
    ]
    cells: list[list[Cell]] = []
    for row in rows:
        est = row.estimate
        band = error_band(result.model, result.training, est.layout)
        cells.append([
            str(row.rank),
            *([str(est.layout.num_gpus)] if many else []),
            short_layout(est) + (f" ×{row.count}" if row.count > 1 else ""),
            f"{est.memory_gib.total:.1f}",
            f"{est.step.time_s:.3g}",
            f"{band.step_time_rel:.0%}",
            f"{est.step.mfu:.1%}",
            f"{_expected_days(est):,.1f}",
            money(_expected_cost(est)),
            row.why or "best",
        ])  # fmt: skip
    title = f"Top {len(result.ranked)} layouts (days and cost: expected, with failures)"
    fitted = print_table(console, columns, cells, title=title, styles={why_header: _best},
                         say_dropped=False)  # fmt: skip
    dropped = [h for h in fitted.dropped if h != why_header]
    if dropped:
        print_dropped(console, dropped)
    print_line(console, codes, "dim")
    if why_header in fitted.dropped:
        for row in rows[1:]:
            print_line(console, f"#{row.rank} loses to #1: {row.why}")
    return fitted


def _best(text: str) -> str:
    return "green" if text == "best" else ""


def render_totals(est: Estimate, console: Console, title: str) -> None:
    """The run totals with and without failures."""
    train = est.train
    g = train.goodput
    rows: list[list[Cell]] = [
        ["wall-clock days", f"{train.days:,.1f}", f"{train.days / g:,.1f}"],
        ["GPU-hours", f"{train.gpu_hours:,.0f}", f"{train.gpu_hours / g:,.0f}"],
        ["cost", money(train.cost_usd), money(train.cost_usd / g)],
        ["energy (facility, MWh)", f"{train.energy_mwh:,.1f}", f"{train.energy_mwh / g:,.1f}"],
        ["goodput", "100%", f"{g:.1%}"],
        ["expected interruptions", "0", f"{train.expected_interruptions:,.0f}"],
        ["checkpoint every", "-", f"{train.checkpoint_interval_min:,.1f} min"],
    ]
    columns = [Column(""), Column("without failures", justify="right"),
               Column("with failures", justify="right")]  # fmt: skip
    print_table(console, columns, rows, title=title)
    print_line(console, f"layout: {short_layout(est)}", "dim")


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
    title = (f"Cluster sizes searched ({answer.seconds:.1f} s; FLOPs alone rule out fewer "
             f"than {answer.lower_bound_gpus:,} GPUs)")  # fmt: skip
    columns = [Column("GPUs", justify="right"), Column("fastest layout: days", justify="right"),
               Column("meets the deadline")]  # fmt: skip
    rows: list[list[Cell]] = []
    for gpus, days in sorted(answer.probes):
        meets = days is not None and days <= answer.deadline_days
        rows.append([f"{gpus:,}", "does not fit" if days is None else f"{days:,.1f}",
                     "yes" if meets else "no"])  # fmt: skip
    print_table(console, columns, rows, title=title,
                styles={"meets the deadline": lambda t: "green" if t == "yes" else ""})  # fmt: skip
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
    columns = [Column("law", shrink="end", min_width=16)] + [
        Column(h, justify="right", priority=1 if h == "Chinchilla loss" else 0)
        for h in ("parameters", "tokens", "tokens/param", "predicted loss", "Chinchilla loss")
    ]
    cells: list[list[Cell]] = [
        [row.law, format_count(row.params), format_count(row.tokens),
         f"{row.tokens / row.params:.1f}", f"{row.loss:.3f}", f"{row.chinchilla_loss:.3f}"]
        for row in rows
    ]  # fmt: skip
    title = f"Compute-optimal sizing for {flops:.3g} FLOPs{spend}"
    print_table(console, columns, cells, title=title)
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
