"""Planner tab: a form, the ranked layouts, and the breakdown of the selected one."""

from __future__ import annotations

from typing import ClassVar

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Button, Input, Label, Select, Static

from tui import text
from tui.data.compare import layout_text
from tui.data.planning import OBJECTIVES, Candidate, PlanForm, SearchResult
from tui.widgets.table import Column, VirtualTable

BACKENDS = ("local", "slurm", "kubernetes")
FIELDS = (
    ("model", "model preset or config.json", "llama3-8b"),
    ("gpu", "GPU", "H100"),
    ("gpus", "GPUs", "64"),
    ("gpus_per_node", "GPUs per node", "8"),
    ("seq_len", "sequence length", "4096"),
    ("batch", "global batch (sequences)", "512"),
    ("tokens", "training tokens", "1T"),
)
COLUMNS = (
    Column("rank", "#", 3, align="right"),
    Column("layout", "layout", 0, min_width=20),
    Column("step", "step", 8, align="right"),
    Column("rate", "tok/s", 7, align="right"),
    Column("mfu", "MFU", 6, align="right"),
    Column("memory", "GiB/GPU", 7, align="right"),
    Column("days", "exp.days", 8, align="right"),
    Column("cost", "cost", 7, align="right"),
)
BAR = 24


def candidate_cells(candidate: Candidate) -> list[Text | str]:
    estimate = candidate.estimate
    layout = layout_text(candidate.layout.model_dump(mode="json")) or ""
    train = estimate.train
    goodput = train.goodput or 1.0
    return [
        str(candidate.rank),
        layout,
        text.seconds(estimate.step.time_s),
        text.si(estimate.step.tokens_per_s),
        text.percent(estimate.step.mfu, 1),
        f"{estimate.memory_gib.total:.1f}",
        f"{train.days / goodput:.3g}",
        "$" + text.si(train.cost_usd / goodput),
    ]


def _bar(value: float, total: float, width: int = BAR) -> str:
    if total <= 0:
        return ""
    cells = max(0.0, min(1.0, value / total)) * width
    full = int(cells)
    return "█" * full + ("▌" if cells - full >= 0.5 else "")


def breakdown(candidate: Candidate) -> Group:
    """Memory against capacity, step time by cause, and the whole run."""
    estimate = candidate.estimate
    memory = estimate.memory_gib
    mem = Table.grid(padding=(0, 1))
    mem.add_column(style="bold", no_wrap=True)
    mem.add_column(justify="right", no_wrap=True)
    mem.add_column(style="blue", no_wrap=True)
    for name in ("params", "grads", "optimizer", "activations", "other"):
        value = float(getattr(memory, name))
        mem.add_row(name, f"{value:.1f} GiB", _bar(value, memory.capacity))
    mem.add_row("total", f"{memory.total:.1f} GiB", f"of {memory.capacity:.0f} GiB")
    step = Table.grid(padding=(0, 1))
    step.add_column(style="bold", no_wrap=True)
    step.add_column(justify="right", no_wrap=True)
    step.add_column(style="yellow", no_wrap=True)
    total_s = estimate.step.time_s
    for key, value in estimate.step.breakdown.items():
        if value > 0:
            step.add_row(key.removesuffix("_s"), text.seconds(value), _bar(value, total_s))
    step.add_row("step", text.seconds(total_s), f"MFU {text.percent(estimate.step.mfu, 1)}")
    train = estimate.train
    expected_days = train.days / (train.goodput or 1.0)
    run = Text(
        f"run: {train.steps:,} steps, {train.days:.3g} days ({expected_days:.3g} expected with "
        f"failures), {train.gpu_hours:,.0f} GPU-h, {train.energy_mwh:.3g} MWh, "
        f"${train.cost_usd:,.0f}, {train.co2_t:.3g} t CO2",
        style="dim",
    )
    title = Text(f"#{candidate.rank} ", style="bold")
    title.append(layout_text(candidate.layout.model_dump(mode="json")) or "", style="bold")
    if candidate.why_not:
        title.append(f"  vs #1: {candidate.why_not}", style="dim")
    return Group(
        title,
        Text("memory per GPU", style="bold underline"),
        mem,
        Text("step time", style="bold underline"),
        step,
        run,
    )


class SearchRequested(Message):
    def __init__(self, form: PlanForm) -> None:
        super().__init__()
        self.form = form


class LaunchRequested(Message):
    def __init__(self, index: int, backend: str) -> None:
        super().__init__()
        self.index = index
        self.backend = backend


class PlannerPane(Horizontal):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("l", "launch", "launch plan"),
        Binding("ctrl+r", "search", "search"),
        Binding("escape", "leave_form", "leave form"),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.result: SearchResult | None = None

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="plan-form"):
            for key, label, value in FIELDS:
                yield Label(label)
                yield Input(value=value, id=f"plan-{key.replace('_', '-')}", compact=True)
            yield Label("rank by")
            yield Select(
                [(name, name) for name in OBJECTIVES],
                value="time",
                allow_blank=False,
                id="plan-objective",
                compact=True,
            )
            yield Label("launch to backend")
            yield Select(
                [(name, name) for name in BACKENDS],
                value="local",
                allow_blank=False,
                id="plan-backend",
                compact=True,
            )
            yield Button("Search layouts", id="plan-search", variant="primary", compact=True)
        with Vertical(id="plan-results"):
            yield Static(
                "fill in the form, then Enter (or ctrl+r) to rank layouts", id="plan-status"
            )
            yield VirtualTable(
                COLUMNS,
                candidate_cells,
                key_of=lambda c: str(c.rank),
                empty_text="no layouts yet",
                id="plan-table",
            )
            yield Static("", id="plan-breakdown")

    @property
    def table(self) -> VirtualTable:
        return self.query_one("#plan-table", VirtualTable)

    def form(self) -> PlanForm:
        values = {
            key: self.query_one(f"#plan-{key.replace('_', '-')}", Input).value
            for key, _, _ in FIELDS
        }
        objective = self.query_one("#plan-objective", Select).value
        return PlanForm(**values, objective=objective if isinstance(objective, str) else "time")

    @property
    def backend(self) -> str:
        value = self.query_one("#plan-backend", Select).value
        return value if isinstance(value, str) else "local"

    def action_search(self) -> None:
        self.query_one("#plan-status", Static).update(Text("searching…", style="dim"), layout=False)
        self.post_message(SearchRequested(self.form()))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_search()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "plan-search":
            event.stop()
            self.action_search()

    def action_leave_form(self) -> None:
        self.table.focus()

    def action_launch(self) -> None:
        row = self.table.cursor_row
        if self.result is None or row is None:
            self.app.notify("search first, then pick a layout to launch", severity="warning")
            return
        self.post_message(LaunchRequested(row.rank - 1, self.backend))

    def show_error(self, message: str) -> None:
        self.result = None
        self.query_one("#plan-status", Static).update(
            Text(f"⚠ {message}", style="bold red"), layout=False
        )
        self.table.set_rows(())
        self.query_one("#plan-breakdown", Static).update("", layout=False)

    def show_result(self, result: SearchResult) -> None:
        self.result = result
        model = result.model
        status = Text()
        status.append(f"{model.name} ", style="bold")
        status.append(
            f"({text.si(model.num_params)} params) on {result.cluster.num_gpus}× "
            f"{result.cluster.accelerator().name}: "
        )
        found = result.found
        status.append(f"best {len(result.ranked)} by {found.objective}", style="green")
        status.append(
            f" of {found.feasible:,} feasible — {found.evaluated:,} layouts evaluated by "
            f"planner.search, {found.fitting:,} fit in memory  (l: launch the selected one)",
            style="dim",
        )
        self.query_one("#plan-status", Static).update(status, layout=False)
        self.table.set_rows(result.ranked, keep_key="1")
        self._show_breakdown()

    def on_virtual_table_highlighted(self, event: VirtualTable.Highlighted) -> None:
        if event.table.id == "plan-table":
            self._show_breakdown()

    def _show_breakdown(self) -> None:
        row = self.table.cursor_row
        target = self.query_one("#plan-breakdown", Static)
        target.update(breakdown(row) if row is not None else "", layout=False)
