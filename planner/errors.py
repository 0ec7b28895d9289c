"""The planner's user-facing error.

``user_error = True`` makes the root CLI (``scalectl.errors``) print the message as one
line and exit with code 2. Messages are full sentences naming the field and the fix.
"""

from __future__ import annotations

from typing import Any


class PlanInputError(ValueError):
    """A model, cluster, training spec, layout or CLI flag the user gave is wrong."""

    user_error = True


def first_invalid(exc: Any) -> tuple[str, str]:
    """(field path, message) of the first error a pydantic ValidationError lists, for a
    one-line PlanInputError naming it."""
    first = exc.errors()[0]
    return ".".join(str(part) for part in first["loc"]) or "input", str(first["msg"])
