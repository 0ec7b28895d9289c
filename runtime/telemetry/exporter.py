"""Prometheus exporter: the latest telemetry record as metrics, over HTTP.

GPU metric names, units and labels follow NVIDIA dcgm-exporter where they overlap
(``etc/default-counters.csv`` and ``etc/dcp-metrics-included.csv`` in
github.com/NVIDIA/dcgm-exporter), so existing dashboards and alerts work unchanged:
labels ``gpu``, ``UUID``, ``pci_bus_id``, ``device``, ``modelName``, ``Hostname`` and
``DCGM_FI_DRIVER_VERSION``. dcgm-exporter declares a few of them (energy, ECC) as
counters; they are exposed here as gauges with the same names, because the Python
client renames counter families to ``*_total`` and the names are what queries use.
A field that is n/a in the record is left out (no sample), as dcgm-exporter does.

Host and sampler metrics are ``scalectl_*`` with base units (bytes, seconds).

A custom collector reads ``sampler.latest`` at scrape time and is registered in a
fresh ``CollectorRegistry``: nothing touches the process-global default registry.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any, Protocol

from runtime.telemetry.errors import TelemetryInputError, check_port

GPU_GAUGES: tuple[tuple[str, str, str, float], ...] = (
    # (metric name, help, record field, factor to the metric's unit)
    ("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).", "utilization_gpu_percent", 1.0),
    (
        "DCGM_FI_DEV_MEM_COPY_UTIL",
        "Memory utilization (in %).",
        "utilization_memory_percent",
        1.0,
    ),
    ("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB).", "memory_used_mib", 1.0),
    ("DCGM_FI_DEV_FB_FREE", "Framebuffer memory free (in MiB).", "memory_free_mib", 1.0),
    ("DCGM_FI_DEV_FB_TOTAL", "Framebuffer memory total (in MiB).", "memory_total_mib", 1.0),
    ("DCGM_FI_DEV_POWER_USAGE", "Power draw (in W).", "power_w", 1.0),
    (
        "DCGM_FI_DEV_ENFORCED_POWER_LIMIT",
        "Enforced power limit (in W).",
        "power_limit_w",
        1.0,
    ),
    (
        "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
        "Total energy consumption since boot (in mJ).",
        "energy_j",
        1000.0,
    ),
    ("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C).", "temperature_c", 1.0),
    ("DCGM_FI_DEV_SM_CLOCK", "SM clock frequency (in MHz).", "sm_clock_mhz", 1.0),
    ("DCGM_FI_DEV_MEM_CLOCK", "Memory clock frequency (in MHz).", "memory_clock_mhz", 1.0),
    (
        "DCGM_FI_DEV_CLOCKS_EVENT_REASONS",
        "Current clock event (throttle) reasons, NVML bit mask.",
        "clock_event_reasons_mask",
        1.0,
    ),
    (
        "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL",
        "Total number of single-bit volatile ECC errors.",
        "ecc_volatile_corrected",
        1.0,
    ),
    (
        "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
        "Total number of double-bit volatile ECC errors.",
        "ecc_volatile_uncorrected",
        1.0,
    ),
    (
        "DCGM_FI_PROF_PCIE_TX_BYTES",
        "The rate of data transmitted over the PCIe bus, in bytes per second.",
        "pcie_tx_kb_per_s",
        1024.0,
    ),
    (
        "DCGM_FI_PROF_PCIE_RX_BYTES",
        "The rate of data received over the PCIe bus, in bytes per second.",
        "pcie_rx_kb_per_s",
        1024.0,
    ),
    (
        "DCGM_FI_PROF_NVLINK_TX_BYTES",
        "The rate of data transmitted over NVLink, in bytes per second.",
        "nvlink_tx_kb_per_s",
        1024.0,
    ),
    (
        "DCGM_FI_PROF_NVLINK_RX_BYTES",
        "The rate of data received over NVLink, in bytes per second.",
        "nvlink_rx_kb_per_s",
        1024.0,
    ),
)
"""GPU metrics with dcgm-exporter's names and units, and where each comes from."""

_MIB_BYTES = float(1 << 20)

HOST_GAUGES: tuple[tuple[str, str, str, float], ...] = (
    ("scalectl_host_cpu_percent", "Busy share of all CPUs (in %).", "cpu_percent", 1.0),
    ("scalectl_host_cpu_count", "Logical CPUs.", "cpu_count", 1.0),
    (
        "scalectl_host_memory_total_bytes",
        "Physical memory (in bytes).",
        "memory_total_mib",
        _MIB_BYTES,
    ),
    ("scalectl_host_memory_used_bytes", "Memory in use (in bytes).", "memory_used_mib", _MIB_BYTES),
    (
        "scalectl_host_memory_available_bytes",
        "Memory available without swapping (in bytes).",
        "memory_available_mib",
        _MIB_BYTES,
    ),
    ("scalectl_host_swap_total_bytes", "Swap configured (in bytes).", "swap_total_mib", _MIB_BYTES),
    ("scalectl_host_swap_used_bytes", "Swap in use (in bytes).", "swap_used_mib", _MIB_BYTES),
    (
        "scalectl_host_network_transmit_bytes_per_second",
        "Bytes sent per second, all interfaces but loopback.",
        "net_sent_bytes_per_s",
        1.0,
    ),
    (
        "scalectl_host_network_receive_bytes_per_second",
        "Bytes received per second, all interfaces but loopback.",
        "net_recv_bytes_per_s",
        1.0,
    ),
    (
        "scalectl_host_disk_read_bytes_per_second",
        "Bytes read per second, all disks.",
        "disk_read_bytes_per_s",
        1.0,
    ),
    (
        "scalectl_host_disk_write_bytes_per_second",
        "Bytes written per second, all disks.",
        "disk_write_bytes_per_s",
        1.0,
    ),
    ("scalectl_host_processes", "Processes on the host.", "process_count", 1.0),
)
"""Host metrics and the host-record field each comes from."""

_LOAD = (("1m", "load_avg_1m"), ("5m", "load_avg_5m"), ("15m", "load_avg_15m"))


class _HasLatest(Protocol):
    @property
    def latest(self) -> dict[str, Any] | None: ...


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def metric_families(record: dict[str, Any] | None) -> list[Any]:
    """Prometheus metric families for one telemetry record (pure; empty without a record)."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    if not record:
        return []
    node = str(record.get("node", ""))
    host_labels = ["Hostname"]
    families: list[Any] = []

    gpu_label_names = [
        "gpu",
        "UUID",
        "pci_bus_id",
        "device",
        "modelName",
        "Hostname",
        "DCGM_FI_DRIVER_VERSION",
    ]
    driver = str(record.get("driver_version") or "")
    gpus = [gpu for gpu in record.get("gpus") or [] if isinstance(gpu, dict)]

    def gpu_labels(gpu: dict[str, Any]) -> list[str]:
        index = gpu.get("index")
        return [
            str(index),
            str(gpu.get("uuid") or ""),
            str(gpu.get("bus_id") or ""),
            f"nvidia{index}",
            str(gpu.get("name") or ""),
            node,
            driver,
        ]

    for name, help_text, field, factor in GPU_GAUGES:
        family = GaugeMetricFamily(name, help_text, labels=gpu_label_names)
        for gpu in gpus:
            value = _number(gpu.get(field))
            if value is not None:
                family.add_metric(gpu_labels(gpu), value * factor)
        families.append(family)

    xid = GaugeMetricFamily(
        "DCGM_FI_DEV_XID_ERRORS",
        "Value of the last XID error encountered.",
        labels=gpu_label_names,
    )
    xid_count = CounterMetricFamily(
        "scalectl_gpu_xid_events",
        "XID critical-error events seen since sampling began.",
        labels=gpu_label_names,
    )
    lost = GaugeMetricFamily(
        "scalectl_gpu_unavailable",
        "1 when the GPU could not be read at all in the last sample (lost, reset needed).",
        labels=gpu_label_names,
    )
    for gpu in gpus:
        labels = gpu_labels(gpu)
        total = _number(gpu.get("xid_total"))
        if total is not None:  # XIDs are watched on this GPU
            xid.add_metric(labels, _number(gpu.get("last_xid")) or 0.0)
            xid_count.add_metric(labels, total)
        lost.add_metric(labels, 1.0 if gpu.get("error") else 0.0)
    families += [xid, xid_count, lost]

    host = record.get("host") or {}
    for name, help_text, field, factor in HOST_GAUGES:
        family = GaugeMetricFamily(name, help_text, labels=host_labels)
        value = _number(host.get(field))
        if value is not None:
            family.add_metric([node], value * factor)
        families.append(family)
    load = GaugeMetricFamily(
        "scalectl_host_load_average",
        "Run-queue load average over the period.",
        labels=["Hostname", "period"],
    )
    for period, field in _LOAD:
        value = _number(host.get(field))
        if value is not None:
            load.add_metric([node, period], value)
    families.append(load)

    sampler = [
        (
            "scalectl_telemetry_last_sample_timestamp_seconds",
            "Wall-clock time of the sample these metrics come from.",
            _number(record.get("ts")),
        ),
        (
            "scalectl_telemetry_nvml_available",
            "1 when GPUs are sampled through NVML, 0 when sampling host only.",
            1.0 if record.get("nvml") else 0.0,
        ),
        ("scalectl_telemetry_gpus", "GPUs in the sample.", float(len(gpus))),
        (
            "scalectl_telemetry_sample_cpu_seconds",
            "CPU time the sampler spent on the last sample.",
            _number(record.get("sample_cpu_s")),
        ),
    ]
    for name, help_text, value in sampler:
        family = GaugeMetricFamily(name, help_text, labels=host_labels)
        if value is not None:
            family.add_metric([node], value)
        families.append(family)
    return families


class TelemetryCollector:
    """A prometheus_client collector that reads the sampler's latest record at scrape time."""

    def __init__(self, sampler: _HasLatest) -> None:
        self._sampler = sampler

    def collect(self) -> Iterator[Any]:
        yield from metric_families(self._sampler.latest)


def make_registry(sampler: _HasLatest) -> Any:
    """A fresh CollectorRegistry holding only the telemetry collector."""
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(TelemetryCollector(sampler))
    return registry


class MetricsServer:
    """The HTTP server started by :func:`start_metrics_server`."""

    def __init__(self, httpd: Any, thread: threading.Thread, addr: str) -> None:
        self._httpd = httpd
        self._thread = thread
        self.addr = addr
        self.port: int = int(httpd.server_port)
        self._closed = False

    @property
    def url(self) -> str:
        host = f"[{self.addr}]" if ":" in self.addr else self.addr
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        """Stop serving and free the port (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5.0)


def start_metrics_server(sampler: _HasLatest, port: int, addr: str = "127.0.0.1") -> MetricsServer:
    """Serve ``sampler.latest`` as Prometheus metrics on ``addr:port`` (port 0: a free one).

    Bound to loopback unless ``addr`` says otherwise: the metrics name hosts and GPUs,
    and a training node should not publish them to the network by accident.
    """
    from prometheus_client import start_http_server

    check_port(port)
    try:
        httpd, thread = start_http_server(port, addr=addr, registry=make_registry(sampler))
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise TelemetryInputError(
            f"metrics port {port} on {addr} cannot be opened ({reason}); "
            "choose another port, or 0 for a free one."
        ) from None
    return MetricsServer(httpd, thread, addr)
