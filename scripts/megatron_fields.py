"""Record the Megatron-LM argument names that ``scalectl plan export --to megatron`` may emit.

Megatron-LM (core_v0.16) builds most of its command line from megatron-core's config
dataclasses (``megatron/training/argument_utils.py`` ``ArgumentGroupFactory``): a field
``tensor_model_parallel_size`` becomes ``--tensor-model-parallel-size``; a bool field
whose default is True becomes ``--no-<name>``/``--disable-<name>``; a field's
``metadata["argparse_meta"]["arg_names"]`` overrides the name (``fp8`` →
``--fp8-format``). The rest (``--seq-length``, ``--swiglu``, ``--use-distributed-optimizer``,
``--num-virtual-stages-per-pipeline-rank``) are written by hand in
``megatron/training/arguments.py``, which the megatron-core wheel does not ship.

This reads the dataclasses' source with ``ast`` (nothing is imported, so no torch is
needed) from an installed megatron-core, and the hand-written flags from a Megatron-LM
checkout when given, and writes the JSON that tests/planner/test_export_megatron.py
checks every exported flag against::

    python -m venv /tmp/mc && /tmp/mc/bin/pip install 'megatron-core==0.16.*' --no-deps
    /tmp/mc/bin/python scripts/megatron_fields.py --megatron-lm ~/Megatron-LM \\
        --lm-ref core_v0.16.1 > tests/data/megatron_fields.json
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import re
import sys
from pathlib import Path
from typing import Any

CORE_CLASSES = {
    "ModelParallelConfig": "model_parallel_config.py",
    "TransformerConfig": "transformer/transformer_config.py",
    "DistributedDataParallelConfig": "distributed/distributed_data_parallel_config.py",
}
"""megatron-core dataclasses whose fields Megatron-LM turns into flags, and their files."""

LM_FILES = ("megatron/training/arguments.py", "megatron/training/training_config.py")
"""Megatron-LM files with the flags that are not megatron-core fields."""

LM_CLASSES = ("TrainingConfig", "CheckpointConfig")
"""Megatron-LM's own config dataclasses (training_config.py) its flags are built from."""


def _flag(name: str, prefix: str = "") -> str:
    # ArgumentGroupFactory._format_arg_name (megatron/training/argument_utils.py, core_v0.16.1)
    return "--" + (f"{prefix}_{name}" if prefix else name).replace("_", "-")


def _arg_names(value: ast.expr | None) -> list[str] | None:
    """``field(..., metadata={"argparse_meta": {"arg_names": [...]}})``'s names, if any."""
    if not isinstance(value, ast.Call):
        return None
    for keyword in value.keywords:
        if keyword.arg != "metadata":
            continue
        try:
            metadata = ast.literal_eval(keyword.value)
        except ValueError:
            return None
        names = metadata.get("argparse_meta", {}).get("arg_names")
        return list(names) if names else None
    return None


def _default(value: ast.expr | None) -> Any:
    if isinstance(value, ast.Call):
        for keyword in value.keywords:
            if keyword.arg == "default":
                value = keyword.value
                break
        else:
            return None
    try:
        return ast.literal_eval(value) if value is not None else None
    except ValueError:
        return None


def class_flags(source: str, class_name: str) -> dict[str, list[str]]:
    """{field: [flags]} of a dataclass in ``source`` (the factory's naming rule)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            fields: dict[str, list[str]] = {}
            for item in node.body:
                if not isinstance(item, ast.AnnAssign) or not isinstance(item.target, ast.Name):
                    continue
                name = item.target.id
                annotation = ast.unparse(item.annotation)
                flags = [_flag(name)]
                if annotation == "bool" and _default(item.value) is True:
                    flags = [_flag(name, "no"), _flag(name, "disable")]
                fields[name] = _arg_names(item.value) or flags
            return fields
    raise SystemExit(f"{class_name}: not found")


def lm_flags(source: str) -> list[str]:
    """Every ``--flag`` that ``add_argument`` names in a Megatron-LM file."""
    names: set[str] = set()
    for call in re.finditer(r"add_argument\(([^)]*)", source):
        names.update(re.findall(r"'(--[A-Za-z0-9-]+)'", call.group(1)))
    return sorted(names)


def factory_exclude(source: str) -> list[str]:
    """The TransformerConfig fields Megatron-LM keeps off its command line (the
    ``exclude`` list its ``ArgumentGroupFactory(TransformerConfig, exclude=...)`` takes in
    ``_add_network_size_args``)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef) and node.name == "_add_network_size_args":
            for item in ast.walk(node):
                if (
                    isinstance(item, ast.Assign)
                    and isinstance(item.targets[0], ast.Name)
                    and item.targets[0].id == "exclude"
                ):
                    return sorted(ast.literal_eval(item.value))
    raise SystemExit("_add_network_size_args: no exclude list found")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megatron-lm", type=Path, help="a Megatron-LM checkout")
    parser.add_argument("--lm-ref", default="", help="its tag or commit, recorded")
    args = parser.parse_args(argv)
    spec = importlib.util.find_spec("megatron.core")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("megatron-core is not installed in this Python")
    core = Path(next(iter(spec.submodule_search_locations)))
    info = (core / "package_info.py").read_text(encoding="utf-8")
    parts = [re.search(rf"^{key} = (\d+)", info, re.M) for key in ("MAJOR", "MINOR", "PATCH")]
    version = ".".join(part.group(1) for part in parts if part)
    classes = {
        name: {
            "source": f"megatron/core/{path}",
            "fields": class_flags((core / path).read_text(encoding="utf-8"), name),
        }
        for name, path in CORE_CLASSES.items()
    }
    out: dict[str, Any] = {"megatron_core_version": version, "classes": classes}
    if args.megatron_lm is not None:
        training = (args.megatron_lm / LM_FILES[1]).read_text(encoding="utf-8")
        arguments = (args.megatron_lm / LM_FILES[0]).read_text(encoding="utf-8")
        out["megatron_lm"] = {
            "ref": args.lm_ref,
            "arguments_source": LM_FILES[0],
            "flags": lm_flags(arguments),
            "transformer_factory_exclude": factory_exclude(arguments),
            "classes": {
                name: {"source": LM_FILES[1], "fields": class_flags(training, name)}
                for name in LM_CLASSES
            },
        }
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
