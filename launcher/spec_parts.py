"""The parts a :class:`launcher.spec.JobSpec` is built from: env references, the node
range, the entrypoint, the checkpoint policy (pydantic models, frozen, no extra keys)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

REFERENCE_TRAINER_MODULE = "runtime.train"
"""The reference trainer's module (issue 4); ``entrypoint: {module: runtime.train}``."""

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
"""A POSIX environment variable name."""
FROZEN = ConfigDict(extra="forbid", frozen=True)
"""Every spec model: unknown keys are errors, values never change after validation."""


class FromEnv(BaseModel):
    """An env value copied at launch from the submitting shell's environment.

    The value itself is never written to job.json, sbatch scripts or manifests.
    """

    model_config = FROZEN
    from_env: str
    """Name of the variable to read from the environment of ``scalectl launch``."""

    @field_validator("from_env")
    @classmethod
    def _name(cls, value: str) -> str:
        if not ENV_NAME.match(value):
            raise ValueError(f"{value!r} is not an environment variable name")
        return value


class SecretRef(BaseModel):
    """An env value taken from a named secret (a Kubernetes Secret) by the backend."""

    model_config = FROZEN
    secret: str
    """Name of the secret object."""
    key: str
    """Key inside the secret whose value becomes the variable."""


EnvValue = str | FromEnv | SecretRef


class NodeRange(BaseModel):
    """Elastic node count: the job runs with any number of nodes from ``min`` to ``max``.

    Written ``"MIN:MAX"``, ``"N"`` (fixed), an integer, or ``{min: .., max: ..}``.
    """

    model_config = FROZEN
    min: int = Field(ge=1)
    """Fewest nodes the job runs with (torchrun ``--nnodes=MIN:...``)."""
    max: int = Field(ge=1)
    """Most nodes the job grows to; equal to ``min`` for a fixed-size job."""

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("write nodes as MIN:MAX, e.g. 1:2")
        if isinstance(value, int):
            return {"min": value, "max": value}
        if isinstance(value, str):
            parts = value.strip().split(":")
            if len(parts) not in (1, 2) or not all(p.strip().isdigit() for p in parts):
                raise ValueError(f"{value!r} is not MIN:MAX; write e.g. 1:2 or 2")
            low = int(parts[0])
            return {"min": low, "max": int(parts[-1])}
        return value

    @model_validator(mode="after")
    def _ordered(self) -> NodeRange:
        if self.min > self.max:
            raise ValueError(
                f"min {self.min} is greater than max {self.max}; write MIN:MAX with MIN <= MAX"
            )
        return self

    def __str__(self) -> str:
        return str(self.min) if self.min == self.max else f"{self.min}:{self.max}"


class Entrypoint(BaseModel):
    """What every rank runs: exactly one of ``module``, ``script`` or ``command``."""

    model_config = FROZEN
    module: str | None = None
    """Python module run as ``python -m MODULE`` (``runtime.train`` is the reference trainer)."""
    script: Path | None = None
    """Python script run as ``python SCRIPT`` (relative paths are from ``workdir``)."""
    command: list[str] | None = None
    """Any executable and its leading arguments, run as given (looked up on ``PATH``)."""
    python: str | None = None
    """Interpreter for ``module``/``script``; default: the Python that runs scalectl."""

    @model_validator(mode="after")
    def _exactly_one(self) -> Entrypoint:
        given = [n for n in ("module", "script", "command") if getattr(self, n) is not None]
        if len(given) != 1:
            found = ", ".join(given) if given else "none"
            raise ValueError(f"give exactly one of module, script or command (found {found})")
        if self.command is not None and not self.command:
            raise ValueError("command is empty; give the executable to run")
        if self.module is not None and not re.match(r"^[A-Za-z_][\w.]*\Z", self.module):
            raise ValueError(f"module {self.module!r} is not a Python module name")
        if self.python is not None and self.command is not None:
            raise ValueError("python applies to module and script entrypoints, not command")
        return self

    @property
    def is_reference_trainer(self) -> bool:
        return self.module == REFERENCE_TRAINER_MODULE

    def argv(self, args: list[str], default_python: str) -> list[str]:
        """The full command line a rank executes (pure)."""
        python = self.python or default_python
        if self.module is not None:
            return [python, "-m", self.module, *args]
        if self.script is not None:
            return [python, str(self.script), *args]
        assert self.command is not None
        return [*self.command, *args]

    def describe(self) -> str:
        if self.module is not None:
            return f"-m {self.module}"
        if self.script is not None:
            return str(self.script)
        assert self.command is not None
        return " ".join(self.command)


class CheckpointPolicy(BaseModel):
    """How often the job checkpoints and how many checkpoints it keeps.

    Passed to every rank as ``SCALECTL_CKPT_EVERY_STEPS`` / ``SCALECTL_CKPT_KEEP_LAST``;
    the reference trainer also gets ``--ckpt-every`` / ``--keep-checkpoints``. The local
    supervisor also prunes checkpoints beyond ``keep_last`` for entrypoints that do not.
    Checkpoints are also written on SIGTERM/SIGUSR2 by trainers that follow the runtime
    contract.
    """

    model_config = FROZEN
    every_steps: int | None = Field(default=None, ge=1)
    """Checkpoint every this many optimizer steps; None leaves it to the entrypoint."""
    keep_last: int | None = Field(default=None, ge=1)
    """Keep only the newest this many complete checkpoints; None keeps all."""
