"""A few fixed lines of styled runs: a pane's title, a notice line.

A ``Static`` turns its text into Textual ``Content`` and measures it on every update;
the Telemetry title changes at every refresh tick (GPU power), and as a Static it cost
about a millisecond a tick to update and draw. Drawn from runs with the Line API it
costs a tenth of that. The height comes from CSS, so new text never needs a layout.
"""

from __future__ import annotations

from collections.abc import Sequence

from textual.strip import Strip

from tui.widgets.cached import CachedGeometry
from tui.widgets.runs import Run, StyleCache, plain, strip


class RunLines(CachedGeometry):
    """``set_lines`` then it draws them, each cut with ``…`` where it is too long."""

    DEFAULT_CSS = """
    RunLines {
        height: 1;
    }
    """

    def __init__(self, lines: Sequence[Sequence[Run]] = (), *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.lines: tuple[tuple[Run, ...], ...] = tuple(tuple(line) for line in lines)
        self.styles_cache = StyleCache()

    def set_lines(self, lines: Sequence[Sequence[Run]]) -> None:
        new = tuple(tuple(line) for line in lines)
        if new != self.lines:
            self.lines = new
            self.refresh()

    @property
    def text(self) -> str:
        """The lines as plain text (for tests and the clipboard)."""
        return "\n".join(plain(line) for line in self.lines)

    def render_line(self, y: int) -> Strip:
        runs = self.lines[y] if 0 <= y < len(self.lines) else ()
        return strip(runs, self.view_size.width, self.base_style, self.styles_cache, ellipsis=True)
