"""The node agent's settings (one frozen value, validated once at start)."""

from __future__ import annotations

import math
import re
import signal
from dataclasses import dataclass
from pathlib import Path

from contract import env
from runtime.agent.errors import AgentInputError
from runtime.agent.policy import POLICIES

RESTART_MODES = ("torchrun", "agent")

_CATCHABLE = frozenset(
    s.name.removeprefix("SIG") for s in signal.Signals if s not in (signal.SIGKILL, signal.SIGSTOP)
)
"""Signal names (Slurm's spelling, ``USR2``) a process can handle."""

_SAFE_NODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\Z")


@dataclass(frozen=True)
class AgentConfig:
    """What ``scalectl agent`` was told. See ``runtime.agent`` for the policies."""

    job_dir: Path
    """The job directory (events, progress, logs, checkpoints, stacks, telemetry)."""
    node: str
    """This node's name in file names and events."""
    restarts: int = 0
    """Restart budget of this node: failure restarts allowed before the agent gives up.
    Membership changes (a node leaving or joining) do not use it."""
    restart_mode: str = "torchrun"
    """``torchrun``: torchrun restarts its workers in place (``--max-restarts`` = what
    is left of the budget) and the agent restarts torchrun only when torchrun itself
    exits with budget left; ``agent``: torchrun runs with ``--max-restarts=0`` and the
    agent restarts the whole torchrun. ``torchrun`` recovers faster (bench/recovery.py)."""
    backoff_s: float = 1.0
    """Back-off base: restart n (n ≥ 2) waits ``min(backoff_max_s, backoff_s × 2^(n-2))``;
    the first restart waits nothing (one fault is not a crash loop)."""
    backoff_max_s: float = 60.0
    """Longest back-off."""
    hang_floor_s: float = 120.0
    """Least time without a step before a rank counts as hung."""
    hang_multiplier: float = 10.0
    """The hang timeout is at least this many times the slowest recent step-to-step gap."""
    hang_startup_s: float = 600.0
    """Allowance for a rank's first step after a (re)start: imports, rendezvous,
    checkpoint load, compilation."""
    straggler_threshold: float = 0.2
    """A rank whose median compute time exceeds the others' by more than this fraction
    over the window is a straggler (0.2 = 20 % slower)."""
    straggler_window: int = 20
    """Steps per rank the straggler check looks at."""
    straggler_min_excess_s: float = 0.01
    """…and by at least this many seconds per step (timing jitter of tiny steps)."""
    stop_grace_s: float = 120.0
    """After a stop signal: how long the ranks get to checkpoint and exit before SIGKILL."""
    poll_s: float = 0.5
    """How often the agent looks at the ranks and their progress."""
    telemetry_interval_s: float | None = 1.0
    """Telemetry sampling interval; None: no sampler."""
    metrics_port: int | None = None
    """Serve Prometheus metrics on this port (0: any free one); None: no server."""
    metrics_addr: str = "127.0.0.1"
    """Address the metrics server binds to."""
    policy: str = "auto"
    """The backend's policy (``runtime.agent.policy``): ``local``, ``slurm``,
    ``kubernetes``; ``auto``: ``kubernetes`` inside a pod, else ``local``."""
    preempt_signal: str | None = None
    """Slurm policy: the signal Slurm sends before the time limit or to preempt
    (``slurm.signal``, Slurm's spelling, e.g. ``USR2``, the default)."""

    def __post_init__(self) -> None:
        _need(self.restarts >= 0, "--restarts", f"must be 0 or more (got {self.restarts})")
        _need(
            self.restart_mode in RESTART_MODES,
            "--restart-mode",
            f"must be one of {', '.join(RESTART_MODES)} (got {self.restart_mode!r})",
        )
        for name, value in (
            ("--backoff-s", self.backoff_s),
            ("--backoff-max-s", self.backoff_max_s),
            ("--stop-grace-s", self.stop_grace_s),
        ):
            _need(math.isfinite(value) and value >= 0, name, f"must be ≥ 0 s (got {value})")
        for name, value in (
            ("--hang-timeout-floor-s", self.hang_floor_s),
            ("--hang-multiplier", self.hang_multiplier),
            ("--hang-startup-s", self.hang_startup_s),
            ("--poll-s", self.poll_s),
        ):
            _need(math.isfinite(value) and value > 0, name, f"must be > 0 (got {value})")
        _need(
            self.straggler_threshold > 0,
            "--straggler-threshold",
            f"must be > 0, e.g. 0.2 for 20 % (got {self.straggler_threshold})",
        )
        _need(
            self.straggler_window >= 3,
            "--straggler-window",
            f"must be 3 steps or more (got {self.straggler_window})",
        )
        if self.telemetry_interval_s is not None:
            _need(
                math.isfinite(self.telemetry_interval_s) and self.telemetry_interval_s > 0,
                "--telemetry-interval",
                f"must be > 0 s, or 0 for no telemetry (got {self.telemetry_interval_s})",
            )
        if self.metrics_port is not None:
            _need(
                0 <= self.metrics_port <= 65535,
                "--metrics-port",
                f"must be 0-65535 (got {self.metrics_port})",
            )
        _need(
            self.policy in POLICIES,
            "--policy",
            f"must be one of {', '.join(POLICIES)} (got {self.policy!r})",
        )
        if self.preempt_signal is not None:
            _need(
                self.preempt_signal in _CATCHABLE,
                "--preempt-signal",
                f"{self.preempt_signal!r} is not a signal that can be caught; write e.g. USR2",
            )
        _need(
            bool(_SAFE_NODE.match(self.node)),
            "--node",
            f"{self.node!r} is not a plain name (letters, digits, . _ -)",
        )

    def backoff_for(self, restart_number: int) -> float:
        """Seconds to wait before restart ``restart_number`` (1-based)."""
        if restart_number <= 1 or self.backoff_s == 0:
            return 0.0
        return float(min(self.backoff_max_s, self.backoff_s * 2 ** (restart_number - 2)))


def _need(ok: bool, option: str, message: str) -> None:
    if not ok:
        raise AgentInputError(f"{option} {message}")


def default_node() -> str:
    import socket

    node = env.node() or socket.gethostname().split(".")[0] or "localhost"
    return re.sub(r"[^A-Za-z0-9._-]", "-", node).strip(".-") or "localhost"


def default_job_dir() -> Path:
    value = env.job_dir()
    if value is None:
        raise AgentInputError(
            f"--job-dir is required when {env.JOB_DIR_ENV} is not set; pass the job directory"
        )
    return value
