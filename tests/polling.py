"""Waiting in tests for something another process does: one helper for every folder.

Importable as ``polling`` from any test (``tests/`` is on ``sys.path`` because the root
``conftest.py`` lives there)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_for(predicate: Callable[[], Any], timeout_s: float = 60.0, poll_s: float = 0.1) -> Any:
    """Call ``predicate`` until it returns something truthy and return that; fail the test
    with an AssertionError naming the predicate after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {predicate}")
        time.sleep(poll_s)
