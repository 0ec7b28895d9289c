"""A line-plot widget (braille), with a y axis, an x range line and an optional second
series (eval loss over training loss, for instance).

Drawn with the Line API from runs of (text, style) (see :mod:`tui.widgets.runs`), and
only rebuilt when its data or size changed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from textual.geometry import Size
from textual.strip import Strip

from tui import text
from tui.widgets.cached import CachedGeometry
from tui.widgets.charts import braille_plot, downsample, nice_range
from tui.widgets.runs import Run, StyleCache, strip

AXIS = 8
"""Cells of the y-axis labels."""
EMPTY_CELL = "⠀"

Series = tuple[Sequence[float], Sequence[float | None]]


def plot_runs(
    title: str,
    series: Series,
    extra: Series | None,
    size: Size,
    *,
    style: str,
    extra_style: str,
    extra_label: str,
    note: str,
    fmt: Callable[[float | None], str],
) -> list[list[Run]]:
    """The plot's lines as runs (pure)."""
    xs, ys = series
    width = max(4, size.width - AXIS - 1)
    height = max(1, size.height - 2)
    latest = next((y for y in reversed(ys) if y is not None), None)
    head: list[Run] = [(f"{title} ", "bold"), (fmt(latest), style)]
    if extra_label and extra is not None:
        extra_latest = next((y for y in reversed(extra[1]) if y is not None), None)
        head += [(f"  {extra_label} ", "bold"), (fmt(extra_latest), extra_style)]
    if note:
        head.append((f"  {note}", "dim"))
    lines: list[list[Run]] = [head]
    px, py = downsample(xs, ys, width * 2)
    y_range = nice_range(list(py) + (list(extra[1]) if extra else []))
    if y_range is None or not px:
        lines.append([(" " * AXIS + "waiting for data…", "dim")])
        return lines
    x_values = list(px) + (list(extra[0]) if extra else [])
    x_range = (min(x_values), max(x_values))
    main = braille_plot(px, py, width, height, x_range=x_range, y_range=y_range)
    overlay: list[str] = []
    if extra and extra[0]:
        ex, ey = downsample(extra[0], extra[1], width * 2)
        overlay = braille_plot(ex, ey, width, height, x_range=x_range, y_range=y_range)
    for row in range(height):
        label = fmt(y_range[1]) if row == 0 else fmt(y_range[0]) if row == height - 1 else ""
        runs: list[Run] = [(f"{label:>{AXIS - 1}} │", "dim")]
        line = main[row]
        if not overlay or not overlay[row].strip(EMPTY_CELL):
            runs.append((line, style))
        else:
            # Cells where the second series has dots take its colour (dots merged).
            current, current_style = "", style
            for cell, other in zip(line, overlay[row], strict=True):
                if other != EMPTY_CELL:
                    char, cell_style = chr(ord(cell) | ord(other)), extra_style
                else:
                    char, cell_style = cell, style
                if cell_style != current_style and current:
                    runs.append((current, current_style))
                    current = ""
                current, current_style = current + char, cell_style
            runs.append((current, current_style))
        lines.append(runs)
    low, high = f"step {x_range[0]:,.0f}", f"{x_range[1]:,.0f}"
    gap = max(1, width - len(low) - len(high))
    lines.append([(" " * AXIS + "└" + low + " " * gap + high, "dim")])
    return lines


class LinePlot(CachedGeometry):
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
        self.series: Series = ((), ())
        self.extra: Series | None = None
        self.extra_label = ""
        self.note = ""
        self.styles_cache = StyleCache()
        self._lines: list[list[Run]] | None = None
        self._built_for: Size | None = None

    def set_data(
        self,
        xs: Sequence[float],
        ys: Sequence[float | None],
        *,
        extra: Series | None = None,
        extra_label: str = "",
        note: str = "",
    ) -> None:
        new = ((xs, ys), extra, extra_label, note)
        if new == (self.series, self.extra, self.extra_label, self.note):
            return
        self.series, self.extra, self.extra_label, self.note = new
        self._lines = None
        self.refresh()

    def lines(self) -> list[list[Run]]:
        size = self.view_size
        if self._lines is None or size != self._built_for:
            self._built_for = size
            self._lines = plot_runs(
                self.title,
                self.series,
                self.extra,
                size,
                style=self.style,
                extra_style=self.extra_style,
                extra_label=self.extra_label,
                note=self.note,
                fmt=self.fmt,
            )
        return self._lines

    def render_line(self, y: int) -> Strip:
        width = self.view_size.width
        lines = self.lines()
        runs = lines[y] if 0 <= y < len(lines) else []
        return strip(runs, width, self.base_style, self.styles_cache)
