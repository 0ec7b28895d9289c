"""Host sampling: rates from counter deltas (against a scripted psutil), and the real psutil."""

from __future__ import annotations

from collections import namedtuple
from typing import Any

import pytest

from runtime.telemetry.host import HostSampler, counter_rate, cpu_busy_percent

CpuTimes = namedtuple("CpuTimes", "user nice system idle iowait irq softirq steal guest guest_nice")
NetIO = namedtuple("NetIO", "bytes_sent bytes_recv packets_sent packets_recv")
DiskIO = namedtuple("DiskIO", "read_count write_count read_bytes write_bytes")
Memory = namedtuple("Memory", "total available percent used free")
Swap = namedtuple("Swap", "total used free percent sin sout")
MIB = 1 << 20


def cpu(user: float, idle: float, iowait: float = 0.0, guest: float = 0.0) -> CpuTimes:
    return CpuTimes(user, 0.0, 0.0, idle, iowait, 0.0, 0.0, 0.0, guest, 0.0)


class ScriptedPsutil:
    """Answers like psutil from values the test sets between samples."""

    def __init__(self) -> None:
        self.cpu = cpu(100.0, 900.0)
        self.cores = [cpu(50.0, 450.0), cpu(50.0, 450.0)]
        self.nics = {"lo": NetIO(10**9, 10**9, 0, 0), "eth0": NetIO(1000, 2000, 0, 0)}
        self.disk: DiskIO | None = DiskIO(0, 0, 10_000, 20_000)
        self.broken: set[str] = set()

    def _check(self, name: str) -> None:
        if name in self.broken:
            raise PermissionError(f"{name} denied")

    def cpu_count(self, logical: bool = True) -> int:
        return 2

    def cpu_times(self, percpu: bool = False) -> Any:
        self._check("cpu_times")
        return list(self.cores) if percpu else self.cpu

    def net_io_counters(self, pernic: bool = False) -> dict[str, NetIO]:
        self._check("net_io_counters")
        return dict(self.nics)

    def disk_io_counters(self, perdisk: bool = False) -> DiskIO | None:
        self._check("disk_io_counters")
        return self.disk

    def getloadavg(self) -> tuple[float, float, float]:
        return (1.234, 0.5, 0.25)

    def virtual_memory(self) -> Memory:
        self._check("virtual_memory")
        return Memory(16384 * MIB, 12288 * MIB, 25.0, 2048 * MIB, 10000 * MIB)

    def swap_memory(self) -> Swap:
        return Swap(1024 * MIB, 0, 1024 * MIB, 0.0, 0, 0)

    def pids(self) -> list[int]:
        return [1, 2, 3]


def test_counter_rate() -> None:
    assert counter_rate(100.0, 300.0, 2.0) == 100.0
    assert counter_rate(None, 300.0, 2.0) is None
    assert counter_rate(100.0, 300.0, 0.0) is None
    assert counter_rate(300.0, 100.0, 1.0) is None  # reset / wrap


def test_cpu_busy_percent_ignores_guest_and_counts_iowait_as_idle() -> None:
    a = cpu(100.0, 900.0)._asdict()
    b = cpu(130.0, 960.0, iowait=10.0, guest=20.0)._asdict()
    # 100 s of CPU time passed: 30 user, 60 idle, 10 iowait -> 30 % busy
    assert cpu_busy_percent(a, b) == pytest.approx(30.0)
    assert cpu_busy_percent(a, a) is None


def test_rates_come_from_deltas_between_samples() -> None:
    ps = ScriptedPsutil()
    host = HostSampler(per_core=True, psutil_module=ps)
    host.prime(100.0)
    ps.cpu = cpu(125.0, 975.0)  # 100 s of CPU: 25 busy
    ps.cores = [cpu(60.0, 490.0), cpu(65.0, 485.0)]  # 50 s each: 10 and 15 busy
    ps.nics = {"lo": NetIO(2 * 10**9, 2 * 10**9, 0, 0), "eth0": NetIO(5000, 10000, 0, 0)}
    ps.disk = DiskIO(0, 0, 30_000, 60_000)
    s = host.sample(102.0)  # 2 s later
    assert s.cpu_percent == 25.0
    assert s.cpu_per_core_percent == (20.0, 30.0)
    assert s.net_sent_bytes_per_s == 2000.0  # loopback left out
    assert s.net_recv_bytes_per_s == 4000.0
    assert s.net_interfaces == {"eth0": (2000.0, 4000.0)}
    assert (s.disk_read_bytes_per_s, s.disk_write_bytes_per_s) == (10_000.0, 20_000.0)
    assert (s.load_avg_1m, s.load_avg_5m, s.load_avg_15m) == (1.23, 0.5, 0.25)
    assert (s.memory_total_mib, s.memory_used_mib, s.memory_available_mib) == (
        16384.0,
        2048.0,
        12288.0,
    )
    assert (s.swap_total_mib, s.swap_used_mib) == (1024.0, 0.0)
    assert s.process_count == 3 and s.cpu_count == 2


def test_first_sample_without_baseline_has_no_rates() -> None:
    host = HostSampler(psutil_module=ScriptedPsutil())
    s = host.sample(5.0)
    assert s.cpu_percent is None and s.net_sent_bytes_per_s is None
    assert s.disk_read_bytes_per_s is None and s.net_interfaces is None
    assert s.memory_total_mib == 16384.0  # levels need no baseline


def test_new_interface_and_counter_reset_do_not_give_bogus_rates() -> None:
    ps = ScriptedPsutil()
    host = HostSampler(psutil_module=ps)
    host.prime(0.0)
    ps.nics = {"eth0": NetIO(500, 2500, 0, 0), "ib0": NetIO(10**12, 10**12, 0, 0)}
    s = host.sample(1.0)
    assert s.net_interfaces == {}  # eth0 went backwards, ib0 is new
    assert s.net_sent_bytes_per_s == 0.0


def test_failing_psutil_calls_give_n_a_fields() -> None:
    ps = ScriptedPsutil()
    ps.broken = {"cpu_times", "virtual_memory", "net_io_counters"}
    ps.disk = None  # a container without block devices
    host = HostSampler(psutil_module=ps)
    host.prime(0.0)
    s = host.sample(1.0)
    assert s.cpu_percent is None and s.memory_total_mib is None
    assert s.net_sent_bytes_per_s is None and s.disk_read_bytes_per_s is None
    assert s.swap_total_mib == 1024.0 and s.process_count == 3


def test_real_psutil_sample() -> None:
    import time

    host = HostSampler(per_core=True)
    host.prime(time.monotonic())
    time.sleep(0.05)
    s = host.sample(time.monotonic())
    assert s.cpu_count is not None and s.cpu_count >= 1
    assert s.cpu_percent is None or 0.0 <= s.cpu_percent <= 100.0
    assert s.memory_total_mib is not None and s.memory_total_mib > 0
    assert s.memory_used_mib is not None and 0 < s.memory_used_mib <= s.memory_total_mib
    assert s.process_count is not None and s.process_count > 0
    assert s.net_sent_bytes_per_s is not None and s.net_sent_bytes_per_s >= 0
    assert s.cpu_per_core_percent is not None and len(s.cpu_per_core_percent) == s.cpu_count
