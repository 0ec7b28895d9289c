"""Per-node and per-GPU telemetry histories from ``telemetry/<node>.jsonl``.

Record schema: ``runtime.telemetry`` (version 1): ``ts``, ``node``, ``host {cpu_percent,
memory_total_mib, memory_used_mib, ...}``, ``gpus [{index, name, utilization_gpu_percent,
memory_used_mib, memory_total_mib, power_w, power_limit_w, energy_j, temperature_c,
xid_total, error, ...}]``. Every key is present; ``null`` means n/a and is kept as a gap
(never drawn as zero). Unknown keys are ignored.

Each node file is read incrementally (:class:`~tui.data.follow.JsonlTail`); a history of
the last :data:`HISTORY` samples per metric is kept, and :meth:`TelemetrySeries.view`
hands the UI frozen copies.
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from contract.jobdir import JobDir
from tui.data.follow import TailSet
from tui.text import finite

HISTORY = 64
"""Samples kept per metric: a sparkline cell is one sample, and 64 fill the widest line
of a 300-column terminal (a minute at the sampler's default 1 s interval). Every tick
copies them for the UI, so more would cost without showing anything."""

Series = tuple[float | None, ...]


def _track() -> deque[float | None]:
    return deque(maxlen=HISTORY)


@dataclass
class _Gpu:
    index: int
    name: str = ""
    util: deque[float | None] = field(default_factory=_track)
    mem_used_mib: deque[float | None] = field(default_factory=_track)
    power_w: deque[float | None] = field(default_factory=_track)
    temp_c: deque[float | None] = field(default_factory=_track)
    mem_total_mib: float | None = None
    power_limit_w: float | None = None
    energy_first_j: float | None = None
    energy_last_j: float | None = None
    xid_total: int = 0
    error: str | None = None


@dataclass
class _Node:
    name: str
    cpu_percent: deque[float | None] = field(default_factory=_track)
    mem_used_mib: deque[float | None] = field(default_factory=_track)
    mem_total_mib: float | None = None
    gpus: dict[int, _Gpu] = field(default_factory=dict)
    samples: int = 0
    first_ts: float | None = None
    last_ts: float | None = None
    nvml: bool | None = None
    notice: str | None = None


class GpuView(NamedTuple):
    """One GPU's recent history (oldest first) and its latest facts. A NamedTuple, not a
    frozen dataclass: a tick makes one per GPU, and building those was a tenth of it."""

    node: str
    gpu_index: int
    """NVML index on its node (``index`` would hide the tuple method)."""
    name: str
    util_percent: Series
    mem_used_mib: Series
    power_w: Series
    temp_c: Series
    mem_total_mib: float | None
    power_limit_w: float | None
    energy_used_j: float | None
    """Energy counter difference over the samples read (NVML ``energy_j``)."""
    xid_total: int
    error: str | None


class NodeView(NamedTuple):
    """One node's host history and its GPUs."""

    node: str
    cpu_percent: Series
    mem_used_mib: Series
    mem_total_mib: float | None
    samples: int
    first_ts: float | None
    last_ts: float | None
    nvml: bool | None
    notice: str | None
    gpus: tuple[GpuView, ...]


@dataclass(frozen=True)
class TelemetryView:
    nodes: tuple[NodeView, ...] = ()
    bad_lines: int = 0
    files: int = 0

    @property
    def gpu_count(self) -> int:
        return sum(len(node.gpus) for node in self.nodes)

    def latest_gpu_memory_mib(self) -> float | None:
        """Largest latest ``memory_used_mib`` over every GPU (the most loaded GPU)."""
        values = [g.mem_used_mib[-1] for n in self.nodes for g in n.gpus if g.mem_used_mib]
        present = [v for v in values if v is not None]
        return max(present) if present else None

    def gpu_power_w(self) -> float | None:
        """Mean board power of all GPUs together over the samples read, W.

        From the energy counters where every GPU has them (exact over the window), else
        the mean of the sampled ``power_w`` values.
        """
        total = 0.0
        counted = False
        for node in self.nodes:
            span = (node.last_ts or 0.0) - (node.first_ts or 0.0)
            for gpu in node.gpus:
                if gpu.energy_used_j is not None and span > 0:
                    total += gpu.energy_used_j / span
                    counted = True
                    continue
                samples = [p for p in gpu.power_w if p is not None]
                if samples:
                    total += sum(samples) / len(samples)
                    counted = True
        return total if counted else None


def _number(record: dict[str, Any], key: str) -> float | None:
    return finite(record.get(key))


@dataclass
class TelemetrySeries:
    """Follows a job's telemetry files; ``poll`` each tick, then read ``view()``."""

    jobdir: JobDir
    window_bytes: int = 1 << 20
    tails: TailSet = field(default_factory=TailSet)
    nodes: dict[str, _Node] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    _listed_mtime: int = -1

    def __post_init__(self) -> None:
        self.tails.window_bytes = self.window_bytes

    def poll(self) -> None:
        self._list_files()
        for path, records in self.tails.poll(self.files).items():
            for record in records:
                self._add(path.stem, record)

    def _list_files(self) -> None:
        try:
            mtime = os.stat(self.jobdir.telemetry_dir).st_mtime_ns
        except OSError:
            self.files = []
            return
        if mtime != self._listed_mtime:
            self._listed_mtime = mtime
            try:
                self.files = self.jobdir.telemetry_files()
            except OSError:
                self.files = []

    def _add(self, stem: str, record: dict[str, Any]) -> None:
        name = record.get("node") if isinstance(record.get("node"), str) else stem
        node = self.nodes.get(stem)
        if node is None:
            node = self.nodes[stem] = _Node(str(name))
        ts = _number(record, "ts")
        if ts is not None:
            node.first_ts = ts if node.first_ts is None else node.first_ts
            node.last_ts = ts
        node.samples += 1
        if isinstance(record.get("nvml"), bool):
            node.nvml = record["nvml"]
        if isinstance(record.get("notice"), str):
            node.notice = record["notice"]
        host = record.get("host")
        host = host if isinstance(host, dict) else {}
        node.cpu_percent.append(_number(host, "cpu_percent"))
        node.mem_used_mib.append(_number(host, "memory_used_mib"))
        node.mem_total_mib = _number(host, "memory_total_mib") or node.mem_total_mib
        gpus = record.get("gpus")
        for item in gpus if isinstance(gpus, list) else []:
            if isinstance(item, dict):
                self._add_gpu(node, item)

    @staticmethod
    def _add_gpu(node: _Node, item: dict[str, Any]) -> None:
        index = finite(item.get("index"))
        if index is None:
            return
        gpu = node.gpus.get(int(index))
        if gpu is None:
            gpu = node.gpus[int(index)] = _Gpu(int(index))
        if isinstance(item.get("name"), str):
            gpu.name = item["name"]
        gpu.util.append(_number(item, "utilization_gpu_percent"))
        gpu.mem_used_mib.append(_number(item, "memory_used_mib"))
        gpu.power_w.append(_number(item, "power_w"))
        gpu.temp_c.append(_number(item, "temperature_c"))
        gpu.mem_total_mib = _number(item, "memory_total_mib") or gpu.mem_total_mib
        gpu.power_limit_w = _number(item, "power_limit_w") or gpu.power_limit_w
        energy = _number(item, "energy_j")
        if energy is not None:
            if gpu.energy_first_j is None or energy < (gpu.energy_last_j or 0.0):
                gpu.energy_first_j = energy  # first sample, or the driver reloaded
            gpu.energy_last_j = energy
        xids = finite(item.get("xid_total"))
        gpu.xid_total = int(xids) if xids is not None else gpu.xid_total
        error = item.get("error")
        gpu.error = error if isinstance(error, str) and error else None

    def view(self) -> TelemetryView:
        nodes = []
        for key in sorted(self.nodes):
            node = self.nodes[key]
            gpus = tuple(
                GpuView(
                    node=node.name,
                    gpu_index=gpu.index,
                    name=gpu.name,
                    util_percent=tuple(gpu.util),
                    mem_used_mib=tuple(gpu.mem_used_mib),
                    power_w=tuple(gpu.power_w),
                    temp_c=tuple(gpu.temp_c),
                    mem_total_mib=gpu.mem_total_mib,
                    power_limit_w=gpu.power_limit_w,
                    energy_used_j=(
                        gpu.energy_last_j - gpu.energy_first_j
                        if gpu.energy_last_j is not None and gpu.energy_first_j is not None
                        else None
                    ),
                    xid_total=gpu.xid_total,
                    error=gpu.error,
                )
                for _, gpu in sorted(node.gpus.items())
            )
            nodes.append(
                NodeView(
                    node=node.name,
                    cpu_percent=tuple(node.cpu_percent),
                    mem_used_mib=tuple(node.mem_used_mib),
                    mem_total_mib=node.mem_total_mib,
                    samples=node.samples,
                    first_ts=node.first_ts,
                    last_ts=node.last_ts,
                    nvml=node.nvml,
                    notice=node.notice,
                    gpus=gpus,
                )
            )
        return TelemetryView(
            nodes=tuple(nodes),
            bad_lines=sum(self.tails.bad_lines.values()),
            files=len(self.files),
        )
