"""The runtime's commands: ``scalectl agent`` (the node agent) and ``scalectl telemetry``."""

from __future__ import annotations

from pathlib import Path

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
    )(_agent)


def _agent(
    torchrun_args: list[str] = typer.Argument(
        None, help="After --: torchrun's arguments and the training command.", metavar="-- ARGS"
    ),
    job_dir: Path | None = typer.Option(
        None, "--job-dir", help="Job directory (default: $SCALECTL_JOB_DIR)."
    ),
    node: str | None = typer.Option(
        None, "--node", help="This node's name (default: $SCALECTL_NODE or the host name)."
    ),
    restarts: int = typer.Option(0, "--restarts", help="Restart budget of this node."),
    restart_mode: str = typer.Option(
        "torchrun", "--restart-mode", help="torchrun: in place (faster); agent: whole torchrun."
    ),
    backoff_s: float = typer.Option(1.0, "--backoff-s", help="Back-off base (restart 2 on)."),
    backoff_max_s: float = typer.Option(60.0, "--backoff-max-s", help="Longest back-off."),
    hang_floor_s: float = typer.Option(
        120.0, "--hang-timeout-floor-s", help="Least time without a step that counts as a hang."
    ),
    hang_multiplier: float = typer.Option(
        10.0, "--hang-multiplier", help="Hang timeout ≥ this × the slowest recent step gap."
    ),
    hang_startup_s: float = typer.Option(
        600.0, "--hang-startup-s", help="Allowance for the first step after a (re)start."
    ),
    straggler_threshold: float = typer.Option(
        0.2, "--straggler-threshold", help="Fraction slower than the others (0.2 = 20 %)."
    ),
    straggler_window: int = typer.Option(20, "--straggler-window", help="Steps compared."),
    stop_grace_s: float = typer.Option(
        120.0, "--stop-grace-s", help="Time ranks get to checkpoint after a stop signal."
    ),
    poll_s: float = typer.Option(0.5, "--poll-s", help="How often the ranks are checked."),
    telemetry_interval: float = typer.Option(
        1.0, "--telemetry-interval", help="Telemetry sampling interval in s (0: off)."
    ),
    metrics_port: int | None = typer.Option(
        None, "--metrics-port", help="Serve Prometheus metrics on this port (0: any free)."
    ),
    metrics_addr: str = typer.Option(
        "127.0.0.1", "--metrics-addr", help="Address the metrics server binds to."
    ),
) -> None:
    """Run this node's elastic torchrun and keep it alive (started by every backend).

    Exit codes: 0 finished; 1 failed (restart budget spent); 2 bad input (these options,
    or the ranks exited with 2); 128+N stopped by signal N (143 SIGTERM, 140 SIGUSR2):
    preempted, requeue.
    """
    from runtime.agent import AgentConfig, run_agent
    from runtime.agent.config import default_job_dir, default_node

    cfg = AgentConfig(
        job_dir=job_dir if job_dir is not None else default_job_dir(),
        node=node or default_node(),
        restarts=restarts,
        restart_mode=restart_mode,
        backoff_s=backoff_s,
        backoff_max_s=backoff_max_s,
        hang_floor_s=hang_floor_s,
        hang_multiplier=hang_multiplier,
        hang_startup_s=hang_startup_s,
        straggler_threshold=straggler_threshold,
        straggler_window=straggler_window,
        stop_grace_s=stop_grace_s,
        poll_s=poll_s,
        telemetry_interval_s=telemetry_interval if telemetry_interval > 0 else None,
        metrics_port=metrics_port,
        metrics_addr=metrics_addr,
    )
    raise typer.Exit(run_agent(cfg, list(torchrun_args or [])))


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
