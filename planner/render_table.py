"""Draw a ``planner.table_fit`` table with rich: the CLI's one table style (no box, two
spaces between columns, bold headers on a terminal), fitted to ``console.width``.

rich's Console takes its width from the terminal, ``COLUMNS`` when set, and 80 in a pipe
or file; it writes no ANSI codes when stdout is not a terminal and no colour under
``NO_COLOR``. Cells are drawn as plain Text, never parsed as markup (a job named
``[red]x`` prints as written).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from rich.console import Console
from rich.table import Table
from rich.text import Text

from planner.table_fit import COLUMN_GAP, Cell, Column, Fitted, fit_table

Style = Callable[[str], str]
"""A cell's text -> its rich style (``"green"``, ``"dim"``, ``""``)."""


def print_table(
    console: Console,
    columns: list[Column],
    rows: list[list[Cell]],
    *,
    title: str | None = None,
    styles: Mapping[str, Style] | None = None,
    say_dropped: bool = True,
    show_header: bool = True,
) -> Fitted:
    """Fit, draw, and say in one dim line which columns were left out (unless the caller
    says it: ``say_dropped=False``); returns the fit."""
    fitted = fit_table(columns, rows, console.width)
    if title:
        console.print(Text(title, style="bold"))
    table = Table(
        box=None,
        header_style="bold",
        pad_edge=False,
        padding=(0, COLUMN_GAP, 0, 0),
        show_header=show_header,
    )
    for col, width in zip(fitted.columns, fitted.widths, strict=True):
        wrap = col.shrink == "wrap"
        table.add_column(
            col.header,
            justify=col.justify,
            width=width,
            no_wrap=not wrap,
            overflow="fold" if wrap else "ellipsis",
        )
    styles = styles or {}
    for row in fitted.rows:
        cells = []
        for col, text in zip(fitted.columns, row, strict=True):
            style = styles.get(col.header)
            cells.append(Text(text, style=style(text) if style else ""))
        table.add_row(*cells)
    console.print(table)
    if fitted.dropped and say_dropped:
        print_dropped(console, fitted.dropped)
    return fitted


def print_dropped(console: Console, dropped: list[str]) -> None:
    """The one line naming the columns a narrow terminal left out."""
    console.print(
        Text(
            f"not shown at {console.width} columns: {', '.join(dropped)} "
            "(--json or a wider terminal shows them)",
            style="dim",
        )
    )


def print_line(console: Console, text: str, style: str = "") -> None:
    """A line of prose: wrapped at word boundaries, never parsed as markup."""
    console.print(Text(text, style=style))
