"""A job's state timeline from ``events.jsonl``.

Events (one JSON object a line, with ``ts``, ``event`` and ``source``): ``submitted``,
``started``, ``rank_failed``, ``restarted``, ``resized``, ``preempted``, ``resumed``,
``checkpoint_saved``, ``hang_detected``, ``stopping``, ``cancelled``, ``finished``, ...
New kinds appear as the runtime grows, so an unknown event is shown with its fields
rather than dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from contract.events import EventKind, parse_event
from contract.jobdir import JobDir
from contract.plan_layout import last_layout_applied
from contract.run_facts import TrainerEvents
from tui.data.follow import JsonlTail
from tui.text import finite

MAX_EVENTS = 2000
"""Events kept (checkpoint events of a long run are many; the newest matter)."""

EVENT_STYLE: dict[str, str] = {
    EventKind.SUBMITTED: "dim",
    EventKind.STARTED: "green",
    EventKind.RESUMED: "green",
    EventKind.TRAINING_COMPLETE: "green",
    EventKind.FINISHED: "bold",
    EventKind.RANK_FAILED: "bold red",
    EventKind.FAILED: "bold red",
    EventKind.HANG_DETECTED: "bold red",
    EventKind.STRAGGLER_DETECTED: "yellow",
    EventKind.RESTARTED: "yellow",
    EventKind.RESIZED: "cyan",
    EventKind.PREEMPTED: "magenta",
    EventKind.REQUEUED: "magenta",
    EventKind.CANCELLED: "magenta",
    EventKind.STOPPING: "magenta",
    EventKind.CHECKPOINT_SAVED: "blue",
}

_QUIET_KEYS = frozenset(
    {"ts", "event", "source", "job_id", "command", "agents", "path", "corpus", "name", "export"}
)
"""Fields left out of the one-line detail (long, or said elsewhere in the pane: a
fine-tune's ``export`` has its own line beside the plan)."""

_FIRST_KEYS = (
    "state",
    "reason",
    "cause",
    "exit_code",
    "signal",
    "rank",
    "node",
    "attempt",
    "step",
    "world_size_then",
    "world_size",
    "from",
    "to",
)
"""Fields shown first, in this order, when present."""


@dataclass(frozen=True)
class TimelineItem:
    ts: float | None
    event: str
    detail: str
    source: str
    style: str


def describe(record: dict[str, Any]) -> TimelineItem:
    """One event as a timeline line: the kind, then its telling fields as ``key=value``."""
    parsed = parse_event(record)
    parts: list[str] = []
    keys = [k for k in _FIRST_KEYS if k in record]
    keys += sorted(k for k in record if k not in _QUIET_KEYS and k not in _FIRST_KEYS)
    for key in keys:
        value = record[key]
        if value is None or value == "" or isinstance(value, dict | list):
            continue
        if isinstance(value, float):
            value = f"{value:.4g}"
        parts.append(f"{key}={value}")
    return TimelineItem(
        ts=finite(parsed.ts),
        event=parsed.name,
        detail=" ".join(parts),
        source=parsed.source or "",
        style=EVENT_STYLE.get(parsed.name, ""),
    )


@dataclass
class EventLog:
    """Follows ``events.jsonl``; ``poll`` each tick, then read ``items``."""

    jobdir: JobDir
    tail: JsonlTail | None = None
    items: list[TimelineItem] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    layout_applied: dict[str, Any] | None = None
    """The newest ``layout_applied`` event's layout fields (None before the trainer's)."""
    trainer: TrainerEvents = field(default_factory=TrainerEvents)
    """The trainer's ``started`` and the export of its ``training_complete``."""

    def poll(self) -> bool:
        """Read new events; True when there were any."""
        if self.tail is None:
            self.tail = JsonlTail(self.jobdir.events, window_bytes=1 << 20)
        records = self.tail.poll()
        for record in records:
            item = describe(record)
            self.items.append(item)
            self.counts[item.event] = self.counts.get(item.event, 0) + 1
        events = [parse_event(record) for record in records]
        applied = last_layout_applied(events)
        if applied is not None:
            self.layout_applied = applied
        self.trainer = self.trainer.fold(events)
        del self.items[:-MAX_EVENTS]
        return bool(records)

    @property
    def bad_lines(self) -> int:
        return self.tail.bad_lines if self.tail is not None else 0

    def timeline(self, limit: int) -> list[TimelineItem]:
        """The newest ``limit`` items, oldest first, checkpoint saves folded into one line
        each run of them so restarts and failures stay in view."""
        folded: list[TimelineItem] = []
        run = 0
        for item in self.items:
            if (
                item.event == EventKind.CHECKPOINT_SAVED
                and folded
                and folded[-1].event == item.event
            ):
                run += 1
                folded[-1] = TimelineItem(
                    item.ts, item.event, f"{item.detail} (×{run + 1})", item.source, item.style
                )
                continue
            run = 0
            folded.append(item)
        return folded[-limit:] if limit > 0 else []
