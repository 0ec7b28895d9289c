"""Turning user-input errors raised anywhere in scalectl into one line and exit code 2.

Packages never import ``scalectl`` (it imports them), so the contract is duck-typed:
an exception whose class has ``user_error = True`` is a mistake in what the user gave
us, and its ``str()`` is a complete sentence naming the field and the fix. pydantic's
ValidationError is recognised too, so a spec model refusing a value needs no wrapper.
"""

from __future__ import annotations

INPUT_ERROR_EXIT_CODE = 2


def user_error_message(exc: BaseException) -> str | None:
    """Return the one-line message for a user-input error, or None for a real bug."""
    if getattr(type(exc), "user_error", False):
        return _one_line(str(exc))
    if type(exc).__name__ == "ValidationError" and type(exc).__module__.startswith("pydantic"):
        return _one_line(format_validation_error(exc))
    return None


def format_validation_error(exc: BaseException) -> str:
    """Name the first offending field of a pydantic ValidationError and what it wants."""
    errors = exc.errors()  # type: ignore[attr-defined]
    if not errors:
        return str(exc)
    first = errors[0]
    field = ".".join(str(part) for part in first.get("loc", ())) or "input"
    message = first.get("msg", "invalid value")
    if first.get("type") == "extra_forbidden":
        message = "unknown key; remove it or check its spelling"
    elif first.get("type") == "missing":
        message = "required, but missing"
    title = getattr(exc, "title", "")
    prefix = f"{title}: " if title else ""
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{prefix}{field}: {message}{more}"


def _one_line(text: str) -> str:
    return " ".join(text.split())
