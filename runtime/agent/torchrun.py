"""torchrun's command line and output, as the agent sees them (pure functions).

The agent owns three torchrun settings and sets them itself:

* ``--max-restarts`` (the agent's restart budget: what is left of it in ``torchrun``
  restart mode, 0 in ``agent`` mode); passing one after ``--`` is an error.
* the graceful-stop timeout (``PET_SHUTDOWN_TIMEOUT``: how long torchrun waits after
  forwarding a stop signal before SIGKILL; torchrun's default of 30 s would cut a long
  checkpoint short) and the signals torchrun forwards (``PET_SIGNALS_TO_HANDLE``, with
  SIGUSR2 added: Slurm's warning signal). Environment variables, because torchrun
  versions without these options ignore them instead of failing.
"""

from __future__ import annotations

import importlib.util
import re
import signal
from dataclasses import dataclass
from pathlib import Path

from runtime.agent.errors import AgentInputError

DEFAULT_FORWARDED = ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT")
"""Signals every torchrun version forwards to its workers."""
EXTRA_FORWARDED = ("SIGUSR2",)
"""Added through ``--signals-to-handle`` where torchrun has it (torch ≥ 2.9)."""

_FAILED = re.compile(r"failed \(exitcode: (-?\d+)\) local_rank: (\d+) \(pid: (\d+)\)")
_OWNED = ("--max-restarts", "--max_restarts")


@dataclass(frozen=True)
class FailureReport:
    """torchrun's report of the first failed worker of a round."""

    exit_code: int
    local_rank: int
    pid: int


def parse_failure(line: str) -> FailureReport | None:
    """``... failed (exitcode: -9) local_rank: 1 (pid: 4242) of binary: ...``"""
    match = _FAILED.search(line)
    if match is None:
        return None
    return FailureReport(int(match.group(1)), int(match.group(2)), int(match.group(3)))


def check_args(args: list[str]) -> list[str]:
    """Validate the arguments for torchrun; returns them without a leading ``--``."""
    if args and args[0] == "--":
        args = args[1:]
    if not args:
        raise AgentInputError(
            "no torchrun arguments: write `scalectl agent [OPTIONS] -- --nproc-per-node=2 "
            "-m runtime.train ...`"
        )
    for arg in _options_part(args):
        if arg.split("=", 1)[0] in _OWNED:
            raise AgentInputError(
                f"{arg}: the agent owns torchrun's restart budget; remove it and pass "
                "--restarts N to `scalectl agent` instead"
            )
    return args


def _options_part(args: list[str]) -> list[str]:
    """torchrun's own options: everything before the training script or ``-m MODULE``."""
    out: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
            out.append(arg)
            continue
        if arg in ("-m", "--module", "--no-python", "--no_python") or not arg.startswith("-"):
            break
        out.append(arg)
        if "=" not in arg and arg not in ("--standalone", "--run-path", "--run_path"):
            skip = True  # "--nnodes 2": the value follows
    return out


def torchrun_argv(python: str, args: list[str], max_restarts: int) -> list[str]:
    return [python, "-m", "torch.distributed.run", f"--max-restarts={max_restarts}", *args]


def supports_signal_forwarding_option() -> bool:
    """Whether this torch's torchrun has ``--signals-to-handle`` (read from its source,
    so the agent does not import torch)."""
    spec = importlib.util.find_spec("torch")
    if spec is None or spec.origin is None:
        return False
    run_py = Path(spec.origin).parent / "distributed" / "run.py"
    try:
        return "signals_to_handle" in run_py.read_text(errors="replace")
    except OSError:
        return False


def forwarded_signals(extended: bool) -> tuple[str, ...]:
    return DEFAULT_FORWARDED + (EXTRA_FORWARDED if extended else ())


def signal_for_torchrun(signum: int, forwarded: tuple[str, ...]) -> int:
    """The signal to send torchrun for a stop signal the agent got: itself if torchrun
    forwards it, else SIGTERM (a signal torchrun does not handle would kill it and leave
    the workers orphaned)."""
    name = signal.Signals(signum).name
    return signum if name in forwarded else signal.SIGTERM
