"""What the launcher's commands do, once for every backend: launch, refresh, cancel.

``launch`` validates everything before it creates anything: a bad spec, an env
reference that cannot be resolved, a job directory in use or not writable all raise a
user error with nothing registered and no directory left behind. Only then does the
job exist (job.json, the ``submitted`` event, a PENDING registry row), and only then is
the backend asked to start it.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contract.events import EventKind, append_event
from contract.job import JobFile, write_job_file
from contract.jobdir import JobDir, write_json_atomic
from launcher.backends import get_backend
from launcher.backends.base import Backend, CancelReport, SubmitRequest
from launcher.errors import BackendUnavailableError, JobActionError, LaunchInputError
from launcher.ids import new_job_id
from launcher.paths import default_jobs_root
from launcher.plan_launch import check_embedded_plan
from launcher.spec import JobSpec
from launcher.states import JobState
from launcher.store import JobIdTakenError, JobRecord, NewJob, Store

_ID_ATTEMPTS = 20
SOURCE = "launcher"
"""``source`` of the events the launcher writes (the trainer's say ``trainer``)."""


def resolve_paths(spec: JobSpec, cwd: Path) -> JobSpec:
    """The spec with ``workdir``, ``jobs_root`` and ``job_dir`` absolute (relative to ``cwd``)."""
    workdir = _absolute(spec.workdir, cwd) if spec.workdir is not None else cwd.resolve()
    jobs_root = _absolute(spec.jobs_root, cwd) if spec.jobs_root is not None else None
    job_dir = _absolute(spec.job_dir, cwd) if spec.job_dir is not None else None
    return spec.model_copy(update={"workdir": workdir, "jobs_root": jobs_root, "job_dir": job_dir})


def _absolute(path: Path, cwd: Path) -> Path:
    path = path.expanduser()
    return Path(os.path.normpath(path if path.is_absolute() else cwd / path))


@dataclass(frozen=True)
class Prepared:
    """A validated launch, nothing created yet."""

    spec: JobSpec
    backend: Backend
    secret_env: dict[str, str]


def prepare(spec: JobSpec, *, cwd: Path, environ: Mapping[str, str]) -> Prepared:
    """Every check that needs no side effect: backend, env references, paths."""
    backend = get_backend(spec.backend)
    spec = resolve_paths(spec, cwd)
    backend.check(spec)
    check_embedded_plan(spec)
    secret_env = backend.resolve_env(spec, environ)
    if spec.entrypoint.script is not None and spec.backend == "local":
        script = spec.entrypoint.script
        path = script if script.is_absolute() else (spec.workdir or cwd) / script
        if not path.is_file():
            raise LaunchInputError(
                f"entrypoint.script: {path} does not exist; check the path (relative to workdir)"
            )
    return Prepared(spec, backend, secret_env)


def dry_run(spec: JobSpec, *, cwd: Path, environ: Mapping[str, str]) -> str:
    """What would be submitted, without creating or registering anything."""
    return dry_run_json(spec, cwd=cwd, environ=environ)["submit"]


def dry_run_json(spec: JobSpec, *, cwd: Path, environ: Mapping[str, str]) -> dict[str, Any]:
    """``launch --dry-run --json``: the job id, backend and job directory it would get,
    the validated spec, and what would be submitted (``submit``: script, manifests or
    command lines); nothing is created or registered."""
    prepared = prepare(spec, cwd=cwd, environ=environ)
    job_id = new_job_id()
    root = prepared.spec.job_dir or (prepared.spec.jobs_root or default_jobs_root()) / job_id
    request = SubmitRequest(
        job_id=job_id,
        spec=prepared.spec.model_copy(update={"job_dir": root}),
        job_dir=JobDir(root),
        registry_path=Path(os.devnull),
    )
    return {
        "job_id": job_id,
        "backend": prepared.backend.name,
        "job_dir": str(root),
        "spec": request.spec.model_dump(mode="json"),
        "submit": prepared.backend.describe(request),
    }


def launch(
    spec: JobSpec,
    store: Store,
    *,
    cwd: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> JobRecord:
    """Validate, create the job directory, register, and start the job. See module doc."""
    cwd = cwd or Path.cwd()
    prepared = prepare(spec, cwd=cwd, environ=os.environ if environ is None else environ)
    spec = prepared.spec
    if spec.job_dir is not None:
        busy = store.active_for_job_dir(spec.job_dir)
        if busy is not None:
            raise LaunchInputError(
                f"job_dir {spec.job_dir} is in use by job {busy.id} ({busy.state.value}); "
                "wait for it to end, cancel it, or choose another job_dir"
            )
    job_id, jobdir, created = _create_job_dir(spec)
    spec = spec.model_copy(update={"job_dir": jobdir.root})
    try:
        _write_job_files(jobdir, job_id, spec)
        record = _register(store, job_id, spec, jobdir)
    except OSError as exc:
        _remove(created)
        raise LaunchInputError(
            f"job_dir {jobdir.root} is not writable ({exc.strerror or exc}); choose a "
            "writable job_dir or jobs_root"
        ) from None
    except BaseException:
        _remove(created)
        raise
    job_id = record.id
    append_event(
        jobdir,
        EventKind.SUBMITTED,
        source=SOURCE,
        job_id=job_id,
        backend=spec.backend,
        name=spec.name,
    )
    request = SubmitRequest(
        job_id=job_id,
        spec=spec,
        job_dir=jobdir,
        registry_path=store.path,
        secret_env=prepared.secret_env,
    )
    try:
        handle = prepared.backend.submit(request)
    except Exception as exc:
        reason = f"submit failed: {exc}"
        append_event(
            jobdir, EventKind.FAILED, source=SOURCE, job_id=job_id, state="FAILED", reason=reason
        )
        store.transition(job_id, JobState.FAILED, reason)
        raise
    store.set_backend_job_id(job_id, handle)
    result = store.get(job_id)
    assert result is not None
    return result


def _create_job_dir(spec: JobSpec) -> tuple[str, JobDir, Path | None]:
    """(job id, job dir, topmost directory this call created — removed on failure)."""
    if spec.job_dir is not None:
        created = _first_missing(spec.job_dir)
        jobdir = JobDir(spec.job_dir)
        _mkdirs(jobdir, created, "job_dir")
        return new_job_id(), jobdir, created
    root = spec.jobs_root or default_jobs_root()
    created_root = _first_missing(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LaunchInputError(
            f"jobs_root {root} cannot be created ({exc.strerror or exc}); choose a writable "
            "jobs_root or job_dir"
        ) from None
    for _ in range(_ID_ATTEMPTS):
        job_id = new_job_id()
        path = root / job_id
        try:
            path.mkdir()
        except FileExistsError:
            continue
        except OSError as exc:
            _remove(created_root)
            raise LaunchInputError(
                f"jobs_root {root} is not writable ({exc.strerror or exc}); choose a writable "
                "jobs_root or job_dir"
            ) from None
        jobdir = JobDir(path)
        _mkdirs(jobdir, created_root or path, "jobs_root")
        return job_id, jobdir, created_root or path
    raise LaunchInputError(f"jobs_root {root}: could not find a free job id; retry")


def _mkdirs(jobdir: JobDir, created: Path | None, field: str) -> None:
    try:
        jobdir.create()
    except OSError as exc:
        _remove(created)
        raise LaunchInputError(
            f"{field} {jobdir.root} is not writable ({exc.strerror or exc}); choose a "
            f"writable {field}"
        ) from None


def _first_missing(path: Path) -> Path | None:
    """The topmost ancestor of ``path`` (or itself) that does not exist yet."""
    missing: Path | None = None
    for candidate in [path, *path.parents]:
        if candidate.exists():
            break
        missing = candidate
    return missing


def _remove(path: Path | None) -> None:
    if path is not None:
        shutil.rmtree(path, ignore_errors=True)


def _write_job_files(jobdir: JobDir, job_id: str, spec: JobSpec) -> None:
    write_job_file(jobdir, JobFile(job_id=job_id, created_ts=time.time(), spec=spec.to_json()))
    if spec.plan is not None:
        write_json_atomic(jobdir.plan_json, spec.plan)


def _register(store: Store, job_id: str, spec: JobSpec, jobdir: JobDir) -> JobRecord:
    import json

    for _ in range(_ID_ATTEMPTS):
        try:
            return store.add(
                NewJob(
                    id=job_id,
                    name=spec.name,
                    backend=spec.backend,
                    job_dir=jobdir.root,
                    nodes_min=spec.nodes.min,
                    nodes_max=spec.nodes.max,
                    procs_per_node=spec.procs_per_node,
                    gpus_per_node=spec.gpus_per_node,
                    spec_json=json.dumps(spec.to_json(), separators=(",", ":")),
                )
            )
        except JobIdTakenError:
            # Only reachable with an explicit job_dir (a default one is named by the id);
            # job.json names the id, so rewrite it with the new one.
            job_id = new_job_id()
            _write_job_files(jobdir, job_id, spec)
    raise LaunchInputError("could not find a free job id; retry")


def refresh(store: Store, record: JobRecord) -> JobRecord:
    """Ask the backend for the job's state and record any change; terminal jobs are kept."""
    if record.state.is_terminal:
        return record
    try:
        status = get_backend(record.backend).status(record)
    except BackendUnavailableError:
        return record
    if (status.state, status.reason) == (record.state, record.reason):
        return record
    store.transition(record.id, status.state, status.reason, exit_code=status.exit_code)
    return store.get(record.id) or record


@dataclass(frozen=True)
class CancelOutcome:
    record: JobRecord
    report: CancelReport | None
    """None when the job had already ended (nothing was done)."""


def cancel(store: Store, record: JobRecord, grace_s: float | None = None) -> CancelOutcome:
    """Mark the job CANCELLED (so its supervisor's end does not overwrite it), record the
    ``cancelled`` event, and have the backend stop every process."""
    record = refresh(store, record)
    if record.state.is_terminal:
        return CancelOutcome(record, None)
    backend = get_backend(record.backend)
    store.transition(record.id, JobState.CANCELLED, "cancelled by user")
    # The local supervisor reads grace_s from this event when the SIGTERM arrives.
    append_event(
        JobDir(record.job_dir),
        EventKind.CANCELLED,
        source=SOURCE,
        job_id=record.id,
        by=_user(),
        grace_s=grace_s,
    )
    report = backend.cancel(record, grace_s)
    return CancelOutcome(store.get(record.id) or record, report)


def requeue(store: Store, record: JobRecord) -> str:
    """Put a running job back in its scheduler's queue through a checkpoint (Slurm), and
    record who asked; returns what the backend did. Refused, with the reason, for a job
    that is not running or a backend without a queue."""
    record = refresh(store, record)
    if record.state is not JobState.RUNNING:
        raise JobActionError(
            f"job {record.id} is {record.state.value}; only a running job can be requeued"
        )
    backend = get_backend(record.backend)
    note = backend.requeue(record)
    append_event(
        JobDir(record.job_dir),
        EventKind.REQUEUE_REQUESTED,
        source=SOURCE,
        job_id=record.id,
        by=_user(),
    )
    return note


def _user() -> str:
    try:
        import getpass

        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return str(os.getuid())
