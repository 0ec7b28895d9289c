"""Compilation and fp8 for the reference trainer: each applied the way torchtitan applies
it (torchtitan/models/llama3/infra/parallelize.py and components/quantization/float8.py),
and each refused with exit 2 where this device cannot run it, never silently skipped.

* ``apply_compile``: ``torch.compile`` per transformer block, after the recompute
  wrappers and before ``fully_shard`` (a block is the unit that repeats, so it compiles
  once and the graph is reused by every layer); inductor needs a C++ compiler on the CPU
  and Triton on a GPU. With tensor parallelism it is refused (``check_compile``).
* ``apply_float8``: torchao's float8 training (``convert_to_float8_training``: dynamic
  tensorwise scaling of the linear layers' inputs, weights and gradients) on CUDA GPUs of
  compute capability 8.9 or more (Ada, Hopper: the first with fp8 tensor cores), before
  any parallelism, leaving out the output projection and layers whose dimensions are not
  multiples of 16 (the fp8 GEMM's alignment), as torchtitan's float8 converter does.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import torch
from torch import nn

FP8_MIN_CAPABILITY = (8, 9)
"""CUDA compute capability of the first GPUs with fp8 tensor cores (Ada Lovelace 8.9,
Hopper 9.0; NVIDIA CUDA C++ Programming Guide, "Compute Capabilities" table)."""

FP8_ALIGNMENT = 16
"""torch._scaled_mm needs both GEMM dimensions of a float8 linear divisible by 16
(torchao float8 README; torchtitan skips the layers that are not)."""


class KernelError(ValueError):
    """A knob this device cannot run (compile, fp8); the trainer prints it and exits 2."""

    user_error = True


def compile_unavailable(device_type: str) -> str | None:
    """Why inductor cannot compile on ``device_type`` here, or None when it can."""
    if device_type == "cuda":
        from torch.utils._triton import has_triton

        return None if has_triton() else "Triton is not installed (pip install triton)"
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler

        get_cpp_compiler()
    except Exception as exc:  # inductor's InvalidCxxCompiler, or its API moved
        return (
            f"inductor finds no C++ compiler ({type(exc).__name__}); install g++ or point "
            "$CXX at one"
        )
    return None


def check_compile(device_type: str, tp: int = 1) -> None:
    """Refuse ``--compile`` where inductor cannot build kernels on this device, and under
    tensor parallelism, where the compiled blocks did not train as eager ones: on torch
    2.13 (CPU, gloo, dp1 x tp2 with SP) the loss after one step differed from eager by
    2e-3 relative while eager tp2 equals one process to 1e-7 (tests/runtime/
    parity_worker.py, ``--tp 2 --sequence-parallel --compile``); dp with compile is equal."""
    if tp > 1:
        raise KernelError(
            f"--compile: with --tp {tp} the compiled blocks' gradients differ from eager ones "
            "(torch 2.13); compile with tp 1, or drop --compile"
        )
    reason = compile_unavailable(device_type)
    if reason is not None:
        raise KernelError(
            f"--compile: cannot compile on {device_type}: {reason}; or drop --compile"
        )


def apply_compile(model: nn.Module) -> None:
    """Replace each block of ``model.layers`` with its ``torch.compile``d self.

    ``fullgraph=True``: a graph break inside a block is a bug to see, not a slow path to
    take quietly. DCP's state-dict helpers drop the ``_orig_mod`` level the wrapper adds,
    so checkpoints move between compiled and eager runs.
    """
    layers: nn.ModuleList | nn.ModuleDict = model.layers  # type: ignore[assignment]
    # A pipeline stage keys its blocks by the whole model's index (runtime.train.pipeline).
    keys: list[Any] = (
        list(layers.keys()) if isinstance(layers, nn.ModuleDict) else list(range(len(layers)))
    )
    for key in keys:
        layers[key] = torch.compile(layers[key], fullgraph=True)  # type: ignore[assignment]


def fp8_unavailable(
    device_type: str, capability: tuple[int, int] | None, torchao_installed: bool
) -> str | None:
    """Why fp8 training cannot run here (pure), or None when it can."""
    if device_type != "cuda":
        return f"needs a CUDA GPU of compute capability 8.9 or more; this run is on {device_type}"
    if capability is None or capability < FP8_MIN_CAPABILITY:
        found = "unknown" if capability is None else f"{capability[0]}.{capability[1]}"
        return (
            f"this GPU has compute capability {found}; fp8 tensor cores need 8.9 or more "
            "(Ada, Hopper, Blackwell)"
        )
    if not torchao_installed:
        return "torchao is not installed (pip install torchao)"
    return None


def check_fp8(device: torch.device) -> None:
    """Refuse ``precision fp8`` where torchao's float8 training cannot run."""
    capability = torch.cuda.get_device_capability(device) if device.type == "cuda" else None
    installed = importlib.util.find_spec("torchao") is not None
    reason = fp8_unavailable(device.type, capability, installed)
    if reason is not None:
        raise KernelError(f"--precision fp8: {reason}; or plan with precision bf16")


def apply_float8(model: nn.Module) -> None:
    """torchao's float8 training on every linear layer but the output projection and the
    MoE routers (whose top-k picks are kept in full precision, as torchtitan does)."""
    from torchao.float8 import convert_to_float8_training

    def wanted(module: nn.Module, fqn: str) -> bool:
        if fqn == "output" or fqn.endswith("router") or not isinstance(module, nn.Linear):
            return False
        return module.in_features % FP8_ALIGNMENT == 0 and module.out_features % FP8_ALIGNMENT == 0

    convert_to_float8_training(model, module_filter_fn=wanted)
