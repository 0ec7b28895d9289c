"""A virtual table: renders only the rows on screen, so 2,000 (or 200,000) rows cost
the same to filter, sort and redraw.

Textual's DataTable measures every cell as rows are added (hundreds of milliseconds for
2,000 jobs); this widget keeps the rows as given, formats a row only when its line is
drawn (Line API), and pins a header line at the top. Keyboard: arrows, PgUp/PgDn,
Home/End, Enter; mouse: click a row to select it, click a header to sort by it, wheel to
scroll.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip


@dataclass(frozen=True)
class Column:
    key: str
    """What the owner sorts by when the header is clicked."""
    label: str
    width: int
    """Cells; 0 makes the column take the width left over (at least ``min_width``)."""
    align: str = "left"
    min_width: int = 8


CellRenderer = Callable[[Any], Sequence[Text | str]]


class VirtualTable(ScrollView, can_focus=True):
    """Rows with a cursor; the owner supplies rows (already filtered and sorted)."""

    DEFAULT_CSS = """
    VirtualTable {
        background: $surface;
        overflow-x: hidden;
    }
    """

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "virtual-table--header",
        "virtual-table--cursor",
        "virtual-table--cursor-blurred",
    }

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "cursor(-1)", "up", show=False),
        Binding("down,j", "cursor(1)", "down", show=False),
        Binding("pageup", "page(-1)", "page up", show=False),
        Binding("pagedown", "page(1)", "page down", show=False),
        Binding("home,g", "first", "first", show=False),
        Binding("end,G", "last", "last", show=False),
        Binding("enter", "select", "open", show=False),
    ]

    class Highlighted(Message):
        """The cursor moved to the row with ``key`` (None: the table is empty)."""

        def __init__(self, table: VirtualTable, key: str | None) -> None:
            super().__init__()
            self.table = table
            self.key = key

    class Selected(Message):
        """Enter (or a click on the row under the cursor) on the row with ``key``."""

        def __init__(self, table: VirtualTable, key: str) -> None:
            super().__init__()
            self.table = table
            self.key = key

    class HeaderClicked(Message):
        def __init__(self, table: VirtualTable, column: str) -> None:
            super().__init__()
            self.table = table
            self.column = column

    def __init__(
        self,
        columns: Sequence[Column],
        render_cells: CellRenderer,
        key_of: Callable[[Any], str],
        *,
        empty_text: str = "nothing to show",
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.columns = list(columns)
        self.render_cells = render_cells
        self.key_of = key_of
        self.rows: Sequence[Any] = ()
        self.cursor = 0
        self.sort_column: str | None = None
        self.sort_descending = False
        self.empty_text = empty_text
        self._last_key: str | None = None

    # -- data ---------------------------------------------------------------------

    def set_rows(self, rows: Sequence[Any], *, keep_key: str | None = None) -> None:
        """Show ``rows``; the cursor stays on the row with ``keep_key`` (default: the
        current one) when it is still there."""
        key = keep_key if keep_key is not None else self.cursor_key
        self.rows = rows
        index = 0
        if key is not None:
            for i, row in enumerate(rows):
                if self.key_of(row) == key:
                    index = i
                    break
        self.cursor = min(index, max(0, len(rows) - 1))
        self.virtual_size = Size(self.size.width, len(rows) + 1)
        self._ensure_visible()
        self.refresh()
        self._announce()

    @property
    def cursor_key(self) -> str | None:
        if not self.rows or self.cursor >= len(self.rows):
            return None
        return self.key_of(self.rows[self.cursor])

    @property
    def cursor_row(self) -> Any | None:
        return self.rows[self.cursor] if self.rows and self.cursor < len(self.rows) else None

    def set_sort(self, column: str | None, descending: bool) -> None:
        self.sort_column, self.sort_descending = column, descending
        self.refresh()

    def _announce(self) -> None:
        key = self.cursor_key
        if key != self._last_key:
            self._last_key = key
            self.post_message(self.Highlighted(self, key))

    # -- movement -----------------------------------------------------------------

    @property
    def _page(self) -> int:
        return max(1, self.size.height - 1)

    def move_to(self, index: int) -> None:
        if not self.rows:
            return
        self.cursor = max(0, min(len(self.rows) - 1, index))
        self._ensure_visible()
        self.refresh()
        self._announce()

    def _ensure_visible(self) -> None:
        top = round(self.scroll_y)
        visible = self._page
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False, immediate=True)
        elif self.cursor >= top + visible:
            self.scroll_to(y=self.cursor - visible + 1, animate=False, immediate=True)

    def action_cursor(self, delta: int) -> None:
        self.move_to(self.cursor + delta)

    def action_page(self, direction: int) -> None:
        self.move_to(self.cursor + direction * self._page)

    def action_first(self) -> None:
        self.move_to(0)

    def action_last(self) -> None:
        self.move_to(len(self.rows) - 1)

    def action_select(self) -> None:
        key = self.cursor_key
        if key is not None:
            self.post_message(self.Selected(self, key))

    def on_resize(self, event: events.Resize) -> None:
        self.virtual_size = Size(event.size.width, len(self.rows) + 1)

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        if offset.y == 0:
            for column, (start, width) in zip(self.columns, self._layout(), strict=True):
                if start <= offset.x < start + width + 1:
                    self.post_message(self.HeaderClicked(self, column.key))
                    return
            return
        index = round(self.scroll_y) + offset.y - 1
        if 0 <= index < len(self.rows):
            self.move_to(index)
            if event.chain >= 2:
                self.action_select()

    # -- drawing ------------------------------------------------------------------

    @property
    def _width(self) -> int:
        """Cells available to rows (the vertical scrollbar, when shown, is not ours)."""
        return self.scrollable_content_region.width

    def _layout(self) -> list[tuple[int, int]]:
        """(x, width) of every column at the current width; one space between columns."""
        total = self._width
        fixed = sum(c.width for c in self.columns if c.width) + len(self.columns) - 1
        flex = [c for c in self.columns if not c.width]
        spare = max(0, total - fixed)
        flex_width = max((c.min_width for c in flex), default=0)
        if flex:
            flex_width = max(flex_width, spare // len(flex))
        out = []
        x = 0
        for column in self.columns:
            width = column.width or flex_width
            out.append((x, width))
            x += width + 1
        return out

    def _line(self, cells: Sequence[Text | str], base: Style) -> Text:
        line = Text(no_wrap=True, end="", style=base)
        for index, ((_, width), column, cell) in enumerate(
            zip(self._layout(), self.columns, cells, strict=False)
        ):
            piece = cell if isinstance(cell, Text) else Text(str(cell))
            piece = piece.copy()
            if piece.cell_len > width:
                piece.truncate(width - 1)
                piece.append("…")
            pad = width - piece.cell_len
            if column.align == "right":
                line.append(" " * pad)
                line.append_text(piece)
            else:
                line.append_text(piece)
                line.append(" " * pad)
            if index < len(self.columns) - 1:
                line.append(" ")
        return line

    def _strip(self, line: Text, style: Style) -> Strip:
        width = self._width
        segments = list(line.render(self.app.console))
        strip = Strip(segments).crop_extend(0, width, style)
        return strip

    def render_line(self, y: int) -> Strip:
        width = self._width
        base = self.rich_style
        if y == 0:
            header_style = self.get_component_rich_style("virtual-table--header")
            labels: list[Text | str] = []
            for column in self.columns:
                label = column.label
                if column.key == self.sort_column:
                    label += " ▼" if self.sort_descending else " ▲"
                labels.append(label)
            return self._strip(self._line(labels, header_style), base + header_style)
        index = round(self.scroll_y) + y - 1
        if not self.rows:
            if y == 1:
                return Strip([Segment(self.empty_text, base + Style(dim=True))]).crop_extend(
                    0, width, base
                )
            return Strip.blank(width, base)
        if index >= len(self.rows):
            return Strip.blank(width, base)
        line = self._line(self.render_cells(self.rows[index]), Style())
        style = base
        if index == self.cursor:
            name = "virtual-table--cursor" if self.has_focus else "virtual-table--cursor-blurred"
            cursor_style = self.get_component_rich_style(name)
            line.stylize(cursor_style)
            style = base + cursor_style
        return self._strip(line, style)

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()
