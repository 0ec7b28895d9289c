"""``scalectl plan ...``: the planner's commands."""

from __future__ import annotations

import typer

plan_app = typer.Typer(
    help="Estimate memory, time, energy, cost and CO2 of a training run; search layouts.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(plan_app, name="plan")
