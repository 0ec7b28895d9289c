"""Tensor parallelism of LoRA layers: the adapters split the way their base weight is.

torch's ``ColwiseParallel`` distributes every parameter of a linear module as
``Shard(0)`` and ``RowwiseParallel`` the weight as ``Shard(1)`` and everything else
replicated, which is right for a weight and a bias but not for the adapters of
:class:`runtime.train.lora.LoRALinear` (y = x W^T + s (x A^T) B^T, A [r, in], B [out, r]):

* column-wise (W split by output rows, ``Shard(0)``; the input x replicated): A is
  replicated (every rank needs all of x A^T), B is ``Shard(0)`` like W, so each rank
  computes its own columns of the update, as of the base output;
* row-wise (W split by input columns, ``Shard(1)``; x split on its last dimension): A is
  ``Shard(1)`` like W, so x A^T is a partial sum over ranks, and B is replicated; the
  partial (x A^T) B^T joins x W^T's partial sum, reduced once by the style's output.

DTensor's operators then give each term its placement (a partial times a replicated
matrix stays partial), so the layer's output and the adapters' gradients are those of
one process (tests/runtime/test_lora_layouts.py). Named styles, as torchtitan names its
own ``ParallelStyle`` variants; ``lora_styles`` swaps them into a block's plan only
for LoRA layers, so a model without adapters gets the plan unchanged.
"""

from __future__ import annotations

from typing import Any

from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor import Placement, Replicate, Shard, distribute_tensor
from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel

from runtime.train.lora import LoRALinear
from runtime.train.lora_nf4 import LoRAError, is_nf4


def _distribute(module: nn.Module, mesh: DeviceMesh, placements: dict[str, Placement]) -> None:
    for name, param in list(module.named_parameters(recurse=False)):
        dist_param = nn.Parameter(
            distribute_tensor(param, mesh, [placements[name]]),
            requires_grad=param.requires_grad,
        )
        module.register_parameter(name, dist_param)


class LoRAColwiseParallel(ColwiseParallel):
    """``ColwiseParallel`` for a LoRA layer: weight, bias and B ``Shard(0)``, A replicated."""

    def _partition_linear_fn(self, name: str, module: nn.Module, device_mesh: DeviceMesh) -> None:
        placements: dict[str, Placement] = {
            "weight": Shard(0), "bias": Shard(0), "lora_a": Replicate(), "lora_b": Shard(0)
        }  # fmt: skip
        _distribute(module, device_mesh, placements)


class LoRARowwiseParallel(RowwiseParallel):
    """``RowwiseParallel`` for a LoRA layer: weight and A ``Shard(1)``, bias and B
    replicated."""

    def _partition_linear_fn(self, name: str, module: nn.Module, device_mesh: DeviceMesh) -> None:
        placements: dict[str, Placement] = {
            "weight": Shard(1), "bias": Replicate(), "lora_a": Shard(1), "lora_b": Replicate()
        }  # fmt: skip
        _distribute(module, device_mesh, placements)


def frozen_names(model: nn.Module) -> set[str]:
    """Names of ``model``'s parameters that take no gradient (LoRA's frozen base)."""
    return {name for name, param in model.named_parameters() if not param.requires_grad}


def refreeze(model: nn.Module, names: set[str]) -> None:
    """Freeze ``names`` again after tensor parallelism: torch 2.13's ``SequenceParallel``
    re-registers the norms' weights as new parameters that require gradients
    (``_replicate_module_fn``), which would train LoRA's frozen norms."""
    for name, param in model.named_parameters():
        if name in names:
            param.requires_grad_(False)


def lora_styles(block: nn.Module, plan: dict[str, Any], tp: int) -> dict[str, Any]:
    """``plan`` (module path → style) with each LoRA layer's Colwise/Rowwise style
    replaced by its LoRA twin (same input and output layouts); the plan itself when the
    block has no adapters. NF4 base weights (QLoRA) are refused: they have no DTensor
    split here."""
    adapted = dict(plan)
    for path, style in plan.items():
        module = block.get_submodule(path)
        if not isinstance(module, LoRALinear):
            continue
        if is_nf4(module.weight):
            raise LoRAError(
                f"--tp {tp}: QLoRA's NF4 base weights are not split by tensor "
                "parallelism in the trainer; plan tp 1"
            )
        if not isinstance(style, ColwiseParallel | RowwiseParallel):
            raise LoRAError(f"--tp {tp}: no LoRA split for {path}'s {style!r}")
        twin: type[ColwiseParallel | RowwiseParallel]
        twin = LoRARowwiseParallel if isinstance(style, RowwiseParallel) else LoRAColwiseParallel
        layouts = style.input_layouts, style.output_layouts
        replacement = twin(use_local_output=style.use_local_output)
        replacement.input_layouts, replacement.output_layouts = layouts
        if isinstance(style, ColwiseParallel):
            replacement.desired_input_layouts = style.desired_input_layouts
        adapted[path] = replacement
    return adapted
