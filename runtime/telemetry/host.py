"""Host sampling through psutil: CPU, load, memory, swap, network, disk, processes.

Rates (CPU busy percent, network and disk bytes per second) come from the deltas of
cumulative counters between two calls of :meth:`HostSampler.sample`, computed here by
pure functions rather than by ``psutil.cpu_percent(interval=None)``, whose hidden
module-wide state would be disturbed by any other caller in the same process.
Every psutil call is wrapped: a failure gives ``None`` for its fields, never a crash.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from runtime.telemetry.snapshots import HostSample

_MIB = float(1 << 20)
_LOOPBACK = frozenset({"lo", "lo0"})


def counter_rate(previous: float | None, current: float | None, dt_s: float) -> float | None:
    """Per-second rate of a cumulative counter; None without a previous value, a positive
    interval, or when the counter went backwards (reset or wrap)."""
    if previous is None or current is None or dt_s <= 0:
        return None
    delta = current - previous
    if delta < 0:
        return None
    return delta / dt_s


def cpu_busy_percent(previous: Mapping[str, float], current: Mapping[str, float]) -> float | None:
    """Busy share of CPU time between two ``cpu_times()`` readings, 0-100.

    Linux counts guest time inside user/nice already, so guest fields are left out of the
    total; idle and iowait are the time the CPU had nothing to run (the ``top`` and
    psutil definition of busy).
    """

    def total(times: Mapping[str, float]) -> float:
        return sum(v for k, v in times.items() if k not in ("guest", "guest_nice"))

    def idle(times: Mapping[str, float]) -> float:
        return times.get("idle", 0.0) + times.get("iowait", 0.0)

    all_delta = total(current) - total(previous)
    if all_delta <= 0:
        return None
    idle_delta = idle(current) - idle(previous)
    busy = (all_delta - idle_delta) / all_delta * 100.0
    return min(100.0, max(0.0, busy))


@dataclass
class _Counters:
    """Cumulative readings at one instant, kept for the next delta."""

    t_s: float
    cpu: dict[str, float] | None
    per_core: list[dict[str, float]] | None
    nics: dict[str, tuple[float, float]] | None
    disk: tuple[float, float] | None


class HostSampler:
    """Samples this host. Rates need a baseline: call :meth:`prime` first, or the first
    :meth:`sample` has ``None`` rates and becomes the baseline for the next."""

    def __init__(
        self,
        per_core: bool = False,
        per_interface: bool = True,
        psutil_module: Any = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if psutil_module is None:
            import psutil as psutil_module
        self._ps = psutil_module
        self.per_core = per_core
        self.per_interface = per_interface
        self._previous: _Counters | None = None
        self._cpu_count = _safe(lambda: self._ps.cpu_count(logical=True))

    def prime(self, now_s: float) -> None:
        """Read the counters so the next sample's rates cover [now_s, next sample]."""
        self._previous = self._read_counters(now_s)

    def sample(self, now_s: float) -> HostSample:
        """One snapshot; ``now_s`` is a monotonic clock reading."""
        current = self._read_counters(now_s)
        previous = self._previous
        self._previous = current
        dt = current.t_s - previous.t_s if previous is not None else 0.0

        cpu_percent = None
        per_core: tuple[float, ...] | None = None
        if previous is not None and previous.cpu is not None and current.cpu is not None:
            cpu_percent = _r1(cpu_busy_percent(previous.cpu, current.cpu))
        if (
            self.per_core
            and previous is not None
            and previous.per_core is not None
            and current.per_core is not None
            and len(previous.per_core) == len(current.per_core)
        ):
            per_core = tuple(
                _r1(cpu_busy_percent(a, b)) or 0.0
                for a, b in zip(previous.per_core, current.per_core, strict=True)
            )

        net_sent = net_recv = None
        interfaces: dict[str, tuple[float, float]] | None = None
        if current.nics is not None:
            old = previous.nics if previous is not None and previous.nics is not None else {}
            rates: dict[str, tuple[float, float]] = {}
            for name, (sent, recv) in current.nics.items():
                if name in old:
                    tx = counter_rate(old[name][0], sent, dt)
                    rx = counter_rate(old[name][1], recv, dt)
                    if tx is not None and rx is not None:
                        rates[name] = (round(tx, 1), round(rx, 1))
            if previous is not None and previous.nics is not None:
                net_sent = round(sum(tx for tx, _ in rates.values()), 1)
                net_recv = round(sum(rx for _, rx in rates.values()), 1)
                interfaces = dict(sorted(rates.items())) if self.per_interface else None

        disk_read = disk_write = None
        if previous is not None and previous.disk is not None and current.disk is not None:
            disk_read = _r1(counter_rate(previous.disk[0], current.disk[0], dt))
            disk_write = _r1(counter_rate(previous.disk[1], current.disk[1], dt))

        load = _safe(self._ps.getloadavg)
        memory = _safe(self._ps.virtual_memory)
        swap = _safe(self._ps.swap_memory)
        pids = _safe(self._ps.pids)
        return HostSample(
            cpu_percent=cpu_percent,
            cpu_count=self._cpu_count,
            cpu_per_core_percent=per_core,
            load_avg_1m=_r2(load[0]) if load else None,
            load_avg_5m=_r2(load[1]) if load else None,
            load_avg_15m=_r2(load[2]) if load else None,
            memory_total_mib=_mib(memory, "total"),
            memory_used_mib=_mib(memory, "used"),
            memory_available_mib=_mib(memory, "available"),
            swap_total_mib=_mib(swap, "total"),
            swap_used_mib=_mib(swap, "used"),
            net_sent_bytes_per_s=net_sent,
            net_recv_bytes_per_s=net_recv,
            net_interfaces=interfaces,
            disk_read_bytes_per_s=disk_read,
            disk_write_bytes_per_s=disk_write,
            process_count=len(pids) if pids is not None else None,
        )

    def _read_counters(self, now_s: float) -> _Counters:
        ps = self._ps
        cpu = _safe(lambda: ps.cpu_times()._asdict())
        per_core = (
            _safe(lambda: [t._asdict() for t in ps.cpu_times(percpu=True)])
            if self.per_core
            else None
        )
        nics_raw = _safe(lambda: ps.net_io_counters(pernic=True))
        nics = (
            {
                name: (float(c.bytes_sent), float(c.bytes_recv))
                for name, c in nics_raw.items()
                if name not in _LOOPBACK
            }
            if nics_raw is not None
            else None
        )
        disk_raw = _safe(lambda: ps.disk_io_counters(perdisk=False))
        disk = (float(disk_raw.read_bytes), float(disk_raw.write_bytes)) if disk_raw else None
        return _Counters(t_s=now_s, cpu=cpu, per_core=per_core, nics=nics, disk=disk)


def _safe(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception:  # psutil raises OSError/AccessDenied/RuntimeError on odd hosts
        return None


def _mib(obj: Any, name: str) -> float | None:
    value = None if obj is None else getattr(obj, name, None)
    return None if value is None else round(float(value) / _MIB, 1)


def _r1(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _r2(value: float | None) -> float | None:
    return None if value is None else round(float(value), 2)
