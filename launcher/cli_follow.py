"""``scalectl logs`` and ``launch --follow``: print a job's logs once, or follow them
until the job ends, refreshing its state from the backend."""

from __future__ import annotations

import sys
from typing import Any

import typer

from launcher import api
from launcher.backends import get_backend
from launcher.logs import LogFollower, check_selection, follow, select_logs
from launcher.store import JobRecord, Store


def _log_source(
    record: JobRecord, rank: str | None, node: str | None, *, present: bool = True
) -> Any:
    """``present``: the selection must name a log the job has now (a followed job may
    still start the rank, after a resize)."""
    backend = get_backend(record.backend)
    check_selection(backend.log_files(record) if present else [], rank, node)
    return lambda: select_logs(backend.log_files(record), rank, node)


def print_logs_once(
    record: JobRecord, *, rank: str | None, node: str | None, last_lines: int | None
) -> None:
    follower = LogFollower(_log_source(record, rank, node), last_lines=last_lines)
    _emit(follower.poll(flush=True), follower)


def follow_logs(
    store: Store,
    record: JobRecord,
    *,
    rank: str | None,
    node: str | None,
    last_lines: int | None,
) -> JobRecord:
    latest = [record]

    def done() -> bool:
        latest[0] = api.refresh(store, store.get(record.id) or latest[0])
        return latest[0].state.is_terminal

    source = _log_source(record, rank, node, present=record.state.is_terminal)
    follower = LogFollower(source, last_lines=last_lines)
    try:
        for line in follow(follower, done):
            _emit([line], follower)
    except KeyboardInterrupt:
        typer.echo(f"\nstopped following; the job goes on (scalectl cancel {record.id})")
        raise typer.Exit(130) from None
    return latest[0]


def _emit(lines: list[Any], follower: Any) -> None:
    many = len(follower.offsets) > 1
    out = sys.stdout
    for line in lines:
        out.write(f"[{line.source.label}] {line.text}\n" if many else f"{line.text}\n")
    out.flush()


def print_final(record: JobRecord) -> None:
    reason = f" ({record.reason})" if record.reason else ""
    typer.echo(f"job {record.id} {record.state.value}{reason}")
