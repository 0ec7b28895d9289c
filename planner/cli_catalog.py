"""``scalectl plan gpus`` and ``plan models``: the catalog listings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from pydantic import BaseModel


def gpus_command(
    as_json: bool = typer.Option(False, "--json", help="Print the catalog as JSON."),
) -> None:
    """List the accelerator catalog (planner/data/gpus.yaml)."""
    from planner.catalog import list_gpus

    _print_listing(list_gpus(), as_json, "render_gpus")


def models_command(
    as_json: bool = typer.Option(False, "--json", help="Print the presets as JSON."),
) -> None:
    """List the model presets (planner/data/models.yaml)."""
    from planner.catalog import list_models

    _print_listing(list_models(), as_json, "render_models")


def _print_listing(specs: Sequence[BaseModel], as_json: bool, renderer: str) -> None:
    """``specs`` as one JSON list, or as the table ``planner.render.<renderer>`` draws
    (imported only then: it loads rich)."""
    import json

    if as_json:
        print(json.dumps([spec.model_dump(mode="json") for spec in specs]))
        return
    from planner import render

    getattr(render, renderer)(specs)
