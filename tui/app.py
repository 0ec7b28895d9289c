"""``scalectl tui``: the Textual application.

Threading: every file and registry read happens in one worker thread per refresh tick
(:meth:`ScalectlApp.tick_work`), serialised by a lock; the UI thread only renders the
frozen results (:meth:`ScalectlApp.apply`). Filtering, sorting and key handling never
wait for I/O. Actions that block (cancel waits for processes to stop, launch starts
them) run in their own worker threads and report with a notification.

Reads: ``launcher.store`` (registry), ``contract.jobdir`` (job files), ``planner``;
acts through ``launcher.api`` (``launch``, ``cancel``, ``refresh``). Import boundary:
tui/ruff.toml.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual import work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.command import Hit, Hits, Provider
from textual.screen import Screen
from textual.widgets import Footer, Static, TabbedContent, TabPane

from contract.jobdir import JobDir
from launcher.states import JobState
from launcher.store import JobRecord
from tui import text
from tui.collector import CollectorTuning
from tui.data.jobs import JobsResult, JobsSource
from tui.data.jobview import JobSnapshot, JobView
from tui.data.logs import LogFile, LogLine, LogTail, list_logs
from tui.data.planning import PlanForm, SearchResult
from tui.panes.jobs import JobsPane
from tui.panes.logs import LogChosen, LogsPane
from tui.panes.planner import LaunchRequested, PlannerPane, SearchRequested
from tui.panes.telemetry import TelemetryPane
from tui.widgets.dialogs import ConfirmScreen, HelpScreen
from tui.widgets.table import VirtualTable

TABS = ("jobs", "telemetry", "logs", "planner")


@dataclass(frozen=True)
class Want:
    """What a tick reads besides the registry, decided on the UI thread."""

    selected: str | None
    """The job whose files are followed."""
    logs: bool
    """Read its logs too (the Logs tab is open)."""
    log_choice: Path | None
    """The log file picked with [ and ] (None: the first rank)."""


@dataclass(frozen=True)
class TickResult:
    jobs: JobsResult
    selected: str | None
    snapshot: JobSnapshot | None
    logs: tuple[str, list[LogFile], LogFile | None, list[LogLine], bool] | None
    error: str | None = None
    elapsed_s: float = 0.0


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


class ScalectlApp(App[None]):
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

    # -- the refresh tick ---------------------------------------------------------------

    def schedule_tick(self) -> None:
        """Start a tick in a worker thread, unless one is running (then one follows it)."""
        if self._lock.locked():
            self._pending = True
            return
        self._pending = False
        self._tick_worker(self.want())

    @work(thread=True, exclusive=False, group="tick", exit_on_error=False)
    def _tick_worker(self, want: Want) -> None:
        if not self._lock.acquire(blocking=False):
            self._pending = True
            return
        try:
            result = self.tick_locked(want, False)
        finally:
            self._lock.release()
        self.call_from_thread(self.apply, result)

    async def refresh_now(self, force: bool = True) -> TickResult:
        """Run one tick and apply it, waiting for both (tests and benchmarks use it)."""
        want = self.want()

        def run() -> TickResult:
            with self._lock:
                return self.tick_locked(want, force)

        result = await asyncio.to_thread(run)
        self.apply(result)
        return result

    def want(self) -> Want:
        """What the next tick should read (UI thread: it looks at the widgets)."""
        return Want(self.selected_id, self.active_tab == "logs", self.log_choice)

    def tick_locked(self, want: Want, force: bool) -> TickResult:
        """One tick's reads (worker thread, ``_lock`` held); never raises."""
        started = time.perf_counter()
        try:
            return self.tick_work(want.selected, want.logs, want.log_choice, force, started)
        except Exception as exc:  # the UI must outlive any surprise in a job's files
            return TickResult(
                JobsResult(None, {}, self.source.message),
                want.selected,
                None,
                None,
                error=f"refresh failed: {type(exc).__name__}: {exc}",
                elapsed_s=time.perf_counter() - started,
            )

    def tick_work(
        self,
        selected: str | None,
        logs_wanted: bool,
        log_choice: Path | None,
        force: bool = False,
        started: float | None = None,
    ) -> TickResult:
        """Everything one tick reads (worker thread; call with ``_lock`` held)."""
        started = time.perf_counter() if started is None else started
        jobs = self.source.poll(force=force)
        if selected is None and self.start_job is not None:
            selected = self._resolve_start_job()
        record = self.source.records.get(selected) if selected else None
        snapshot = None
        if record is not None:
            if self._view is None or self._view.record.id != record.id:
                self._view = JobView(record, home=self.home)
                self._log_tail = None
            snapshot = self._view.poll(record)
        logs = None
        if record is not None and logs_wanted:
            logs = self._read_logs(record, log_choice)
        return TickResult(jobs, selected, snapshot, logs, elapsed_s=time.perf_counter() - started)

    def _resolve_start_job(self) -> str | None:
        ref, self.start_job = self.start_job, None
        store = self.source.store
        if store is None or ref is None:
            return None
        try:
            return store.resolve(ref).id
        except Exception as exc:
            self.source.message = str(exc)
            return None

    def _read_logs(
        self, record: JobRecord, choice: Path | None
    ) -> tuple[str, list[LogFile], LogFile | None, list[LogLine], bool]:
        sources = list_logs(JobDir(record.job_dir))
        current = next((s for s in sources if s.path == choice), None)
        if current is None:
            current = sources[0] if sources else None
        reset = False
        lines: list[LogLine] = []
        if current is None:
            self._log_tail = None
        else:
            if self._log_tail is None or self._log_tail.path != current.path:
                self._log_tail = LogTail(current.path)
                reset = True
            resets = self._log_tail.resets
            lines = self._log_tail.poll(self.clock(), flush=record.state.is_terminal)
            reset = reset or self._log_tail.resets != resets
        label = f"{record.name} {record.id}"
        return label, sources, current, lines, reset

    def apply(self, result: TickResult) -> None:
        """Show a tick's results (UI thread)."""
        self.ticks += 1
        self.last_tick = result
        pane = self.jobs_pane
        if result.jobs.rows is not None:
            self.records = result.jobs.records
            keep = self.selected_id or result.selected
            pane.set_rows(result.jobs.rows, keep_key=keep)
            if self.selected_id is None:
                self.selected_id = result.selected or pane.table.cursor_key
                if self.selected_id is not None and self.selected_id != result.selected:
                    self.schedule_tick()
        if result.selected is not None and self.selected_id is None:
            self.selected_id = result.selected
        if result.selected == self.selected_id:
            self.snapshot = result.snapshot
            message = None
            if self.selected_id is not None and result.snapshot is None:
                message = f"job {self.selected_id} is no longer in the registry"
            pane.show_snapshot(result.snapshot, message)
            self.query_one("#telemetry-pane", TelemetryPane).show_snapshot(result.snapshot)
            if result.logs is not None:
                label, sources, current, lines, reset = result.logs
                message = (
                    "job directory is gone; logs shown as read before"
                    if result.snapshot is not None and result.snapshot.dir_missing
                    else None
                )
                self.logs_pane.show(label, sources, current, lines, reset, message)
        if result.jobs.rows is not None and not result.jobs.unread and result.error is None:
            self.collector.settle()
        self.status_message = result.error or result.jobs.message
        self.update_status()
        if self._pending:
            self.schedule_tick()

    def on_unmount(self) -> None:
        self.collector.stop()

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

    # -- actions on the selected job ----------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("cancel_job", "requeue_job", "open_dir"):
            return self.active_tab != "planner"
        return True

    def _selected_record(self) -> JobRecord | None:
        record = self.records.get(self.selected_id) if self.selected_id else None
        if record is None:
            self.notify("select a job first (Jobs tab)", severity="warning")
        return record

    def action_cancel_job(self) -> None:
        record = self._selected_record()
        if record is None:
            return
        if record.state.is_terminal:
            self.notify(f"job {record.id} already ended ({record.state.value})")
            return
        body = Text()
        body.append(f"{record.name} ", style="bold")
        body.append(f"({record.id}) on {record.backend}, {record.state.value}\n\n")
        body.append(
            "Every process of the job gets SIGTERM (the reference trainer checkpoints), "
            "then SIGKILL after the grace period."
        )

        def answered(yes: bool | None) -> None:
            if yes:
                self._cancel(record)

        self.push_screen(ConfirmScreen("Cancel this job?", body, yes="Cancel job"), answered)

    @work(thread=True, group="actions", exit_on_error=False)
    def _cancel(self, record: JobRecord) -> None:
        from launcher import api
        from launcher.store import Store

        try:
            with Store(self.registry, create=False) as store:
                current = store.get(record.id) or record
                outcome = api.cancel(store, current, self.cancel_grace_s)
        except Exception as exc:
            self.call_from_thread(
                self.notify, f"cancel {record.id} failed: {exc}", severity="error"
            )
            return
        report = outcome.report
        if report is None:
            message = f"job {record.id} had already ended ({outcome.record.state.value})"
        else:
            message = report.note or f"{report.signalled} process(es) stopped"
            if report.killed:
                message += f", {report.killed} killed after the grace period"
            message = f"cancelled {record.name} ({record.id}): {message}"
        self.call_from_thread(self.notify, message)
        self.call_from_thread(self.schedule_tick)

    def action_requeue_job(self) -> None:
        record = self._selected_record()
        if record is None:
            return
        if record.backend != "slurm":
            self.notify(
                f"job {record.id} runs on {record.backend}: only Slurm jobs can be requeued",
                severity="warning",
            )
            return
        if record.state is not JobState.RUNNING:
            self.notify(f"job {record.id} is {record.state.value}: only a running job requeues")
            return
        slurm = record.spec.get("slurm") or {}
        body = Text()
        body.append(f"{record.name} ", style="bold")
        body.append(f"({record.id}), Slurm job {record.backend_job_id}\n\n")
        body.append(
            f"Its ranks get SIG{str(slurm.get('signal', 'USR2')).removeprefix('SIG')} and "
            "checkpoint the step they are on; the job goes back to the queue (counted "
            f"against slurm.max_requeues = {slurm.get('max_requeues', 3)}) and resumes from "
            "that checkpoint when Slurm starts it again."
        )

        def answered(yes: bool | None) -> None:
            if yes:
                self._requeue(record)

        self.push_screen(ConfirmScreen("Requeue this job?", body, yes="Requeue"), answered)

    @work(thread=True, group="actions", exit_on_error=False)
    def _requeue(self, record: JobRecord) -> None:
        from launcher import api
        from launcher.store import Store

        try:
            with Store(self.registry, create=False) as store:
                note = api.requeue(store, store.get(record.id) or record)
        except Exception as exc:
            self.call_from_thread(
                self.notify, f"requeue {record.id} failed: {exc}", severity="error"
            )
            return
        self.call_from_thread(self.notify, f"requeue {record.name} ({record.id}): {note}")
        self.call_from_thread(self.schedule_tick)

    def action_open_dir(self) -> None:
        record = self._selected_record()
        if record is None:
            return
        path = record.job_dir
        if not path.is_dir():
            self.notify(f"job directory {path} is gone", severity="error")
            return
        shell = os.environ.get("SHELL") or "/bin/sh"
        body = Text(f"{path}\n\nA shell ({shell}) opens there; exit it to come back to scalectl.")

        def answered(yes: bool | None) -> None:
            if yes:
                self._open(path, shell)

        self.push_screen(ConfirmScreen("Open the job directory?", body, yes="Open"), answered)

    def _open(self, path: Path, shell: str) -> None:
        if self.open_dir_fn is not None:
            self.open_dir_fn(path)
            return
        try:
            with self.suspend():
                subprocess.run([shell], cwd=path, check=False)
        except Exception as exc:  # no terminal to hand over (web, some multiplexers)
            self.copy_to_clipboard(str(path))
            self.notify(f"cannot open a shell here ({exc}); path copied: {path}")

    # -- planner ------------------------------------------------------------------------

    def on_search_requested(self, event: SearchRequested) -> None:
        self._search(event.form)

    @work(thread=True, exclusive=True, group="plan", exit_on_error=False)
    def _search(self, form: PlanForm) -> None:
        from tui.data.planning import search

        try:
            result = search(form)
        except Exception as exc:
            self.call_from_thread(self._plan_error, error_text(exc))
            return
        self.call_from_thread(self._plan_result, result)

    def _plan_error(self, message: str) -> None:
        self.query_one("#planner-pane", PlannerPane).show_error(message)

    def _plan_result(self, result: SearchResult) -> None:
        self.query_one("#planner-pane", PlannerPane).show_result(result)

    async def wait_for_search(self) -> None:
        """Wait until the planner search worker finished (tests)."""
        await self.workers.wait_for_complete([w for w in self.workers if w.group == "plan"])

    def on_launch_requested(self, event: LaunchRequested) -> None:
        pane = self.query_one("#planner-pane", PlannerPane)
        result = pane.result
        if result is None:
            return
        from tui.data.planning import launch_notes

        plan = result.plan(event.index)
        cluster = plan.cluster
        body = Text()
        body.append(f"{plan.model.name}", style="bold")
        body.append(
            f" on {event.backend}: {cluster.num_nodes} node(s) × "
            f"{min(cluster.gpus_per_node, cluster.num_gpus)} rank(s), "
            f"layout {text_layout(plan)}\n"
            "entrypoint: python -m runtime.train --plan <job dir>/plan.json\n"
        )
        for note in launch_notes(plan):
            body.append(f"• {note}\n", style="dim")

        def answered(yes: bool | None) -> None:
            if yes:
                self._launch(result, event.index, event.backend)

        self.push_screen(ConfirmScreen("Launch this plan?", body, yes="Launch"), answered)

    @work(thread=True, group="actions", exit_on_error=False)
    def _launch(self, result: SearchResult, index: int, backend: str) -> None:
        from launcher import api, spec_from_mapping
        from launcher.store import Store
        from tui.data.planning import launch_mapping

        try:
            spec = spec_from_mapping(launch_mapping(result.plan(index), backend), "planner tab")
            with Store(self.registry) as store:
                record = api.launch(spec, store)
        except Exception as exc:
            self.call_from_thread(
                self.notify, f"launch failed: {error_text(exc)}", severity="error"
            )
            return
        self.call_from_thread(self._launched, record)

    def _launched(self, record: JobRecord) -> None:
        self.notify(f"launched job {record.id} ({record.name}) on {record.backend}")
        self.selected_id = record.id
        self.action_show_tab("jobs")
        self.schedule_tick()

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


def text_layout(plan: Any) -> str:
    from tui.data.compare import layout_text

    return layout_text(plan.layout.model_dump(mode="json")) or "?"


def error_text(exc: BaseException) -> str:
    """One line for the user: a user error's own message, else the type and message."""
    message = str(exc) if getattr(exc, "user_error", False) else f"{type(exc).__name__}: {exc}"
    lines = message.strip().splitlines()
    return lines[0] if lines else type(exc).__name__


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
