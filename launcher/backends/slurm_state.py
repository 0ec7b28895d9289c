"""Slurm's view of a job → our :class:`JobState` and a one-line reason (pure functions).

Sources: ``squeue -h -o '%i|%T|%r'`` (live state and scheduling reason) and
``sacct -X -n -P -o JobID,State,ExitCode,Reason`` (accounting, after the job left the
queue; without ``-D`` it reports the latest run of a requeued job). Job state names are
Slurm's (``squeue --help``/``sacct`` "JOB STATE CODES"). The job's own events fill in what
Slurm cannot know: how many requeues were used, and the end helper's verdict.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from contract.events import EventKind
from launcher.backends.base import BackendStatus
from launcher.states import JobState


@dataclass(frozen=True)
class SlurmRecord:
    """One job as squeue or sacct printed it."""

    job_id: str
    """As Slurm prints it (``123`` or ``123_4``)."""
    state: str
    """Slurm's state name, first word only (``CANCELLED by 0`` → ``CANCELLED``)."""
    reason: str = ""
    """Slurm's reason (``Priority``, ``Resources``, ``BeginTime``; ``None`` → empty)."""
    exit_code: int | None = None
    """``sacct`` ExitCode ``code:signal`` as one number: the code, or -signal."""
    source: str = "squeue"
    """``squeue`` or ``sacct``."""


def _clean_reason(text: str) -> str:
    text = text.strip()
    return "" if text in {"None", "(null)", ""} else text


def parse_exit_code(text: str) -> int | None:
    """``"1:0"`` → 1, ``"0:9"`` → -9, ``"0:0"`` → 0; None when unparsable."""
    code, _, sig = text.strip().partition(":")
    try:
        number, signum = int(code), int(sig or 0)
    except ValueError:
        return None
    return -signum if number == 0 and signum else number


def parse_squeue(text: str, handle: str) -> SlurmRecord | None:
    """The line of ``handle`` in ``squeue -h -o '%i|%T|%r'`` output, if any."""
    rows = [line.split("|", 2) for line in text.splitlines() if line.strip()]
    rows = [r for r in rows if len(r) == 3]
    match = [r for r in rows if r[0].strip() == handle] or rows
    if not match:
        return None
    job, state, reason = (part.strip() for part in match[0])
    return SlurmRecord(job, state.split()[0] if state else "UNKNOWN", _clean_reason(reason))


def parse_sacct(text: str, handle: str) -> SlurmRecord | None:
    """The allocation line of ``handle`` in ``sacct -X -n -P -o JobID,State,ExitCode,Reason``."""
    rows = [line.split("|") for line in text.splitlines() if line.strip()]
    rows = [r for r in rows if len(r) >= 4]
    match = [r for r in rows if r[0].strip() == handle] or rows
    if not match:
        return None
    job, state, exit_code, reason = (part.strip() for part in match[-1][:4])
    return SlurmRecord(
        job,
        state.split()[0] if state else "UNKNOWN",
        _clean_reason(reason),
        parse_exit_code(exit_code),
        source="sacct",
    )


_RUNNING = {"RUNNING", "RESIZING", "SIGNALING"}
_COMPLETING = {"COMPLETING", "STAGE_OUT"}
_REQUEUED = {"REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD"}
_FAILED_REASONS = {
    "FAILED": "",
    "OUT_OF_MEMORY": "out of memory",
    "NODE_FAIL": "a node failed",
    "BOOT_FAIL": "a node failed to boot",
    "SPECIAL_EXIT": "special exit",
}


def _last(events: Sequence[dict[str, Any]], name: EventKind) -> dict[str, Any] | None:
    for event in reversed(events):
        if event.get("event") == name:
            return event
    return None


def map_slurm_state(found: SlurmRecord, events: Sequence[dict[str, Any]]) -> BackendStatus:
    """Our state for what Slurm says, with the job's events for the reason."""
    state, reason, code = found.state, found.reason, found.exit_code
    requeues = sum(1 for e in events if e.get("event") == EventKind.REQUEUED)
    finished = _last(events, EventKind.FINISHED)
    verdict = str(finished.get("reason", "")) if finished else ""
    if state == "PENDING":
        if requeues:
            return BackendStatus(JobState.REQUEUED, _join(f"requeued {requeues}x", reason))
        return BackendStatus(JobState.PENDING, reason)
    if state == "CONFIGURING":
        return BackendStatus(JobState.PENDING, "configuring nodes")
    if state in ("SUSPENDED", "STOPPED"):
        return BackendStatus(JobState.PENDING, f"{state.lower()} by Slurm")
    if state in _RUNNING:
        lost = [e for e in events if e.get("event") == EventKind.NODE_LOST]
        note = f"{len(lost)} node(s) lost, running on" if lost and not requeues else ""
        if requeues:
            note = f"requeued {requeues}x"
        return BackendStatus(JobState.RUNNING, _join(note, reason))
    if state in _COMPLETING:
        return BackendStatus(JobState.COMPLETING, reason)
    if state in _REQUEUED:
        return BackendStatus(JobState.REQUEUED, _join(verdict_of_requeue(events), reason))
    if state == "PREEMPTED":
        if found.source == "squeue":
            return BackendStatus(JobState.PREEMPTED, reason)
        return BackendStatus(JobState.CANCELLED, "preempted by Slurm and not requeued", code)
    if state == "COMPLETED":
        return BackendStatus(JobState.COMPLETED, verdict, code)
    if state in _FAILED_REASONS:
        why = verdict or _FAILED_REASONS[state] or (f"exit code {code}" if code else "failed")
        return BackendStatus(JobState.FAILED, why, code)
    if state == "TIMEOUT":
        return BackendStatus(JobState.TIMEOUT, "time limit reached", code)
    if state == "DEADLINE":
        return BackendStatus(JobState.TIMEOUT, "deadline reached", code)
    if state in ("CANCELLED", "REVOKED"):
        return BackendStatus(JobState.CANCELLED, verdict or "cancelled in Slurm", code)
    return BackendStatus(JobState.UNKNOWN, f"Slurm state {state}")


def verdict_of_requeue(events: Sequence[dict[str, Any]]) -> str:
    last = _last(events, EventKind.REQUEUED)
    return str(last.get("reason", "")) if last else ""


def _join(*parts: str) -> str:
    return ": ".join(p for p in parts if p)
