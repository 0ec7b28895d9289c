"""The contract imports none of the parts that import it (launcher, runtime, tui,
planner), and its light half (jobdir, env, events) not even pydantic: every rank loads it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

CONTRACT = Path(__file__).resolve().parents[2] / "contract"
ALLOWED = {"contract", "pydantic"}
LIGHT = ("contract.jobdir", "contract.env", "contract.events")


def _imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_contract_imports_only_the_standard_library_and_pydantic() -> None:
    files = sorted(CONTRACT.glob("*.py"))
    assert {p.stem for p in files} >= {"jobdir", "env", "events", "job", "plan"}
    for path in files:
        outside = _imported_roots(path) - ALLOWED - set(sys.stdlib_module_names)
        assert outside == set(), f"{path.name} imports {sorted(outside)}"


def _loaded_after(modules: tuple[str, ...]) -> list[str]:
    code = (
        f"import sys, {', '.join(modules)}; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'launcher', 'runtime', 'tui', 'planner', 'scalectl', 'pydantic', 'torch', 'psutil'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return list(ast.literal_eval(out.stdout.strip()))


def test_importing_the_contract_loads_none_of_the_parts() -> None:
    assert _loaded_after(LIGHT) == []
    assert _loaded_after(("contract.job", "contract.plan", *LIGHT)) == ["pydantic"]
