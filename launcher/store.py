"""The job registry: one SQLite file indexing every job on every backend.

Public read API (the TUI uses it): :class:`Store` with :meth:`Store.list_jobs`,
:meth:`Store.count_jobs`, :meth:`Store.get`, :meth:`Store.resolve`, returning frozen
:class:`JobRecord` rows. Standard library only, so importing it is cheap.

Concurrency: the database runs in WAL mode, so readers never block the writer or each
other; every write is one short ``BEGIN IMMEDIATE`` transaction (taking the write lock
up front, so two writers queue on ``busy_timeout`` instead of failing half-way with
"database is locked" on lock upgrade). State changes are compare-and-set inside that
transaction, so the supervisor finishing a job and ``scalectl cancel`` racing it leave
exactly one final state.

Schema changes are ordered migrations: ``schema_version`` holds the last one applied,
and opening the registry applies the missing ones inside one write transaction.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

from contract.env import HOME_ENV
from launcher.errors import JobNotFoundError, RegistryError
from launcher.paths import registry_path
from launcher.states import JobState, parse_state

Migration = tuple[int, Sequence[str]]

MIGRATIONS: tuple[Migration, ...] = (
    (
        1,
        (
            """
            CREATE TABLE jobs (
                id              TEXT PRIMARY KEY,
                name            TEXT NOT NULL,
                backend         TEXT NOT NULL,
                backend_job_id  TEXT,
                state           TEXT NOT NULL,
                reason          TEXT NOT NULL DEFAULT '',
                job_dir         TEXT NOT NULL,
                nodes_min       INTEGER NOT NULL,
                nodes_max       INTEGER NOT NULL,
                procs_per_node  INTEGER NOT NULL,
                gpus_per_node   INTEGER NOT NULL,
                created_ts      REAL NOT NULL,
                updated_ts      REAL NOT NULL,
                started_ts      REAL,
                ended_ts        REAL,
                exit_code       INTEGER,
                spec_json       TEXT NOT NULL
            )
            """,
            "CREATE INDEX jobs_created ON jobs (created_ts)",
            "CREATE INDEX jobs_state ON jobs (state)",
            "CREATE INDEX jobs_name ON jobs (name)",
            "CREATE INDEX jobs_job_dir ON jobs (job_dir)",
        ),
    ),
)
"""Ordered schema migrations: (version, statements). Append; never edit a shipped one."""

SortKey = Literal["created", "updated", "name", "state", "backend", "id"]
_SORT_COLUMNS: dict[str, str] = {
    "created": "created_ts",
    "updated": "updated_ts",
    "name": "name",
    "state": "state",
    "backend": "backend",
    "id": "id",
}

_COLUMNS = (
    "id, name, backend, backend_job_id, state, reason, job_dir, nodes_min, nodes_max, "
    "procs_per_node, gpus_per_node, created_ts, updated_ts, started_ts, ended_ts, "
    "exit_code, spec_json"
)


class JobRecord(NamedTuple):
    """One registry row: a job as the registry last knew it.

    A NamedTuple (immutable, built straight from the row): listing thousands of jobs for
    the TUI stays a few tens of milliseconds.
    """

    id: str
    """Job id, ``YYYYMMDD-HHMMSS-xxxx`` (see ``launcher.ids``)."""
    name: str
    """The spec's name (not unique)."""
    backend: str
    """``local``, ``slurm`` or ``kubernetes``."""
    backend_job_id: str | None
    """The backend's handle: supervisor pid (local), Slurm job id, object name (k8s)."""
    state: JobState
    """Last known state."""
    reason: str
    """Why it is in that state (free text, may be empty)."""
    job_dir_text: str
    """The job directory as stored (``job_dir`` is the Path; building 2,000 Paths is a
    third of listing 2,000 jobs, so it is made only when asked for)."""
    nodes_min: int
    """Elastic minimum node count."""
    nodes_max: int
    """Elastic maximum node count."""
    procs_per_node: int
    """Ranks per node."""
    gpus_per_node: int
    """GPUs per node (0 on CPU)."""
    created_ts: float
    """Registration time, seconds since the epoch."""
    updated_ts: float
    """Last change of this row, seconds since the epoch."""
    started_ts: float | None
    """When it first entered RUNNING, if it did."""
    ended_ts: float | None
    """When it reached a terminal state, if it did."""
    exit_code: int | None
    """Exit code of the job's launcher process, when known."""
    spec_json: str
    """The JobSpec as JSON (``JobSpec.model_validate(record.spec)`` rebuilds it)."""

    @property
    def job_dir(self) -> Path:
        """The job directory (see ``contract.jobdir``)."""
        return Path(self.job_dir_text)

    @property
    def spec(self) -> dict[str, Any]:
        """The JobSpec as a plain dict (no pydantic import needed)."""
        value = json.loads(self.spec_json)
        return value if isinstance(value, dict) else {}

    @property
    def nodes(self) -> str:
        """``"2"`` or ``"1:2"``."""
        if self.nodes_min == self.nodes_max:
            return str(self.nodes_min)
        return f"{self.nodes_min}:{self.nodes_max}"

    @property
    def gpus(self) -> int:
        """GPUs at the maximum node count."""
        return self.gpus_per_node * self.nodes_max

    def age_s(self, now_s: float | None = None) -> float:
        return max(0.0, (time.time() if now_s is None else now_s) - self.created_ts)


@dataclass(frozen=True)
class NewJob:
    """What registering a job needs; the registry adds state and timestamps."""

    id: str
    name: str
    backend: str
    job_dir: Path
    nodes_min: int
    nodes_max: int
    procs_per_node: int
    gpus_per_node: int
    spec_json: str
    state: JobState = JobState.PENDING
    reason: str = ""


class JobIdTakenError(RegistryError):
    """A job with this id is already registered (draw a new id and retry)."""


class Store:
    """A connection to the job registry. Cheap to open; safe to share between threads."""

    def __init__(
        self,
        path: Path | None = None,
        *,
        busy_timeout_s: float = 15.0,
        migrations: Sequence[Migration] = MIGRATIONS,
        create: bool = True,
    ) -> None:
        self.path = Path(path) if path is not None else registry_path()
        self._lock = threading.RLock()
        self._migrations = tuple(migrations)
        if not create and not self.path.exists():
            raise RegistryError(f"no job registry at {self.path} yet; launch a job first")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RegistryError(
                f"cannot create the registry directory {self.path.parent}: {exc.strerror}; "
                f"set {HOME_ENV} to a writable directory"
            ) from None
        try:
            self._conn = sqlite3.connect(
                str(self.path),
                timeout=busy_timeout_s,
                isolation_level=None,  # we issue BEGIN ourselves
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise self._error("open", exc) from None
        try:
            self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()
            if mode is None or str(mode[0]).lower() != "wal":
                raise sqlite3.OperationalError(f"cannot switch to WAL mode (got {mode!r})")
            self._conn.execute("PRAGMA synchronous = NORMAL")
            self._migrate()
        except sqlite3.Error as exc:
            self._conn.close()
            raise self._error("open", exc) from None
        except BaseException:
            self._conn.close()
            raise

    # -- plumbing ---------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _error(self, action: str, exc: sqlite3.Error) -> RegistryError:
        text = str(exc)
        if isinstance(exc, sqlite3.DatabaseError) and (
            "not a database" in text or "malformed" in text or "corrupt" in text
        ):
            return RegistryError(
                f"the job registry {self.path} is unreadable ({text}); move it aside "
                "(jobs stay in their job directories) and scalectl starts a new one"
            )
        if "locked" in text or "busy" in text:
            return RegistryError(
                f"the job registry {self.path} stayed locked by another scalectl process "
                f"({text}); retry in a moment"
            )
        if "readonly" in text or "unable to open" in text or "disk I/O" in text:
            return RegistryError(
                f"cannot {action} the job registry {self.path} ({text}); check that "
                f"{HOME_ENV} is a writable local directory"
            )
        return RegistryError(f"cannot {action} the job registry {self.path}: {text}")

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction holding the write lock from its first statement."""
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise self._error("write", exc) from None
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            try:
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._conn.execute("ROLLBACK")
                raise self._error("write", exc) from None

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise self._error("read", exc) from None

    def _migrate(self) -> None:
        latest = max((version for version, _ in self._migrations), default=0)
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            self._conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER)")
            row = self._conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
            current = int(row[0]) if row and row[0] is not None else 0
            if current > latest:
                raise RegistryError(
                    f"the job registry {self.path} has schema version {current}, newer than "
                    f"this scalectl understands ({latest}); upgrade scalectl"
                )
            for version, statements in sorted(self._migrations, key=lambda m: m[0]):
                if version <= current:
                    continue
                for statement in statements:
                    self._conn.execute(statement)
                self._conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise

    @property
    def schema_version(self) -> int:
        row = self._read("SELECT MAX(version) FROM schema_version")
        return int(row[0][0]) if row and row[0][0] is not None else 0

    # -- writes -----------------------------------------------------------------

    def add(self, job: NewJob, now_s: float | None = None) -> JobRecord:
        """Register a new job. Raises JobIdTakenError if the id exists."""
        now = time.time() if now_s is None else now_s
        try:
            with self._write() as conn:
                conn.execute(
                    f"INSERT INTO jobs ({_COLUMNS}) VALUES "
                    "(?, ?, ?, NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL, ?)",
                    (
                        job.id,
                        job.name,
                        job.backend,
                        job.state.value,
                        job.reason,
                        str(job.job_dir),
                        job.nodes_min,
                        job.nodes_max,
                        job.procs_per_node,
                        job.gpus_per_node,
                        now,
                        now,
                        job.spec_json,
                    ),
                )
        except sqlite3.IntegrityError:
            raise JobIdTakenError(f"job id {job.id} is already registered") from None
        except sqlite3.Error as exc:
            raise self._error("write", exc) from None
        record = self.get(job.id)
        assert record is not None
        return record

    def set_backend_job_id(self, job_id: str, backend_job_id: str) -> None:
        """Record the backend's handle for a job (supervisor pid, Slurm id, ...)."""
        with self._write() as conn:
            conn.execute(
                "UPDATE jobs SET backend_job_id = ?, updated_ts = ? WHERE id = ?",
                (backend_job_id, time.time(), job_id),
            )

    def transition(
        self,
        job_id: str,
        state: JobState,
        reason: str = "",
        *,
        exit_code: int | None = None,
        only_from: Iterable[JobState] | None = None,
        now_s: float | None = None,
    ) -> bool:
        """Atomically move a job to ``state``; returns False if refused.

        Refused when the job is already in a terminal state (final, reason included:
        the first to end a job says why), or when ``only_from`` is given and the current
        state is not in it. Re-asserting a non-terminal state updates the reason. Sets
        ``started_ts`` on the first RUNNING and ``ended_ts`` on reaching a terminal state.
        """
        now = time.time() if now_s is None else now_s
        allowed = {s.value for s in only_from} if only_from is not None else None
        with self._write() as conn:
            row = conn.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                return False
            current = parse_state(row[0])
            if current.is_terminal:
                return False
            if allowed is not None and current.value not in allowed:
                return False
            conn.execute(
                """
                UPDATE jobs SET state = ?, reason = ?, updated_ts = ?,
                    exit_code = COALESCE(?, exit_code),
                    started_ts = CASE WHEN ? AND started_ts IS NULL THEN ? ELSE started_ts END,
                    ended_ts = CASE WHEN ? AND ended_ts IS NULL THEN ? ELSE ended_ts END
                WHERE id = ?
                """,
                (
                    state.value,
                    reason,
                    now,
                    exit_code,
                    state is JobState.RUNNING,
                    now,
                    state.is_terminal,
                    now,
                    job_id,
                ),
            )
        return True

    # -- reads (the TUI's API) --------------------------------------------------

    def get(self, job_id: str) -> JobRecord | None:
        """The job with exactly this id, or None."""
        rows = self._read(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,))
        return _record(rows[0]) if rows else None

    def resolve(self, ref: str) -> JobRecord:
        """The one job ``ref`` names: an exact id, a unique id prefix, a unique id suffix
        (the random part, e.g. ``ab12``), or a name — tried in that order. A name shared
        by several jobs resolves to the only one of them still active, if there is one.

        Raises JobNotFoundError (a user error) naming the candidates when ambiguous.
        """
        ref = ref.strip()
        if not ref:
            raise JobNotFoundError("give a job id, a unique id prefix or a job name")
        exact = self.get(ref)
        if exact is not None:
            return exact
        pattern = _escape_like(ref)
        for where, param in (
            ("id LIKE ? ESCAPE '\\'", pattern + "%"),
            ("id LIKE ? ESCAPE '\\'", "%-" + pattern),
            ("name = ?", ref),
        ):
            rows = self._read(
                f"SELECT {_COLUMNS} FROM jobs WHERE {where} ORDER BY created_ts DESC LIMIT 6",
                (param,),
            )
            if len(rows) == 1:
                return _record(rows[0])
            if len(rows) > 1 and where.startswith("name"):
                # A reused name most likely means the one job of that name still running.
                active = self.list_jobs(text=None, active_only=True, name=ref, limit=2)
                if len(active) == 1:
                    return active[0]
            if len(rows) > 1:
                ids = ", ".join(r[0] for r in rows[:5])
                more = " ..." if len(rows) > 5 else ""
                raise JobNotFoundError(
                    f"{ref!r} matches several jobs ({ids}{more}); give more of the id"
                )
        raise JobNotFoundError(f"no job matches {ref!r}; `scalectl jobs` lists them")

    def list_jobs(
        self,
        *,
        states: Iterable[JobState] | None = None,
        backends: Iterable[str] | None = None,
        text: str | None = None,
        name: str | None = None,
        active_only: bool = False,
        sort: SortKey = "created",
        descending: bool = True,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[JobRecord]:
        """Jobs matching every filter given, sorted.

        ``text`` matches a substring of the id or the name (case-insensitive), ``name``
        the exact name; ``active_only`` keeps jobs not in a terminal state.
        """
        where, params = _filters(states, backends, text, active_only, name)
        column = _SORT_COLUMNS.get(sort)
        if column is None:
            raise ValueError(f"sort must be one of {sorted(_SORT_COLUMNS)}, not {sort!r}")
        order = "DESC" if descending else "ASC"
        sql = f"SELECT {_COLUMNS} FROM jobs {where} ORDER BY {column} {order}, id {order}"
        if limit is not None:
            sql += " LIMIT ? OFFSET ?"
            params += [int(limit), int(offset)]
        return [_record(row) for row in self._read(sql, params)]

    def count_jobs(
        self,
        *,
        states: Iterable[JobState] | None = None,
        backends: Iterable[str] | None = None,
        text: str | None = None,
        active_only: bool = False,
    ) -> int:
        where, params = _filters(states, backends, text, active_only)
        return int(self._read(f"SELECT COUNT(*) FROM jobs {where}", params)[0][0])

    def active_for_job_dir(self, job_dir: Path) -> JobRecord | None:
        """A non-terminal job already using ``job_dir``, if any."""
        terminal = [s.value for s in JobState if s.is_terminal]
        marks = ", ".join("?" for _ in terminal)
        rows = self._read(
            f"SELECT {_COLUMNS} FROM jobs WHERE job_dir = ? AND state NOT IN ({marks}) "
            "ORDER BY created_ts DESC LIMIT 1",
            [str(job_dir), *terminal],
        )
        return _record(rows[0]) if rows else None


def _filters(
    states: Iterable[JobState] | None,
    backends: Iterable[str] | None,
    text: str | None,
    active_only: bool,
    name: str | None = None,
) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if states is not None:
        values = [JobState(s).value for s in states]
        clauses.append(f"state IN ({', '.join('?' for _ in values)})" if values else "0")
        params += values
    if backends is not None:
        names = list(backends)
        clauses.append(f"backend IN ({', '.join('?' for _ in names)})" if names else "0")
        params += names
    if text:
        like = "%" + _escape_like(text.lower()) + "%"
        clauses.append("(lower(id) LIKE ? ESCAPE '\\' OR lower(name) LIKE ? ESCAPE '\\')")
        params += [like, like]
    if name is not None:
        clauses.append("name = ?")
        params.append(name)
    if active_only:
        terminal = [s.value for s in JobState if s.is_terminal]
        clauses.append(f"state NOT IN ({', '.join('?' for _ in terminal)})")
        params += terminal
    return ("WHERE " + " AND ".join(clauses) if clauses else ""), params


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


_STATE_BY_NAME = {state.value: state for state in JobState}


def _record(row: tuple[Any, ...]) -> JobRecord:
    # Column types are declared (INTEGER, REAL), so sqlite3 already returns int/float.
    state = _STATE_BY_NAME.get(row[4]) or parse_state(row[4])
    return JobRecord(row[0], row[1], row[2], row[3], state, row[5] or "", *row[6:])


def open_store(path: Path | None = None) -> Store:
    """The registry at ``path`` (default ``$SCALECTL_HOME/registry.sqlite3``)."""
    return Store(path)


def registry_exists(path: Path | None = None) -> bool:
    return (Path(path) if path is not None else registry_path()).exists()


__all__ = [
    "MIGRATIONS",
    "JobIdTakenError",
    "JobRecord",
    "JobState",
    "NewJob",
    "Store",
    "open_store",
    "registry_exists",
]
