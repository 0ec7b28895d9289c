"""The runtime's commands: ``scalectl agent`` (the node agent) and ``scalectl telemetry``."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the runtime's commands to the root app."""
    telemetry = typer.Typer(
        name="telemetry",
        help="GPU (NVML) and host telemetry of this machine.",
        no_args_is_help=True,
    )
    telemetry.command("sample")(_telemetry_sample)
    app.add_typer(telemetry, name="telemetry")
    app.command(
        "agent",
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
        add_help_option=False,
    )(_agent)


def _agent(ctx: typer.Context) -> None:
    """Run this node's elastic torchrun and keep it alive (started by every backend).

    `scalectl agent --help` lists its options. The command line is parsed by
    ``runtime.agent.main`` (argparse, fast to start); ``scalectl``'s entry points hand it
    ``agent ...`` before typer is involved, so this body only runs when the typer app is
    called directly, without ``--`` (click consumes it).
    """
    from runtime.agent.main import main

    raise typer.Exit(main(list(ctx.args)))


def _telemetry_sample(
    interval: float = typer.Option(1.0, "--interval", help="Seconds between samples."),
    count: int | None = typer.Option(
        None, "--count", help="Stop after this many samples (default: until Ctrl-C)."
    ),
    json_output: bool = typer.Option(
        False, "--json", help="Print each sample as its JSON record, one line each."
    ),
    per_core: bool = typer.Option(False, "--per-core", help="Also sample each CPU core."),
    metrics_port: int | None = typer.Option(
        None, "--metrics-port", help="Also serve Prometheus metrics on this port (0: any free)."
    ),
    metrics_addr: str = typer.Option(
        "127.0.0.1", "--metrics-addr", help="Address the metrics server binds to."
    ),
) -> None:
    """Print telemetry samples of this machine (GPUs through NVML, host through psutil)."""
    from runtime.telemetry.command import sample_command

    sample_command(
        interval_s=interval,
        count=count,
        json_output=json_output,
        per_core=per_core,
        metrics_port=metrics_port,
        metrics_addr=metrics_addr,
    )
