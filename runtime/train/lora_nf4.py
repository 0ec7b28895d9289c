"""QLoRA's frozen base: the blocks' linear weights as torchao NF4 tensors.

QLoRA (Dettmers et al. 2023, Sec. 3) stores each frozen weight in 4-bit NormalFloat,
blocks of 64 weights with one absmax each, the absmaxes quantised again to 8 bits in
blocks of 256 (double quantisation), and dequantises a layer's weight to the compute
dtype for its GEMM. torchao's ``NF4Tensor`` (``to_nf4(w, block_size=64,
scaler_block_size=256)``, always double-quantised) does exactly that, and implements
FSDP2's ``fsdp_pre_all_gather``/``fsdp_post_all_gather``, so ``fully_shard`` shards and
gathers the 4-bit data, not the dequantised weights. What is quantised is what the
planner counts as the 4-bit base (planner/finetune.py, as bitsandbytes does): the
``nn.Linear`` layers inside the transformer blocks; embeddings, norms and the output
layer keep their dtype.
"""

from __future__ import annotations

import importlib
import logging
import re
from types import ModuleType
from typing import Any

import torch
from torch import nn

NF4_BLOCK = 64
"""Weights per absmax (QLoRA Sec. 3, torchao's ``to_nf4`` default)."""
NF4_SCALER_BLOCK = 256
"""Absmaxes per second-level constant of double quantisation (QLoRA Sec. 3)."""
NF4_GRANULE = NF4_BLOCK * NF4_SCALER_BLOCK
"""torchao quantises a tensor whose element count is a multiple of this (16384): its
absmaxes must fill whole second-level blocks (``double_quantize_scalers``)."""

_MODULES = (
    "torchao.quantization.quantize_.workflows.nf4.nf4_tensor",  # torchao >= 0.15
    "torchao.dtypes.nf4tensor",  # older torchao
)

_CPU_EXTENSION = re.compile(r"^Failed to load \S*torchao\S*/_C\w*[.\w-]*\.so: Could not load")
"""torchao's ``__init__`` tries to load every ``_C*.so`` it ships (CUDA kernels: CUTLASS
for sm90a, MX fp8) and logs this warning for each one a CPU-only torch cannot load. NF4
uses none of them (its ops are plain torch), so on a machine without CUDA the line is
noise in every rank's log."""
_ENUM_NOTICE = "is an Enum subclass and is now natively supported by torch.compile"
"""torch 2.13's deprecation notice for torchao 0.18's ``register_constant`` on an enum."""


class LoRAError(ValueError):
    """A LoRA/QLoRA request this model or layout cannot run; the trainer prints it (one
    line naming the flag and the fix) and exits 2."""

    user_error = True


class _ImportNoise(logging.Filter):
    """Drops the two known import-time lines above, passes every other record."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if _ENUM_NOTICE in message:
            return False
        return not (_CPU_EXTENSION.match(message) and not torch.cuda.is_available())


_nf4: ModuleType | None = None


def nf4_module() -> ModuleType:
    """torchao's NF4 module, imported once without its CPU-only import noise; a missing
    torchao is a ``LoRAError`` naming the flag and the install command."""
    global _nf4
    if _nf4 is not None:
        return _nf4
    noise = _ImportNoise()
    loggers = [logging.getLogger("torchao"), logging.getLogger("torch.utils._pytree")]
    for logger in loggers:
        logger.addFilter(noise)
    try:
        for name in _MODULES:
            try:
                _nf4 = importlib.import_module(name)
                break
            except ModuleNotFoundError as exc:
                if exc.name is not None and not name.startswith(exc.name):
                    raise  # something torchao needs is missing: a real error to see
    finally:
        for logger in loggers:
            logger.removeFilter(noise)
    if _nf4 is None:
        raise LoRAError(
            "--finetune qlora: needs torchao's NF4 tensors, and torchao is not installed; "
            "pip install 'scalectl[qlora]'"
        )
    return _nf4


def is_nf4(tensor: Any) -> bool:
    """Whether ``tensor`` is a torchao NF4 tensor (without importing torchao)."""
    return type(tensor).__name__ == "NF4Tensor"


def linear(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """x W^T with W an NF4 tensor, dequantised to x's dtype (torchao's ``linear_nf4``)."""
    out: torch.Tensor = nf4_module().linear_nf4(x, weight)
    return out


def dequantize(tensor: torch.Tensor) -> torch.Tensor:
    """The dense weight an NF4 tensor stands for, in its original dtype."""
    dense: torch.Tensor = tensor.get_original_weight()  # type: ignore[attr-defined]
    return dense


def quantize_base_nf4(model: nn.Module) -> None:
    """Store the weight of every linear layer inside the blocks as a frozen NF4 tensor
    (QLoRA Sec. 3), the adapters and biases untouched; before any parallelism. A weight
    torchao cannot split into whole blocks is a ``LoRAError`` naming it."""
    nf4 = nf4_module()
    layers = model.get_submodule("layers")
    for index, block in layers.named_children():
        for path, module in block.named_modules():
            if not isinstance(module, nn.Linear) or is_nf4(module.weight):
                continue
            if module.weight.numel() % NF4_GRANULE:
                raise LoRAError(
                    f"--finetune qlora: layers.{index}.{path}.weight of shape "
                    f"{list(module.weight.shape)} has {module.weight.numel()} elements, "
                    f"not a multiple of {NF4_GRANULE} (NF4 blocks of {NF4_BLOCK} x "
                    f"{NF4_SCALER_BLOCK}); use --finetune lora for this model"
                )
            with torch.no_grad():
                quantized = nf4.to_nf4(module.weight.detach(), NF4_BLOCK, NF4_SCALER_BLOCK)
            module.weight = nn.Parameter(quantized, requires_grad=False)


def unsharded_nf4(model: nn.Module, shard_ranks: int) -> set[nn.Parameter]:
    """The NF4 weights FSDP must leave alone (``fully_shard(ignored_params=...)``) when it
    shards over ``shard_ranks`` = 1 rank: torch 2.13's FSDP2 on a one-rank group copies
    only the first of a tensor subclass's all-gather inputs (``_fsdp_param_group.py``,
    ``wait_for_unshard``), and NF4 has three (codes, block scales, their factors). Frozen
    and identical on every rank, they need no collective; with more shard ranks FSDP
    shards them (empty set)."""
    if shard_ranks > 1:
        return set()
    return {param for param in model.parameters() if is_nf4(param)}


def check_nf4_layout(model: nn.Module, *, tp: int, dp_shard: int) -> None:
    """Refuse a layout NF4 base weights cannot take: tensor parallelism (torchao's NF4
    tensor has no DTensor placements for Colwise/Rowwise splits here), and FSDP shards
    that do not cut each weight into whole rows and whole double-quantisation blocks
    (torchao's ``aten.split`` of an NF4 tensor)."""
    if tp > 1:
        raise LoRAError(
            f"--tp {tp}: QLoRA's NF4 base weights are not split by tensor parallelism in "
            "the trainer; plan tp 1 (QLoRA shards over data-parallel ranks with FSDP)"
        )
    for name, param in model.named_parameters():
        if not is_nf4(param) or dp_shard == 1:
            continue
        rows, numel = param.shape[0], param.numel()
        if rows % dp_shard or numel % (dp_shard * NF4_GRANULE):
            raise LoRAError(
                f"--dp {dp_shard}: {name} of shape {list(param.shape)} does not split into "
                f"{dp_shard} FSDP shards of whole NF4 blocks ({NF4_GRANULE} elements); "
                "plan a dp that divides its rows and blocks, or sharding none"
            )
