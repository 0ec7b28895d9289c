"""``scalectl plan ...``: the planner's commands.

Heavy imports (numpy, pydantic models, rich) happen inside the command functions so
``scalectl --help`` stays fast. Bad input raises PlanInputError (or a pydantic
ValidationError), which the root CLI prints as one line with exit code 2.

Each command lives in its own module (planner/cli_<command>.py); this one registers them.
"""

from __future__ import annotations

import typer

from planner.cli_capacity import capacity_command
from planner.cli_catalog import gpus_command, models_command
from planner.cli_estimate import estimate_command
from planner.cli_export import export_command
from planner.cli_search import search_command
from planner.cli_validate import validate_command

plan_app = typer.Typer(
    help="Estimate memory, time, energy, cost and CO2 of a training run, search the layouts, "
    "size the cluster; list the catalogs.",
    no_args_is_help=True,
)

# Registration order is the order `scalectl plan --help` lists the commands in.
plan_app.command("estimate")(estimate_command)
plan_app.command("search")(search_command)
plan_app.command("capacity")(capacity_command)
plan_app.command("gpus")(gpus_command)
plan_app.command("models")(models_command)
plan_app.command("validate")(validate_command)
plan_app.command("export")(export_command)


def register(app: typer.Typer) -> None:
    app.add_typer(plan_app, name="plan")
