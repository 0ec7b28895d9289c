"""The planner's user-facing error.

``user_error = True`` makes the root CLI (``scalectl.errors``) print the message as one
line and exit with code 2. Messages are full sentences naming the field and the fix.
"""

from __future__ import annotations


class PlanInputError(ValueError):
    """A model, cluster, training spec, layout or CLI flag the user gave is wrong."""

    user_error = True
