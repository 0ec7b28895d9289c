"""The Planner tab's requests: search layouts in a worker thread, and launch the chosen
plan after a confirmation."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import work

from launcher.store import JobRecord
from tui.data.planning import PlanForm, SearchResult
from tui.panes.planner import LaunchRequested, PlannerPane, SearchRequested
from tui.widgets.dialogs import ConfirmScreen

if TYPE_CHECKING:
    from textual.app import App

    from launcher import JobSpec

    _AppBase = App[None]
else:
    _AppBase = object


class PlannerActions(_AppBase):
    """Search and launch from the Planner tab (a mixin of ``ScalectlApp``)."""

    registry: Path
    selected_id: str | None

    if TYPE_CHECKING:

        def action_show_tab(self, tab: str) -> None: ...
        def schedule_tick(self) -> None: ...

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
        from tui.data.planning import launch_notes, planned_job

        plan = result.plan(event.index)
        try:
            # The path of `scalectl launch --plan`: the same checks before anything is asked.
            planned = planned_job(plan, event.backend)
        except Exception as exc:
            self.notify(f"cannot launch this plan: {error_text(exc)}", severity="error")
            return
        spec = planned.spec
        body = Text()
        body.append(f"{plan.model.name}", style="bold")
        body.append(
            f" on {event.backend}: {spec.nodes} node(s) × {spec.procs_per_node} rank(s), "
            f"layout {text_layout(plan)}\n"
            "entrypoint: python -m runtime.train --plan <job dir>/plan.json\n"
        )
        body.append(f"{planned.resolved.text()}\n", style="dim")
        for note in launch_notes(plan):
            body.append(f"• {note}\n", style="dim")

        def answered(yes: bool | None) -> None:
            if yes:
                self._launch(spec)

        self.push_screen(ConfirmScreen("Launch this plan?", body, yes="Launch"), answered)

    @work(thread=True, group="actions", exit_on_error=False)
    def _launch(self, spec: JobSpec) -> None:
        from launcher import api
        from launcher.store import Store

        try:
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


def text_layout(plan: Any) -> str:
    from tui.data.compare import layout_text

    return layout_text(plan.layout.model_dump(mode="json")) or "?"


def error_text(exc: BaseException) -> str:
    """One line for the user: a user error's own message, else the type and message."""
    message = str(exc) if getattr(exc, "user_error", False) else f"{type(exc).__name__}: {exc}"
    lines = message.strip().splitlines()
    return lines[0] if lines else type(exc).__name__
