"""Logs tab: one rank's log (``[``/``]`` to change), follow, search, timestamps."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Input, Static

from tui.data.logs import LogFile, LogLine
from tui.widgets.logview import LogView


class LogChosen(Message):
    """The user picked another log of the job (the app's worker reads it from now on)."""

    def __init__(self, source: LogFile) -> None:
        super().__init__()
        self.source = source


class LogsPane(Vertical):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f", "toggle_follow", "follow"),
        Binding("end", "follow_end", "end + follow", show=False),
        Binding("t", "toggle_timestamps", "timestamps"),
        Binding("slash", "search", "search"),
        Binding("n", "next_match(1)", "next match"),
        Binding("N", "next_match(-1)", "previous match", show=False),
        Binding("right_square_bracket", "next_log(1)", "next log"),
        Binding("left_square_bracket", "next_log(-1)", "previous log", show=False),
        Binding("escape", "clear_search", "clear search", show=False),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.sources: list[LogFile] = []
        self.current: LogFile | None = None
        self.job_label = ""
        self.message: str | None = None

    def compose(self) -> ComposeResult:
        yield Static("", id="logs-title")
        yield Input(
            placeholder="search this log (Enter: keep, Esc: clear)", id="log-search", compact=True
        )
        yield LogView(id="log-view")

    @property
    def view(self) -> LogView:
        return self.query_one("#log-view", LogView)

    def on_mount(self) -> None:
        self.query_one("#log-search", Input).display = False
        self.update_title()

    # -- content (called by the app with what its worker read) ---------------------------

    def show(
        self,
        job_label: str,
        sources: list[LogFile],
        current: LogFile | None,
        lines: list[LogLine],
        reset: bool,
        message: str | None = None,
    ) -> None:
        self.job_label = job_label
        self.sources = sources
        self.message = message
        if reset or current != self.current:
            self.current = current
            self.view.clear()
        self.view.append(lines)
        self.update_title()

    def update_title(self) -> None:
        view = self.view
        title = Text(no_wrap=True, overflow="ellipsis")
        title.append(self.job_label or "select a job on the Jobs tab", style="bold")
        if self.current is not None:
            index = self.sources.index(self.current) + 1 if self.current in self.sources else 0
            title.append(f"  log {self.current.label} [{index}/{len(self.sources)}]")
        title.append("  follow ")
        title.append("on" if view.follow else "off", style="green" if view.follow else "yellow")
        title.append("  timestamps ")
        title.append("on" if view.timestamps else "off")
        if view.query_text:
            title.append(f"  search {view.query_text!r}: {len(view.matches)} match(es)")
        title.append(f"  {len(view.lines):,} lines", style="dim")
        if self.message:
            title.append(f"\n⚠ {self.message}", style="bold yellow")
        self.query_one("#logs-title", Static).update(title, layout=False)  # fixed height

    # -- actions --------------------------------------------------------------------------

    def action_toggle_follow(self) -> None:
        self.view.set_follow(not self.view.follow)
        self.update_title()

    def action_follow_end(self) -> None:
        self.view.set_follow(True)
        self.update_title()

    def on_log_view_follow_changed(self, event: LogView.FollowChanged) -> None:
        self.update_title()

    def action_toggle_timestamps(self) -> None:
        self.view.toggle_timestamps()
        self.update_title()

    def action_search(self) -> None:
        field = self.query_one("#log-search", Input)
        field.display = True
        field.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "log-search":
            self.view.search(event.value)
            self.update_title()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "log-search":
            if not event.value:
                event.input.display = False
            self.view.focus()

    def action_clear_search(self) -> None:
        field = self.query_one("#log-search", Input)
        field.value = ""
        field.display = False
        self.view.search("")
        self.view.focus()
        self.update_title()

    def action_next_match(self, direction: int) -> None:
        self.view.jump(direction)
        self.update_title()

    def action_next_log(self, direction: int) -> None:
        if not self.sources:
            return
        index = self.sources.index(self.current) if self.current in self.sources else -1
        chosen = self.sources[(index + direction) % len(self.sources)]
        self.post_message(LogChosen(chosen))
