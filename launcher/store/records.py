"""The registry's rows: :class:`JobRecord` (what a read returns), :class:`NewJob` (what
registering a job needs) and the one function that turns a row into a record."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from launcher.errors import RegistryError
from launcher.states import JobState, parse_state

COLUMNS = (
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


STATE_BY_NAME = {state.value: state for state in JobState}


def record_from_row(row: tuple[Any, ...]) -> JobRecord:
    # Column types are declared (INTEGER, REAL), so sqlite3 already returns int/float.
    state = STATE_BY_NAME.get(row[4]) or parse_state(row[4])
    return JobRecord(row[0], row[1], row[2], row[3], state, row[5] or "", *row[6:])
