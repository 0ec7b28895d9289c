"""One GPU as the NVML sampler keeps it between samples (identity, fields it does not
support, XID events, counters for rates), and the helpers that turn NVML's answers
(bytes, ctypes structures, field-value unions) into plain Python numbers and strings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from runtime.telemetry.nvml_codes import _MIB


def _to_str(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(float(value), digits)


@dataclass
class _Device:
    """Per-GPU state the sampler keeps between samples."""

    index: int
    handle: Any
    uuid: str | None = None
    name: str | None = None
    bus_id: str | None = None
    unsupported: set[str] = field(default_factory=set)
    unavailable: str | None = None
    """Why the handle could not be had (then every sample of it carries this error)."""
    xid_watched: bool = False
    pending_xids: list[int] = field(default_factory=list)
    last_xid: int | None = None
    xid_total: int = 0
    counters: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Counter name -> (monotonic seconds, value) at the previous sample."""

    def rate(self, key: str, value: float | None, now_s: float, scale: float) -> float | None:
        """Per-second rate of a cumulative counter since the previous sample, times scale."""
        if value is None:
            self.counters.pop(key, None)
            return None
        previous = self.counters.get(key)
        self.counters[key] = (now_s, value)
        if previous is None:
            return None
        dt = now_s - previous[0]
        delta = value - previous[1]
        if dt <= 0 or delta < 0:  # clock did not move, or the counter wrapped/reset
            return None
        return delta / dt * scale


def _field_values(values: Any, count: int) -> list[float | None]:
    """Values of an nvmlDeviceGetFieldValues answer; None where that field failed."""
    out: list[float | None] = [None] * count
    if values is None:
        return out
    members = ("dVal", "uiVal", "ulVal", "ullVal", "sllVal", "siVal", "usVal")
    try:
        for i in range(min(count, len(values))):
            item = values[i]
            if int(getattr(item, "nvmlReturn", 1)) != 0:
                continue
            value_type = int(getattr(item, "valueType", 3))
            member = members[value_type] if 0 <= value_type < len(members) else "ullVal"
            out[i] = float(getattr(item.value, member))
    except Exception:
        return [None] * count
    return out


def _quiet(fn: Callable[..., Any] | None, *args: Any) -> Any:
    if fn is None:
        return None
    try:
        return fn(*args)
    except Exception:
        return None


def _attr(obj: Any, name: str) -> Any:
    return None if obj is None else getattr(obj, name, None)


def _mib(value: Any) -> float | None:
    return None if value is None else float(value) / _MIB


def _num(value: Any) -> float | None:
    return None if value is None else value if isinstance(value, int) else float(value)


def _int(value: Any) -> int | None:
    return None if value is None else int(value)
