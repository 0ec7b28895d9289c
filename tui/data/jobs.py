"""The jobs table's data: registry rows plus each job's latest progress, kept cheap.

``JobsSource.poll`` runs on a worker thread every tick. It re-lists the registry only
when the SQLite files changed (their size and mtime are the signature; every write in
WAL mode touches the ``-wal`` file), reads the progress of active jobs incrementally,
reads a finished job's progress and plan once, and rebuilds only the rows that changed.
With 2,000 jobs a quiet tick is a handful of ``stat`` calls.

Filtering and sorting are pure functions over the rows (:func:`filter_rows`,
:func:`sort_rows`); the table calls them on the UI thread, so typing in the filter never
waits for I/O.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from contract.jobdir import JobDir, read_json
from launcher.errors import RegistryError
from launcher.progress_view import throughput
from launcher.store import JobRecord, Store
from tui.data.compare import PlanFacts, measured_mfu, plan_facts
from tui.data.follow import JsonlTail

COLD_LOADS_PER_POLL = 200
"""Finished jobs whose files are read per tick (newest first); the rest on later ticks."""
BACKEND_REFRESH_S = 5.0
"""How often active jobs' states are asked of their backend (``launcher.api.refresh``)."""
BACKEND_REFRESH_MAX = 50
"""Most jobs refreshed from their backend per round."""


class JobRow(NamedTuple):
    """One line of the jobs table."""

    id: str
    name: str
    backend: str
    state: str
    reason: str
    nodes: str
    ranks: int
    gpus: int
    step: int | None
    tokens_per_s: float | None
    mfu: float | None
    created_ts: float
    job_dir: str
    dir_missing: bool
    haystack: str
    """Lower-case text the filter matches: id, name, backend, state, reason."""


SORT_KEYS: dict[str, Callable[[JobRow], Any]] = {
    "name": lambda r: r.name.lower(),
    "backend": lambda r: r.backend,
    "state": lambda r: r.state,
    "nodes": lambda r: r.gpus or r.ranks,
    "step": lambda r: -1 if r.step is None else r.step,
    "tokens/s": lambda r: -1.0 if r.tokens_per_s is None else r.tokens_per_s,
    "mfu": lambda r: -1.0 if r.mfu is None else r.mfu,
    "age": lambda r: -r.created_ts,
}
"""Sort keys by column; ``age`` ascending means newest first."""


def filter_rows(rows: Sequence[JobRow], query: str) -> list[JobRow]:
    """Rows whose text contains every whitespace-separated term of ``query``."""
    terms = query.lower().split()
    if not terms:
        return list(rows)
    if len(terms) == 1:
        term = terms[0]
        return [row for row in rows if term in row.haystack]
    return [row for row in rows if all(term in row.haystack for term in terms)]


def sort_rows(rows: list[JobRow], column: str, descending: bool) -> list[JobRow]:
    key = SORT_KEYS.get(column, SORT_KEYS["age"])
    return sorted(rows, key=key, reverse=descending)


@dataclass
class JobFacts:
    """What the table shows of one job beyond its registry row."""

    jobdir: JobDir
    lead: JsonlTail | None = None
    recent: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=20))
    plan: PlanFacts = field(default_factory=PlanFacts)
    plan_loaded: bool = False
    dir_missing: bool = False
    step: int | None = None
    tokens_per_s: float | None = None
    world_size: int | None = None
    version: int = 0
    """Bumped whenever a shown value changed."""

    def poll(self) -> None:
        records = self.lead.poll() if self.lead is not None else []
        # A progress file that is there answers for its directory: no second stat.
        found = self.lead is not None and self.lead.exists
        missing = not found and not os.path.isdir(self.jobdir.root)
        changed = missing != self.dir_missing
        self.dir_missing = missing
        if not self.plan_loaded and not missing:
            self.plan_loaded = True
            try:
                self.plan = plan_facts(read_json(self.jobdir.plan_json))
            except (OSError, ValueError):
                self.plan = PlanFacts()
            changed = True
        if self.lead is None and not missing:
            files = _progress_files(self.jobdir)
            if files:
                self.lead = JsonlTail(files[0], window_bytes=16 * 1024)
                records = self.lead.poll()
        if records:
            self.recent.extend(records)
            last = records[-1]
            step, world = last.get("step"), last.get("world_size")
            self.step = step if isinstance(step, int) else self.step
            self.world_size = world if isinstance(world, int) else self.world_size
            self.tokens_per_s = throughput(list(self.recent))
            changed = True
        if changed:
            self.version += 1


def _progress_files(jobdir: JobDir) -> list[Path]:
    try:
        return jobdir.progress_files()
    except OSError:
        return []


def make_row(record: JobRecord, facts: JobFacts | None) -> JobRow:
    state = record.state.value
    ranks = record.procs_per_node * record.nodes_max
    step = facts.step if facts else None
    rate = facts.tokens_per_s if facts else None
    mfu = measured_mfu(facts.plan, rate, facts.world_size) if facts else None
    missing = facts.dir_missing if facts else False
    haystack = f"{record.id} {record.name} {record.backend} {state} {record.reason}".lower()
    return JobRow(
        id=record.id,
        name=record.name,
        backend=record.backend,
        state=state,
        reason=record.reason,
        nodes=record.nodes,
        ranks=ranks,
        gpus=record.gpus,
        step=step,
        tokens_per_s=rate,
        mfu=mfu,
        created_ts=record.created_ts,
        job_dir=record.job_dir_text,
        dir_missing=missing,
        haystack=haystack,
    )


@dataclass(frozen=True)
class JobsResult:
    rows: tuple[JobRow, ...] | None
    """The new rows, or None when nothing changed since the last poll."""
    records: dict[str, JobRecord]
    message: str | None
    """Why the list may be empty or stale (no registry, unreadable registry, ...)."""
    unread: int = 0
    """Finished jobs whose files are not read yet (a few hundred are read each poll)."""


def _signature(path: Path) -> tuple[tuple[int, int], ...]:
    found = []
    for suffix in ("", "-wal"):
        try:
            stat = os.stat(f"{path}{suffix}")
            found.append((stat.st_mtime_ns, stat.st_size))
        except OSError:
            found.append((0, -1))
    return tuple(found)


@dataclass
class JobsSource:
    """The registry and the jobs' files as table rows (see module docstring)."""

    registry: Path
    refresh_backends: bool = True
    """Ask backends for the state of active jobs (as ``scalectl jobs`` does)."""
    clock: Callable[[], float] = time.time
    store: Store | None = None
    signature: tuple[tuple[int, int], ...] | None = None
    records: dict[str, JobRecord] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    active: list[str] = field(default_factory=list)
    """Jobs not in a terminal state: their progress is read every tick."""
    unread: list[str] = field(default_factory=list)
    """Finished jobs whose files were not read yet (read once, a batch a tick)."""
    ended: list[str] = field(default_factory=list)
    """Jobs that were active at the previous listing and are not any more."""
    facts: dict[str, JobFacts] = field(default_factory=dict)
    rows: dict[str, tuple[JobRecord, int, JobRow]] = field(default_factory=dict)
    row_list: list[JobRow] = field(default_factory=list)
    row_index: dict[str, int] = field(default_factory=dict)
    loaded: list[str] = field(default_factory=list)
    """Jobs whose files were read for the first time this poll (their rows change)."""
    message: str | None = None
    last_backend_refresh: float = 0.0
    polled: bool = False

    def open(self) -> Store | None:
        if self.store is not None:
            return self.store
        if not self.registry.exists():
            self.message = (
                f"No job registry at {self.registry} yet: launch a job (scalectl launch, "
                "or from the Planner tab)."
            )
            return None
        try:
            self.store = Store(self.registry, create=False)
        except RegistryError as exc:
            self.message = f"Registry unreadable: {exc}"
            return None
        return self.store

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None

    def poll(self, *, force: bool = False) -> JobsResult:
        self.message = None
        listed = False
        store = self.open()
        if store is not None:
            listed = self._list(store, force)
        elif self.records:
            self.records, self.order, self.signature = {}, [], None
            self.active, self.unread = [], []
            listed = True
        changed = self._poll_facts() or listed or force or not self.polled
        self.polled = True
        if store is not None and self.refresh_backends:
            self._refresh_backends(store)
        rows = self._rows(listed) if changed else None
        return JobsResult(
            rows, dict(self.records) if changed else {}, self.message, len(self.unread)
        )

    def _list(self, store: Store, force: bool) -> bool:
        signature = _signature(self.registry)
        if signature == self.signature and not force:
            return False
        try:
            records = store.list_jobs(sort="created", descending=True)
        except RegistryError as exc:
            self.message = f"Registry unreadable: {exc}"
            self.close()
            self.signature = None
            return False
        self.signature = signature
        was_active = set(self.active)
        self.records = {record.id: record for record in records}
        self.order = [record.id for record in records]
        self.active = [record.id for record in records if record.state.is_active]
        self.unread = [
            record.id
            for record in records
            if record.state.is_terminal and record.id not in self.facts
        ]
        # A job that just ended: its last progress records are read once more.
        self.ended = [job_id for job_id in was_active if job_id not in set(self.active)]
        return True

    def _poll_facts(self) -> bool:
        """Read new progress of active jobs, and the files of up to
        COLD_LOADS_PER_POLL jobs not read yet (newest first)."""
        changed = False
        for job_id in self.active:
            facts = self.facts.get(job_id)
            if facts is None:
                facts = self.facts[job_id] = JobFacts(JobDir(self.records[job_id].job_dir))
            before = facts.version
            facts.poll()
            changed |= facts.version != before
        for job_id in self.ended:
            facts = self.facts.get(job_id)
            if facts is not None and job_id in self.records:
                facts.poll()
                self.loaded.append(job_id)
                changed = True
        self.ended = []
        if self.unread:
            batch, self.unread = (
                self.unread[:COLD_LOADS_PER_POLL],
                self.unread[COLD_LOADS_PER_POLL:],
            )
            for job_id in batch:
                if job_id not in self.facts:
                    facts = self.facts[job_id] = JobFacts(JobDir(self.records[job_id].job_dir))
                    facts.poll()
                    self.loaded.append(job_id)
            changed = True
        return changed

    def _rows(self, listed: bool) -> tuple[JobRow, ...]:
        """All rows in registry order; after a re-list every row is checked, otherwise
        only the active jobs' rows can have changed."""
        if listed or len(self.row_list) != len(self.order):
            self.row_list = [self._row(job_id) for job_id in self.order]
            self.row_index = {job_id: i for i, job_id in enumerate(self.order)}
        else:
            for job_id in self.active:
                self.row_list[self.row_index[job_id]] = self._row(job_id)
            for job_id in self.loaded:
                self.row_list[self.row_index[job_id]] = self._row(job_id)
        self.loaded = []
        return tuple(self.row_list)

    def _row(self, job_id: str) -> JobRow:
        record = self.records[job_id]
        facts = self.facts.get(job_id)
        version = facts.version if facts else -1
        cached = self.rows.get(job_id)
        if cached is not None and cached[0] is record and cached[1] == version:
            return cached[2]
        row = make_row(record, facts)
        self.rows[job_id] = (record, version, row)
        return row

    def _refresh_backends(self, store: Store) -> None:
        now = self.clock()
        if now - self.last_backend_refresh < BACKEND_REFRESH_S:
            return
        self.last_backend_refresh = now
        if not self.active:
            return
        from launcher import api

        for record in [self.records[i] for i in self.active[:BACKEND_REFRESH_MAX]]:
            try:
                api.refresh(store, record)
            except Exception as exc:  # a backend that cannot answer must not stop the UI
                self.message = f"{record.backend}: cannot refresh {record.id}: {exc}"
