"""``scalectl agent [OPTIONS] -- <torchrun args>``: the node agent's command line.

Every backend starts one agent per node when a job starts, so its start is on the path
to the first step (bench/slurm_submit.py). It is parsed with argparse, not typer: typer's
import and its pydantic-based conversion are ~0.3 s of a ~0.45 s start here, and
``scalectl.entry`` (the console script and ``python -m scalectl``) hands ``agent ...``
to :func:`main` before typer is imported. This is
the only definition of the options; ``scalectl agent --help`` prints this parser's help.

Exit codes: 0 finished; 1 failed (restart budget spent); 2 bad input (these options, or
the ranks exited with 2); 128+N stopped by signal N (143 SIGTERM, 140 SIGUSR2): preempted,
requeue.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NoReturn

from contract.env import JOB_DIR_ENV, NODE_ENV
from runtime.agent.config import AgentConfig, default_job_dir, default_node
from runtime.agent.errors import AgentInputError

PROG = "scalectl agent"
INPUT_ERROR_EXIT_CODE = 2


class _Parser(argparse.ArgumentParser):
    """argparse, but a mistake is one ``error:`` line (the project's rule), not usage."""

    def error(self, message: str) -> NoReturn:
        raise AgentInputError(f"{message}; see `{PROG} --help`")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        usage=f"{PROG} [OPTIONS] -- <torchrun args> <training command>",
        description="Run this node's elastic torchrun and keep it alive (started by every "
        "backend, one per node).",
        epilog="Exit codes: 0 finished; 1 failed (restart budget spent); 2 bad input; "
        "128+N stopped by signal N (143 SIGTERM, 140 SIGUSR2): preempted, requeue.",
        allow_abbrev=False,
    )
    add = parser.add_argument
    add("--job-dir", type=Path, default=None, help=f"Job directory (default: ${JOB_DIR_ENV}).")
    add("--node", default=None, help=f"This node's name (default: ${NODE_ENV} or the host).")
    add("--restarts", type=int, default=0, help="Restart budget of this node.")
    add("--restart-mode", default="torchrun",
        help="torchrun: in place (faster); agent: the whole torchrun.")  # fmt: skip
    add("--backoff-s", type=float, default=1.0, help="Back-off base (restart 2 on).")
    add("--backoff-max-s", type=float, default=60.0, help="Longest back-off.")
    add("--hang-timeout-floor-s", dest="hang_floor_s", type=float, default=120.0,
        help="Least time without a step that counts as a hang.")  # fmt: skip
    add("--hang-multiplier", type=float, default=10.0,
        help="Hang timeout ≥ this × the slowest recent step gap.")  # fmt: skip
    add("--hang-startup-s", type=float, default=600.0,
        help="Allowance for the first step after a (re)start.")  # fmt: skip
    add("--straggler-threshold", type=float, default=0.2,
        help="Fraction slower than the others (0.2 = 20 %%).")  # fmt: skip
    add("--straggler-window", type=int, default=20, help="Steps compared.")
    add("--stop-grace-s", type=float, default=120.0,
        help="Time ranks get to checkpoint after a stop signal.")  # fmt: skip
    add("--poll-s", type=float, default=0.5, help="How often the ranks are checked.")
    add("--telemetry-interval", type=float, default=1.0,
        help="Telemetry sampling interval in s (0: off).")  # fmt: skip
    add("--metrics-port", type=int, default=None,
        help="Serve Prometheus metrics on this port (0: any free).")  # fmt: skip
    add("--metrics-addr", default="127.0.0.1", help="Address the metrics server binds to.")
    add("--policy", default="auto",
        help="local, slurm, kubernetes; auto: kubernetes in a pod, else local.")  # fmt: skip
    add("--preempt-signal", default=None,
        help="slurm: the signal Slurm sends to preempt (slurm.signal, e.g. USR2).")  # fmt: skip
    return parser


def parse(argv: list[str]) -> tuple[AgentConfig, list[str]]:
    """(AgentConfig, torchrun args) from the command line; AgentInputError when wrong."""
    options, torchrun_args = (
        (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    )
    ns = build_parser().parse_args(options)
    cfg = AgentConfig(
        job_dir=ns.job_dir if ns.job_dir is not None else default_job_dir(),
        node=ns.node or default_node(),
        restarts=ns.restarts,
        restart_mode=ns.restart_mode,
        backoff_s=ns.backoff_s,
        backoff_max_s=ns.backoff_max_s,
        hang_floor_s=ns.hang_floor_s,
        hang_multiplier=ns.hang_multiplier,
        hang_startup_s=ns.hang_startup_s,
        straggler_threshold=ns.straggler_threshold,
        straggler_window=ns.straggler_window,
        stop_grace_s=ns.stop_grace_s,
        poll_s=ns.poll_s,
        telemetry_interval_s=ns.telemetry_interval if ns.telemetry_interval > 0 else None,
        metrics_port=ns.metrics_port,
        metrics_addr=ns.metrics_addr,
        policy=ns.policy,
        preempt_signal=ns.preempt_signal,
    )
    return cfg, torchrun_args


def main(argv: list[str] | None = None) -> int:
    """Parse, run the agent, return its exit code; bad input is one line and code 2."""
    from runtime.agent.agent import run_agent

    try:
        cfg, torchrun_args = parse(sys.argv[1:] if argv is None else argv)
        return run_agent(cfg, torchrun_args)
    except AgentInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return INPUT_ERROR_EXIT_CODE
