"""A virtual table: renders only the rows on screen, so 2,000 (or 200,000) rows cost
the same to filter, sort and redraw.

Textual's DataTable measures every cell as rows are added (seconds for 2,000 jobs);
this widget keeps the rows as given, formats a row only when its line is drawn, pins a
header line at the top, and scrolls itself (:class:`~tui.widgets.scroller.LineScroller`),
so a filter that changes the row count repaints the table alone. Keyboard: arrows or
j/k, PgUp/PgDn, Home/End (g/G), Enter; mouse: click a row to select it (double-click
opens it), click a header to sort by it, wheel or scrollbar to scroll.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.strip import Strip

from tui.widgets.scroller import LineScroller


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


class VirtualTable(LineScroller):
    """Rows with a cursor; the owner supplies rows (already filtered and sorted)."""

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

    header_lines = 1

    class Highlighted(Message):
        """The cursor moved to the row with ``key`` (None: the table is empty)."""

        def __init__(self, table: VirtualTable, key: str | None) -> None:
            super().__init__()
            self.table = table
            self.key = key

    class Selected(Message):
        """Enter (or a double click) on the row with ``key``."""

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
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(id=id, classes=classes)
        self.columns = list(columns)
        self.render_cells = render_cells
        self.key_of = key_of
        self.rows: Sequence[Any] = ()
        self.cursor = 0
        self.sort_column: str | None = None
        self.sort_descending = False
        self.empty_text = empty_text
        self._last_key: str | None = None

    # -- data ---------------------------------------------------------------------------

    def line_count(self) -> int:
        return len(self.rows)

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
        self.clamp()
        self.show_line(self.cursor)
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
            # Sent as the table even when a parent's handler moved the cursor (a filter
            # typed into the Jobs pane): Textual stops a message that its sender's child
            # posts at that sender, and the app never heard the selection change.
            self.post_message(self.Highlighted(self, key).set_sender(self))

    # -- movement -----------------------------------------------------------------------

    def move_to(self, index: int) -> None:
        if not self.rows:
            return
        self.cursor = max(0, min(len(self.rows) - 1, index))
        self.show_line(self.cursor)
        self.refresh()
        self._announce()

    def action_cursor(self, delta: int) -> None:
        self.move_to(self.cursor + delta)

    def action_page(self, direction: int) -> None:
        self.move_to(self.cursor + direction * self.page)

    def action_first(self) -> None:
        self.move_to(0)

    def action_last(self) -> None:
        self.move_to(len(self.rows) - 1)

    def action_select(self) -> None:
        key = self.cursor_key
        if key is not None:
            self.post_message(self.Selected(self, key))

    def on_click(self, event: events.Click) -> None:
        if self.scrollbar_clicked(event):
            return
        offset = event.get_content_offset(self)
        if offset is None:
            return
        if offset.y == 0:
            for column, (start, width) in zip(self.columns, self._layout(), strict=True):
                if start <= offset.x < start + width + 1:
                    self.post_message(self.HeaderClicked(self, column.key))
                    return
            return
        index = self.top + offset.y - 1
        if 0 <= index < len(self.rows):
            self.move_to(index)
            if event.chain >= 2:
                self.action_select()

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()

    # -- drawing ------------------------------------------------------------------------

    def _layout(self) -> list[tuple[int, int]]:
        """(x, width) of every column at the current width; one space between columns."""
        total = self.view_width
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
        layout = self._layout()
        for index, ((_, width), column, cell) in enumerate(
            zip(layout, self.columns, cells, strict=False)
        ):
            piece = cell.copy() if isinstance(cell, Text) else Text(str(cell))
            if piece.cell_len > width:
                piece.truncate(width - 1)
                piece.append("…")
            pad = " " * (width - piece.cell_len)
            if column.align == "right":
                line.append(pad)
                line.append_text(piece)
            else:
                line.append_text(piece)
                line.append(pad)
            if index < len(self.columns) - 1:
                line.append(" ")
        return line

    def _strip(self, line: Text, width: int, style: Style) -> Strip:
        return Strip(list(line.render(self.app.console))).crop_extend(0, width, style)

    def render_header_line(self, y: int, width: int) -> Strip:
        header = self.get_component_rich_style("virtual-table--header")
        labels: list[Text | str] = []
        for column in self.columns:
            label = column.label
            if column.key == self.sort_column:
                label += " ▼" if self.sort_descending else " ▲"
            labels.append(label)
        style = self.base_style + header
        return self._strip(self._line(labels, style), width, style)

    def render_content_line(self, index: int, width: int) -> Strip:
        base = self.base_style
        line = self._line(self.render_cells(self.rows[index]), base)
        style = base
        if index == self.cursor:
            name = "virtual-table--cursor" if self.has_focus else "virtual-table--cursor-blurred"
            cursor = self.get_component_rich_style(name)
            line.stylize(cursor)
            style = base + cursor
        return self._strip(line, width, style)

    def render_line(self, y: int) -> Strip:
        if not self.rows and y == 1:
            empty = Text(self.empty_text, style=self.base_style + Style(dim=True))
            return self._strip(empty, self.view_size.width, self.base_style)
        return super().render_line(y)
