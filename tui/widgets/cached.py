"""Per-widget caches of what every drawn line asks for.

``Widget.size`` looks the widget up in the screen's layout map and ``rich_style`` walks
its ancestors: tens of microseconds each, and a Line API widget asked for them several
times per line drawn. ``outer_size`` is a plain attribute, so the content size is worked
out again only when that changed (or the CSS did: padding and borders live there).
"""

from __future__ import annotations

from rich.style import Style
from textual.geometry import Size
from textual.widget import Widget


class CachedGeometry(Widget):
    """Adds :attr:`view_size` and :attr:`base_style`, both cached."""

    def __init__(
        self, *, name: str | None = None, id: str | None = None, classes: str | None = None
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._base_style: Style | None = None
        self._sized_for: Size | None = None
        self._view_size = Size(0, 0)

    def notify_style_update(self) -> None:
        self._base_style = None
        self._sized_for = None
        super().notify_style_update()

    @property
    def base_style(self) -> Style:
        """``rich_style``: background and colour from CSS."""
        if self._base_style is None:
            self._base_style = self.rich_style
        return self._base_style

    @property
    def view_size(self) -> Size:
        """``size`` (the content area, inside padding and borders)."""
        outer = self.outer_size
        if outer != self._sized_for:
            self._sized_for = outer
            self._view_size = self.content_region.size
        return self._view_size
