"""The refresh tick: every file and registry read happens in one worker thread per tick
(:meth:`RefreshController.tick_work`), serialised by a lock; the UI thread only renders
the frozen results (:meth:`RefreshController.apply`), so filtering, sorting and key
handling never wait for I/O."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from textual import work

from contract.jobdir import JobDir
from launcher.store import JobRecord
from tui.collector import CollectorTuning
from tui.data.jobs import JobsResult, JobsSource
from tui.data.jobview import JobSnapshot, JobView
from tui.data.logs import LogFile, LogLine, LogTail, list_logs
from tui.panes.jobs import JobsPane
from tui.panes.logs import LogsPane
from tui.panes.telemetry import TelemetryPane

if TYPE_CHECKING:
    from textual.app import App

    _AppBase = App[None]
else:
    _AppBase = object


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


class RefreshController(_AppBase):
    """The refresh tick of ``ScalectlApp`` (a mixin; the state is set in its ``__init__``)."""

    source: JobsSource
    collector: CollectorTuning
    home: Path
    clock: Callable[[], float]
    start_job: str | None
    records: dict[str, JobRecord]
    selected_id: str | None
    snapshot: JobSnapshot | None
    log_choice: Path | None
    last_tick: TickResult | None
    status_message: str | None
    ticks: int
    _lock: threading.Lock
    _view: JobView | None
    _log_tail: LogTail | None
    _pending: bool

    if TYPE_CHECKING:

        @property
        def jobs_pane(self) -> JobsPane: ...
        @property
        def logs_pane(self) -> LogsPane: ...
        @property
        def active_tab(self) -> str: ...
        def update_status(self) -> None: ...

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
