"""A calibration profile: the accelerator's efficiency constants fitted from measured jobs.

``scalectl plan calibrate`` writes one (``planner.calibration`` does the fit);
``plan estimate --profile FILE`` and ``plan search --profile FILE`` plan with its
accelerator instead of the catalog's or ``--gpu-spec``'s. The profile keeps the fitted
accelerator whole (peaks, efficiencies, bandwidths, per-step overhead), the time factors
the fit found, and each job's residuals, so a reader can see how well it fits.
"""

from __future__ import annotations

from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from planner.catalog import read_yaml_mapping
from planner.errors import PlanInputError, first_invalid
from planner.specs import AcceleratorSpec

SCHEMA_VERSION = 1
"""Version of the profile file (CalibrationProfile.schema_version); bumped when a field
changes meaning."""

FactorName = Literal["gemm", "attention", "memory", "intra_network", "inter_network"]
"""The groups of step-time terms whose rate the fit scales (planner.calibration)."""

_FROZEN = ConfigDict(extra="forbid", frozen=True)


class JobResidual(BaseModel):
    """How one measured job compares with the plan, before and after calibration."""

    model_config = _FROZEN

    job: str
    """The job directory's name (the job id)."""
    layout: str
    """Model and layout of the job, for the reader (name, dp/tp/pp, micro-batch)."""
    steps_used: int = Field(ge=1)
    """Steady-state steps whose median is ``measured_step_s`` (warm-up left out)."""
    measured_step_s: float = Field(gt=0)
    """Median measured step time, s."""
    predicted_before_s: float = Field(gt=0)
    """Step time the job's plan.json predicted (the constants it was launched with), s."""
    predicted_after_s: float = Field(gt=0)
    """Step time the planner predicts for the same job with this profile, s."""

    @property
    def ratio_before(self) -> float:
        """Measured over predicted, before calibration."""
        return self.measured_step_s / self.predicted_before_s

    @property
    def ratio_after(self) -> float:
        """Measured over predicted, with the profile."""
        return self.measured_step_s / self.predicted_after_s


class CalibrationProfile(BaseModel):
    """What ``plan calibrate`` fitted, as written to the profile YAML file."""

    model_config = _FROZEN

    schema_version: Literal[1] = 1
    """Version of this file's layout."""
    fitted_for: str = Field(min_length=1)
    """Name of the accelerator the jobs were planned on; ``--gpu``/``--gpu-spec`` given with
    ``--profile`` must name the same one."""
    accelerator: AcceleratorSpec
    """The accelerator with the fitted constants, used in place of the named one."""
    time_factors: dict[FactorName, float]
    """Measured over modelled time of each group of step-time terms (1 = the constants
    were right; 2 = that work runs at half the modelled rate), relative to the
    accelerator the jobs were planned on. Groups no job exercised are left out."""
    step_overhead_s: float = Field(ge=0)
    """Fitted seconds per step outside every kernel term (also in ``accelerator``)."""
    jobs: list[JobResidual] = Field(min_length=1)
    """Each job's measured and predicted step time, before and after."""


def load_profile(path: str) -> CalibrationProfile:
    """The profile in ``path``; bad files raise PlanInputError naming the flag and the fix."""
    data = read_yaml_mapping(
        path,
        "--profile",
        "a calibration profile mapping",
        missing_fix="; write one with `scalectl plan calibrate`",
    )
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise PlanInputError(
            f"--profile {path}: schema_version {version!r}, this scalectl reads "
            f"{SCHEMA_VERSION}; rerun `scalectl plan calibrate`."
        )
    try:
        return CalibrationProfile.model_validate(data)
    except ValidationError as exc:
        where, message = first_invalid(exc)
        raise PlanInputError(f"--profile {path}: field {where}: {message}.") from None


def dump_profile(profile: CalibrationProfile) -> str:
    """The profile as YAML text (what ``load_profile`` reads back)."""
    return yaml.safe_dump(profile.model_dump(mode="json"), sort_keys=False)


def profiled_accelerator(
    profile: CalibrationProfile, named: AcceleratorSpec | None
) -> AcceleratorSpec:
    """The profile's accelerator, after checking it was fitted for ``named`` (if given)."""
    if named is not None and profile.fitted_for not in (named.name, *named.aliases):
        raise PlanInputError(
            f"--profile was fitted for {profile.fitted_for!r}, not {named.name!r}; drop "
            "--gpu/--gpu-spec or calibrate from jobs planned on that accelerator."
        )
    return profile.accelerator
