"""A line-plot widget (braille), with a y axis, an x range line and an optional second
series (eval loss over training loss, for instance)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rich.text import Text
from textual.widget import Widget

from tui import text
from tui.widgets.charts import braille_plot, downsample, nice_range

AXIS = 8
"""Cells of the y-axis labels."""


class LinePlot(Widget):
    """``set_data`` then it draws itself at whatever size the layout gives it."""

    DEFAULT_CSS = """
    LinePlot {
        height: 10;
        padding: 0 1;
    }
    """

    def __init__(
        self,
        title: str,
        *,
        style: str = "cyan",
        extra_style: str = "magenta",
        fmt: Callable[[float | None], str] = text.si,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.title = title
        self.style = style
        self.extra_style = extra_style
        self.fmt = fmt
        self.xs: Sequence[float] = ()
        self.ys: Sequence[float | None] = ()
        self.extra: tuple[Sequence[float], Sequence[float | None]] | None = None
        self.extra_label = ""
        self.note = ""

    def set_data(
        self,
        xs: Sequence[float],
        ys: Sequence[float | None],
        *,
        extra: tuple[Sequence[float], Sequence[float | None]] | None = None,
        extra_label: str = "",
        note: str = "",
    ) -> None:
        self.xs, self.ys, self.extra, self.extra_label, self.note = xs, ys, extra, extra_label, note
        self.refresh()

    def render(self) -> Text:
        width = max(4, self.size.width - AXIS - 1)
        height = max(1, self.size.height - 2)
        out = Text(no_wrap=True, overflow="crop")
        latest = next((y for y in reversed(self.ys) if y is not None), None)
        out.append(f"{self.title} ", style="bold")
        out.append(self.fmt(latest), style=self.style)
        if self.extra_label and self.extra is not None:
            extra_latest = next((y for y in reversed(self.extra[1]) if y is not None), None)
            out.append(f"  {self.extra_label} ", style="bold")
            out.append(self.fmt(extra_latest), style=self.extra_style)
        if self.note:
            out.append(f"  {self.note}", style="dim")
        out.append("\n")
        xs, ys = downsample(self.xs, self.ys, width * 2)
        all_ys = list(ys) + (list(self.extra[1]) if self.extra else [])
        y_range = nice_range(all_ys)
        if y_range is None or not xs:
            out.append(" " * AXIS + "waiting for data…", style="dim")
            return out
        x_values = list(xs) + (list(self.extra[0]) if self.extra else [])
        x_range = (min(x_values), max(x_values))
        main = braille_plot(xs, ys, width, height, x_range=x_range, y_range=y_range)
        extra_rows: list[str] = []
        if self.extra and self.extra[0]:
            ex, ey = downsample(self.extra[0], self.extra[1], width * 2)
            extra_rows = braille_plot(ex, ey, width, height, x_range=x_range, y_range=y_range)
        for row in range(height):
            label = ""
            if row == 0:
                label = self.fmt(y_range[1])
            elif row == height - 1:
                label = self.fmt(y_range[0])
            out.append(f"{label:>{AXIS - 1}} ", style="dim")
            out.append("│", style="dim")
            line = main[row]
            extra_line = extra_rows[row] if extra_rows else ""
            for column, char in enumerate(line):
                other = extra_line[column] if extra_line else "⠀"
                if other != "⠀":
                    merged = chr(ord(char) | ord(other))
                    out.append(merged, style=self.extra_style)
                else:
                    out.append(char, style=self.style)
            out.append("\n")
        low, high = f"step {x_range[0]:,.0f}", f"{x_range[1]:,.0f}"
        gap = max(1, width - len(low) - len(high))
        out.append(" " * AXIS + "└" + low + " " * gap + high, style="dim")
        return out
