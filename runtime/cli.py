"""``scalectl agent``: the runtime's commands."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the runtime's commands to the root app."""
