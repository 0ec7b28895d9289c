"""``scalectl tui``."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the TUI command to the root app."""
