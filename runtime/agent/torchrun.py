"""torchrun's command line and output, as the agent sees them (pure functions).

The agent owns torchrun's ``--max-restarts`` (its restart budget: what is left of it in
``torchrun`` restart mode, 0 in ``agent`` mode); passing one after ``--`` is an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from runtime.agent.errors import AgentInputError

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


def nnodes(args: list[str]) -> tuple[int, int] | None:
    """``--nnodes=MIN:MAX`` (or ``N``) from torchrun's options as (min, max); None when
    absent or not numbers."""
    options = _options_part(args)
    for index, arg in enumerate(options):
        name, sep, value = arg.partition("=")
        if name != "--nnodes":
            continue
        if not sep:
            value = options[index + 1] if index + 1 < len(options) else ""
        low, _, high = value.partition(":")
        if low.isdigit() and (high or low).isdigit():
            return int(low), int(high or low)
    return None
