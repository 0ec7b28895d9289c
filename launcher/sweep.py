"""Sweeps: ``scalectl launch sweep.yaml`` with a parameter grid → ONE Slurm job array.

A sweep file is a job spec with one more top-level key::

    name: lr-sweep
    backend: slurm
    entrypoint: {module: runtime.train}
    args: [--steps, "200"]
    sweep:
      grid:
        --lr: ["1e-3", "3e-3", "1e-2"]     # appended to args as `--lr VALUE`
        env.SEED: ["1", "2"]               # set in every rank's environment
      throttle: 2                          # at most 2 runs at once (--array=0-N%2)

The grid's cartesian product (keys in file order) gives the runs. Every run is a job of
its own — job directory, registry entry, name ``<name>-<i>``, events — and all of them
are one ``sbatch --array`` script, so they share its resources: only arguments and
environment may vary. The array's script and its batch outputs live in
``<jobs_root>/sweeps/<sweep id>/`` with ``sweep.json`` listing the runs.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from contract.events import EventKind, append_event
from contract.jobdir import JobDir, write_json_atomic
from launcher import api
from launcher.backends.base import SubmitRequest
from launcher.backends.slurm import SlurmBackend
from launcher.errors import LaunchInputError
from launcher.flags import build_mapping
from launcher.ids import new_job_id
from launcher.paths import default_jobs_root, make_directory
from launcher.spec import JobSpec, describe_validation_error, spec_from_mapping
from launcher.states import JobState
from launcher.store import Store

MAX_RUNS = 1000
"""Slurm's default MaxArraySize is 1001 (indices 0-1000)."""
SWEEPS_DIR = "sweeps"
_ENV_KEY = re.compile(r"^env\.[A-Za-z_][A-Za-z0-9_]*\Z")


class SweepSpec(BaseModel):
    """The ``sweep:`` key of a sweep file."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    grid: dict[str, list[str]]
    """Parameter → values. ``--flag`` keys are appended to ``args`` as ``--flag VALUE``;
    ``env.NAME`` keys set an environment variable of every rank."""
    throttle: int | None = Field(default=None, ge=1)
    """At most this many runs at once (Slurm's ``--array=0-N%throttle``); None: all."""

    @field_validator("grid", mode="before")
    @classmethod
    def _grid(cls, value: Any) -> Any:
        if not isinstance(value, dict) or not value:
            raise ValueError("write grid as a mapping of parameter to a list of values")
        out: dict[str, list[str]] = {}
        for key, values in value.items():
            key = str(key)
            if not (key.startswith("-") or _ENV_KEY.match(key)):
                raise ValueError(
                    f"{key!r} cannot vary inside one job array (every run shares one sbatch "
                    "script and its resources); vary arguments (--flag) or env.NAME"
                )
            if not isinstance(values, list) or not values:
                raise ValueError(f"{key}: give a non-empty list of values")
            if any(isinstance(v, bool | dict | list) for v in values):
                raise ValueError(f"{key}: values must be numbers or strings (quote yes/no)")
            out[key] = [str(v) for v in values]
        return out


def base_name(runs: list[SweepRun]) -> str:
    """The sweep's name: its runs' without the ``-<index>`` suffix."""
    return runs[0].spec.name.rsplit("-", 1)[0]


@dataclass(frozen=True)
class SweepRun:
    """One point of the grid."""

    index: int
    """Array index (``SLURM_ARRAY_TASK_ID``)."""
    values: dict[str, str]
    """Grid key → value of this run."""
    spec: JobSpec
    """The run's spec (validated)."""


def split_sweep(data: Mapping[str, Any], source: str) -> tuple[SweepSpec, dict[str, Any]]:
    """(the sweep, the spec mapping without it)."""
    rest = {k: v for k, v in data.items() if k != "sweep"}
    try:
        sweep = SweepSpec.model_validate(data.get("sweep"))
    except ValidationError as exc:
        raise LaunchInputError(f"{source}: sweep.{describe_validation_error(exc)}") from None
    return sweep, rest


def expand(base: dict[str, Any], sweep: SweepSpec, source: str) -> list[SweepRun]:
    """Every run of the grid, in order (pure)."""
    keys = list(sweep.grid)
    combos = list(itertools.product(*(sweep.grid[k] for k in keys)))
    if len(combos) > MAX_RUNS:
        raise LaunchInputError(
            f"{source}: the grid has {len(combos)} runs; a Slurm array holds at most {MAX_RUNS}"
        )
    first = spec_from_mapping(base, source=source)
    if first.backend != "slurm":
        raise LaunchInputError(
            f"{source}: sweeps run as one Slurm job array; set backend: slurm (or --backend slurm)"
        )
    if first.job_dir is not None:
        raise LaunchInputError(
            f"{source}: job_dir would be shared by every run of the sweep; remove it (each "
            "run gets its own directory under jobs_root)"
        )
    runs = []
    width = len(str(len(combos) - 1))
    for index, combo in enumerate(combos):
        values = dict(zip(keys, combo, strict=True))
        mapping = {**base, "args": list(base.get("args") or []), "env": dict(base.get("env") or {})}
        for key, value in values.items():
            if key.startswith("-"):
                mapping["args"] += [key, value]
            else:
                mapping["env"][key.removeprefix("env.")] = value
        suffix = f"-{index:0{width}d}"
        mapping["name"] = first.name[: 63 - len(suffix)] + suffix
        runs.append(SweepRun(index, values, spec_from_mapping(mapping, source=source)))
    return runs


def launch_sweep(
    runs: list[SweepRun],
    throttle: int | None,
    store: Any,
    *,
    cwd: Path,
    environ: Mapping[str, str],
) -> tuple[str, Path, list[Any]]:
    """Create every run (job dir, job.json, registry) and submit ONE array.

    Returns (sweep id, sweep directory, records in array order). Nothing is created
    before every run has been validated; if submission fails every run is FAILED.
    """
    prepared = [api.prepare(run.spec, cwd=cwd, environ=environ) for run in runs]
    backend = _slurm(prepared[0].backend)
    root = prepared[0].spec.jobs_root or default_jobs_root()
    sweep_id = new_job_id()
    sweep_dir = root / SWEEPS_DIR / sweep_id
    refusal = f"jobs_root {root}: cannot create the sweep directory ({{why}})"
    make_directory(sweep_dir, refusal, exist_ok=False)
    requests: list[SubmitRequest] = []
    records = []
    for run, prep in zip(runs, prepared, strict=True):
        job_id, jobdir, _ = api._create_job_dir(prep.spec)
        spec = prep.spec.model_copy(update={"job_dir": jobdir.root})
        api._write_job_files(jobdir, job_id, spec)
        record = api._register(store, job_id, spec, jobdir)
        append_event(
            jobdir,
            EventKind.SUBMITTED,
            job_id=record.id,
            backend=spec.backend,
            name=spec.name,
            sweep=sweep_id,
            index=run.index,
            values=run.values,
        )
        records.append(record)
        requests.append(
            SubmitRequest(
                job_id=record.id,
                spec=spec,
                job_dir=jobdir,
                registry_path=store.path,
                secret_env=prep.secret_env,
            )
        )
    write_json_atomic(
        sweep_dir / "sweep.json",
        {
            "sweep_id": sweep_id,
            "throttle": throttle,
            "runs": [
                {"index": run.index, "job_id": rec.id, "values": run.values}
                for run, rec in zip(runs, records, strict=True)
            ],
        },
    )
    try:
        handles = backend.submit_array(requests, sweep_dir, throttle, base_name(runs))
    except Exception as exc:
        for record in records:
            reason = f"submit failed: {exc}"
            append_event(
                record.job_dir, EventKind.FAILED, job_id=record.id, state="FAILED", reason=reason
            )
            store.transition(record.id, JobState.FAILED, reason)
        raise
    for record, handle in zip(records, handles, strict=True):
        store.set_backend_job_id(record.id, handle)
    return sweep_id, sweep_dir, [store.get(r.id) for r in records]


def dry_run_sweep(
    runs: list[SweepRun], throttle: int | None, *, cwd: Path, environ: Mapping[str, str]
) -> str:
    """The array script that would be submitted; creates nothing."""
    prepared = [api.prepare(run.spec, cwd=cwd, environ=environ) for run in runs]
    root = prepared[0].spec.jobs_root or default_jobs_root()
    requests = []
    for prep in prepared:
        job_id = new_job_id()
        requests.append(
            SubmitRequest(
                job_id=job_id,
                spec=prep.spec.model_copy(update={"job_dir": root / job_id}),
                job_dir=JobDir(root / job_id),
                registry_path=Path(os.devnull),
            )
        )
    backend = _slurm(prepared[0].backend)
    sweep_dir = root / SWEEPS_DIR / new_job_id()
    text: str = backend.describe_array(requests, sweep_dir, throttle, base_name(runs))
    return text


def _slurm(backend: object) -> SlurmBackend:
    if not isinstance(backend, SlurmBackend):
        raise LaunchInputError("sweeps run as one Slurm job array; set backend: slurm")
    return backend


def sweep_command(
    file_data: dict[str, Any], flags: Any, words: list[str], *, source: str, dry_run: bool
) -> list[str]:
    """``scalectl launch sweep.yaml``: the lines to print (launch or dry run)."""
    sweep, rest = split_sweep(file_data, source)
    runs = expand(build_mapping(rest, flags, words), sweep, source)
    cwd, environ = Path.cwd(), dict(os.environ)
    if dry_run:
        return [dry_run_sweep(runs, sweep.throttle, cwd=cwd, environ=environ)]
    with Store() as store:
        sweep_id, sweep_dir, records = launch_sweep(
            runs, sweep.throttle, store, cwd=cwd, environ=environ
        )
    array = (records[0].backend_job_id or "?").split("_")[0]
    throttle = f", at most {sweep.throttle} at once" if sweep.throttle else ""
    lines = [f"launched sweep {sweep_id}: {len(records)} runs as Slurm array {array}{throttle}"]
    for run, record in zip(runs, records, strict=True):
        values = " ".join(f"{k}={v}" for k, v in run.values.items())
        lines.append(f"  {record.id}  {record.name}  {values}")
    lines.append(f"  sweep dir: {sweep_dir}")
    lines.append("  status:    scalectl jobs")
    return lines
