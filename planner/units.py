"""Units and human-friendly counts: ``15T`` tokens, ``2k`` sequences, ``1.5e12``.

Standard library only, so the CLI can parse flags before importing numpy or pydantic.
"""

from __future__ import annotations

import math
import re

from planner.errors import PlanInputError

GIB = float(2**30)
"""Bytes in a GiB; memory is reported in GiB (nvidia-smi's MiB/GiB)."""

SECONDS_PER_HOUR = 3600.0
SECONDS_PER_DAY = 86400.0
W_PER_MW = 1e6
TERA = 1e12
GIGA = 1e9

_SUFFIXES = {
    "": 1.0,
    "k": 1e3,
    "K": 1e3,
    "m": 1e6,
    "M": 1e6,
    "b": 1e9,
    "B": 1e9,
    "g": 1e9,
    "G": 1e9,
    "t": 1e12,
    "T": 1e12,
    "p": 1e15,
    "P": 1e15,
}
_BINARY = {"K": 2.0**10, "M": 2.0**20, "B": 2.0**30, "G": 2.0**30, "T": 2.0**40, "P": 2.0**50}
_COUNT = re.compile(r"^\s*([+-]?[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]?)\s*$")


def parse_count(text: str | float | int, field: str = "count", binary: bool = False) -> float:
    """Parse ``15T``, ``1.5e12``, ``2k``, ``350M``, ``7B`` into a positive float.

    Suffixes are decimal (k = 1e3, M = 1e6, B/G = 1e9, T = 1e12, P = 1e15), the way token
    budgets and parameter counts are quoted; with ``binary=True`` they are powers of 1024
    (``8k`` = 8192 tokens per sequence, ``4M`` = 4,194,304 tokens per batch, ``16k`` GPUs),
    the way sizes are quoted. Zero, negative, non-finite and malformed values raise
    ``PlanInputError`` naming ``field``.
    """
    if isinstance(text, bool):
        raise PlanInputError(f"{field}: expected a count, got {text!r}.")
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        match = _COUNT.match(str(text))
        if match is None or match.group(2) not in _SUFFIXES:
            raise PlanInputError(
                f"{field}: {text!r} is not a count; write a number with an optional suffix "
                "k, M, B or T (for example 15T, 1.5e12, 2k)."
            )
        suffix = match.group(2)
        scale = _BINARY[suffix.upper()] if binary and suffix else _SUFFIXES[suffix]
        value = float(match.group(1)) * scale
    if not math.isfinite(value) or value <= 0:
        raise PlanInputError(f"{field}: must be a positive count, got {text!r}.")
    return value


def parse_int_count(text: str | float | int, field: str = "count", binary: bool = True) -> int:
    """Like :func:`parse_count` but a whole number (GPUs, sequences, tokens per sequence);
    suffixes are binary by default (``8k`` = 8192)."""
    value = parse_count(text, field, binary=binary)
    if value != int(value):
        raise PlanInputError(f"{field}: must be a whole number, got {text!r}.")
    return int(value)


def format_count(value: float) -> str:
    """``1.5e12`` -> ``1.5T``: the inverse of :func:`parse_count` for display."""
    for suffix, scale in (("P", 1e15), ("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.3g}"


_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([a-zA-Z]*)\s*$")
_DAYS_PER = {"": 1.0, "d": 1.0, "day": 1.0, "days": 1.0, "h": 1 / 24, "hour": 1 / 24,
             "hours": 1 / 24, "w": 7.0, "week": 7.0, "weeks": 7.0, "m": 30.0, "mo": 30.0,
             "month": 30.0, "months": 30.0, "y": 365.0, "year": 365.0, "years": 365.0}  # fmt: skip


def parse_days(text: str, field: str = "duration") -> float:
    """``30d``, ``12h``, ``6w``, ``3mo``, ``1y`` or a bare number of days -> days (> 0).
    A month is 30 days, a year 365."""
    match = _DURATION.match(str(text))
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _DAYS_PER:
        raise PlanInputError(
            f"{field}: {text!r} is not a duration; write a number of days or add a unit "
            "h, d, w, mo or y (for example 30d, 12h, 6w)."
        )
    value = float(match.group(1)) * _DAYS_PER[unit]
    if not math.isfinite(value) or value <= 0:
        raise PlanInputError(f"{field}: must be a positive duration, got {text!r}.")
    return value


def parse_usd(text: str, field: str = "budget") -> float:
    """``2M$``, ``$2M``, ``2.5e6``, ``750k``, ``2,000,000 USD`` -> US dollars (> 0).
    Suffixes are decimal (k, M, B)."""
    cleaned = str(text).strip().replace(",", "").replace("_", "")
    for mark in ("USD", "usd", "$"):
        cleaned = cleaned.replace(mark, "")
    if not cleaned.strip():
        raise PlanInputError(f"{field}: {text!r} is not an amount; write for example 2M$ or 750k.")
    try:
        return parse_count(cleaned, field)
    except PlanInputError:
        raise PlanInputError(
            f"{field}: {text!r} is not an amount of dollars; write for example 2M$, $750k or 1.5e6."
        ) from None
