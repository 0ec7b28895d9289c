"""The root command: mounts each package's ``cli`` module and holds no logic of its own.

Each package registers its commands through ``register(app)``. Those modules keep heavy
imports (torch, numpy, kubernetes, submitit, textual) inside the command functions, so
``scalectl --help`` stays fast; ``bench/cli_startup.py`` measures it.
"""

from __future__ import annotations

import sys

import typer

from scalectl import __version__
from scalectl.agent_entry import run_agent_if_asked
from scalectl.errors import INPUT_ERROR_EXIT_CODE, user_error_message
from scalectl.fast_help import defer_help_imports, wants_help

app = typer.Typer(
    name="scalectl",
    help="Plan, launch, keep alive and watch distributed LLM training runs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"scalectl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Plan, launch, keep alive and watch distributed LLM training runs."""


def _mount() -> None:
    from launcher import cli as launcher_cli
    from planner import cli as planner_cli
    from runtime import cli as runtime_cli
    from tui import cli as tui_cli

    for module in (planner_cli, launcher_cli, runtime_cli, tui_cli):
        module.register(app)


_mount()


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user-input errors become one line on stderr and exit code 2."""
    args = sys.argv[1:] if argv is None else argv
    run_agent_if_asked(args)  # in-process callers get the agent's parser too (keeps `--`)
    if wants_help(args):
        defer_help_imports()
    try:
        app(args=argv, prog_name="scalectl")
    except SystemExit:
        raise
    except Exception as exc:
        message = user_error_message(exc)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        sys.exit(INPUT_ERROR_EXIT_CODE)
