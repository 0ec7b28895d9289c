"""Every event kind of ``events.jsonl``, the fields each carries, one writer and one reader.

A record is one JSON object a line: ``ts`` (seconds since the epoch), ``event`` (the
kind) and the kind's fields. Who writes it names itself in ``source`` (``launcher``,
``agent``, ``trainer``) where it says so; the Slurm side (the agent's Slurm policy, the
end helper) adds ``node``, ``slurm_job_id`` and ``restart`` (:data:`SLURM_TAGS`) to each
of its events.

Writers call :func:`append_event`, which accepts only an :class:`EventKind`; readers
compare ``record.get("event")`` with an :class:`EventKind` (a ``str`` enum, so it equals
its value) or go through :func:`parse_event`/:func:`read_events`, which keep a record
of a kind they do not know (a newer writer) as it is, with ``kind`` None, and never
raise on it. Add a kind to contract.event_kinds, with its fields in ``EVENT_FIELDS``,
before writing it.

Standard library only: every rank imports this module (runtime.rank_exec, progress).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contract.event_fields import EVENT_FIELDS, SLURM_TAGS, EventSpec
from contract.event_kinds import EventKind
from contract.jobdir import JobDir, append_jsonl, finite, now_ts, read_jsonl

__all__ = [
    "EVENT_FIELDS",
    "SLURM_TAGS",
    "Event",
    "EventKind",
    "EventSpec",
    "UnknownEventKindError",
    "append_event",
    "event_kind",
    "event_record",
    "parse_event",
    "read_events",
]


class UnknownEventKindError(ValueError):
    """A writer named a kind that is not an :class:`EventKind` (a programming error)."""


def event_kind(name: object) -> EventKind | None:
    """The kind called ``name``, or None when it is not one (a newer writer, or garbage)."""
    if isinstance(name, EventKind):
        return name
    try:
        return EventKind(name)
    except ValueError:
        return None


def append_event(job_dir: JobDir | Path, event: EventKind, **fields: Any) -> dict[str, Any]:
    """Record one lifecycle event; ``event`` must be an :class:`EventKind` (or its value)."""
    kind = event_kind(event)
    if kind is None:
        raise UnknownEventKindError(
            f"event kind {event!r} is not in contract.events.EventKind; add it there first"
        )
    root = job_dir if isinstance(job_dir, JobDir) else JobDir(Path(job_dir))
    record: dict[str, Any] = {"ts": now_ts(), "event": kind.value, **fields}
    append_jsonl(root.events, record)
    return record


def event_record(event: EventKind, **fields: Any) -> dict[str, Any]:
    """The record :func:`append_event` would write, for writers with their own file handle."""
    kind = event_kind(event)
    if kind is None:
        raise UnknownEventKindError(
            f"event kind {event!r} is not in contract.events.EventKind; add it there first"
        )
    return {"ts": now_ts(), "event": kind.value, **fields}


@dataclass(frozen=True)
class Event:
    """One record of ``events.jsonl`` as a reader sees it."""

    kind: EventKind | None
    """None when the writer used a kind this version does not know; ``record`` has it all."""
    name: str
    """The kind as written (``"?"`` when the record has none)."""
    ts: float | None
    source: str | None
    record: dict[str, Any] = field(repr=False)
    """The whole record, every field as written."""

    def get(self, key: str, default: Any = None) -> Any:
        return self.record.get(key, default)


def parse_event(record: Mapping[str, Any]) -> Event:
    """A record as an :class:`Event`; never raises (unknown kinds keep ``kind`` None)."""
    raw = record.get("event")
    source = record.get("source")
    return Event(
        kind=event_kind(raw),
        name=str(raw) if raw is not None else "?",
        ts=finite(record.get("ts")),
        source=str(source) if source is not None else None,
        record=dict(record),
    )


def read_events(job_dir: JobDir | Path) -> list[Event]:
    """Every complete event of a job, oldest first (torn and corrupt lines skipped)."""
    root = job_dir if isinstance(job_dir, JobDir) else JobDir(Path(job_dir))
    return [parse_event(record) for record in read_jsonl(root.events).records]
