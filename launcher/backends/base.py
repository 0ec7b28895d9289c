"""The one abstract backend every scheduler plugs into (like submitit's Executor).

A backend is thin: it turns a :class:`SubmitRequest` into something running
(:meth:`Backend.submit`), maps the scheduler's view back onto :class:`JobState`
(:meth:`Backend.status`), stops it (:meth:`Backend.cancel`) and says where its logs
are (:meth:`Backend.log_files`). Everything else — validating the spec, creating the
job directory, writing job.json and events, the registry — is done once, by
``launcher.api``, for all of them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from contract.jobdir import JobDir, LogFile, parse_log_name
from launcher.errors import JobActionError, LaunchInputError
from launcher.spec import FromEnv, JobSpec, SecretRef
from launcher.states import JobState
from launcher.store import JobRecord

__all__ = [
    "Backend",
    "BackendStatus",
    "CancelReport",
    "JobState",
    "LogFile",
    "SubmitRequest",
    "parse_log_name",
]


@dataclass(frozen=True)
class SubmitRequest:
    """Everything a backend needs to start one job; built by ``launcher.api``."""

    job_id: str
    """The registry id, also torchrun's ``--rdzv-id`` and the marker of every process."""
    spec: JobSpec
    """The spec with paths made absolute and ``job_dir`` filled in."""
    job_dir: JobDir
    """Already created, with job.json and the ``submitted`` event written."""
    registry_path: Path
    """The registry the job is in (the local supervisor writes its state there)."""
    secret_env: Mapping[str, str] = field(default_factory=dict, repr=False)
    """Env values resolved from references; hand them to the processes, never to a file."""


@dataclass(frozen=True)
class BackendStatus:
    """A job's state as the backend sees it now."""

    state: JobState
    """Mapped onto the shared states."""
    reason: str = ""
    """The scheduler's reason or our own explanation (may be empty)."""
    exit_code: int | None = None
    """Exit code when the job has ended and the backend knows it."""


@dataclass(frozen=True)
class CancelReport:
    """What cancelling did."""

    signalled: int
    """Processes or scheduler jobs asked to stop."""
    killed: int = 0
    """Processes that had to be killed after the grace period."""
    survivors: int = 0
    """Processes still alive afterwards (0 unless something is stuck)."""
    note: str = ""
    """Anything worth telling the user (e.g. the job had already ended)."""


class Backend(ABC):
    """A place jobs run. Subclasses set ``name`` and implement the abstract methods."""

    name: ClassVar[str]

    def check(self, spec: JobSpec) -> None:  # noqa: B027 - optional hook, default accepts
        """Refuse, with a LaunchInputError, a spec this backend cannot run (no I/O)."""

    def resolve_env(self, spec: JobSpec, environ: Mapping[str, str]) -> dict[str, str]:
        """Values for the spec's env references, from the launching environment.

        The default resolves ``{from_env: NAME}`` and refuses ``{secret: ...}``, which
        only a backend with a secret store (Kubernetes) can honour.
        """
        resolved: dict[str, str] = {}
        for key, ref in spec.env_refs().items():
            if isinstance(ref, FromEnv):
                if ref.from_env not in environ:
                    raise LaunchInputError(
                        f"env.{key}: from_env {ref.from_env} is not set in this shell; "
                        f"export {ref.from_env} or give a value"
                    )
                resolved[key] = environ[ref.from_env]
            elif isinstance(ref, SecretRef):
                raise LaunchInputError(
                    f"env.{key}: secret references need the kubernetes backend; on "
                    f"{self.name} use {{from_env: NAME}}"
                )
        return resolved

    def describe(self, request: SubmitRequest) -> str:
        """What ``--dry-run`` prints: the script, manifests or command line (pure)."""
        return f"{self.name}: job {request.job_id}"

    @abstractmethod
    def submit(self, request: SubmitRequest) -> str:
        """Start the job; return the backend's handle for it (``backend_job_id``)."""

    @abstractmethod
    def status(self, record: JobRecord) -> BackendStatus:
        """The job's state now. Never raises for a job that vanished: say UNKNOWN/FAILED."""

    @abstractmethod
    def cancel(self, record: JobRecord, grace_s: float | None = None) -> CancelReport:
        """Stop every process of the job: a termination signal first, a kill after
        ``grace_s`` (None: the spec's default). Returns when they are gone."""

    def requeue(self, record: JobRecord) -> str:
        """Stop a running job so that it checkpoints and goes back to the queue, to start
        again from that checkpoint; returns what was done. Default: not supported."""
        raise JobActionError(
            f"job {record.id} runs on {self.name}, which has no queue to put it back in; "
            f"cancel it (scalectl cancel {record.id}) and launch it again to resume"
        )

    def log_files(self, record: JobRecord) -> list[LogFile]:
        """The job's logs. Default: ``logs/`` of the job directory (local disk or a
        shared file system); a backend whose logs live elsewhere overrides it."""
        return JobDir(record.job_dir).logs()
