"""``scalectl plan validate``: the planner against every published run in tests/validation.

The rows (and the rules that turn each published run into planner input) live with the
tests, in a source checkout's tests/validation; ``--cases DIR`` points elsewhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

DEFAULT_CASES = Path(__file__).resolve().parents[1] / "tests" / "validation"
"""tests/validation of the checkout this planner runs from."""


def load_checks(cases: Path) -> list[Any]:
    """Every validation row of the checkout ``cases`` belongs to (tests/validation)."""
    import importlib
    import sys

    from planner.errors import PlanInputError

    if not (cases / "published.py").is_file() or not (cases / "cases.py").is_file():
        raise PlanInputError(
            f"--cases {cases}: no validation table (cases.py, published.py) there; run from a "
            "source checkout or pass --cases path/to/tests/validation."
        )
    root = str(cases.resolve().parents[1])
    if root not in sys.path:
        sys.path.insert(0, root)
    module = importlib.import_module("tests.validation.published")
    checks: list[Any] = module.all_checks()
    return checks


def summary(checks: list[Any]) -> dict[str, Any]:
    """The table as data: every row, and the median/worst |error| over modelled rows."""
    import math
    import statistics

    def number(value: float) -> float | None:
        return None if math.isnan(value) else value  # JSON has no NaN

    rows = [
        {
            "case": c.id,
            "layout": c.layout,
            "metric": c.metric,
            "predicted": number(c.predicted),
            "published": c.published,
            "error": number(c.error),
            "tolerance": c.allowed,
            "within_tolerance": c.ok,
            "known_gap": c.known_gap,
            "planner_fits": c.fits,
            "source": c.source,
        }
        for c in checks
    ]
    counted = [c for c in checks if not c.known_gap]
    worst = max(counted, key=lambda c: abs(c.error))
    return {
        "rows": rows,
        "rows_counted": len(counted),
        "known_gaps": len(checks) - len(counted),
        "median_abs_error": statistics.median(abs(c.error) for c in counted),
        "worst_abs_error": abs(worst.error),
        "worst_case": worst.id,
    }


def validate_command(
    cases: Path = typer.Option(
        DEFAULT_CASES, "--cases", help="Directory with the validation rows (tests/validation)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the table as one JSON object."),
) -> None:
    """Predicted vs published for every validation run; median and worst |error|."""
    import json

    table = summary(load_checks(cases))
    if as_json:
        print(json.dumps(table))
        return
    from rich.console import Console

    from planner.render_table import print_line, print_table
    from planner.table_fit import Cell, Column

    columns = [
        Column("case", shrink="middle", min_width=24),
        Column("layout", shrink="wrap", min_width=16, priority=3),
        Column("metric", shrink="end", min_width=16, priority=2),
        Column("predicted", justify="right"),
        Column("published", justify="right"),
        Column("error", justify="right"),
        Column("tol.", justify="right", priority=1),
        Column("", shrink="wrap", min_width=12),
    ]
    rows: list[list[Cell]] = []
    for row in table["rows"]:
        status = (
            f"known gap: {row['known_gap']}"
            if row["known_gap"]
            else ("ok" if row["within_tolerance"] else "outside")
        )
        if row["planner_fits"] is False:
            status += " (planner: does not fit in memory)"
        predicted, error = row["predicted"], row["error"]
        rows.append([
            row["case"], row["layout"], row["metric"],
            "—" if predicted is None else f"{predicted:.4g}", f"{row['published']:g}",
            "—" if error is None else f"{error:+.1%}", f"±{row['tolerance']:.0%}", status,
        ])  # fmt: skip
    console = Console()
    print_table(
        console,
        columns,
        rows,
        title="The planner against published runs (error = predicted / published - 1)",
        styles={"": lambda text: "red" if text.startswith("outside") else ""},
    )
    print_line(
        console,
        f"median |error| {table['median_abs_error']:.1%}, worst {table['worst_abs_error']:.1%} "
        f"({table['worst_case']}) over {table['rows_counted']} rows; "
        f"{table['known_gaps']} known gaps shown, not counted. TFLOP/s rows use their "
        "source's FLOP convention (named in the metric); the planner's own MFU counts "
        "causal attention as half the s x s matrix.",
    )
