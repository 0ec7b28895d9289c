"""Golden files of the CLI's terminal output (tests/*/golden/*.txt), shared by the
planner's and the launcher's golden tests.

Regenerate after an intended change with ``UPDATE_GOLDEN=1 .venv/bin/pytest
tests/planner/test_plan_goldens.py tests/launcher/test_jobs_launch_goldens.py`` and review the
diff: the files are the output as a user sees it, one table per file, trailing spaces
(rich pads each table line to the table's width) removed.
"""

from __future__ import annotations

import os
from pathlib import Path

WIDTHS = (80, 120)
"""The terminal widths every golden is rendered at (issue 20: read at 80 columns)."""


def plain(text: str) -> str:
    """The output as compared: trailing spaces removed, nothing else changed."""
    return "\n".join(line.rstrip() for line in text.splitlines()) + "\n"


def check_golden(folder: Path, name: str, text: str) -> None:
    """``text`` equals ``folder/name``; ``UPDATE_GOLDEN=1`` writes it instead."""
    path = folder / name
    text = plain(text)
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"missing golden file {path}; run with UPDATE_GOLDEN=1"
    assert text == path.read_text(encoding="utf-8"), (
        f"{name} differs from the golden file {path} (UPDATE_GOLDEN=1 rewrites it; review the diff)"
    )


def assert_fits(text: str, width: int) -> None:
    """No line of ``text`` is wider than ``width`` characters, and no ANSI code."""
    assert "\x1b[" not in text, "ANSI escape codes in output that is not a terminal"
    wide = [line for line in text.splitlines() if len(line.rstrip()) > width]
    assert not wide, f"{len(wide)} line(s) wider than {width} columns, first: {wide[0]!r}"
