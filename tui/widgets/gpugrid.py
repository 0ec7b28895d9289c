"""Per-node host lines and per-GPU sparkline lines, drawn only where visible.

A 64-GPU job is 72 lines (8 node lines, 64 GPU lines); the Line API draws the ones on
screen, so a refresh tick costs the same for 8 GPUs or 512.

Scales are fixed so heights compare across GPUs and over time: utilisation 0–100 %,
memory 0–capacity, power 0–limit, temperature 20–100 °C, host CPU 0–100 %, host
memory 0–total.
"""

from __future__ import annotations

from typing import ClassVar

from rich.style import Style
from rich.text import Text
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from tui import text
from tui.data.telemetry import GpuView, NodeView, TelemetryView
from tui.widgets.charts import sparkline

TEMP_LOW_C, TEMP_HIGH_C = 20.0, 100.0
LABEL = 14
"""Cells of the line label (node name or ``gpu3``)."""
METRIC_TEXT = 12
"""Cells of a metric's name and value around its sparkline."""


def _last(values: tuple[float | None, ...]) -> float | None:
    return values[-1] if values else None


def _gib(mib: float | None) -> str:
    return text.MISSING if mib is None else f"{mib / 1024:.1f}"


def spark_width(total: int) -> int:
    return max(6, (total - LABEL - 4 * METRIC_TEXT) // 4)


def node_line(node: NodeView, width: int) -> Text:
    spark = spark_width(width) * 2
    line = Text(no_wrap=True, overflow="crop")
    line.append(f"{text.truncate(node.node, LABEL - 1):<{LABEL}}", style="bold")
    cpu = _last(node.cpu_percent)
    line.append("cpu ", style="dim")
    line.append(sparkline(node.cpu_percent, 0, 100, spark), style="cyan")
    line.append(f" {text.percent(cpu / 100 if cpu is not None else None):>4}  ")
    total = node.mem_total_mib
    line.append("mem ", style="dim")
    line.append(sparkline(node.mem_used_mib, 0, total or 1.0, spark), style="blue")
    used = _last(node.mem_used_mib)
    line.append(f" {_gib(used)}/{_gib(total)}G  ")
    line.append(f"{node.samples} samples, last {text.clock(node.last_ts)}", style="dim")
    if node.nvml is False:
        line.append("  host only (no NVML)", style="yellow")
    return line


def gpu_line(gpu: GpuView, width: int) -> Text:
    spark = spark_width(width)
    line = Text(no_wrap=True, overflow="crop")
    name = f"  gpu{gpu.index}"
    line.append(f"{name:<{LABEL}}")
    if gpu.error:
        line.append(f"error: {gpu.error}", style="bold red")
        return line
    util = _last(gpu.util_percent)
    line.append("util ", style="dim")
    line.append(sparkline(gpu.util_percent, 0, 100, spark), style="green")
    line.append(f" {text.percent(util / 100 if util is not None else None):>4}  ")
    line.append("mem ", style="dim")
    line.append(sparkline(gpu.mem_used_mib, 0, gpu.mem_total_mib or 1.0, spark), style="blue")
    line.append(f" {_gib(_last(gpu.mem_used_mib)):>5}G  ")
    power = _last(gpu.power_w)
    line.append("pwr ", style="dim")
    line.append(sparkline(gpu.power_w, 0, gpu.power_limit_w or 1000.0, spark), style="yellow")
    line.append(f" {text.number(power):>4}W  ")
    temp = _last(gpu.temp_c)
    line.append("temp ", style="dim")
    hot = temp is not None and temp >= 85
    line.append(sparkline(gpu.temp_c, TEMP_LOW_C, TEMP_HIGH_C, spark), style="red")
    line.append(f" {text.number(temp):>3}C", style="bold red" if hot else "")
    if gpu.xid_total:
        line.append(f"  xid×{gpu.xid_total}", style="bold red")
    return line


class GpuGrid(ScrollView, can_focus=True):
    """Node and GPU lines of a job's telemetry."""

    DEFAULT_CSS = """
    GpuGrid {
        background: $surface;
        overflow-x: hidden;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "scroll_up", "up", show=False),
        Binding("down,j", "scroll_down", "down", show=False),
        Binding("pageup", "page_up", "page up", show=False),
        Binding("pagedown", "page_down", "page down", show=False),
        Binding("home", "scroll_home", "top", show=False),
        Binding("end", "scroll_end", "bottom", show=False),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.items: list[NodeView | GpuView] = []
        self.empty_text = "no telemetry in this job directory (telemetry/<node>.jsonl)"

    def set_view(self, view: TelemetryView) -> None:
        items: list[NodeView | GpuView] = []
        for node in view.nodes:
            items.append(node)
            items.extend(node.gpus)
        self.items = items
        self.virtual_size = Size(self.size.width, len(items))
        self.refresh()

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        base = self.rich_style
        index = round(self.scroll_y) + y
        if not self.items:
            if y == 0:
                line = Text(self.empty_text, style="dim")
                return Strip(list(line.render(self.app.console))).crop_extend(0, width, base)
            return Strip.blank(width, base)
        if index >= len(self.items):
            return Strip.blank(width, base)
        item = self.items[index]
        line = node_line(item, width) if isinstance(item, NodeView) else gpu_line(item, width)
        line.style = base
        segments = list(line.render(self.app.console))
        return Strip(segments).crop_extend(0, width, base + Style())
