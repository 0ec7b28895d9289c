"""contract.events: one writer that accepts only known kinds, a reader that never crashes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from contract.events import (
    EventKind,
    UnknownEventKindError,
    append_event,
    event_kind,
    parse_event,
    read_events,
)
from contract.jobdir import JobDir


def test_append_event_writes_the_kind_value_and_refuses_unknown_kinds(tmp_path: Path) -> None:
    job = JobDir(tmp_path)
    record = append_event(job, EventKind.RESTARTED, source="agent", cause="hang")
    assert record["event"] == "restarted" and type(record["event"]) is str
    append_event(tmp_path, "checkpoint_saved", step=5)  # a known kind's value is accepted
    with pytest.raises(UnknownEventKindError, match=r"'restartd' is not in contract\.events"):
        append_event(job, "restartd")  # type: ignore[arg-type]
    lines = job.events.read_text().splitlines()
    assert [json.loads(line)["event"] for line in lines] == ["restarted", "checkpoint_saved"]


def test_reader_keeps_unknown_kinds_and_skips_torn_and_corrupt_lines(tmp_path: Path) -> None:
    job = JobDir(tmp_path)
    append_event(job, EventKind.STARTED, world_size=2)
    with open(job.events, "a", encoding="utf-8") as handle:
        handle.write('{"ts": 2.0, "event": "a_new_kind", "answer": 42, "source": "future"}\n')
        handle.write("not json at all\n")
        handle.write('["a", "list"]\n')
        handle.write('{"event": "finished"}\n')  # no ts
        handle.write('{"ts": 3.0, "event": "finish')  # torn: the writer is mid-line
    events = read_events(job)
    assert [e.name for e in events] == ["started", "a_new_kind", "finished"]
    started, unknown, no_ts = events
    assert started.kind is EventKind.STARTED and started.get("world_size") == 2
    assert unknown.kind is None and unknown.source == "future" and unknown.ts == 2.0
    assert unknown.record == {"ts": 2.0, "event": "a_new_kind", "answer": 42, "source": "future"}
    assert no_ts.kind is EventKind.FINISHED and no_ts.ts is None


@pytest.mark.parametrize(
    "record",
    [
        {},
        {"event": None},
        {"event": 7},
        {"event": {"x": 1}},
        {"event": "x", "ts": "soon"},
        {"event": "started", "ts": True},
        {"event": "started", "ts": 10**400},
    ],
)
def test_parse_event_never_raises(record: dict[str, object]) -> None:
    event = parse_event(record)
    assert event.ts is None
    assert event.record == record


def test_kinds_compare_equal_to_their_values() -> None:
    # Readers compare record.get("event") (a plain str) with a kind.
    assert EventKind.RESIZED == "resized" and str(EventKind.RESIZED) == "resized"
    assert {"resized": 1}.get(EventKind.RESIZED) == 1
    assert event_kind("resized") is EventKind.RESIZED and event_kind("nope") is None
