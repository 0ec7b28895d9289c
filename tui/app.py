"""``scalectl tui``: the Textual application: layout, tabs, selection, status line,
help and command palette.

Threading: every file and registry read happens in one worker thread per refresh tick
(``tui.controllers.refresh``), serialised by a lock; the UI thread only renders the
frozen results. Filtering, sorting and key handling never wait for I/O. Actions that
block (cancel waits for processes to stop, launch starts them) run in their own worker
threads and report with a notification (``tui.controllers.job_actions``,
``tui.controllers.planning``).

Reads: ``launcher.store`` (registry), ``contract.jobdir`` (job files), ``planner``;
acts through ``launcher.api`` (``launch``, ``cancel``, ``refresh``). Import boundary:
tui/ruff.toml.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.command import Hit, Hits, Provider
from textual.screen import Screen
from textual.widgets import Footer, Static, TabbedContent, TabPane

from launcher.store import JobRecord
from tui import text
from tui.collector import CollectorTuning
from tui.controllers.job_actions import JobActions
from tui.controllers.planning import PlannerActions
from tui.controllers.refresh import RefreshController, TickResult
from tui.data.jobs import JobsSource
from tui.data.jobview import JobSnapshot, JobView
from tui.data.logs import LogTail
from tui.panes.jobs import JobsPane
from tui.panes.logs import LogChosen, LogsPane
from tui.panes.planner import PlannerPane
from tui.panes.telemetry import TelemetryPane
from tui.widgets.dialogs import HelpScreen
from tui.widgets.table import VirtualTable

TABS = ("jobs", "telemetry", "logs", "planner")


class JobsCommands(Provider):
    """``:`` palette entries to jump to a job by name or id."""

    async def search(self, query: str) -> Hits:
        app = self.app
        assert isinstance(app, ScalectlApp)
        matcher = self.matcher(query)
        for row in list(app.jobs_pane.all_rows)[:5000]:
            label = f"job {row.name} {row.id} {row.state}"
            score = matcher.match(label)
            if score > 0:
                yield Hit(
                    score,
                    matcher.highlight(label),
                    lambda key=row.id: app.select_job(key),
                    help=f"{row.backend}, {row.state} {row.reason}".strip(),
                )


class ScalectlApp(RefreshController, JobActions, PlannerActions, App[None]):
    """Jobs across backends, live telemetry, logs, and plan against reality."""

    CSS_PATH = "app.tcss"
    TITLE = "scalectl"
    COMMANDS: ClassVar[set[Any]] = App.COMMANDS | {JobsCommands}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("1", "show_tab('jobs')", "jobs tab", show=False),
        Binding("2", "show_tab('telemetry')", "telemetry tab", show=False),
        Binding("3", "show_tab('logs')", "logs tab", show=False),
        Binding("4", "show_tab('planner')", "planner tab", show=False),
        Binding("c", "cancel_job", "cancel job"),
        Binding("r", "requeue_job", "requeue (Slurm)", show=False),
        Binding("o", "open_dir", "open job dir"),
        Binding("question_mark", "help", "help"),
        Binding("colon", "command_palette", "commands"),
        Binding("ctrl+p", "command_palette", "commands", show=False),
        Binding("q", "quit", "quit"),
    ]

    def __init__(
        self,
        *,
        registry: Path | None = None,
        home: Path | None = None,
        refresh_s: float = 1.0,
        clock: Callable[[], float] = time.time,
        refresh_backends: bool = True,
        start_job: str | None = None,
        open_dir: Callable[[Path], None] | None = None,
        cancel_grace_s: float | None = None,
    ) -> None:
        super().__init__()
        from launcher.paths import registry_path, scalectl_home

        self.registry = registry if registry is not None else registry_path()
        self.home = home if home is not None else scalectl_home()
        self.refresh_s = refresh_s
        self.clock = clock
        self.open_dir_fn = open_dir
        self.cancel_grace_s = cancel_grace_s
        self.collector = CollectorTuning()
        self.source = JobsSource(self.registry, refresh_backends=refresh_backends, clock=clock)
        self.records: dict[str, JobRecord] = {}
        self.selected_id: str | None = None
        self.start_job = start_job
        self.snapshot: JobSnapshot | None = None
        self.log_choice: Path | None = None
        self.last_tick: TickResult | None = None
        self.status_message: str | None = None
        self.ticks = 0
        # Worker-side state (only touched under _lock, from tick_work).
        self._lock = threading.Lock()
        self._view: JobView | None = None
        self._log_tail: LogTail | None = None
        self._pending = False
        self._status_line: Text | None = None

    # -- layout -------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        with TabbedContent(initial="jobs", id="tabs"):
            with TabPane("1 Jobs", id="jobs"):
                yield JobsPane(now=self.clock, id="jobs-pane")
            with TabPane("2 Telemetry", id="telemetry"):
                yield TelemetryPane(id="telemetry-pane")
            with TabPane("3 Logs", id="logs"):
                yield LogsPane(id="logs-pane")
            with TabPane("4 Planner", id="planner"):
                yield PlannerPane(id="planner-pane")
        yield Static("", id="status")
        yield Footer()

    @property
    def jobs_pane(self) -> JobsPane:
        return self.query_one("#jobs-pane", JobsPane)

    @property
    def logs_pane(self) -> LogsPane:
        return self.query_one("#logs-pane", LogsPane)

    @property
    def active_tab(self) -> str:
        return self.query_one("#tabs", TabbedContent).active or "jobs"

    def on_mount(self) -> None:
        self.collector.start()
        self.jobs_pane.table.focus()
        self.update_status()
        self.schedule_tick()
        if self.refresh_s > 0:
            self.set_interval(self.refresh_s, self.schedule_tick)

    def update_status(self) -> None:
        pane = self.jobs_pane
        line = Text(no_wrap=True, overflow="ellipsis")
        if self.status_message:
            line.append(f"⚠ {self.status_message}  ", style="bold yellow")
        total = len(pane.all_rows)
        shown = pane.match_count()
        line.append(f"{total:,} jobs", style="bold")
        if pane.filter_text:
            line.append(f", {shown:,} match {pane.filter_text!r}")
        line.append(f"  sorted by {pane.sort_column}{' ▼' if pane.sort_descending else ''}")
        line.append(f"  registry {text.short_path(self.registry, self.home)}", style="dim")
        if line != self._status_line:
            self._status_line = line
            self.query_one("#status", Static).update(line, layout=False)

    def on_jobs_pane_rows_shown(self, event: JobsPane.RowsShown) -> None:
        self.update_status()

    # -- selection ----------------------------------------------------------------------

    def on_virtual_table_highlighted(self, event: VirtualTable.Highlighted) -> None:
        if event.table.id != "jobs-table" or event.key is None:
            return
        if event.key != self.selected_id:
            self.selected_id = event.key
            self.log_choice = None
            self.schedule_tick()

    def on_virtual_table_selected(self, event: VirtualTable.Selected) -> None:
        if event.table.id == "jobs-table":
            self.action_show_tab("telemetry")

    def select_job(self, job_id: str) -> None:
        """Show ``job_id`` on the Jobs tab (clearing a filter that hides it)."""
        pane = self.jobs_pane
        pane.catch_up(job_id)
        if all(row.id != job_id for row in pane.shown):
            pane.action_clear_filter()
        pane.table.set_rows(pane.shown, keep_key=job_id)
        self.action_show_tab("jobs")

    def on_log_chosen(self, event: LogChosen) -> None:
        self.log_choice = event.source.path
        self.schedule_tick()

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        tab = event.pane.id or "jobs"
        self.jobs_pane.set_on_screen(tab == "jobs", self.selected_id)
        self.query_one("#telemetry-pane", TelemetryPane).set_on_screen(tab == "telemetry")
        self._focus_tab(tab)
        if event.pane.id == "logs":
            self.schedule_tick()

    def _focus_tab(self, tab: str) -> None:
        targets = {
            "jobs": "#jobs-table",
            "telemetry": "#gpu-grid",
            "logs": "#log-view",
            "planner": "#plan-model",
        }
        self.query_one(targets.get(tab, "#jobs-table")).focus()

    def action_show_tab(self, tab: str) -> None:
        tabs = self.query_one("#tabs", TabbedContent)
        if tabs.active != tab:
            tabs.active = tab
        else:
            self._focus_tab(tab)

    # -- help and commands --------------------------------------------------------------

    def action_help(self) -> None:
        self.push_screen(HelpScreen(help_sections()))

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for number, tab in enumerate(TABS, start=1):
            yield SystemCommand(
                f"Show {tab} tab",
                f"key {number}",
                lambda tab=tab: self.action_show_tab(tab),
            )
        pane = self.jobs_pane
        yield SystemCommand("Filter jobs", "key /", self._palette_filter)
        for column in ("name", "backend", "state", "step", "tokens/s", "mfu", "age"):
            yield SystemCommand(
                f"Sort jobs by {column}", "or click its header", lambda c=column: pane.sort_by(c)
            )
        yield SystemCommand("Cancel the selected job", "key c", self.action_cancel_job)
        yield SystemCommand(
            "Requeue the selected Slurm job (checkpoint, back to the queue)",
            "key r",
            self.action_requeue_job,
        )
        yield SystemCommand("Open the selected job's directory", "key o", self.action_open_dir)
        logs = self.logs_pane
        yield SystemCommand("Toggle log follow", "key f / End", logs.action_toggle_follow)
        yield SystemCommand("Toggle log timestamps", "key t", logs.action_toggle_timestamps)
        yield SystemCommand("Help: every key", "key ?", self.action_help)

    def _palette_filter(self) -> None:
        self.action_show_tab("jobs")
        self.jobs_pane.action_filter()


_KEY_NAMES = {
    "question_mark": "?",
    "colon": ":",
    "slash": "/",
    "left_square_bracket": "[",
    "right_square_bracket": "]",
    "escape": "Esc",
    "enter": "Enter",
    "pageup": "PgUp",
    "pagedown": "PgDn",
    "home": "Home",
    "end": "End",
    "up": "↑",
    "down": "↓",
}


def key_text(keys: str) -> str:
    return " / ".join(_KEY_NAMES.get(k.strip(), k.strip()) for k in keys.split(","))


def help_sections() -> list[tuple[str, list[tuple[str, str]]]]:
    """Every binding of the app and its panes, grouped (the help screen's content)."""
    from tui.widgets.gpugrid import GpuGrid
    from tui.widgets.logview import LogView

    groups: list[tuple[str, list[Any]]] = [
        ("Everywhere", ScalectlApp.BINDINGS),
        ("Jobs tab", JobsPane.BINDINGS),
        ("Tables (jobs, planner layouts)", VirtualTable.BINDINGS),
        ("Telemetry tab", GpuGrid.BINDINGS),
        ("Logs tab", LogsPane.BINDINGS + LogView.BINDINGS),
        ("Planner tab", PlannerPane.BINDINGS),
    ]
    sections = []
    for title, bindings in groups:
        keys = [
            (key_text(b.key), b.description or b.action) for b in bindings if isinstance(b, Binding)
        ]
        sections.append((title, keys))
    sections.append(
        (
            "Mouse",
            [
                ("click", "tabs, rows (select), column headers (sort), buttons"),
                ("double-click", "a job row opens its telemetry"),
                ("wheel", "scroll tables, GPU lines and logs"),
            ],
        )
    )
    sections.append(
        (
            "Notes",
            [
                (
                    "timestamps",
                    "HH:MM:SS~ = start of the rank attempt that wrote the line "
                    "(lines already there when the log was opened); no ~ = when the TUI read it",
                ),
                ("filter", "every word must appear in the name, id, backend, state or reason"),
                ("forms", "keys type into a focused field: Esc leaves it, then 1-4 switch tabs"),
            ],
        )
    )
    return sections
