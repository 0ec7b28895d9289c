"""``scalectl launch --after JOB``: chained runs, as Slurm ``afterok`` dependencies.

Each reference is a scalectl job (id, unique prefix/suffix, or name — as everywhere) or
a raw Slurm job id; it becomes the Slurm id in ``slurm.after``, rendered as
``#SBATCH --dependency=afterok:<ids>`` with ``--kill-on-invalid-dep=yes`` (a run whose
predecessor failed is cancelled by Slurm instead of waiting forever).
"""

from __future__ import annotations

import re
from typing import Any

from launcher.errors import JobNotFoundError, LaunchInputError, RegistryError
from launcher.store import Store, registry_exists

_SLURM_ID = re.compile(r"^\d+(_\d+)?\Z")


def resolve_after(refs: list[str]) -> list[str]:
    """Slurm job ids for ``--after`` references (one clear error for a bad one)."""
    ids: list[str] = []
    store = Store(create=False) if registry_exists() else None
    try:
        for ref in refs:
            ids.append(_resolve_one(store, ref))
    finally:
        if store is not None:
            store.close()
    return ids


def _resolve_one(store: Any, ref: str) -> str:
    if store is not None:
        try:
            record = store.resolve(ref)
        except (JobNotFoundError, RegistryError):
            record = None
        if record is not None:
            if record.backend != "slurm":
                raise LaunchInputError(
                    f"--after {ref}: job {record.id} runs on {record.backend}; dependencies "
                    "link Slurm jobs only"
                )
            if not record.backend_job_id:
                raise LaunchInputError(
                    f"--after {ref}: job {record.id} has no Slurm job id (its submission "
                    "failed); pick another job"
                )
            return str(record.backend_job_id)
    if _SLURM_ID.match(ref):
        return ref
    raise LaunchInputError(f"--after {ref}: no job matches; give a scalectl job or a Slurm job id")


def with_after(file_data: dict[str, Any] | None, slurm_ids: list[str]) -> dict[str, Any]:
    """The spec mapping with ``slurm.after`` extended by ``slurm_ids``."""
    data = dict(file_data or {})
    slurm = dict(data.get("slurm") or {})
    slurm["after"] = [*(slurm.get("after") or []), *slurm_ids]
    data["slurm"] = slurm
    return data


def check_after(spec: Any, refs: list[str]) -> None:
    if refs and spec.backend != "slurm":
        raise LaunchInputError("--after links Slurm jobs; add --backend slurm")
