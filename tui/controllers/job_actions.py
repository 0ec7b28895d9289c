"""Actions on the selected job: cancel, requeue (Slurm), open its directory. Each asks
for confirmation first; the ones that block run in a worker thread and report with a
notification."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from rich.text import Text
from textual import work

from launcher.states import JobState
from launcher.store import JobRecord
from tui.widgets.dialogs import ConfirmScreen

if TYPE_CHECKING:
    from textual.app import App

    _AppBase = App[None]
else:
    _AppBase = object


class JobActions(_AppBase):
    """Cancel, requeue and open the selected job (a mixin of ``ScalectlApp``)."""

    registry: Path
    records: dict[str, JobRecord]
    selected_id: str | None
    cancel_grace_s: float | None
    open_dir_fn: Callable[[Path], None] | None

    if TYPE_CHECKING:

        @property
        def active_tab(self) -> str: ...
        def schedule_tick(self) -> None: ...

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
