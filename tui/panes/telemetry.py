"""Telemetry tab: loss and tokens/s curves, host and per-GPU sparklines of the selected job."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Static

from tui import text
from tui.data.jobview import JobSnapshot
from tui.widgets.gpugrid import GpuGrid
from tui.widgets.plot import LinePlot


def _loss(value: float | None) -> str:
    return text.MISSING if value is None else f"{value:.4f}"


class TelemetryPane(Vertical):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._title: Text | None = None
        self.on_screen = False
        """Whether the Telemetry tab is shown; while it is not, the newest snapshot is kept
        and drawn when it is (see ``JobsPane.on_screen``)."""
        self._pending: tuple[JobSnapshot | None, str | None] | None = None

    def set_on_screen(self, on_screen: bool) -> None:
        self.on_screen = on_screen
        if on_screen and self._pending is not None:
            self.show_snapshot(*self._pending)

    def compose(self) -> ComposeResult:
        yield Static("select a job on the Jobs tab", id="telemetry-title")
        with Horizontal(id="plots"):
            yield LinePlot("loss", style="cyan", fmt=_loss, id="plot-loss")
            yield LinePlot("tokens/s", style="green", id="plot-rate")
        yield GpuGrid(id="gpu-grid")

    def show_snapshot(self, snapshot: JobSnapshot | None, message: str | None = None) -> None:
        if not self.on_screen:
            self._pending = (snapshot, message)
            return
        self._pending = None
        title = self.query_one("#telemetry-title", Static)
        if snapshot is None:
            self._title = None
            title.update(Text(message or "select a job on the Jobs tab", style="dim"), layout=False)
            return
        record = snapshot.record
        view = snapshot.telemetry
        line = Text(no_wrap=True, overflow="ellipsis")
        line.append(f"{record.name} ", style="bold")
        line.append(f"{record.id}  ", style="dim")
        line.append(record.state.value, style=text.state_style(record.state.value))
        line.append(
            f"   {len(view.nodes)} node(s), {view.gpu_count} GPU(s)"
            + (
                f", GPU power {text.number(view.gpu_power_w())} W"
                if view.gpu_power_w() is not None
                else ""
            )
        )
        notes = [Text(f"⚠ {w}", style="bold yellow") for w in snapshot.warnings]
        notes += [Text(f"{n.node}: {n.notice}", style="dim") for n in view.nodes if n.notice]
        if notes:
            line.append("\n")
            line.append_text(Text("  ").join(notes))
        if line != self._title:
            self._title = line
            title.update(line, layout=False)  # fixed height (app.tcss)
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
        self.query_one("#gpu-grid", GpuGrid).set_view(view)
