"""Per-node host lines and per-GPU sparkline lines, drawn only where visible.

A 64-GPU job is 72 lines (8 node lines, 64 GPU lines); the Line API draws the ones on
screen, so a refresh tick costs the same for 8 GPUs or 512.

Scales are fixed so heights compare across GPUs and over time: utilisation 0–100 %,
memory 0–capacity, power 0–limit, temperature 20–100 °C, host CPU 0–100 %, host
memory 0–total.
"""

from __future__ import annotations

from typing import ClassVar

from textual import events
from textual.binding import Binding, BindingType
from textual.strip import Strip

from tui import text
from tui.data.telemetry import GpuView, NodeView, TelemetryView
from tui.widgets.charts import sparkline
from tui.widgets.runs import Run, StyleCache, strip
from tui.widgets.scroller import LineScroller

TEMP_LOW_C, TEMP_HIGH_C = 20.0, 100.0
HOT_C = 85.0
LABEL = 14
"""Cells of the line label (node name or ``gpu3``)."""
METRIC_TEXT = 12
"""Cells of a metric's name and value around its sparkline."""


def _last(values: tuple[float | None, ...]) -> float | None:
    return values[-1] if values else None


def _gib(mib: float | None) -> str:
    return text.MISSING if mib is None else f"{mib / 1024:.1f}"


def _pct(value: float | None) -> str:
    return text.percent(value / 100 if value is not None else None)


def spark_width(total: int) -> int:
    return max(6, (total - LABEL - 4 * METRIC_TEXT) // 4)


def node_runs(node: NodeView, width: int) -> list[Run]:
    spark = spark_width(width) * 2 - 3
    total = node.mem_total_mib
    runs: list[Run] = [
        (f"{text.truncate(node.node, LABEL - 1):<{LABEL}}", "bold"),
        ("cpu ", "dim"),
        (sparkline(node.cpu_percent, 0, 100, spark), "cyan"),
        (f" {_pct(_last(node.cpu_percent)):>4}  ", ""),
        ("mem ", "dim"),
        (sparkline(node.mem_used_mib, 0, total or 1.0, spark), "blue"),
        (f" {_gib(_last(node.mem_used_mib))}/{_gib(total)}G  ", ""),
        (f"{node.samples} samples, last {text.clock(node.last_ts)}", "dim"),
    ]
    if node.nvml is False:
        runs.append(("  host only (no NVML)", "yellow"))
    return runs


def gpu_runs(gpu: GpuView, width: int) -> list[Run]:
    spark = spark_width(width)
    label = f"  gpu{gpu.gpu_index}"
    runs: list[Run] = [(f"{label:<{LABEL}}", "")]
    if gpu.error:
        runs.append((f"error: {gpu.error}", "bold red"))
        return runs
    temp = _last(gpu.temp_c)
    hot = temp is not None and temp >= HOT_C
    runs += [
        ("util ", "dim"),
        (sparkline(gpu.util_percent, 0, 100, spark), "green"),
        (f" {_pct(_last(gpu.util_percent)):>4}  ", ""),
        ("mem ", "dim"),
        (sparkline(gpu.mem_used_mib, 0, gpu.mem_total_mib or 1.0, spark), "blue"),
        (f" {_gib(_last(gpu.mem_used_mib)):>5}G  ", ""),
        ("pwr ", "dim"),
        (sparkline(gpu.power_w, 0, gpu.power_limit_w or 1000.0, spark), "yellow"),
        (f" {text.number(_last(gpu.power_w)):>4}W  ", ""),
        ("temp ", "dim"),
        (sparkline(gpu.temp_c, TEMP_LOW_C, TEMP_HIGH_C, spark), "red"),
        (f" {text.number(temp):>3}C", "bold red" if hot else ""),
    ]
    if gpu.xid_total:
        runs.append((f"  xid×{gpu.xid_total}", "bold red"))
    return runs


class GpuGrid(LineScroller):
    """Node and GPU lines of a job's telemetry."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "lines(-1)", "up", show=False),
        Binding("down,j", "lines(1)", "down", show=False),
        Binding("pageup", "pages(-1)", "page up", show=False),
        Binding("pagedown", "pages(1)", "page down", show=False),
        Binding("home", "top", "top", show=False),
        Binding("end", "bottom", "bottom", show=False),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.items: list[NodeView | GpuView] = []
        self.empty_text = "no telemetry in this job directory (telemetry/<node>.jsonl)"
        self.styles_cache = StyleCache()

    def set_view(self, view: TelemetryView) -> None:
        items: list[NodeView | GpuView] = []
        for node in view.nodes:
            items.append(node)
            items.extend(node.gpus)
        if items == self.items:
            return
        self.items = items
        self.clamp()
        self.refresh()

    def line_count(self) -> int:
        return len(self.items)

    def line_runs(self, index: int, width: int) -> list[Run]:
        item = self.items[index]
        return node_runs(item, width) if isinstance(item, NodeView) else gpu_runs(item, width)

    def render_content_line(self, index: int, width: int) -> Strip:
        return strip(self.line_runs(index, width), width, self.base_style, self.styles_cache)

    def render_line(self, y: int) -> Strip:
        if not self.items:
            runs: list[Run] = [(self.empty_text, "dim")] if y == 0 else []
            return strip(runs, self.view_size.width, self.base_style, self.styles_cache)
        return super().render_line(y)

    def on_click(self, event: events.Click) -> None:
        self.scrollbar_clicked(event)

    def action_lines(self, delta: int) -> None:
        self.scroll_lines(delta)

    def action_pages(self, direction: int) -> None:
        self.scroll_lines(direction * self.page)

    def action_top(self) -> None:
        self.scroll_to_line(0)

    def action_bottom(self) -> None:
        self.scroll_to_line(self.max_top)
