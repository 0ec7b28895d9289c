"""The job registry: one SQLite file indexing every job on every backend.

Public read API (the TUI uses it): :class:`Store` with :meth:`Store.list_jobs`,
:meth:`Store.count_jobs`, :meth:`Store.get`, :meth:`Store.resolve`, returning frozen
:class:`JobRecord` rows. Standard library only, so importing it is cheap.

Records are in ``records``, reads in ``queries``, the connection, its transactions and
migrations in ``locking``; writes are here.

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

import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path

from launcher.paths import registry_path
from launcher.states import JobState, parse_state
from launcher.store.locking import MIGRATIONS, Migration
from launcher.store.queries import RegistryQueries, SortKey
from launcher.store.records import COLUMNS, JobIdTakenError, JobRecord, NewJob


class Store(RegistryQueries):
    """A connection to the job registry. Cheap to open; safe to share between threads."""

    def add(self, job: NewJob, now_s: float | None = None) -> JobRecord:
        """Register a new job. Raises JobIdTakenError if the id exists."""
        now = time.time() if now_s is None else now_s
        try:
            with self._write() as conn:
                conn.execute(
                    f"INSERT INTO jobs ({COLUMNS}) VALUES "
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


def registry_exists(path: Path | None = None) -> bool:
    return (Path(path) if path is not None else registry_path()).exists()


__all__ = [
    "MIGRATIONS",
    "JobIdTakenError",
    "JobRecord",
    "JobState",
    "Migration",
    "NewJob",
    "SortKey",
    "Store",
    "registry_exists",
]
