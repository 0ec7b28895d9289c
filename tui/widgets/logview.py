"""A log viewer: follow mode, search with highlighted matches, optional timestamps.

Lines are kept in a list capped at :data:`MAX_LINES` and drawn only where visible; the
widget scrolls itself (:class:`~tui.widgets.scroller.LineScroller`), so appending lines
while following repaints the log alone. Following keeps the view pinned to the end as
lines arrive; moving up (arrows, PgUp, Home, a search jump, the mouse wheel) stops
following, End or ``f`` resumes it. Left/right scroll long lines.
"""

from __future__ import annotations

from typing import ClassVar

from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.strip import Strip

from tui import text
from tui.data.logs import LogLine
from tui.widgets.scroller import WHEEL_LINES, LineScroller

MAX_LINES = 20_000
STAMP = 9
"""Cells of the ``HH:MM:SS`` column (with its marker)."""
HEADER_PREFIX = "==== scalectl "
MATCH_STYLE = Style(bgcolor="yellow", color="black")
CURRENT_MATCH_STYLE = Style(bgcolor="dark_orange", color="black", bold=True)


class LogView(LineScroller):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "line(-1)", "up", show=False),
        Binding("down,j", "line(1)", "down", show=False),
        Binding("pageup", "page(-1)", "page up", show=False),
        Binding("pagedown", "page(1)", "page down", show=False),
        Binding("home,g", "top", "top", show=False),
        Binding("left", "columns(-8)", "scroll left", show=False),
        Binding("right", "columns(8)", "scroll right", show=False),
    ]

    class FollowChanged(Message):
        def __init__(self, follow: bool) -> None:
            super().__init__()
            self.follow = follow

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.lines: list[LogLine] = []
        self.follow = True
        self.timestamps = False
        self.query_text = ""
        self.matches: list[int] = []
        self.match_index = -1
        self.width_cells = 0
        self.empty_text = "no log lines yet"

    # -- content --------------------------------------------------------------------------

    def line_count(self) -> int:
        return len(self.lines)

    def content_width(self) -> int:
        return self.width_cells + (STAMP if self.timestamps else 0)

    def clear(self) -> None:
        self.lines = []
        self.matches = []
        self.match_index = -1
        self.width_cells = 0
        self.top = self.left = 0
        self.refresh()

    def append(self, lines: list[LogLine]) -> None:
        if not lines:
            return
        start = len(self.lines)
        self.lines.extend(lines)
        dropped = len(self.lines) - MAX_LINES
        if dropped > 0:
            del self.lines[:dropped]
            start -= dropped
            self.matches = [m - dropped for m in self.matches if m >= dropped]
            self.top = max(0, self.top - dropped)
        self.width_cells = max(self.width_cells, *(len(line.text) for line in lines))
        if self.query_text:
            needle = self.query_text.lower()
            self.matches.extend(
                i
                for i in range(max(0, start), len(self.lines))
                if needle in self.lines[i].text.lower()
            )
        if self.follow:
            self.top = self.max_top
        self.refresh()

    # -- modes ----------------------------------------------------------------------------

    def set_follow(self, follow: bool) -> None:
        changed = follow != self.follow
        self.follow = follow
        if follow:
            self.scroll_to_line(self.max_top)
        if changed:
            self.post_message(self.FollowChanged(follow))

    def toggle_timestamps(self) -> None:
        self.timestamps = not self.timestamps
        self.refresh()

    def search(self, query: str) -> int:
        """Highlight ``query`` (case-insensitive) and jump to its last match; the count."""
        self.query_text = query
        needle = query.lower()
        self.matches = (
            [i for i, line in enumerate(self.lines) if needle in line.text.lower()] if query else []
        )
        self.match_index = -1
        if self.matches:
            self.jump(-1)
        self.refresh()
        return len(self.matches)

    def jump(self, direction: int) -> None:
        """To the next (1) or previous (-1) match, wrapping around."""
        if not self.matches:
            return
        if self.match_index < 0:
            self.match_index = len(self.matches) - 1 if direction < 0 else 0
        else:
            self.match_index = (self.match_index + direction) % len(self.matches)
        self.set_follow(False)
        self.scroll_to_line(self.matches[self.match_index] - self.page // 2)
        self.refresh()

    def on_resize(self, event: events.Resize) -> None:
        if self.follow:
            self.top = self.max_top
        self.clamp()

    # -- input ----------------------------------------------------------------------------

    def _moved(self, delta: int) -> None:
        if delta < 0:
            self.set_follow(False)
        elif self.top >= self.max_top and not self.follow and self.lines:
            self.set_follow(True)

    def action_line(self, delta: int) -> None:
        self.scroll_lines(delta)
        self._moved(delta)

    def action_page(self, direction: int) -> None:
        self.scroll_lines(direction * self.page)
        self._moved(direction)

    def action_top(self) -> None:
        self.scroll_to_line(0)
        self.set_follow(False)

    def action_columns(self, delta: int) -> None:
        self.scroll_columns(delta)

    def on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        event.stop()
        self.scroll_lines(-WHEEL_LINES)
        self._moved(-1)

    def on_mouse_scroll_down(self, event: events.MouseScrollDown) -> None:
        event.stop()
        self.scroll_lines(WHEEL_LINES)
        self._moved(1)

    def on_click(self, event: events.Click) -> None:
        if self.scrollbar_clicked(event):
            self._moved(1 if self.top >= self.max_top else -1)

    # -- drawing --------------------------------------------------------------------------

    def render_content_line(self, index: int, width: int) -> Strip:
        base = self.base_style
        entry = self.lines[index]
        line = Text(no_wrap=True, end="", style=base)
        if self.timestamps:
            stamp = text.clock(entry.stamp) if entry.stamp is not None else " " * 8
            mark = "~" if entry.stamp_kind == "attempt" else " "
            line.append(f"{stamp}{mark}", style="dim")
        start = len(line)
        line.append(entry.text)
        if entry.text.startswith(HEADER_PREFIX):
            line.stylize("bold cyan", start)
        if self.query_text:
            needle = self.query_text.lower()
            lowered = entry.text.lower()
            current = 0 <= self.match_index < len(self.matches) and (
                self.matches[self.match_index] == index
            )
            style = CURRENT_MATCH_STYLE if current else MATCH_STYLE
            at = lowered.find(needle)
            while at >= 0:
                line.stylize(style, start + at, start + at + len(needle))
                at = lowered.find(needle, at + len(needle))
        segments = list(line.render(self.app.console))
        return Strip(segments).crop_extend(self.left, self.left + width, base)

    def render_line(self, y: int) -> Strip:
        if not self.lines:
            if y == 0:
                empty = Text(self.empty_text, style=self.base_style + Style(dim=True))
                strip = Strip(list(empty.render(self.app.console)))
                return strip.crop_extend(0, self.view_size.width, self.base_style)
            return Strip.blank(self.view_size.width, self.base_style)
        return super().render_line(y)
