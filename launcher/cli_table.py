"""``scalectl jobs``: the jobs table (text cells, shared with the TUI's columns) and the
JSON form of a job."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from contract.jobdir import JobDir
from launcher.progress_view import ProgressSnapshot
from launcher.states import STATE_STYLE
from launcher.store import JobRecord

clock: Callable[[], float] = time.time
"""Now, for the AGE column (a test fixes it to render a golden table)."""


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


def _cell(row: dict[str, str], header: str) -> str | tuple[str, ...]:
    if header == "NODES" and " (" in row[header]:  # on a narrow terminal: 2×8, no GPUs
        return (row[header], row[header].split(" (")[0])
    return row[header]


def print_jobs_table(records: list[JobRecord], progress: dict[str, ProgressSnapshot]) -> None:
    """The jobs table, fitted to the terminal (planner.render_table): on a narrow one the
    columns of least use drop first and a dim line names them; names keep their tail."""
    from rich.console import Console

    from planner.render_table import print_table
    from planner.table_fit import Column

    console = Console()
    if not records:
        console.print("no jobs yet; `scalectl launch` starts one")
        return
    rows = jobs_table_rows(records, progress, clock())
    columns = [
        Column("ID"),
        Column("NAME", shrink="middle", min_width=14),
        Column("BACKEND", priority=5),
        Column("STATE"),
        Column("REASON", shrink="end", min_width=20, priority=1),
        Column("NODES", justify="right", priority=3),
        Column("STEP", justify="right", priority=2),
        Column("LOSS", justify="right", priority=4),
        Column("TOK/S", justify="right", priority=4),
        Column("AGE", justify="right", priority=3),
    ]
    if not any(row["REASON"] for row in rows):
        columns = [c for c in columns if c.header != "REASON"]
    print_table(
        console,
        columns,
        [[_cell(row, c.header) for c in columns] for row in rows],
        styles={"STATE": lambda state: STATE_STYLE.get(state, ""), "REASON": lambda _: "dim"},
    )


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
    """The job's plan against its progress (contract.run_facts: speed, MFU, bubble, state
    memory once a rank reported ``state_mib``, and a fine-tune's mode, adapters, trained
    parameters and export) and the plan's layout against the trainer's
    ``layout_applied`` event (contract.plan_layout; ``layout_check.differs`` lists the
    fields that differ); None for a job without a plan."""
    # contract.plan needs pydantic: loaded only when a job has a plan, not for --help.
    from contract.events import read_events
    from contract.plan import PlanError, read_plan
    from contract.plan_layout import check_layout, last_layout_applied
    from contract.run_facts import TrainerEvents, against_plan, finetune_run

    job = JobDir(record.job_dir)
    if not job.plan_json.is_file():
        return None
    try:
        plan = read_plan(job)
    except PlanError as exc:
        return {"error": str(exc)}
    events = read_events(job)
    finetune = finetune_run(plan, TrainerEvents().fold(events))
    return {
        "layout": plan.layout_text(),
        **against_plan(
            plan,
            snap.step_time_s,
            snap.tokens_per_s,
            snap.world_size,
            snap.bubble_fraction,
            snap.state_mib,
        ),
        **({"finetune": finetune.json()} if finetune else {}),
        "layout_check": check_layout(plan, last_layout_applied(events)).json(),
    }
