"""Rich tables for ``scalectl plan calibrate`` (terminal output only; no logic)."""

from __future__ import annotations

import statistics

from rich.console import Console
from rich.table import Table
from rich.text import Text

from planner.profile import CalibrationProfile

_CONSTANTS = {
    "gemm": "GEMM efficiency",
    "attention": "attention efficiency",
    "memory": "memory bandwidth",
    "intra_network": "intra-node bandwidth",
    "inter_network": "inter-node bandwidth",
}


def render_profile(profile: CalibrationProfile, path: str, console: Console | None = None) -> None:
    """Each job's step time (measured, predicted before and after) and the fitted factors."""
    console = console or Console()
    table = Table(
        title="step time: measured against predicted, before and after calibration",
        title_justify="left",
        caption="ratio = measured / predicted",
        caption_justify="left",
    )
    table.add_column("job / layout", no_wrap=True)
    for name in ("steps", "measured\nms", "before\nms (ratio)", "after\nms (ratio)"):
        table.add_column(name, justify="right", no_wrap=True)
    for job in profile.jobs:
        table.add_row(
            f"{job.job}\n{job.layout}",
            str(job.steps_used),
            f"{job.measured_step_s * 1e3:.1f}",
            f"{job.predicted_before_s * 1e3:.1f} ({job.ratio_before:.2f})",
            f"{job.predicted_after_s * 1e3:.1f} ({job.ratio_after:.2f})",
        )
    console.print(table)
    factors = ", ".join(f"{_CONSTANTS[g]} x{1.0 / f:.2f}" for g, f in profile.time_factors.items())
    console.print(
        f"fitted for {profile.fitted_for}: {factors}; per-step overhead "
        f"{profile.step_overhead_s * 1e3:.1f} ms (rates relative to the jobs' plans)"
    )
    errors = [abs(job.ratio_after - 1.0) for job in profile.jobs]
    console.print(
        f"fit residual |measured/after - 1|: median {statistics.median(errors):.1%}, "
        f"worst {max(errors):.1%} over {len(errors)} job(s); profile written to:"
    )
    # Paths and commands on lines of their own, never broken by rich (copy and paste).
    console.print(Text(f"  {path}"), soft_wrap=True)
    console.print("use it:")
    console.print(Text(f"  scalectl plan estimate --profile {path} ..."), soft_wrap=True)
