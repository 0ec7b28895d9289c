"""``--plot FILE.png``: expected wall time against cost of every feasible layout on log axes,
the Pareto front highlighted (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

from planner.errors import PlanInputError
from planner.layout_search import SearchResult

MAX_POINTS = 60_000
"""Feasible layouts drawn at most (an even sample beyond that, the front always)."""


def check_plot_path(path: str | Path) -> Path:
    """The plot's path, refused (one line) unless it is a .png in an existing directory."""
    target = Path(path)
    if target.suffix.lower() != ".png":
        raise PlanInputError(f"--plot: {str(path)!r} must name a .png file.")
    if not target.parent.is_dir():
        raise PlanInputError(f"--plot: directory {str(target.parent)!r} does not exist.")
    return target


def plot_search(result: SearchResult, path: str | Path) -> Path:
    """Write the scatter plot to ``path`` (PNG) and return it."""
    target = check_plot_path(path)
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    import numpy as np

    days = result.table.get("days_expected", np.zeros(0))
    cost = result.table.get("cost_expected_usd", np.zeros(0))
    gpus = result.table.get("gpus", np.zeros(0))
    step = max(1, len(days) // MAX_POINTS)
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=120)
    if len(days):
        scatter = ax.scatter(
            days[::step], cost[::step] / 1e6, s=6, c=np.log2(gpus[::step]), cmap="viridis",
            alpha=0.5, linewidths=0, label=f"feasible layouts ({len(days):,})",
        )  # fmt: skip
        if len(np.unique(gpus)) > 1:
            bar = fig.colorbar(scatter, ax=ax)
            bar.set_label("log2(GPUs)")
    front = result.pareto
    if front:
        ax.plot(
            [e.train.days / e.train.goodput for e in front],
            [e.train.cost_usd / e.train.goodput / 1e6 for e in front],
            "o-", color="crimson", markersize=5, label=f"Pareto front ({len(front)})",
        )  # fmt: skip
    if result.ranked:
        best = result.ranked[0]
        ax.plot(
            [best.train.days / best.train.goodput],
            [best.train.cost_usd / best.train.goodput / 1e6],
            "*", color="black", markersize=14, label=f"best by {result.objective}",
        )  # fmt: skip
    # Layouts span orders of magnitude (a cp=seq layout is thousands of times slower):
    # log axes keep the front, at the lower left, readable.
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("expected wall-clock days (failures included, log scale)")
    ax.set_ylabel("expected cost (million USD, log scale)")
    ax.set_title(
        f"{result.model.name} on {result.cluster.accelerator().name}: "
        f"{result.feasible:,} feasible of {result.evaluated:,} layouts"
    )
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best")
    fig.tight_layout()
    fig.savefig(target, format="png")
    plt.close(fig)
    return target
