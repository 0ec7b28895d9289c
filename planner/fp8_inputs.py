"""The FP8 fields of :class:`planner.inputs.Inputs`: whether GEMMs run in FP8
(``fp8``), with dynamic or current scaling (``fp8_dynamic``, ``fp8_current``:
TrainingSpec.fp8_scaling) and with the weights kept and gathered in FP8 (``fp8_params``,
TrainingSpec.fp8_param_gather)."""

from __future__ import annotations

from planner.specs import TrainingSpec


def fp8_inputs(training: TrainingSpec) -> dict[str, float]:
    """``fp8``, ``fp8_dynamic``, ``fp8_params`` and ``fp8_current`` as 0.0 / 1.0."""
    fp8 = training.precision == "fp8"
    return {
        "fp8": 1.0 if fp8 else 0.0,
        "fp8_dynamic": 1.0 if fp8 and training.fp8_scaling == "dynamic" else 0.0,
        "fp8_params": 1.0 if fp8 and training.fp8_param_gather else 0.0,
        "fp8_current": 1.0 if fp8 and training.fp8_scaling == "current" else 0.0,
    }
