"""The launcher's user-facing errors.

Each class has ``user_error = True``: the root CLI (``scalectl.errors``) prints its
message as one line and exits with code 2. Messages are full sentences that name the
field (or file) at fault and say how to fix it.
"""

from __future__ import annotations


class LaunchInputError(ValueError):
    """A job spec or a launch flag the user gave is wrong."""

    user_error = True


class JobNotFoundError(LookupError):
    """No job (or more than one job) matches what the user typed."""

    user_error = True


class RegistryError(RuntimeError):
    """The job registry cannot be opened, read or written (corrupt, locked, unwritable)."""

    user_error = True


class BackendUnavailableError(RuntimeError):
    """The requested backend is not installed or cannot reach its scheduler."""

    user_error = True


class JobActionError(RuntimeError):
    """An action (requeue, ...) that the job's backend or its present state does not allow."""

    user_error = True
