"""A widget of many lines that scrolls itself, so new data never costs a screen layout.

Textual's ScrollView keeps its scroll range in ``virtual_size``, a reactive that lays
the whole screen out again whenever it changes: every log line appended, every filter
that changes the number of jobs. Here the widget's size comes from CSS alone; it keeps
its own first visible line (``top``) and column (``left``), draws its own one-cell
scrollbar, and handles the mouse wheel and scrollbar clicks, so an update repaints only
its own lines.
"""

from __future__ import annotations

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.strip import Strip

from tui.widgets.cached import CachedGeometry

THUMB = "┃"
TRACK = "│"
WHEEL_LINES = 3


class LineScroller(CachedGeometry, can_focus=True):
    """Subclasses implement :meth:`line_count` and :meth:`render_content_line`; a fixed
    number of ``header_lines`` stay pinned above the scrolled lines."""

    DEFAULT_CSS = """
    LineScroller {
        background: $surface;
    }
    """

    header_lines = 0

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.top = 0
        self.left = 0
        self._thumb_style: Style | None = None

    # -- to implement ---------------------------------------------------------------------

    def line_count(self) -> int:
        raise NotImplementedError

    def render_content_line(self, index: int, width: int) -> Strip:
        """Line ``index`` of the content, ``width`` cells wide (``self.left`` applied)."""
        raise NotImplementedError

    def render_header_line(self, y: int, width: int) -> Strip:
        return Strip.blank(width, self.base_style)

    def content_width(self) -> int:
        """Cells of the widest line; wider than the view allows scrolling left/right."""
        return 0

    # -- styles ---------------------------------------------------------------------------

    def notify_style_update(self) -> None:
        self._thumb_style = None
        super().notify_style_update()

    # -- geometry -------------------------------------------------------------------------

    @property
    def page(self) -> int:
        """Content lines visible at once."""
        return max(1, self.view_size.height - self.header_lines)

    @property
    def max_top(self) -> int:
        return max(0, self.line_count() - self.page)

    @property
    def scrollbar_shown(self) -> bool:
        return self.line_count() > self.page

    @property
    def view_width(self) -> int:
        """Cells for content (the scrollbar, when shown, takes the last one)."""
        return max(1, self.view_size.width - (1 if self.scrollbar_shown else 0))

    def scroll_to_line(self, top: int) -> None:
        top = max(0, min(self.max_top, top))
        if top != self.top:
            self.top = top
            self.refresh()

    def scroll_lines(self, delta: int) -> None:
        self.scroll_to_line(self.top + delta)

    def scroll_columns(self, delta: int) -> None:
        widest = max(0, self.content_width() - self.view_width)
        left = max(0, min(widest, self.left + delta))
        if left != self.left:
            self.left = left
            self.refresh()

    def show_line(self, index: int) -> None:
        """Scroll the least needed for content line ``index`` to be visible."""
        if index < self.top:
            self.scroll_to_line(index)
        elif index >= self.top + self.page:
            self.scroll_to_line(index - self.page + 1)

    def clamp(self) -> None:
        """Keep ``top`` in range after the content shrank."""
        if self.top > self.max_top:
            self.top = self.max_top

    def on_resize(self, event: events.Resize) -> None:
        self.clamp()

    # -- mouse ----------------------------------------------------------------------------

    def on_mouse_scroll_down(self, event: events.MouseScrollDown) -> None:
        event.stop()
        self.scroll_lines(WHEEL_LINES)

    def on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        event.stop()
        self.scroll_lines(-WHEEL_LINES)

    def scrollbar_clicked(self, event: events.Click) -> bool:
        """Jump to where the scrollbar was clicked; True when the click was on it."""
        offset = event.get_content_offset(self)
        if offset is None or not self.scrollbar_shown or offset.x < self.view_width:
            return False
        track = max(1, self.page - 1)
        row = offset.y - self.header_lines
        self.scroll_to_line(round(max(0, row) / track * self.max_top))
        return True

    # -- drawing --------------------------------------------------------------------------

    def _scrollbar_cell(self, y: int) -> Segment:
        if self._thumb_style is None:
            self._thumb_style = self.base_style + Style(color="bright_black")
        count, page = self.line_count(), self.page
        thumb = max(1, page * page // max(1, count))
        start = round(self.top / max(1, count - page) * (page - thumb)) if count > page else 0
        return Segment(THUMB if start <= y < start + thumb else TRACK, self._thumb_style)

    def render_line(self, y: int) -> Strip:
        width = self.view_width
        shown = self.scrollbar_shown
        if y < self.header_lines:
            line = self.render_header_line(y, width)
        else:
            index = self.top + y - self.header_lines
            if index < self.line_count():
                line = self.render_content_line(index, width)
            else:
                line = Strip.blank(width, self.base_style)
        if shown:
            cell = (
                Segment(" ", self.base_style)
                if y < self.header_lines
                else self._scrollbar_cell(y - self.header_lines)
            )
            line = Strip([*line, cell], width + 1)
        return line
