"""The test tree imports cleanly in any selection: pytest's default ("prepend") import mode
puts each test directory on sys.path and imports modules by their bare name, so two test
or helper modules with one basename, or a ``from conftest import``, work or fail
depending on which directories a run collects (CI once failed at collection so)."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_module_basenames_are_unique_across_test_directories() -> None:
    where: dict[str, list[str]] = defaultdict(list)
    for path in TESTS.rglob("*.py"):
        if path.name not in ("conftest.py", "__init__.py") and "__snapshots__" not in path.parts:
            where[path.stem].append(str(path.relative_to(TESTS)))
    clashes = {name: paths for name, paths in where.items() if len(paths) > 1}
    assert clashes == {}, f"rename one of each: {clashes}"


def test_no_test_imports_a_conftest_by_name() -> None:
    pattern = re.compile(r"^\s*(from conftest import|import conftest)", re.MULTILINE)
    offenders = [
        str(p.relative_to(TESTS)) for p in TESTS.rglob("*.py") if pattern.search(p.read_text())
    ]
    assert offenders == [], "move shared values into a uniquely named helper module"
