"""What the planner answers: :class:`Estimate` (one layout) and :class:`Plan` (the spec
and its estimate, saved as ``plan.json`` in a job directory).

``Estimate.model_dump(mode="json")`` is the ``scalectl plan estimate --json`` schema:
``layout``, ``memory_gib``, ``fits``, ``step``, ``train``.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict

from planner.specs import ClusterSpec, Layout, ModelSpec, TrainingSpec

_FROZEN = ConfigDict(extra="forbid", frozen=True)
_M = TypeVar("_M", bound=BaseModel)
_set = object.__setattr__


def trusted(cls: type[_M], values: dict[str, Any]) -> _M:
    """An instance of result model ``cls`` from already-valid ``values`` (every field).

    What ``model_construct`` does for models without aliases, defaults, extras or private
    attributes, minus its per-field loop: the planner builds thousands of estimates per
    second from numbers it computed itself. ``tests/planner/test_result.py`` checks the
    result equals a validated instance.
    """
    obj = cls.__new__(cls)
    _set(obj, "__dict__", values)
    _set(obj, "__pydantic_fields_set__", set(values))
    _set(obj, "__pydantic_extra__", None)
    _set(obj, "__pydantic_private__", None)
    return obj


class MemoryGiB(BaseModel):
    """Peak memory of the most loaded GPU (first or last pipeline stage), GiB."""

    model_config = _FROZEN

    params: float
    """BF16 weights (plus FP8 copies in FP8 runs), after TP/PP/EP split and ZeRO-3 sharding."""
    grads: float
    """Gradient buffers (FP32 or BF16), sharded under ZeRO-2 and up; 0 when they are made
    in the backward (TrainingSpec.grad_lifetime 'backward') and the peak is at its start."""
    optimizer: float
    """FP32 master weights and optimizer states (BF16 states, no master copy, under
    precision bf16-pure), sharded under ZeRO-1 and up."""
    activations: float
    """Activations kept for backward over the micro-batches in flight, plus logits; 0 when
    the peak is at the end of a backward that makes the gradients."""
    other: float
    """CUDA context, NCCL buffers, FSDP gather buffers, recompute workspace, fragmentation."""
    total: float
    """Sum of the above."""
    capacity: float
    """The accelerator's memory."""


class StepEstimate(BaseModel):
    """One optimizer step."""

    model_config = _FROZEN

    time_s: float
    """Wall-clock seconds per step."""
    model_tflops_per_gpu: float
    """Model FLOPs (6N per token + causal attention, no recompute) per GPU per second, TFLOP/s."""
    hardware_tflops_per_gpu: float
    """FLOPs actually executed (recompute, masked scores) per GPU per second, TFLOP/s."""
    mfu: float
    """Model FLOPs utilisation: model FLOP/s over the dense peak of the training precision."""
    hfu: float
    """Hardware FLOPs utilisation, same basis."""
    tokens_per_s: float
    """Training tokens per second, whole job."""
    bubble_fraction: float
    """Share of the step the pipeline sits idle filling and draining."""
    exposed_comm_s: float
    """Communication seconds per step not hidden under compute."""
    gpu_power_w: float | None = None
    """Mean power of one GPU over a step, W: idle + (TDP - idle) x activity, where compute
    counts fully and exposed communication at a fraction (no host, no PUE); what NVML's
    energy counter measures. None in plans written before this field existed."""
    breakdown: dict[str, float]
    """Seconds per step by cause; they add up to time_s."""


class TrainTotals(BaseModel):
    """The whole run."""

    model_config = _FROZEN

    tokens: float
    """Tokens trained (the budget rounded up to whole steps)."""
    steps: int
    """Optimizer steps."""
    days: float
    """Wall-clock days at the estimated step time (no failures or restarts)."""
    gpu_hours: float
    """GPUs x hours."""
    energy_mwh: float
    """Facility energy: GPU power from utilisation (idle..TDP), plus host power, times PUE."""
    energy_mwh_tdp: float
    """GPU-hours x TDP, the figure model cards report (no host, no PUE)."""
    cost_usd: float
    """GPU-hours x price per GPU-hour."""
    co2_t: float
    """Tonnes CO2: energy (estimated or TDP basis, per ClusterSpec.co2_basis) x grid intensity."""
    goodput: float
    """Share of the expected wall-clock time spent on useful training once failures,
    checkpoint saves and restarts are counted (Young 1974 interval, Daly 2006 wall time;
    planner.formulas.reliability): expected days = days / goodput, and likewise GPU-hours
    and cost."""
    checkpoint_interval_min: float
    """Optimal minutes of training between checkpoints, sqrt(2 x save time x job MTBF)
    (Young 1974), at least one step."""
    expected_interruptions: float
    """Failures expected during the run: expected wall time over the job's MTBF (per-GPU
    MTBF / GPUs)."""


class Estimate(BaseModel):
    """Memory, step time, utilisation and run totals of one layout."""

    model_config = _FROZEN

    layout: Layout
    """The layout estimated."""
    memory_gib: MemoryGiB
    """Per-GPU memory against capacity."""
    fits: bool
    """True when memory_gib.total <= memory_gib.capacity and the node's offloaded
    activations fit its host memory (:func:`planner.estimator.host_memory_gib`)."""
    step: StepEstimate
    """One optimizer step."""
    train: TrainTotals
    """The whole run."""


class Plan(BaseModel):
    """A planned run: what was asked and what the planner predicts (job dir plan.json)."""

    model_config = _FROZEN

    model: ModelSpec
    """The model."""
    cluster: ClusterSpec
    """The cluster."""
    training: TrainingSpec
    """Sequence, batch, budget and numerics."""
    layout: Layout
    """The parallel layout."""
    estimate: Estimate
    """The planner's prediction for this layout."""
