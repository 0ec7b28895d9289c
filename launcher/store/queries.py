"""Reads of the registry (the TUI's API): one job by id or reference, filtered and
sorted listings, counts."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from launcher.errors import JobNotFoundError
from launcher.states import JobState
from launcher.store.locking import RegistryConnection
from launcher.store.records import COLUMNS, JobRecord, record_from_row

SortKey = Literal["created", "updated", "name", "state", "backend", "id"]
_SORT_COLUMNS: dict[str, str] = {
    "created": "created_ts",
    "updated": "updated_ts",
    "name": "name",
    "state": "state",
    "backend": "backend",
    "id": "id",
}


class RegistryQueries(RegistryConnection):
    """The read half of :class:`launcher.store.Store`."""

    def get(self, job_id: str) -> JobRecord | None:
        """The job with exactly this id, or None."""
        rows = self._read(f"SELECT {COLUMNS} FROM jobs WHERE id = ?", (job_id,))
        return record_from_row(rows[0]) if rows else None

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
                f"SELECT {COLUMNS} FROM jobs WHERE {where} ORDER BY created_ts DESC LIMIT 6",
                (param,),
            )
            if len(rows) == 1:
                return record_from_row(rows[0])
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
        sql = f"SELECT {COLUMNS} FROM jobs {where} ORDER BY {column} {order}, id {order}"
        if limit is not None:
            sql += " LIMIT ? OFFSET ?"
            params += [int(limit), int(offset)]
        return [record_from_row(row) for row in self._read(sql, params)]

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
            f"SELECT {COLUMNS} FROM jobs WHERE job_dir = ? AND state NOT IN ({marks}) "
            "ORDER BY created_ts DESC LIMIT 1",
            [str(job_dir), *terminal],
        )
        return record_from_row(rows[0]) if rows else None


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
