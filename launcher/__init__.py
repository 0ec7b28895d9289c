"""Launcher: the JobSpec, the backends (local, slurm, kubernetes) and the job registry.

Public API (imported lazily: every rank imports ``contract.jobdir`` through this package,
so ``import launcher`` must not pull in pydantic, psutil or sqlite)::

    from launcher import (
        JobSpec, load_spec_file, spec_from_mapping,      # the spec (launcher.spec)
        JobState, Store, JobRecord,                      # the registry (read API for UIs)
        read_progress, ProgressSnapshot,                 # progress of a job directory
        JobDir,                                          # the job-directory contract
        Backend, get_backend,                            # backends
        launch, refresh, cancel,                         # what the commands do
        plan_job, PlannedJob, LaunchFlags,               # a plan made a job (--plan's path)
        LaunchInputError, JobNotFoundError, RegistryError,
    )
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "JobSpec": "launcher.spec",
    "load_spec_file": "launcher.spec",
    "spec_from_mapping": "launcher.spec",
    "JobState": "launcher.states",
    "Store": "launcher.store",
    "JobRecord": "launcher.store",
    "read_progress": "launcher.progress_view",
    "ProgressSnapshot": "launcher.progress_view",
    "JobDir": "contract.jobdir",
    "Backend": "launcher.backends.base",
    "get_backend": "launcher.backends",
    "launch": "launcher.api",
    "refresh": "launcher.api",
    "cancel": "launcher.api",
    "plan_job": "launcher.plan_launch",
    "PlannedJob": "launcher.plan_launch",
    "LaunchFlags": "launcher.flags",
    "LaunchInputError": "launcher.errors",
    "JobNotFoundError": "launcher.errors",
    "RegistryError": "launcher.errors",
}

__all__ = [
    "Backend",
    "JobDir",
    "JobNotFoundError",
    "JobRecord",
    "JobSpec",
    "JobState",
    "LaunchFlags",
    "LaunchInputError",
    "PlannedJob",
    "ProgressSnapshot",
    "RegistryError",
    "Store",
    "cancel",
    "get_backend",
    "launch",
    "load_spec_file",
    "plan_job",
    "read_progress",
    "refresh",
    "spec_from_mapping",
]

if TYPE_CHECKING:
    from contract.jobdir import JobDir
    from launcher.api import cancel, launch, refresh
    from launcher.backends import get_backend
    from launcher.backends.base import Backend
    from launcher.errors import JobNotFoundError, LaunchInputError, RegistryError
    from launcher.flags import LaunchFlags
    from launcher.plan_launch import PlannedJob, plan_job
    from launcher.progress_view import ProgressSnapshot, read_progress
    from launcher.spec import JobSpec, load_spec_file, spec_from_mapping
    from launcher.states import JobState
    from launcher.store import JobRecord, Store


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'launcher' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
