"""Jobs tab: master (every job of every backend) and detail (the selected one)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Input, Static

from contract.plan_layout import LayoutCheck
from tui import text
from tui.data.compare import moe_text
from tui.data.jobs import SORT_KEYS, JobRow, filter_rows, sort_rows
from tui.data.jobview import JobSnapshot
from tui.widgets.table import Column, VirtualTable

COLUMNS = (
    Column("name", "name", 0, min_width=16),
    Column("backend", "backend", 10),
    Column("state", "state (reason)", 30),
    Column("nodes", "nodes", 5, align="right"),
    Column("nodes", "GPUs", 5, align="right"),
    Column("step", "step", 8, align="right"),
    Column("tokens/s", "tok/s", 7, align="right"),
    Column("mfu", "MFU", 6, align="right"),
    Column("age", "age", 5, align="right"),
)
SORT_ORDER = list(SORT_KEYS)
TIMELINE_LINES = 8
"""Newest timeline events shown under the spec (the detail pane is 20 lines)."""


def row_cells(now: Callable[[], float]) -> Callable[[JobRow], list[Text | str]]:
    """The cell renderer of the jobs table (age against ``now``)."""

    def cells(row: JobRow) -> list[Text | str]:
        state = Text(row.state, style=text.state_style(row.state))
        reason = "job dir gone" if row.dir_missing else row.reason
        if reason:
            state.append(" " + reason, style="red" if row.dir_missing else "dim")
        return [
            row.name,
            row.backend,
            state,
            row.nodes,
            str(row.gpus) if row.gpus else f"{row.ranks}c",
            text.number(row.step),
            text.si(row.tokens_per_s),
            text.percent(row.mfu, 1) if row.mfu is not None else text.MISSING,
            text.age(now() - row.created_ts),
        ]

    return cells


def spec_table(lines: Sequence[tuple[str, str]]) -> Table:
    table = Table.grid(padding=(0, 1))
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for label, value in lines:
        table.add_row(label, value)
    return table


def render_timeline(snapshot: JobSnapshot, lines: int) -> Text:
    out = Text(no_wrap=True, overflow="ellipsis")
    out.append("timeline\n", style="bold underline")
    items = snapshot.timeline[-lines:] if lines > 0 else ()
    if not items:
        out.append("no events yet (events.jsonl)", style="dim")
    for item in items:
        out.append(f"{text.clock(item.ts)} ", style="dim")
        out.append(f"{item.event:<16}", style=item.style)
        out.append(f" {item.detail}\n" if item.detail else "\n")
    return out


def render_layout_check(check: LayoutCheck) -> Text:
    """The trainer's ``layout_applied`` against the plan: each differing field in red; a
    dp resize the job's node range allowed (tp and tokens per step kept) in yellow."""
    if not check.differs:
        out = Text("layout ran: as planned (layout_applied)", style="green")
    else:
        out = Text("layout ran differs from the plan:", style="bold red")
        for name in check.differs:
            out.append(f"\n  {check.difference_text(name)}", style="red")
    if check.resized:
        out.append("\ndp resized as the node range allows (tp and tokens per step kept):")
        for name in check.resized:
            out.append(f"\n  {check.difference_text(name)}", style="yellow")
    return out


def render_measures(snapshot: JobSnapshot) -> Group:
    parts: list[Table | Text] = []
    now = snapshot.progress
    if snapshot.compare:
        table = Table(
            title="plan against reality",
            title_justify="left",
            title_style="bold underline",
            box=None,
            padding=(0, 1),
            show_edge=False,
        )
        table.add_column("", style="bold", no_wrap=True)
        table.add_column("plan", justify="right", no_wrap=True)
        table.add_column("measured", justify="right", no_wrap=True)
        table.add_column("", justify="right", no_wrap=True)
        for row in snapshot.compare:
            table.add_row(row.metric, row.predicted, row.measured, Text(row.ratio, row.style))
        parts.append(table)
        plan = snapshot.plan
        parts.append(
            Text(
                f"plan: {plan.model or '?'} on {plan.num_gpus or '?'}× {plan.gpu or '?'}, "
                f"{plan.layout or '?'}\nenergy: plan = facility (GPUs + hosts) × PUE; "
                "measured = GPU boards (NVML)",
                style="dim",
            )
        )
    else:
        parts.append(Text("no plan.json: nothing predicted to compare with", style="dim"))
    routing = moe_text(now)
    if routing is not None:
        parts.append(Text(routing, style="cyan"))
    if snapshot.finetune_line is not None:
        parts.append(Text(snapshot.finetune_line, style="cyan"))
    check = snapshot.layout_check
    if check is not None and check.applied is not None:
        parts.append(render_layout_check(check))
    progress = Text()
    progress.append("\nprogress ", style="bold underline")
    loss = f"{now.loss:.4f}" if now.loss is not None else text.MISSING
    progress.append(f"\nstep {text.number(now.step)}  loss {loss}")
    progress.append(
        f"  tokens {text.si(now.tokens)}  {text.si(now.tokens_per_s)} tok/s  "
        f"step {text.seconds(now.step_time_s)}  ranks reporting {now.ranks_reporting}"
    )
    parts.append(progress)
    if snapshot.summary:
        summary = Text("\nsummary.json\n", style="bold underline")
        summary.append("  ".join(f"{k}={v}" for k, v in snapshot.summary))
        parts.append(summary)
    for warning in snapshot.warnings:
        parts.append(Text(f"⚠ {warning}", style="bold yellow"))
    return Group(*parts)


class JobsPane(Vertical):
    """The table, its filter and the detail pane of the highlighted job."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "filter", "filter"),
        Binding("s", "sort_next", "sort"),
        Binding("S", "sort_reverse", "reverse"),
        Binding("escape", "clear_filter", "clear filter", show=False),
    ]

    class RowsShown(Message):
        """The shown rows changed (filter, sort or new data): the status line follows."""

    def __init__(self, *, now: Callable[[], float] = time.time, id: str | None = None) -> None:
        super().__init__(id=id)
        self.now = now
        self.all_rows: Sequence[JobRow] = ()
        self.filter_text = ""
        self.sort_column = "age"
        self.sort_descending = False
        self.shown: list[JobRow] = []
        self._shown: tuple[Any, Any, Any] = (None, None, None)
        self.on_screen = True
        """Whether the Jobs tab is shown. While it is not, new rows and snapshots are kept
        and drawn when it is again: refreshing a hidden widget makes Textual rebuild its
        map of every widget on the next frame (a millisecond at each refresh tick)."""
        self._stale = False
        self._pending_snapshot: tuple[JobSnapshot | None, str | None] | None = None

    def compose(self) -> ComposeResult:
        yield Input(
            placeholder="filter: words of name, id, backend, state or reason (Esc clears)",
            id="filter",
            compact=True,
        )
        yield VirtualTable(
            COLUMNS,
            row_cells(self.now),
            key_of=lambda row: row.id,
            empty_text="no jobs",
            id="jobs-table",
        )
        with Horizontal(id="detail"):
            with Vertical(id="detail-left"):
                yield Static("", id="detail-spec")
                yield Static("", id="detail-timeline")
            with Vertical(id="detail-right"):
                yield Static("select a job", id="detail-measures")

    @property
    def table(self) -> VirtualTable:
        return self.query_one("#jobs-table", VirtualTable)

    def on_mount(self) -> None:
        self.query_one("#filter", Input).display = False
        self.table.set_sort(self.sort_column, self.sort_descending)

    # -- rows -------------------------------------------------------------------------

    def set_rows(self, rows: Sequence[JobRow], keep_key: str | None = None) -> None:
        self.all_rows = rows
        if not self.on_screen:
            self._stale = True
            return
        self.refilter(keep_key)

    def set_on_screen(self, on_screen: bool, keep_key: str | None = None) -> None:
        """The Jobs tab was shown or hidden; shown, it catches up with what it was given."""
        self.on_screen = on_screen
        if not on_screen:
            return
        self.catch_up(keep_key)
        if self._pending_snapshot is not None:
            self.show_snapshot(*self._pending_snapshot)

    def catch_up(self, keep_key: str | None = None) -> None:
        """Filter and sort rows that arrived while the tab was hidden."""
        if self._stale:
            self.refilter(keep_key)

    def match_count(self) -> int:
        """Jobs the filter matches (up to date even while the tab is hidden)."""
        if not self.filter_text:
            return len(self.all_rows)
        if self._stale:
            return len(filter_rows(self.all_rows, self.filter_text))
        return len(self.shown)

    def refilter(self, keep_key: str | None = None) -> None:
        """Filter and sort on the UI thread (pure, in memory) and show the result."""
        self._stale = False
        shown = filter_rows(self.all_rows, self.filter_text)
        self.shown = sort_rows(shown, self.sort_column, self.sort_descending)
        self.table.set_rows(self.shown, keep_key=keep_key)
        self.post_message(self.RowsShown())

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "filter":
            self.filter_text = event.value
            self.refilter()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter":
            if not event.value:
                event.input.display = False
            self.table.focus()

    def action_filter(self) -> None:
        field = self.query_one("#filter", Input)
        field.display = True
        field.focus()

    def action_clear_filter(self) -> None:
        field = self.query_one("#filter", Input)
        field.value = ""
        self.filter_text = ""
        field.display = False
        self.refilter()
        self.table.focus()

    def sort_by(self, column: str, descending: bool | None = None) -> None:
        if descending is None:
            descending = not self.sort_descending if column == self.sort_column else False
        self.sort_column, self.sort_descending = column, descending
        self.table.set_sort(column, descending)
        self.refilter()

    def action_sort_next(self) -> None:
        index = SORT_ORDER.index(self.sort_column) if self.sort_column in SORT_ORDER else -1
        self.sort_by(SORT_ORDER[(index + 1) % len(SORT_ORDER)], False)

    def action_sort_reverse(self) -> None:
        self.sort_by(self.sort_column, not self.sort_descending)

    def on_virtual_table_header_clicked(self, event: VirtualTable.HeaderClicked) -> None:
        self.sort_by(event.column)

    # -- detail -----------------------------------------------------------------------

    def show_snapshot(self, snapshot: JobSnapshot | None, message: str | None = None) -> None:
        if not self.on_screen:
            self._pending_snapshot = (snapshot, message)
            return
        self._pending_snapshot = None
        spec = self.query_one("#detail-spec", Static)
        timeline = self.query_one("#detail-timeline", Static)
        measures = self.query_one("#detail-measures", Static)
        # Fixed heights (app.tcss): new content never needs a screen layout.
        if snapshot is None:
            self._shown = (None, None, None)
            spec.update(Text(message or "select a job", style="dim"), layout=False)
            timeline.update("", layout=False)
            measures.update("", layout=False)
            return
        # Only what changed is updated (each update re-renders the widget).
        if snapshot.spec_lines != self._shown[0]:
            spec.update(spec_table(snapshot.spec_lines), layout=False)
        if snapshot.timeline != self._shown[1]:
            timeline.update(render_timeline(snapshot, TIMELINE_LINES), layout=False)
        measured = (
            snapshot.compare,
            snapshot.progress,
            snapshot.summary,
            snapshot.warnings,
            snapshot.plan,
            snapshot.layout_check,
            snapshot.finetune_line,
        )
        if measured != self._shown[2]:
            measures.update(render_measures(snapshot), layout=False)
        self._shown = (snapshot.spec_lines, snapshot.timeline, measured)
