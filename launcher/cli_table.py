"""``scalectl jobs``: the jobs table (text cells, shared with the TUI's columns) and the
JSON form of a job."""

from __future__ import annotations

from typing import Any

from contract.jobdir import JobDir
from launcher.progress_view import ProgressSnapshot
from launcher.states import STATE_STYLE
from launcher.store import JobRecord


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def jobs_table_rows(
    records: list[JobRecord], progress: dict[str, ProgressSnapshot], now_s: float
) -> list[dict[str, str]]:
    """The jobs table as text cells (pure; the TUI shows the same columns)."""
    rows = []
    for record in records:
        snap = progress[record.id]
        shape = f"{record.nodes}×{record.procs_per_node}"
        if record.gpus_per_node:
            shape += f" ({record.gpus_per_node} GPU/node)"
        rows.append(
            {
                "ID": record.id,
                "NAME": record.name,
                "BACKEND": record.backend,
                "STATE": record.state.value,
                "REASON": record.reason,
                "NODES": shape,
                "STEP": _num(snap.step, "d"),
                "LOSS": _num(snap.loss, ".4g"),
                "TOK/S": _num(snap.tokens_per_s, ",.0f"),
                "AGE": _age(record.age_s(now_s)),
            }
        )
    return rows


def print_jobs_table(records: list[JobRecord], progress: dict[str, ProgressSnapshot]) -> None:
    import time

    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console()
    if not records:
        console.print("no jobs yet; `scalectl launch` starts one")
        return
    rows = jobs_table_rows(records, progress, time.time())
    fixed = ("ID", "BACKEND", "NODES", "STEP", "LOSS", "TOK/S", "AGE")
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in fixed}
    # Only NAME and STATE (with its reason) give way on a narrow terminal: rich crops
    # no_wrap columns from the right instead of shrinking them, so size them here.
    gaps = 2 * (len(fixed) + 1)
    spare = console.width - sum(widths.values()) - gaps
    longest_name = max(4, *(len(r["NAME"]) for r in rows))
    name_width = max(4, min(longest_name, 24, spare // 3))
    state_width = max(9, spare - name_width)
    table = Table(box=None, header_style="bold", pad_edge=False, padding=(0, 2, 0, 0))
    table.add_column("ID", no_wrap=True)
    table.add_column("NAME", no_wrap=True, overflow="ellipsis", max_width=name_width)
    table.add_column("BACKEND", no_wrap=True)
    table.add_column("STATE", no_wrap=True, overflow="ellipsis", max_width=state_width)
    for column in ("NODES", "STEP", "LOSS", "TOK/S", "AGE"):
        table.add_column(column, justify="right", no_wrap=True)
    for row in rows:
        state = Text(row["STATE"], style=STATE_STYLE.get(row["STATE"], ""))
        if row["REASON"]:
            state.append(f" {row['REASON']}", style="dim")
        table.add_row(
            row["ID"],
            row["NAME"],
            row["BACKEND"],
            state,
            *(row[c] for c in ("NODES", "STEP", "LOSS", "TOK/S", "AGE")),
        )
    console.print(table)


def job_json(record: JobRecord, snap: ProgressSnapshot) -> dict[str, Any]:
    from dataclasses import asdict

    return {
        "id": record.id,
        "name": record.name,
        "backend": record.backend,
        "backend_job_id": record.backend_job_id,
        "state": record.state.value,
        "reason": record.reason,
        "job_dir": str(record.job_dir),
        "nodes": record.nodes,
        "procs_per_node": record.procs_per_node,
        "gpus_per_node": record.gpus_per_node,
        "created_ts": record.created_ts,
        "updated_ts": record.updated_ts,
        "started_ts": record.started_ts,
        "ended_ts": record.ended_ts,
        "exit_code": record.exit_code,
        "progress": asdict(snap),
        "plan": plan_json(record, snap),
    }


def plan_json(record: JobRecord, snap: ProgressSnapshot) -> dict[str, Any] | None:
    """The job's plan against its progress (contract.plan) and the plan's layout against
    the trainer's ``layout_applied`` event (contract.plan_layout; ``layout_check.differs``
    lists the fields that differ); None for a job without a plan."""
    # contract.plan needs pydantic: loaded only when a job has a plan, not for --help.
    from contract.events import read_events
    from contract.plan import PlanError, against_plan, read_plan
    from contract.plan_layout import check_layout, last_layout_applied

    job = JobDir(record.job_dir)
    if not job.plan_json.is_file():
        return None
    try:
        plan = read_plan(job)
    except PlanError as exc:
        return {"error": str(exc)}
    return {
        "layout": plan.layout_text(),
        **against_plan(plan, snap.step_time_s, snap.tokens_per_s, snap.world_size),
        "layout_check": check_layout(plan, last_layout_applied(read_events(job))).json(),
    }
