"""The categorical fields of :class:`planner.inputs.Inputs` that TrainingSpec sets, as
0.0 / 1.0: the kernels (``eager``), torchtitan's op-level selective recomputation
(``op_sac``), FSDP1 (``fsdp1``), gradients freed after each step (``grads_freed``), torch's
ring attention rather than Transformer Engine's (``torch_ring``:
TrainingSpec.ring_attention), and FP8: whether GEMMs run in FP8 (``fp8``), with dynamic
or current scaling (``fp8_dynamic``, ``fp8_current``: TrainingSpec.fp8_scaling) and with
the weights kept and gathered in FP8 (``fp8_params``, TrainingSpec.fp8_param_gather)."""

from __future__ import annotations

from planner.specs import TrainingSpec


def _f(flag: bool) -> float:
    return 1.0 if flag else 0.0


def training_flags(training: TrainingSpec) -> dict[str, float]:
    """``eager``, ``op_sac``, ``fsdp1``, ``grads_freed``, ``torch_ring`` and the FP8 flags."""
    fp8 = training.precision == "fp8"
    return {
        "eager": _f(training.kernels == "eager"),
        "op_sac": _f(training.selective_recompute == "op"),
        "fsdp1": _f(training.fsdp_version == 1),
        "grads_freed": _f(training.grad_lifetime == "backward"),
        "torch_ring": _f(training.ring_attention == "torch"),
        "fp8": _f(fp8),
        "fp8_dynamic": _f(fp8 and training.fp8_scaling == "dynamic"),
        "fp8_params": _f(fp8 and training.fp8_param_gather),
        "fp8_current": _f(fp8 and training.fp8_scaling == "current"),
    }
