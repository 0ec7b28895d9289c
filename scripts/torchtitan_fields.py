"""Record torchtitan's configuration field names that ``scalectl plan export --to
torchtitan`` may emit, for each torchtitan version it targets.

Two shapes of torchtitan exist:

- ≤ 0.2 (``torchtitan/config/job_config.py``): a ``JobConfig`` dataclass of sections read
  from a TOML file (``--job.config_file``) and ``--section.field`` overrides;
- ≥ 0.3 (``torchtitan/config/configs.py`` and ``Trainer.Config`` in
  ``torchtitan/trainer.py``): a Python config function picked with ``--module``/``--config``
  plus tyro's ``--section.field`` overrides; activation checkpointing is a tyro
  subcommand (``activation-checkpoint:full``).

The sources are read with ``ast`` (nothing is imported: no torch needed). Give each tree
as VERSION=PATH (a checkout, or an unpacked wheel) with a note on where it came from::

    pip download torchtitan==0.3.0 --no-deps && unzip torchtitan-0.3.0-*.whl -d /tmp/tt3
    git -C torchtitan worktree add /tmp/tt2 v0.2.2
    python scripts/torchtitan_fields.py --tree '0.3.0=/tmp/tt3=PyPI wheel ...' \\
        --tree '0.2.2=/tmp/tt2=tag v0.2.2 ...' > tests/data/torchtitan_fields.json
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
from pathlib import Path
from typing import Any


def _classes(source: str) -> dict[str, ast.ClassDef]:
    return {
        node.name: node for node in ast.walk(ast.parse(source)) if isinstance(node, ast.ClassDef)
    }


def _annotations(node: ast.ClassDef) -> dict[str, str]:
    return {
        item.target.id: ast.unparse(item.annotation)
        for item in node.body
        if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)
    }


def _sections(
    classes: dict[str, ast.ClassDef], root: ast.ClassDef, prefix: str = ""
) -> dict[str, list[str]]:
    """{"section.sub": [fields]} of the dataclass tree under ``root`` (classes of the file)."""
    out: dict[str, list[str]] = {}
    for name, annotation in _annotations(root).items():
        if annotation in classes:
            path = f"{prefix}{name}"
            child = classes[annotation]
            out[path] = sorted(_annotations(child))
            out.update(_sections(classes, child, f"{path}."))
    return out


def old_tree(root: Path) -> dict[str, Any]:
    """torchtitan ≤ 0.2: JobConfig's sections and the registered model converters."""
    path = "torchtitan/config/job_config.py"
    classes = _classes((root / path).read_text(encoding="utf-8"))
    converters: set[str] = set()
    for file in sorted((root / "torchtitan/components/quantization").glob("*.py")):
        text = file.read_text(encoding="utf-8")
        converters.update(re.findall(r'register_model_converter\(\w+, "([^"]+)"\)', text))
    return {
        "shape": "toml",
        "sources": [path, "torchtitan/components/quantization/*.py"],
        "sections": _sections(classes, classes["JobConfig"]),
        "model_converters": sorted(converters),
    }


def new_tree(root: Path) -> dict[str, Any]:
    """torchtitan ≥ 0.3: the command-line sections of Trainer.Config defined in configs.py,
    and the activation-checkpointing subcommands."""
    configs = _classes((root / "torchtitan/config/configs.py").read_text(encoding="utf-8"))
    trainer = _classes((root / "torchtitan/trainer.py").read_text(encoding="utf-8"))
    config = next(
        node
        for node in ast.walk(trainer["Trainer"])
        if isinstance(node, ast.ClassDef) and node.name == "Config"
    )
    sections = {
        name: sorted(_annotations(configs[annotation]))
        for name, annotation in _annotations(config).items()
        if annotation in configs
    }
    ac = (root / "torchtitan/distributed/activation_checkpoint.py").read_text(encoding="utf-8")
    return {
        "shape": "overrides",
        "sources": [
            "torchtitan/config/configs.py",
            "torchtitan/trainer.py",
            "torchtitan/distributed/activation_checkpoint.py",
        ],
        "sections": sections,
        "activation_checkpoint_subcommands": sorted(
            set(re.findall(r'tyro\.conf\.subcommand\("([^"]+)"\)', ac))
        ),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tree", action="append", required=True, help="VERSION=PATH=where it came from"
    )
    args = parser.parse_args(argv)
    out: dict[str, Any] = {}
    for tree in args.tree:
        version, path, origin = tree.split("=", 2)
        root = Path(path)
        shape = new_tree if (root / "torchtitan/config/configs.py").exists() else old_tree
        out[version] = {"origin": origin, **shape(root)}
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
