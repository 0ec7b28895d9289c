"""A log viewer: follow mode, search with highlighted matches, optional timestamps.

Lines are kept in a list capped at :data:`MAX_LINES` and drawn with the Line API (only
the visible ones). Following keeps the view pinned to the end as lines arrive; moving
up (arrows, PgUp, Home, a search jump, the mouse wheel) stops following, End or ``f``
resumes it.
"""

from __future__ import annotations

from typing import ClassVar

from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from tui import text
from tui.data.logs import LogLine

MAX_LINES = 20_000
STAMP = 9
"""Cells of the ``HH:MM:SS`` column (with its separator)."""
MATCH_STYLE = Style(bgcolor="yellow", color="black")
CURRENT_MATCH_STYLE = Style(bgcolor="dark_orange", color="black", bold=True)


class LogView(ScrollView, can_focus=True):
    DEFAULT_CSS = """
    LogView {
        background: $surface;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "line(-1)", "up", show=False),
        Binding("down,j", "line(1)", "down", show=False),
        Binding("pageup", "page(-1)", "page up", show=False),
        Binding("pagedown", "page(1)", "page down", show=False),
        Binding("home,g", "top", "top", show=False),
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

    # -- content --------------------------------------------------------------------

    def clear(self) -> None:
        self.lines = []
        self.matches = []
        self.match_index = -1
        self.width_cells = 0
        self._resize()
        self.scroll_to(0, 0, animate=False, immediate=True)

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
        for line in lines:
            self.width_cells = max(self.width_cells, len(line.text))
        if self.query_text:
            needle = self.query_text.lower()
            self.matches.extend(
                i
                for i in range(max(0, start), len(self.lines))
                if needle in self.lines[i].text.lower()
            )
        self._resize()
        if self.follow:
            self.scroll_end(animate=False, x_axis=False)
        self.refresh()

    def _resize(self) -> None:
        extra = STAMP if self.timestamps else 0
        self.virtual_size = Size(self.width_cells + extra + 1, len(self.lines))

    # -- modes ----------------------------------------------------------------------

    def set_follow(self, follow: bool) -> None:
        if follow == self.follow:
            if follow:
                self.scroll_end(animate=False, x_axis=False)
            return
        self.follow = follow
        if follow:
            self.scroll_end(animate=False, x_axis=False)
        self.post_message(self.FollowChanged(follow))

    def toggle_timestamps(self) -> None:
        self.timestamps = not self.timestamps
        self._resize()
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
        line = self.matches[self.match_index]
        top = max(0, line - self.size.height // 2)
        self.scroll_to(y=top, animate=False, immediate=True)
        self.refresh()

    # -- input ----------------------------------------------------------------------

    def action_line(self, delta: int) -> None:
        if delta < 0:
            self.set_follow(False)
        self.scroll_to(y=self.scroll_y + delta, animate=False, immediate=True)
        self._follow_if_at_end()

    def action_page(self, direction: int) -> None:
        if direction < 0:
            self.set_follow(False)
        self.scroll_to(
            y=self.scroll_y + direction * max(1, self.size.height - 1),
            animate=False,
            immediate=True,
        )
        self._follow_if_at_end()

    def action_top(self) -> None:
        self.set_follow(False)
        self.scroll_to(y=0, animate=False, immediate=True)

    def _follow_if_at_end(self) -> None:
        if not self.follow and self.scroll_y >= self.max_scroll_y and self.lines:
            self.set_follow(True)

    def on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        self.set_follow(False)

    # -- drawing --------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.size.width
        base = self.rich_style
        index = scroll_y + y
        if not self.lines:
            if y == 0:
                empty = Text(self.empty_text, style="dim")
                return Strip(list(empty.render(self.app.console))).crop_extend(0, width, base)
            return Strip.blank(width, base)
        if index >= len(self.lines):
            return Strip.blank(width, base)
        entry = self.lines[index]
        line = Text(no_wrap=True, end="", style=base)
        if self.timestamps:
            stamp = text.clock(entry.stamp) if entry.stamp is not None else " " * 8
            mark = "~" if entry.stamp_kind == "attempt" else " "
            line.append(f"{stamp}{mark}", style="dim")
        start = len(line)
        line.append(entry.text)
        if entry.text.startswith("==== scalectl "):
            line.stylize("bold cyan", start)
        if self.query_text:
            needle = self.query_text.lower()
            lowered = entry.text.lower()
            current = (
                self.match_index >= 0 and self.matches and self.matches[self.match_index] == index
            )
            at = lowered.find(needle)
            while at >= 0 and needle:
                style = CURRENT_MATCH_STYLE if current else MATCH_STYLE
                line.stylize(style, start + at, start + at + len(needle))
                at = lowered.find(needle, at + len(needle))
        segments = list(line.render(self.app.console))
        return Strip(segments).crop_extend(scroll_x, scroll_x + width, base)
