"""The loss's fields of :class:`planner.inputs.Inputs`: the bytes per logit the
cross-entropy holds (``logits_bytes``) and moves (``loss_bytes``) under its kernels
(``TrainingSpec.loss_kernels``, else ``kernels``) and chunks (``loss_chunks``)."""

from __future__ import annotations

from typing import Any

from planner.formulas import kernels, memory
from planner.specs import TrainingSpec


def loss_eager(training: TrainingSpec) -> bool:
    """Whether the cross-entropy runs as PyTorch eager ops."""
    return (training.loss_kernels or training.kernels) == "eager"


def loss_inputs(training: TrainingSpec, sizes: dict[str, Any]) -> dict[str, float]:
    """``logits_bytes`` and ``loss_bytes`` for the precision's ``sizes`` (constants.yaml
    ``precision``): an eager loss also moves what its unfused kernels add
    (:func:`planner.formulas.kernels.eager_loss_extra_bytes`)."""
    eager = loss_eager(training)
    fusion = "" if training.cross_entropy_fusion else "_unfused"
    extra = float(kernels.eager_loss_extra_bytes(float(sizes["activation_bytes"])))
    return {
        "logits_bytes": memory.chunked_logits_bytes(
            float(sizes["logits_stored_bytes"]), training.loss_chunks, eager
        ),
        "loss_bytes": float(sizes["loss_traffic_bytes" + fusion]) + (extra if eager else 0.0),
    }
