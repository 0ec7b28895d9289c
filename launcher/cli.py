"""``scalectl launch / jobs / logs / cancel / manifests``: the launcher's commands."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the launcher's commands to the root app."""
