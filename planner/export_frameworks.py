"""A plan for the framework the user trains with (pure): the words that carry it on the
framework's command line, and the text ``scalectl plan export`` writes.

``scalectl plan export`` and ``scalectl launch --plan --framework`` both come here; the
targets are :mod:`planner.export_torchtitan` (0.3 overrides, 0.2 TOML) and
:mod:`planner.export_megatron` (Megatron-LM arguments).
"""

from __future__ import annotations

import shlex

from planner import export_torchtitan
from planner.export_megatron import megatron_arguments, megatron_environment
from planner.export_plan import TARGETS, ExportError, ExportPlan


def _target(target: str) -> str:
    if target not in TARGETS:
        raise ExportError(f"--to {target!r}: use one of {', '.join(TARGETS)}")
    return target


def framework_arguments(
    export: ExportPlan, target: str, compile_model: bool | None = None
) -> list[str]:
    """The words to append to ``target``'s entrypoint: torchtitan 0.3's overrides (after
    ``--module M --config C``) or Megatron-LM's arguments (after ``pretrain_gpt.py``)."""
    if _target(target) == "torchtitan":
        return export_torchtitan.torchtitan_overrides(export, compile_model)
    if compile_model is not None:
        raise ExportError(
            "--compile: Megatron-LM has no torch.compile argument; drop --compile/--no-compile"
        )
    return megatron_arguments(export)


def framework_environment(export: ExportPlan, target: str) -> dict[str, str]:
    """Environment variables ``target`` requires for the plan's layout (Megatron-LM's
    ``CUDA_DEVICE_MAX_CONNECTIONS``); torchtitan requires none."""
    return megatron_environment(export) if _target(target) == "megatron" else {}


def export_text(
    export: ExportPlan, target: str, toml: bool = False, compile_model: bool | None = None
) -> str:
    """What ``scalectl plan export`` writes: the arguments as one shell-quoted line, or
    with ``toml`` (torchtitan only) the TOML file torchtitan 0.2 reads."""
    if toml:
        if _target(target) != "torchtitan":
            raise ExportError(f"--toml: only torchtitan reads a TOML file; drop it for {target}")
        return export_torchtitan.torchtitan_toml(export, compile_model)
    return shlex.join(framework_arguments(export, target, compile_model)) + "\n"
