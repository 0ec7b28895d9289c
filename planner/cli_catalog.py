"""``scalectl plan gpus`` and ``plan models``: the catalog listings."""

from __future__ import annotations

import typer


def gpus_command(
    as_json: bool = typer.Option(False, "--json", help="Print the catalog as JSON."),
) -> None:
    """List the accelerator catalog (planner/data/gpus.yaml)."""
    import json

    from planner.catalog import list_gpus

    specs = list_gpus()
    if as_json:
        print(json.dumps([spec.model_dump(mode="json") for spec in specs]))
        return
    from planner.render import render_gpus

    render_gpus(specs)


def models_command(
    as_json: bool = typer.Option(False, "--json", help="Print the presets as JSON."),
) -> None:
    """List the model presets (planner/data/models.yaml)."""
    import json

    from planner.catalog import list_models

    specs = list_models()
    if as_json:
        print(json.dumps([spec.model_dump(mode="json") for spec in specs]))
        return
    from planner.render import render_models

    render_models(specs)
