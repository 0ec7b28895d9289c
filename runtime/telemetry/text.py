"""Human-readable lines for a telemetry record (``scalectl telemetry sample``). Pure."""

from __future__ import annotations

import time
from typing import Any

NA = "n/a"


def human_bytes(value: Any, suffix: str = "") -> str:
    """``1.5 MiB`` style (binary units); ``n/a`` for a missing value."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return NA
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            text = f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
            return text + suffix
        size /= 1024
    raise AssertionError("unreachable")


def _num(value: Any, fmt: str = "{:.0f}", unit: str = "") -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return NA
    return fmt.format(value) + unit


def _mib_pair(used: Any, total: Any, scale: float = 1.0, unit: str = "MiB") -> str:
    if not isinstance(used, int | float) or not isinstance(total, int | float):
        return NA
    return f"{used / scale:.1f}/{total / scale:.1f} {unit}"


def format_host(record: dict[str, Any]) -> str:
    host = record.get("host") or {}
    stamp = time.strftime("%H:%M:%S", time.localtime(float(record.get("ts", 0.0))))
    return "  ".join(
        [
            f"{stamp} {record.get('node', '?')}",
            f"cpu {_num(host.get('cpu_percent'), '{:.1f}', '%')}",
            f"load {_num(host.get('load_avg_1m'), '{:.2f}')}",
            "mem "
            + _mib_pair(host.get("memory_used_mib"), host.get("memory_total_mib"), 1024, "GiB"),
            "swap " + _mib_pair(host.get("swap_used_mib"), host.get("swap_total_mib"), 1024, "GiB"),
            f"net tx {human_bytes(host.get('net_sent_bytes_per_s'), '/s')}"
            f" rx {human_bytes(host.get('net_recv_bytes_per_s'), '/s')}",
            f"disk r {human_bytes(host.get('disk_read_bytes_per_s'), '/s')}"
            f" w {human_bytes(host.get('disk_write_bytes_per_s'), '/s')}",
            f"procs {_num(host.get('process_count'))}",
        ]
    )


def _scale(value: Any, factor: float) -> Any:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    return value * factor


def format_gpu(gpu: dict[str, Any]) -> str:
    head = f"  gpu{gpu.get('index')} {gpu.get('name') or NA}"
    if gpu.get("error"):
        return f"{head}  error: {gpu['error']}"
    reasons = gpu.get("clock_event_reasons")
    xids = gpu.get("xid_events")
    parts = [
        head,
        f"util {_num(gpu.get('utilization_gpu_percent'), unit='%')}",
        "mem " + _mib_pair(gpu.get("memory_used_mib"), gpu.get("memory_total_mib")),
        f"power {_num(gpu.get('power_w'), '{:.1f}', ' W')}"
        f"/{_num(gpu.get('power_limit_w'), '{:.0f}', ' W')}",
        f"energy {_num(gpu.get('energy_j'), '{:.0f}', ' J')}",
        f"temp {_num(gpu.get('temperature_c'), unit=' C')}",
        f"sm {_num(gpu.get('sm_clock_mhz'), unit=' MHz')}",
        f"memclk {_num(gpu.get('memory_clock_mhz'), unit=' MHz')}",
        "clocks " + (NA if reasons is None else ",".join(reasons) or "ok"),
        f"ecc {_num(gpu.get('ecc_volatile_corrected'))}"
        f"/{_num(gpu.get('ecc_volatile_uncorrected'))}",
        "xid " + (NA if xids is None else ",".join(str(x) for x in xids) or "-"),
        f"pcie tx {human_bytes(_scale(gpu.get('pcie_tx_kb_per_s'), 1024), '/s')}"
        f" rx {human_bytes(_scale(gpu.get('pcie_rx_kb_per_s'), 1024), '/s')}",
        f"nvlink tx {human_bytes(_scale(gpu.get('nvlink_tx_kb_per_s'), 1024), '/s')}"
        f" rx {human_bytes(_scale(gpu.get('nvlink_rx_kb_per_s'), 1024), '/s')}",
    ]
    if gpu.get("errors"):
        parts.append("errors " + ", ".join(f"{k}={v}" for k, v in gpu["errors"].items()))
    return "  ".join(parts)


def format_record(record: dict[str, Any]) -> list[str]:
    """One line for the host, then one per GPU."""
    return [format_host(record)] + [format_gpu(g) for g in record.get("gpus") or []]
