"""Telemetry tab: loss and tokens/s curves, host and per-GPU sparklines of the selected job."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical

from tui import text
from tui.data.jobview import JobSnapshot
from tui.widgets.gpugrid import GpuGrid
from tui.widgets.plot import LinePlot
from tui.widgets.runlines import RunLines
from tui.widgets.runs import Run


def _loss(value: float | None) -> str:
    return text.MISSING if value is None else f"{value:.4f}"


def title_lines(snapshot: JobSnapshot) -> list[list[Run]]:
    """The job, its state and size, GPU power; then warnings and telemetry notices."""
    record = snapshot.record
    view = snapshot.telemetry
    power_w = view.gpu_power_w()
    size = f"   {len(view.nodes)} node(s), {view.gpu_count} GPU(s)"
    if power_w is not None:
        size += f", GPU power {text.number(power_w)} W"
    lines: list[list[Run]] = [
        [
            (f"{record.name} ", "bold"),
            (f"{record.id}  ", "dim"),
            (record.state.value, text.state_style(record.state.value)),
            (size, ""),
        ]
    ]
    notes: list[Run] = [(f"⚠ {w}", "bold yellow") for w in snapshot.warnings]
    notes += [(f"{n.node}: {n.notice}", "dim") for n in view.nodes if n.notice]
    if notes:
        second: list[Run] = []
        for note in notes:
            if second:
                second.append(("  ", ""))
            second.append(note)
        lines.append(second)
    return lines


class TelemetryPane(Vertical):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.on_screen = False
        """Whether the Telemetry tab is shown; while it is not, the newest snapshot is kept
        and drawn when it is (see ``JobsPane.on_screen``)."""
        self._pending: tuple[JobSnapshot | None, str | None] | None = None

    def set_on_screen(self, on_screen: bool) -> None:
        self.on_screen = on_screen
        if on_screen and self._pending is not None:
            self.show_snapshot(*self._pending)

    def compose(self) -> ComposeResult:
        yield RunLines([[("select a job on the Jobs tab", "")]], id="telemetry-title")
        with Horizontal(id="plots"):
            yield LinePlot("loss", style="cyan", fmt=_loss, id="plot-loss")
            yield LinePlot("tokens/s", style="green", id="plot-rate")
        yield GpuGrid(id="gpu-grid")

    def show_snapshot(self, snapshot: JobSnapshot | None, message: str | None = None) -> None:
        if not self.on_screen:
            self._pending = (snapshot, message)
            return
        self._pending = None
        title = self.query_one("#telemetry-title", RunLines)
        if snapshot is None:
            title.set_lines([[(message or "select a job on the Jobs tab", "dim")]])
            return
        title.set_lines(title_lines(snapshot))
        curves = snapshot.curves
        target = (
            f"plan {text.si(snapshot.plan.tokens_per_s)}"
            if snapshot.plan.tokens_per_s is not None
            else ""
        )
        self.query_one("#plot-loss", LinePlot).set_data(
            curves.steps,
            curves.loss,
            extra=(curves.eval_steps, curves.eval_loss) if curves.eval_steps else None,
            extra_label="eval",
        )
        self.query_one("#plot-rate", LinePlot).set_data(
            curves.steps, curves.tokens_per_s, note=target
        )
        self.query_one("#gpu-grid", GpuGrid).set_view(snapshot.telemetry)
