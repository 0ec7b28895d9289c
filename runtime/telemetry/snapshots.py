"""Snapshots: plain frozen records with the unit in every field name (nvitop's habit).

``None`` in any field means "n/a": the query is not supported on this GPU/host, or it
failed this time (then the GPU's ``errors`` says why). Rates (``*_per_s``) need two
samples, so they are ``None`` in the first one.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True, slots=True)
class GpuSample:
    """One GPU at one instant, as read through NVML."""

    index: int
    """NVML device index (the order ``nvidia-smi`` lists; ignores CUDA_VISIBLE_DEVICES)."""
    uuid: str | None
    """``GPU-xxxxxxxx-...``, stable across reboots; the key to join GPUs across samples."""
    name: str | None
    """Product name, e.g. ``NVIDIA H100 80GB HBM3``."""
    bus_id: str | None
    """PCI bus id, e.g. ``00000000:1B:00.0``."""
    utilization_gpu_percent: float | None = None
    """Percent of the last sample period in which a kernel ran (nvmlDeviceGetUtilizationRates)."""
    utilization_memory_percent: float | None = None
    """Percent of the last sample period in which device memory was read or written."""
    memory_used_mib: float | None = None
    """Device memory in use, MiB."""
    memory_free_mib: float | None = None
    """Device memory free, MiB."""
    memory_total_mib: float | None = None
    """Device memory installed, MiB."""
    power_w: float | None = None
    """Board power draw, W (NVML reports mW)."""
    power_limit_w: float | None = None
    """Enforced power limit, W."""
    energy_j: float | None = None
    """Energy used since the driver was loaded, J (NVML reports mJ; Volta and newer)."""
    temperature_c: float | None = None
    """GPU core temperature, °C."""
    sm_clock_mhz: float | None = None
    """Current SM clock, MHz."""
    memory_clock_mhz: float | None = None
    """Current memory clock, MHz."""
    clock_event_reasons: tuple[str, ...] | None = None
    """Why clocks are held down now (formerly "throttle reasons"), decoded; () means none."""
    clock_event_reasons_mask: int | None = None
    """The same reasons as NVML's raw bit mask."""
    ecc_volatile_corrected: int | None = None
    """Corrected (single-bit) ECC errors since the driver was loaded."""
    ecc_volatile_uncorrected: int | None = None
    """Uncorrected (double-bit) ECC errors since the driver was loaded."""
    xid_events: tuple[int, ...] | None = None
    """XID codes of critical errors reported since the previous sample; None: not watchable."""
    last_xid: int | None = None
    """The most recent XID seen since sampling began (sticky), None if none yet."""
    xid_total: int | None = None
    """Number of XID events seen since sampling began; None: not watchable."""
    pcie_tx_kb_per_s: float | None = None
    """PCIe transmit throughput, KB/s (1 KB = 1024 B, NVML's unit)."""
    pcie_rx_kb_per_s: float | None = None
    """PCIe receive throughput, KB/s."""
    nvlink_tx_kb_per_s: float | None = None
    """NVLink data transmitted, all links, KB/s (from NVML's KiB counters)."""
    nvlink_rx_kb_per_s: float | None = None
    """NVLink data received, all links, KB/s."""
    errors: dict[str, str] | None = None
    """Fields that failed this time for a reason other than "not supported": field -> error."""
    error: str | None = None
    """Set when the whole GPU could not be read (e.g. ``gpu_lost: GPU is lost``)."""


@dataclass(frozen=True, slots=True)
class HostSample:
    """This host at one instant, read through psutil."""

    cpu_percent: float | None
    """Busy share of all CPUs since the previous sample, 0-100."""
    cpu_count: int | None
    """Logical CPUs."""
    cpu_per_core_percent: tuple[float, ...] | None
    """Busy percent per logical CPU; only when per-core sampling is on."""
    load_avg_1m: float | None
    """Run-queue load average over 1 minute."""
    load_avg_5m: float | None
    """Over 5 minutes."""
    load_avg_15m: float | None
    """Over 15 minutes."""
    memory_total_mib: float | None
    """Physical memory, MiB."""
    memory_used_mib: float | None
    """Memory in use (psutil's ``used``), MiB."""
    memory_available_mib: float | None
    """Memory that can be given to processes without swapping, MiB."""
    swap_total_mib: float | None
    """Swap configured, MiB."""
    swap_used_mib: float | None
    """Swap in use, MiB."""
    net_sent_bytes_per_s: float | None
    """Bytes sent per second, all interfaces but loopback."""
    net_recv_bytes_per_s: float | None
    """Bytes received per second, all interfaces but loopback."""
    net_interfaces: dict[str, tuple[float, float]] | None
    """Per interface (no loopback): (sent_bytes_per_s, recv_bytes_per_s)."""
    disk_read_bytes_per_s: float | None
    """Bytes read per second, all disks."""
    disk_write_bytes_per_s: float | None
    """Bytes written per second, all disks."""
    process_count: int | None
    """Processes on the host."""


_GPU_FIELDS = tuple(f.name for f in fields(GpuSample))
_HOST_FIELDS = tuple(f.name for f in fields(HostSample))


def as_dict(sample: GpuSample | HostSample) -> dict[str, Any]:
    """The JSON-ready dict of a snapshot, in field order (tuples serialise as lists).

    Shallow, unlike ``dataclasses.asdict``, which deep-copies: this runs for every GPU
    every second.
    """
    names = _GPU_FIELDS if isinstance(sample, GpuSample) else _HOST_FIELDS
    return {name: getattr(sample, name) for name in names}
