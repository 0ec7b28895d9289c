"""The registry's connection: opening the SQLite file in WAL mode, one short
``BEGIN IMMEDIATE`` transaction per write, errors as one line, ordered migrations.

Concurrency: readers never block the writer or each other (WAL); every write takes the
write lock up front, so two writers queue on ``busy_timeout`` instead of failing
half-way with "database is locked" on lock upgrade. Schema changes are ordered
migrations: ``schema_version`` holds the last one applied, and opening the registry
applies the missing ones inside one write transaction.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from contract.env import HOME_ENV
from launcher.errors import RegistryError
from launcher.paths import registry_path

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


_Self = TypeVar("_Self", bound="RegistryConnection")


class RegistryConnection:
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

    def __enter__(self: _Self) -> _Self:
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
