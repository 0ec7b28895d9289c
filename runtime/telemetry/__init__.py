"""GPU (NVML) and host (psutil) telemetry: sampler, JSON Lines writer, Prometheus exporter.

The node agent calls :func:`run_sampler`; ``scalectl telemetry sample`` prints samples
for this machine. Readers (the TUI) read ``<job_dir>/telemetry/<node>.jsonl`` with
``contract.jobdir.read_jsonl`` / ``tail_jsonl``.

Record schema (``"v": 1``), one JSON object a line, one line per sample::

    {
      "v": 1,                       # record version (RECORD_VERSION)
      "ts": 1718000000.123,         # wall clock, seconds since the epoch
      "node": "gpu-node-07",        # the file's node name
      "seq": 0,                     # sample number since this sampler started (0, 1, ...)
      "interval_s": 1.0,            # sampling interval
      "nvml": true,                 # false: host-only (no NVML; see "notice")
      "driver_version": "550.54.15" | null,
      "sample_cpu_s": 0.0012,       # CPU seconds this sample cost the sampler thread
      "notice": "no GPU telemetry: NVML unavailable (LibraryNotFound: ...); sampling host only",
                                    # ^ only in the first record of a sampler, only when set
      "host": {
        "cpu_percent": 12.5,        # busy % of all CPUs since the previous sample
        "cpu_count": 64,
        "cpu_per_core_percent": [..] | null,   # only with per-core sampling on
        "load_avg_1m": 3.1, "load_avg_5m": 2.9, "load_avg_15m": 2.5,
        "memory_total_mib": 515000.0, "memory_used_mib": 41000.2,
        "memory_available_mib": 470000.1,
        "swap_total_mib": 0.0, "swap_used_mib": 0.0,
        "net_sent_bytes_per_s": 1.2e9, "net_recv_bytes_per_s": 1.1e9,   # all NICs but lo
        "net_interfaces": {"ib0": [sent_bytes_per_s, recv_bytes_per_s], ...} | null,
        "disk_read_bytes_per_s": 0.0, "disk_write_bytes_per_s": 5.2e6,
        "process_count": 812
      },
      "gpus": [                     # [] when host-only; ordered by NVML index
        {
          "index": 0, "uuid": "GPU-...", "name": "NVIDIA H100 80GB HBM3",
          "bus_id": "00000000:1B:00.0",
          "utilization_gpu_percent": 97, "utilization_memory_percent": 41,
          "memory_used_mib": 71234.5, "memory_free_mib": 10000.0, "memory_total_mib": 81559.0,
          "power_w": 612.3, "power_limit_w": 700.0,
          "energy_j": 123456.789,   # since driver load; differences give energy used
          "temperature_c": 65, "sm_clock_mhz": 1980, "memory_clock_mhz": 2619,
          "clock_event_reasons": ["sw_power_cap"],   # [] = running free
          "clock_event_reasons_mask": 4,
          "ecc_volatile_corrected": 0, "ecc_volatile_uncorrected": 0,
          "xid_events": [],         # XIDs since the previous sample, e.g. [79]
          "last_xid": null, "xid_total": 0,
          "pcie_tx_kb_per_s": 1024.0, "pcie_rx_kb_per_s": 2048.0,   # 1 KB = 1024 B
          "nvlink_tx_kb_per_s": null, "nvlink_rx_kb_per_s": null,
          "errors": {"power_w": "NoPermission: Insufficient Permissions"} | null,
          "error": null             # e.g. "gpu_lost: GpuIsLost: GPU is lost"; then only
                                    # index/uuid/name/bus_id (and xid fields) are set
        }
      ]
    }

Rules for readers: every key above is always present (``notice`` only as stated);
``null`` means n/a — not supported here, failed this time (see the GPU's ``errors``),
or, for rates, the first sample. Units are in the key names. New keys may be added
without bumping ``v``; readers must ignore keys they do not know.
"""

from __future__ import annotations

from runtime.telemetry.errors import TelemetryInputError
from runtime.telemetry.exporter import MetricsServer, metric_families, start_metrics_server
from runtime.telemetry.nvml import NvmlSampler
from runtime.telemetry.nvml_codes import (
    CLOCK_EVENT_REASONS,
    NvmlUnavailable,
    decode_clock_event_reasons,
)
from runtime.telemetry.sampler import (
    RECORD_VERSION,
    Sampler,
    TelemetryRun,
    build_record,
    default_node_name,
    run_sampler,
)
from runtime.telemetry.snapshots import GpuSample, HostSample, as_dict

__all__ = [
    "CLOCK_EVENT_REASONS",
    "RECORD_VERSION",
    "GpuSample",
    "HostSample",
    "MetricsServer",
    "NvmlSampler",
    "NvmlUnavailable",
    "Sampler",
    "TelemetryInputError",
    "TelemetryRun",
    "as_dict",
    "build_record",
    "decode_clock_event_reasons",
    "default_node_name",
    "metric_families",
    "run_sampler",
    "start_metrics_server",
]
