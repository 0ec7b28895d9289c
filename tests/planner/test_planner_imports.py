"""The planner imports only numpy, pydantic, pyyaml and the standard library (plus typer,
rich and matplotlib in its CLI modules); never torch, kubernetes, textual or submitit
(ARCHITECTURE.md)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import planner

ROOT = Path(planner.__file__).resolve().parent
FORBIDDEN = {"torch", "kubernetes", "textual", "submitit"}
ALLOWED = {"numpy", "pydantic", "yaml", "planner"} | set(sys.stdlib_module_names)
CLI_ONLY = {"typer", "rich", "matplotlib", "contract"}  # contract: plan.json (--out)
CLI_FILES = {
    "cli.py",
    "render.py",
    "render_search.py",
    "render_calibration.py",
    "render_table.py",
    "plot.py",
}
# The plan exports (planner/export_*.py) read plan.json through contract.plan as well.
# planner/finetune.py takes the LoRA target names from contract/finetune_targets.py, the
# vocabulary the trainer shares, so a plan's targets are the run's.
CONTRACT_READERS = {"export_plan.py", "finetune.py"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_no_forbidden_imports_anywhere_in_planner() -> None:
    for path in ROOT.rglob("*.py"):
        bad = _imports(path) & FORBIDDEN
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_only_allowed_dependencies() -> None:
    for path in ROOT.rglob("*.py"):
        cli = path.name in CLI_FILES or path.name.startswith("cli_")
        allowed = ALLOWED | (CLI_ONLY if cli else set())
        if path.name in CONTRACT_READERS:
            allowed |= {"contract"}
        extra = _imports(path) - allowed
        assert not extra, f"{path.relative_to(ROOT)} imports {extra}"


def test_text_grep_too() -> None:
    """Belt and braces: no `import torch` even in strings built at run time."""
    for path in ROOT.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for name in FORBIDDEN:
            assert f"import {name}" not in text and f"from {name}" not in text, (path, name)
