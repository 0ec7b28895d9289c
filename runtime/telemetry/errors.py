"""Errors the telemetry package raises for bad input (one line, exit code 2 from the CLI)."""

from __future__ import annotations

import math


class TelemetryInputError(ValueError):
    """A telemetry option the user gave is invalid; the message names it and the fix."""

    user_error = True


def check_interval(interval_s: float, option: str = "interval_s") -> float:
    """Return ``interval_s`` as a float if it is a usable sampling interval, else raise."""
    value = float(interval_s)
    if not math.isfinite(value) or value <= 0:
        raise TelemetryInputError(
            f"{option} must be a positive number of seconds (got {interval_s!r}); "
            "use e.g. 1.0 for one sample a second."
        )
    return value


def check_port(port: int, option: str = "metrics port") -> int:
    """Return ``port`` if it is a TCP port number (0 picks a free one), else raise."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise TelemetryInputError(
            f"{option} must be an integer from 0 to 65535 (got {port!r}); 0 picks a free port."
        )
    return port
