"""Text charts: block sparklines and braille line plots (pure functions, no Textual).

A sparkline cell is one sample drawn with one of eight block heights (``▁``..``█``)
on a fixed scale (utilisation 0–100 %, memory 0–capacity, ...), so equal heights mean
equal values across GPUs; a missing sample (``null`` in telemetry) is a blank.

A braille cell holds a 2 x 4 grid of dots (Unicode U+2800 + dot bits), so a plot of
``w`` x ``h`` cells has ``2w`` x ``4h`` points; consecutive samples are joined with
straight dot lines (Bresenham), and gaps (None) break the line.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

BLOCKS = "▁▂▃▄▅▆▇█"
_BRAILLE_BASE = 0x2800
# Dot bit for (column 0..1, row 0..3) inside a braille cell (ISO/TR 11548-1 numbering).
_DOT_BITS = ((0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80))
_CELLS = tuple(chr(_BRAILLE_BASE + dots) for dots in range(256))
"""The braille character of each combination of dots."""


def sparkline(values: Sequence[float | None], low: float, high: float, width: int) -> str:
    """The last ``width`` samples as block characters on the scale ``low``..``high``."""
    if width <= 0:
        return ""
    recent = values[-width:]
    top = len(BLOCKS) - 1
    span = high - low
    scale = len(BLOCKS) / span if span > 0 else 0.0
    out = [" "] * (width - len(recent))
    for value in recent:
        # None, NaN and infinities are gaps (NaN fails every comparison).
        if value is None or not -math.inf < value < math.inf:
            out.append(" ")
        elif scale == 0.0:
            out.append(BLOCKS[top] if value > low else BLOCKS[0])
        else:
            level = int((value - low) * scale)
            out.append(BLOCKS[0 if level < 0 else top if level > top else level])
    return "".join(out)


def nice_range(values: Sequence[float | None]) -> tuple[float, float] | None:
    """Min and max of the finite values, widened when flat (None when there are none)."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return None
    low, high = min(finite), max(finite)
    if high == low:
        pad = abs(high) * 0.05 or 1.0
        low, high = low - pad, high + pad
    return low, high


def braille_plot(
    xs: Sequence[float],
    ys: Sequence[float | None],
    width: int,
    height: int,
    *,
    x_range: tuple[float, float] | None = None,
    y_range: tuple[float, float] | None = None,
) -> list[str]:
    """``height`` lines of ``width`` braille cells plotting ``ys`` against ``xs``."""
    if width <= 0 or height <= 0:
        return []
    grid = [[0] * width for _ in range(height)]
    points = [(x, y) for x, y in zip(xs, ys, strict=False)]
    y_bounds = y_range or nice_range(ys)
    x_values = [x for x, y in points if y is not None]
    if y_bounds is None or not x_values:
        return ["⠀" * width for _ in range(height)]
    x_low, x_high = x_range or (min(x_values), max(x_values))
    y_low, y_high = y_bounds
    last_col, last_row = width * 2 - 1, height * 4 - 1
    x_scale = last_col / ((x_high - x_low) or 1.0)
    y_scale = last_row / ((y_high - y_low) or 1.0)
    bits = _DOT_BITS
    previous: tuple[int, int] | None = None
    for x, y in points:
        if y is None or not -math.inf < y < math.inf or not -math.inf < x < math.inf:
            previous = None
            continue
        col = round((x - x_low) * x_scale)
        row = round((y_high - y) * y_scale)
        col = 0 if col < 0 else last_col if col > last_col else col
        row = 0 if row < 0 else last_row if row > last_row else row
        if previous is None:
            grid[row >> 2][col >> 1] |= bits[col & 1][row & 3]
        else:
            # Bresenham from the previous point to this one, both ends included (inline:
            # a plot redraws ~200 segments whenever a step arrives).
            c, r = previous
            dx, dy = abs(col - c), -abs(row - r)
            sx, sy = (1 if c < col else -1), (1 if r < row else -1)
            error = dx + dy
            while True:
                grid[r >> 2][c >> 1] |= bits[c & 1][r & 3]
                if c == col and r == row:
                    break
                doubled = 2 * error
                if doubled >= dy:
                    error += dy
                    c += sx
                if doubled <= dx:
                    error += dx
                    r += sy
        previous = (col, row)
    return ["".join([_CELLS[b] for b in line]) for line in grid]


def downsample(
    xs: Sequence[float], ys: Sequence[float | None], points: int
) -> tuple[list[float], list[float | None]]:
    """At most ``points`` (x, y) pairs: the mean of each of ``points`` equal runs."""
    n = min(len(xs), len(ys))
    if n <= points or points <= 0:
        return list(xs[:n]), list(ys[:n])
    out_x: list[float] = []
    out_y: list[float | None] = []
    isfinite = math.isfinite
    for bucket in range(points):
        start = bucket * n // points
        end = max(start + 1, (bucket + 1) * n // points)
        total, count = 0.0, 0
        for y in ys[start:end]:
            if y is not None and isfinite(y):
                total += y
                count += 1
        out_x.append(xs[end - 1])
        out_y.append(total / count if count else None)
    return out_x, out_y
