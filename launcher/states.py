"""Job states shared by every backend, the registry and the UI.

Standard library only: the TUI and the registry import this without paying for pydantic.
"""

from __future__ import annotations

import enum


class JobState(str, enum.Enum):
    """Where a job is in its life. Every backend maps its scheduler's states onto these.

    A state comes with a free-text ``reason`` (Slurm's ``Priority``/``Resources``,
    Kubernetes' ``Unschedulable``, ``exit code 1``, ...) stored next to it.
    """

    PENDING = "PENDING"
    """Accepted, waiting for resources or for its processes to start."""
    RUNNING = "RUNNING"
    """Training processes are running."""
    COMPLETING = "COMPLETING"
    """Processes are being stopped or cleaned up; the final state follows."""
    COMPLETED = "COMPLETED"
    """Every process exited with code 0."""
    FAILED = "FAILED"
    """A process failed and the restart budget is spent, or the job could not start."""
    CANCELLED = "CANCELLED"
    """Stopped on request (``scalectl cancel``, ``scancel``, a delete)."""
    PREEMPTED = "PREEMPTED"
    """Stopped by the scheduler to make room for other work; may be requeued."""
    REQUEUED = "REQUEUED"
    """Put back in the queue after a preemption or node failure; will run again."""
    TIMEOUT = "TIMEOUT"
    """Stopped because it reached its time limit."""
    UNKNOWN = "UNKNOWN"
    """The backend cannot tell (scheduler unreachable, supervisor lost)."""

    @property
    def is_terminal(self) -> bool:
        """True for states a job never leaves (PREEMPTED is not terminal: requeue may follow)."""
        return self in TERMINAL_STATES

    @property
    def is_active(self) -> bool:
        """True while the job may still hold resources or run again."""
        return not self.is_terminal


TERMINAL_STATES = frozenset(
    {JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED, JobState.TIMEOUT}
)
"""States that are final: the registry refuses to move a job out of them."""


def parse_state(text: str) -> JobState:
    """The JobState named ``text`` (case-insensitive), or UNKNOWN for anything else."""
    try:
        return JobState(text.strip().upper())
    except ValueError:
        return JobState.UNKNOWN


STATE_STYLE: dict[str, str] = {
    "PENDING": "yellow",
    "RUNNING": "green",
    "COMPLETING": "cyan",
    "COMPLETED": "bold green",
    "FAILED": "bold red",
    "CANCELLED": "magenta",
    "PREEMPTED": "yellow",
    "REQUEUED": "yellow",
    "TIMEOUT": "red",
    "UNKNOWN": "dim",
}
"""Rich style of each state's value, shared by ``scalectl jobs`` and the TUI."""
