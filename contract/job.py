"""``job.json``: the job as submitted, one model, one writer, one reader.

``scalectl launch`` writes it into the new job directory (launcher.api); the Kubernetes
backend ships the same document in a ConfigMap that an init container copies there.
The node-side processes (the local supervisor, the Slurm node agent) read it to learn
the job's id and spec. The spec stays a JSON object here: the launcher validates it as
a ``JobSpec`` (the contract does not import the launcher).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from contract.jobdir import SCHEMA_VERSION, JobDir, write_json_atomic


class JobFileError(ValueError):
    """``job.json`` is missing, unreadable, of another schema version or malformed."""


class JobFile(BaseModel):
    """The document in ``<job_dir>/job.json``."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = SCHEMA_VERSION
    """Version of the job-directory layout (contract.jobdir.SCHEMA_VERSION)."""
    job_id: str
    """The job's id, as in the registry and ``SCALECTL_JOB_ID``."""
    created_ts: float | None = None
    """When ``scalectl launch`` created it, seconds since the epoch (absent on Kubernetes,
    where the manifest is rendered before the job exists)."""
    spec: dict[str, Any]
    """The JobSpec as submitted (``JobSpec.to_json()``), secrets as references only."""

    def to_json(self) -> dict[str, Any]:
        """The document as written: keys in field order, ``created_ts`` only when known."""
        document = self.model_dump(mode="json")
        if document["created_ts"] is None:
            del document["created_ts"]
        return document


def write_job_file(job_dir: JobDir | Path, job: JobFile) -> None:
    """Write ``job.json`` atomically (temporary file, then rename)."""
    root = job_dir if isinstance(job_dir, JobDir) else JobDir(Path(job_dir))
    write_json_atomic(root.job_json, job.to_json())


def read_job_file(job_dir: JobDir | Path) -> JobFile:
    """Read and validate ``job.json``; JobFileError names the file and the bad field."""
    root = job_dir if isinstance(job_dir, JobDir) else JobDir(Path(job_dir))
    path = root.job_json
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise JobFileError(f"{path}: no such file; is this a scalectl job directory?") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise JobFileError(f"{path}: not a readable JSON file ({exc})") from None
    if not isinstance(document, dict):
        raise JobFileError(f"{path}: expected a JSON object")
    version = document.get("schema_version")
    if version != SCHEMA_VERSION:
        raise JobFileError(
            f"{path}: schema_version {version!r} is not {SCHEMA_VERSION}; written by another "
            "scalectl version, use that version to read it"
        )
    try:
        return JobFile.model_validate(document)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or "document"
        raise JobFileError(f"{path}: {where}: {error['msg']}") from None
