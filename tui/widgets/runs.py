"""Lines as runs of (text, style) turned straight into Strips for the Line API.

Building a Rich ``Text`` per line and letting Textual convert it costs tens of
microseconds per styled span; the GPU grid and the plots draw hundreds of spans a tick,
so they hand Textual ready-made segments instead. Styles are parsed once and combined
with the widget's base style (its background) once per pair.
"""

from __future__ import annotations

from collections.abc import Iterable

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip

Run = tuple[str, str]
"""A piece of text and a Rich style definition (``"bold red"``, ``""`` for none)."""


class StyleCache:
    """Parsed styles combined with one base style. A widget has one base style (its
    background) until the theme changes, so lookups are by the spec string alone."""

    def __init__(self) -> None:
        self._parsed: dict[str, Style] = {}
        self._base: Style | None = None
        self._combined: dict[str, Style] = {}

    def get(self, base: Style, spec: str) -> Style:
        if base is not self._base:
            self._base = base
            self._combined = {}
        found = self._combined.get(spec)
        if found is None:
            parsed = self._parsed.get(spec)
            if parsed is None:
                parsed = self._parsed[spec] = Style.parse(spec) if spec else Style()
            found = self._combined[spec] = base + parsed
        return found


def strip(
    runs: Iterable[Run], width: int, base: Style, styles: StyleCache, *, ellipsis: bool = False
) -> Strip:
    """A Strip of exactly ``width`` cells (cropped or padded with the base style); with
    ``ellipsis``, a cropped line ends in ``…``.

    The cell length is summed while the segments are made, so Textual need not measure
    the line again (half the cost of a line, before)."""
    get = styles.get
    segments = []
    cells = 0
    for text, spec in runs:
        if text:
            segments.append(Segment(text, get(base, spec)))
            cells += cell_len(text)
    if cells < width:
        segments.append(Segment(" " * (width - cells), base))
        return Strip(segments, width)
    if cells == width:
        return Strip(segments, width)
    if not ellipsis or width < 2:
        return Strip(segments, cells).crop(0, width)
    kept = Strip(segments, cells).crop(0, width - 1)
    last = list(kept)[-1].style if kept.cell_length else base
    return Strip([*kept, Segment("…", last)], width)


def plain(runs: Iterable[Run]) -> str:
    return "".join(text for text, _ in runs)
