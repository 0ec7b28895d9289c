"""``JobSpec``: everything needed to run one training job on any backend.

One spec, three backends: the local backend runs it on this machine, the Slurm backend
renders it to an sbatch script, the Kubernetes backend to manifests. Fields that only
one backend understands live in that backend's options sub-model (``local``,
``slurm``, ``kubernetes``); the others ignore it, so one YAML can be sent anywhere by
changing ``backend``.

Loaded from YAML (:func:`load_spec_file`) or built from ``scalectl launch`` flags; both
go through :func:`spec_from_mapping`, so every error reads the same: one line naming the
key and the fix, raised as :class:`~launcher.errors.LaunchInputError`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from contract.env import JOB_DIR_ENV, JOB_ID_ENV, NODE_ENV
from launcher.errors import LaunchInputError
from launcher.flags import apply_overrides
from launcher.spec_options import KubernetesOptions, LocalOptions, SlurmOptions, Toleration
from launcher.spec_parts import (
    ENV_NAME,
    FROZEN,
    REFERENCE_TRAINER_MODULE,
    CheckpointPolicy,
    Entrypoint,
    EnvValue,
    FromEnv,
    NodeRange,
    SecretRef,
)

BackendName = Literal["local", "slurm", "kubernetes"]
BACKENDS: tuple[str, ...] = ("local", "slurm", "kubernetes")

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}\Z")
RESERVED_ENV = frozenset(
    {
        JOB_ID_ENV,
        JOB_DIR_ENV,
        NODE_ENV,
        "RANK",
        "LOCAL_RANK",
        "WORLD_SIZE",
        "LOCAL_WORLD_SIZE",
        "GROUP_RANK",
        "MASTER_ADDR",
        "MASTER_PORT",
    }
)
"""Variables the launcher and torchrun set for every rank; a spec may not override them."""


REFERENCE_TRAINER_RESTARTS = 3
"""Restart budget of a reference-trainer job whose spec gives none. It checkpoints and
resumes, so a crashed rank or lost node costs the steps since the last checkpoint rather
than the run; failures are routine at scale (Llama 3 paper, Sec. 3.3.4: 419 unexpected
interruptions in 54 days on 16,384 H100s), and 3 matches ``slurm.max_requeues``'s
default budget for preemptions."""


class JobSpec(BaseModel):
    """One training job, as the user asked for it. Backend-neutral; see module docstring."""

    model_config = FROZEN

    name: str
    """Human name (letters, digits, ``. _ -``; at most 63); need not be unique."""
    entrypoint: Entrypoint
    """What every rank runs: the reference trainer, a script, a module or a command."""
    args: list[str] = Field(default_factory=list)
    """Arguments appended to the entrypoint's command line."""
    env: dict[str, EnvValue] = Field(default_factory=dict)
    """Extra environment of every rank: plain values, ``{from_env: NAME}`` or
    ``{secret: NAME, key: KEY}``. References are resolved by the backend and their
    values never written to job files, scripts or manifests."""
    nodes: NodeRange = Field(default_factory=lambda: NodeRange(min=1, max=1))
    """Elastic node range ``MIN:MAX``; one node agent per node."""
    procs_per_node: int = Field(default=1, ge=1)
    """Training processes (ranks) per node (torchrun ``--nproc-per-node``)."""
    gpus_per_node: int = Field(default=0, ge=0)
    """GPUs requested per node; 0 for a CPU job (gloo)."""
    cpus_per_node: int | None = Field(default=None, ge=1)
    """CPU cores requested per node (Slurm ``--cpus-per-task`` of the one task per node);
    also sets each rank's ``OMP_NUM_THREADS`` to ``cpus_per_node // procs_per_node``."""
    mem_gib: float | None = Field(default=None, gt=0)
    """Host memory requested per node, GiB; None: the scheduler's default."""
    time_limit_s: int | None = Field(default=None, ge=1)
    """Wall-clock limit in seconds (also ``"90m"``, ``"2h"``, ``"1-00:00:00"``); None: none."""
    workdir: Path | None = None
    """Working directory of every rank; default: where ``scalectl launch`` ran."""
    jobs_root: Path | None = None
    """Directory holding job directories; default ``$SCALECTL_JOBS_ROOT`` or
    ``$SCALECTL_HOME/jobs``. Must be shared by all nodes on a cluster."""
    job_dir: Path | None = None
    """This job's directory; default ``<jobs_root>/<job id>``. Reusing the directory of a
    finished job resumes from its checkpoints."""
    max_restarts: int = Field(default=0, ge=0)
    """Restart budget: how many times failed ranks are restarted (torchrun
    ``--max-restarts``) before the job fails. Not given: :data:`REFERENCE_TRAINER_RESTARTS`
    for the reference trainer (it resumes from its checkpoints), 0 for other programs
    (a restart only helps a program that resumes)."""
    checkpoint: CheckpointPolicy = Field(default_factory=CheckpointPolicy)
    """Checkpoint cadence and retention."""
    backend: BackendName = "local"
    """Where it runs: ``local`` (this machine), ``slurm`` or ``kubernetes``."""
    local: LocalOptions = Field(default_factory=LocalOptions)
    """Options used when ``backend`` is ``local``."""
    slurm: SlurmOptions = Field(default_factory=SlurmOptions)
    """Options used when ``backend`` is ``slurm``."""
    kubernetes: KubernetesOptions = Field(default_factory=KubernetesOptions)
    """Options used when ``backend`` is ``kubernetes``."""
    plan: dict[str, Any] | None = None
    """The planner's Plan this job was made from (a planner ``Plan`` or its JSON form);
    written to ``plan.json`` in the job directory."""

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(
                f"{value!r} is not a job name; use letters, digits, '.', '_' or '-' "
                "(at most 63, starting with a letter or digit)"
            )
        return value

    @field_validator("args", mode="before")
    @classmethod
    def _args(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [_scalar_to_str(item, "args") for item in value]
        return value

    @field_validator("env", mode="before")
    @classmethod
    def _env(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        out: dict[str, Any] = {}
        for key, item in value.items():
            key = str(key)
            if not ENV_NAME.match(key):
                raise ValueError(f"{key!r} is not an environment variable name")
            if key in RESERVED_ENV:
                raise ValueError(f"{key} is set by scalectl for every rank; remove it")
            out[key] = _env_value(key, item)
        return out

    @field_validator("time_limit_s", mode="before")
    @classmethod
    def _time_limit(cls, value: Any) -> Any:
        if isinstance(value, str):
            return parse_duration_s(value)
        return value

    @field_validator("plan", mode="before")
    @classmethod
    def _plan(cls, value: Any) -> Any:
        if value is not None and hasattr(value, "model_dump"):
            return value.model_dump(mode="json")
        return value

    @model_validator(mode="after")
    def _default_restarts(self) -> JobSpec:
        if "max_restarts" not in self.model_fields_set and self.entrypoint.is_reference_trainer:
            # frozen model: the default depends on another field, set once at validation
            object.__setattr__(self, "max_restarts", REFERENCE_TRAINER_RESTARTS)
        return self

    @model_validator(mode="after")
    def _local_nodes(self) -> JobSpec:
        count = self.local.nodes
        if count is not None and not self.nodes.min <= count <= self.nodes.max:
            raise ValueError(
                f"local.nodes {count} is outside nodes {self.nodes}; pick a count in that range"
            )
        return self

    def env_plain(self) -> dict[str, str]:
        """Env entries given as plain values (safe to write anywhere)."""
        return {k: v for k, v in self.env.items() if isinstance(v, str)}

    def env_refs(self) -> dict[str, FromEnv | SecretRef]:
        """Env entries given as references, resolved by the backend."""
        return {k: v for k, v in self.env.items() if not isinstance(v, str)}

    def to_json(self) -> dict[str, Any]:
        """JSON form (job.json's ``spec``), read back by :func:`spec_from_mapping`."""
        return self.model_dump(mode="json")


def _env_value(key: str, item: Any) -> Any:
    if not isinstance(item, dict):
        return _scalar_to_str(item, f"env.{key}")
    model: type[BaseModel] | None = (
        FromEnv if "from_env" in item else SecretRef if "secret" in item else None
    )
    shapes = "a value, {from_env: NAME} or {secret: NAME, key: KEY}"
    if model is None:
        raise ValueError(f"{key}: write {shapes}")
    try:
        return model.model_validate(item)
    except ValidationError as exc:
        first = exc.errors()[0]
        bad = ".".join(str(p) for p in first.get("loc", ()))
        if first.get("type") == "extra_forbidden":
            raise ValueError(f"{key}: unknown key {bad!r}; write {shapes}") from None
        if first.get("type") == "missing":
            raise ValueError(f"{key}: {bad} is missing; write {shapes}") from None
        msg = str(first.get("msg", "")).removeprefix("Value error, ")
        raise ValueError(f"{key}: {msg}") from None


def _scalar_to_str(value: Any, where: str) -> Any:
    # YAML turns `--steps 50` into an int and `1e-3` into a float; a bool is nearly
    # always a mistake (`yes` -> True), so it must be quoted.
    if isinstance(value, bool):
        raise ValueError(f"{where}: {value!r} is a boolean; quote it if you mean the text")
    if isinstance(value, int | float):
        return str(value)
    return value


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration_s(text: str) -> int:
    """Seconds in ``"90"``, ``"90s"``, ``"30m"``, ``"2h"``, ``"1d"``, ``"H:MM:SS"`` or
    ``"D-HH:MM:SS"`` (Slurm's form with days). A bare number is seconds."""
    raw = text.strip().lower()
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhd]?)", raw)
    if match:
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2) or "s"]
        return max(1, round(seconds))
    match = re.fullmatch(r"(?:(\d+)-)?(\d+):(\d{1,2}):(\d{1,2})", raw)
    if match:
        days, hours, minutes, secs = (int(g) if g else 0 for g in match.groups())
        return days * 86400 + hours * 3600 + minutes * 60 + secs
    raise ValueError(f"{text!r} is not a duration; write e.g. 90m, 2h, 1:30:00 or 1-00:00:00")


def spec_from_mapping(data: Any, source: str = "job spec") -> JobSpec:
    """Validate a mapping into a JobSpec; any problem becomes one LaunchInputError line."""
    if not isinstance(data, dict):
        raise LaunchInputError(f"{source}: expected a mapping of keys to values at the top")
    try:
        return JobSpec.model_validate(data)
    except ValidationError as exc:
        raise LaunchInputError(f"{source}: {describe_validation_error(exc)}") from None


def load_spec_file(path: Path, overrides: dict[str, Any] | None = None) -> JobSpec:
    """Read a YAML (or JSON) job spec and apply ``overrides`` (dotted keys) on top."""
    return spec_from_mapping(read_spec_mapping(path, overrides), source=str(path))


def read_spec_mapping(path: Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The raw mapping of a spec file with ``overrides`` applied; not validated yet."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LaunchInputError(f"{path}: no such job spec file") from None
    except OSError as exc:
        raise LaunchInputError(f"{path}: cannot read the job spec ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise LaunchInputError(f"{path}: not valid YAML{where}: {problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise LaunchInputError(f"{path}: expected a mapping of keys to values at the top")
    return apply_overrides(data, overrides or {})


def describe_validation_error(exc: ValidationError) -> str:
    """One line naming the first offending key and the fix."""
    errors = exc.errors()
    # A missing entrypoint explains more than anything else that is wrong (without one,
    # even the default name cannot be derived), so it is reported first.
    errors.sort(
        key=lambda e: 0 if e.get("type") == "missing" and e.get("loc") == ("entrypoint",) else 1
    )
    first = errors[0]
    loc = [str(part) for part in first.get("loc", ()) if not str(part).startswith("function-")]
    # Union members (str | FromEnv | SecretRef) add their type name to the location.
    loc = [p for p in loc if p not in {"str", "FromEnv", "SecretRef"}]
    where = ".".join(loc)
    kind = first.get("type", "")
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        hint = f"; known keys: {', '.join(allowed)}" if allowed else ""
        return f"unknown key {where!r}; remove it or check its spelling{hint}"
    if kind == "missing":
        if where == "entrypoint":
            return (
                "entrypoint is missing: set entrypoint.module, entrypoint.script or "
                "entrypoint.command (flags: --module, --script, or -- COMMAND)"
            )
        return f"{where}: required, but missing"
    message = str(first.get("msg", "invalid value"))
    message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    return f"{where}: {message}" if where else message


def _allowed_keys(loc: list[str]) -> list[str]:
    model: Any = JobSpec
    for part in loc:
        field = model.model_fields.get(part) if hasattr(model, "model_fields") else None
        annotation = getattr(field, "annotation", None)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
        else:
            return []
    return list(model.model_fields)


__all__ = [
    "BACKENDS",
    "REFERENCE_TRAINER_MODULE",
    "RESERVED_ENV",
    "BackendName",
    "CheckpointPolicy",
    "Entrypoint",
    "EnvValue",
    "FromEnv",
    "JobSpec",
    "KubernetesOptions",
    "LocalOptions",
    "NodeRange",
    "SecretRef",
    "SlurmOptions",
    "Toleration",
    "apply_overrides",
    "describe_validation_error",
    "load_spec_file",
    "parse_duration_s",
    "read_spec_mapping",
    "spec_from_mapping",
]
