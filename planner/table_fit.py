"""Fit a table to a terminal width: columns by priority, values abbreviated, headers whole.

Pure (standard library only), so the planner's and the launcher's CLIs share it and the
tests can check the arithmetic without a terminal; ``planner.render_table`` draws the
result with rich. The order of the steps, each taken only while the table is too wide:

1. numbers take their compact form (a cell may offer several renderings, longest first:
   ``14336`` then ``14.3k``);
2. shrinkable columns narrow to their ``min_width`` (names keep their distinguishing
   tail with a middle ellipsis, ``fau…ty2``; free text ends in ``…`` or wraps);
3. columns drop, the highest ``priority`` number first (0 never drops);
4. shrinkable columns narrow further, to 8 characters.

A header is never cut: a column is never narrower than its header.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Shrink = Literal["none", "middle", "end", "wrap"]
ELLIPSIS = "…"
COLUMN_GAP = 2
"""Spaces between two columns (the CLI's tables have no box: the most room for values)."""
_HARD_FLOOR = 8
"""Step 4 narrows a shrinkable column to at most this (or its header)."""


@dataclass(frozen=True)
class Column:
    """One column: its header, how it gives way, and when it drops."""

    header: str
    priority: int = 0
    """0: always shown; on a narrow terminal the highest number drops first."""
    justify: Literal["left", "right"] = "left"
    shrink: Shrink = "none"
    """none: always whole; middle: ``fau…ty2``; end: ``rank 1 ex…``; wrap: more lines."""
    min_width: int = 12
    """Step 2 narrows a shrinkable column to this before any column drops; step 4 to 8
    (never narrower than its header)."""


Cell = str | tuple[str, ...]
"""A value, or its renderings from the longest to the most compact (``("14336", "14.3k")``)."""


@dataclass
class Fitted:
    """The table as it will be drawn: kept columns, their widths, and text cells."""

    columns: list[Column]
    widths: list[int]
    rows: list[list[str]]
    dropped: list[str] = field(default_factory=list)
    """Headers of the columns left out (``--json`` or a wider terminal shows them)."""

    @property
    def width(self) -> int:
        """Characters of the widest line."""
        return sum(self.widths) + COLUMN_GAP * max(0, len(self.widths) - 1)


def compact_count(value: float) -> str:
    """``14336`` -> ``14.3k``, ``6.74e9`` -> ``6.74B``: three significant digits."""
    for suffix, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.3g}"


def count_cell(value: int | float) -> Cell:
    """An integer cell that abbreviates on a narrow terminal: ``("14336", "14.3k")``."""
    return (f"{value:g}" if isinstance(value, float) else str(value), compact_count(value))


def cut(text: str, width: int, how: Shrink) -> str:
    """``text`` in at most ``width`` characters (``wrap`` is left to the renderer)."""
    if len(text) <= width or how in ("none", "wrap") or width < 1:
        return text
    if width == 1:
        return ELLIPSIS
    if how == "end":
        return text[: width - 1].rstrip() + ELLIPSIS
    tail = width // 2  # the longer half: the tail tells ``faulty`` from ``faulty2``
    head = width - 1 - tail
    return text[:head] + ELLIPSIS + text[len(text) - tail :]


def _longest_word(text: str) -> int:
    return max((len(word) for word in text.split()), default=0)


def fit_table(columns: list[Column], rows: list[list[Cell]], width: int) -> Fitted:
    """Choose, narrow and abbreviate so the table is at most ``width`` characters wide
    where its priority-0 columns allow (steps in the module docstring)."""
    n = len(columns)
    compact = [False] * n

    def text(i: int, cell: Cell) -> str:
        if isinstance(cell, str):
            return cell
        return cell[-1] if compact[i] else cell[0]

    def natural(i: int) -> int:
        return max([len(columns[i].header), *(len(text(i, r[i])) for r in rows)])

    def floor(i: int, soft: bool) -> int:
        col = columns[i]
        if col.shrink == "none":
            return natural(i)
        low = max(len(col.header), col.min_width if soft else min(col.min_width, _HARD_FLOOR))
        if col.shrink == "wrap" and soft and rows:  # words stay whole while it can
            low = max(low, min(_longest_word(text(i, r[i])) for r in rows))
        return min(natural(i), low)

    kept = list(range(n))
    widths = {i: natural(i) for i in kept}

    def total() -> int:
        return sum(widths[i] for i in kept) + COLUMN_GAP * max(0, len(kept) - 1)

    def narrow(soft: bool) -> None:
        # The widest shrinkable column gives way first, one character at a time.
        while total() > width:
            room = [i for i in kept if widths[i] > floor(i, soft)]
            if not room:
                return
            widest = max(room, key=lambda i: widths[i])
            widths[widest] -= 1

    if total() > width:
        for i in range(n):  # a column abbreviates only where that makes it narrower
            full = natural(i)
            compact[i] = True
            compact[i] = natural(i) < full
        widths = {i: natural(i) for i in kept}
    if total() > width:
        narrow(soft=True)
    dropped: list[str] = []
    while total() > width:
        candidates = [i for i in kept if columns[i].priority > 0]
        if not candidates:
            break
        worst = max(candidates, key=lambda i: (columns[i].priority, i))
        kept.remove(worst)
        dropped.append(columns[worst].header)
        widths = {i: natural(i) for i in kept}
        narrow(soft=True)
    narrow(soft=False)
    # Room left over after a drop goes back, a character at a time in turn, to the
    # columns that gave way.
    while total() < width:
        short = [i for i in kept if widths[i] < natural(i)]
        if not short:
            break
        for i in short[: width - total()]:
            widths[i] += 1
    return Fitted(
        columns=[columns[i] for i in kept],
        widths=[widths[i] for i in kept],
        rows=[[cut(text(i, r[i]), widths[i], columns[i].shrink) for i in kept] for r in rows],
        dropped=[h for h in (c.header for c in columns) if h in dropped],
    )
