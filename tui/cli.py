"""``scalectl tui``."""

from __future__ import annotations

import typer


class TuiInputError(ValueError):
    """A ``scalectl tui`` option is out of range."""

    user_error = True


MIN_REFRESH_S, MAX_REFRESH_S = 0.2, 60.0


def register(app: typer.Typer) -> None:
    """Add the TUI command to the root app."""
    app.command("tui")(tui)


def tui(
    job: str | None = typer.Argument(
        None, help="Job to select at start: id, unique id prefix/suffix, or name."
    ),
    refresh: float = typer.Option(1.0, "--refresh", help="Seconds between refreshes (0.2 to 60)."),
    no_backend_refresh: bool = typer.Option(
        False,
        "--no-backend-refresh",
        help="Do not ask backends (Slurm, Kubernetes, local) for the state of active jobs; "
        "show the registry as it is.",
    ),
) -> None:
    """Terminal UI: jobs across backends, live telemetry, logs, and plan against reality.

    Keys: 1-4 tabs, / filter or search, c cancel, r requeue (Slurm), o open job dir,
    f follow logs, l launch a plan, : commands, ? help, q quit.
    """
    if not MIN_REFRESH_S <= refresh <= MAX_REFRESH_S:
        raise TuiInputError(
            f"--refresh {refresh:g}: choose between {MIN_REFRESH_S:g} and {MAX_REFRESH_S:g} seconds"
        )
    from tui.app import ScalectlApp

    ScalectlApp(refresh_s=refresh, refresh_backends=not no_backend_refresh, start_job=job).run()
