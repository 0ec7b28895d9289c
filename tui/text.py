"""How the TUI writes numbers, times, paths and states: pure functions, no Textual.

Every cell the UI shows goes through here, so the jobs table, the detail pane and the
planner agree on units (``12.3k`` tokens/s, ``41%`` MFU, ``3h`` age) and a missing value
is always the same ``–``.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

from contract.env import HOME_ENV
from contract.jobdir import finite as finite  # numbers read from job files, used across the TUI
from launcher.states import STATE_STYLE

MISSING = "–"
"""What a value that is not known (yet) looks like."""


def state_style(state: str) -> str:
    return STATE_STYLE.get(state, "")


def age(seconds: float | None) -> str:
    """``45s``, ``12m``, ``3h``, ``2d``."""
    if seconds is None:
        return MISSING
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def si(value: float | None, digits: int = 3) -> str:
    """``950``, ``12.3k``, ``1.20M``, ``4.5G``: ``digits`` significant digits."""
    if value is None or not math.isfinite(value):
        return MISSING
    magnitude = abs(value)
    for suffix, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if magnitude >= scale * 0.9995:
            return _significant(value / scale, digits) + suffix
    return _significant(value, digits)


def _significant(value: float, digits: int) -> str:
    if value == 0:
        return "0"
    whole = len(str(int(abs(value)))) if abs(value) >= 1 else 1
    decimals = max(0, digits - whole)
    text = f"{value:.{decimals}f}"
    return text


def percent(fraction: float | None, decimals: int = 0) -> str:
    """A fraction (0.41) as ``41%``."""
    if fraction is None or not math.isfinite(fraction):
        return MISSING
    return f"{fraction * 100:.{decimals}f}%"


def seconds(value: float | None) -> str:
    """A duration: ``850 ms``, ``1.24 s``, ``3.0 min``, ``2.5 h``, ``4.1 d``."""
    if value is None or not math.isfinite(value):
        return MISSING
    if value < 1:
        return f"{value * 1000:.3g} ms"
    if value < 120:
        return f"{value:.3g} s"
    if value < 7200:
        return f"{value / 60:.3g} min"
    if value < 172800:
        return f"{value / 3600:.3g} h"
    return f"{value / 86400:.3g} d"


def number(value: float | int | None, decimals: int = 0) -> str:
    """``1,234`` (or ``1,234.5`` with decimals)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return MISSING
    return f"{value:,.{decimals}f}"


def clock(ts: float | None) -> str:
    """``HH:MM:SS`` in local time."""
    if ts is None or not math.isfinite(ts):
        return "--:--:--"
    return time.strftime("%H:%M:%S", time.localtime(ts))


def datetime_text(ts: float | None) -> str:
    """``YYYY-MM-DD HH:MM:SS`` in local time."""
    if ts is None or not math.isfinite(ts):
        return MISSING
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def short_path(path: Path | str, home: Path | None = None) -> str:
    """``$SCALECTL_HOME/jobs/<id>`` or ``~/runs/x`` instead of a long absolute path."""
    text = str(path)
    if home is not None:
        base = str(home).rstrip("/")
        if base and (text == base or text.startswith(base + "/")):
            return f"${HOME_ENV}" + text[len(base) :]
    user_home = os.path.expanduser("~")
    if user_home not in ("", "/") and text.startswith(user_home + "/"):
        return "~" + text[len(user_home) :]
    return text


def truncate(text: str, width: int) -> str:
    """``text`` cut to ``width`` cells with an ellipsis."""
    if width <= 0:
        return ""
    if len(text) <= width:
        return text
    return text[: width - 1] + "…"
