"""``scalectl plan export plan.json --to torchtitan|megatron [--toml] [-o FILE]``: a plan as
the configuration of the framework the user trains with (planner/export_frameworks.py).

The text is made in full before anything is written: a plan the target cannot express
is refused (one line naming the field, exit code 2) and no file is created.
"""

from __future__ import annotations

from pathlib import Path

import typer


def export_command(
    plan_file: Path = typer.Argument(..., help="A plan.json (`plan estimate/search --out`)."),
    to: str = typer.Option(..., "--to", help="torchtitan or megatron."),
    toml: bool = typer.Option(
        False,
        "--toml",
        help="torchtitan: the TOML file torchtitan <= 0.2 reads, not 0.3's overrides.",
    ),
    compile_model: bool | None = typer.Option(
        None,
        "--compile/--no-compile",
        help="torchtitan: set compile.enable (the plan does not say; default: leave it).",
    ),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write here instead of stdout."),
) -> None:
    """Write a plan as torchtitan overrides (or TOML) or Megatron-LM arguments."""
    from planner.export_frameworks import export_text, framework_environment
    from planner.export_plan import read_export_plan

    export = read_export_plan(plan_file)
    text = export_text(export, to, toml=toml, compile_model=compile_model)
    for name, value in framework_environment(export, to).items():
        typer.echo(f"note: {to} needs {name}={value} in the ranks' environment", err=True)
    if out is None:
        typer.echo(text, nl=False)
        return
    out.write_text(text, encoding="utf-8")
    typer.echo(f"wrote {out}", err=True)
