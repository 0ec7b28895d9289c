"""Everything the detail, telemetry and plan panes show about the selected job.

A :class:`JobView` owns the incremental readers of one job directory (events, progress,
telemetry) and, on each :meth:`JobView.poll` (worker thread), returns a frozen
:class:`JobSnapshot` the UI thread renders. Files that are missing, corrupt or torn are
reported in ``warnings``; nothing here raises for a job directory in a bad state.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contract.jobdir import PLAN_FILE, JobDir, read_json
from contract.plan import Plan, PlanError, parse_plan
from contract.plan_layout import LayoutCheck, check_layout
from contract.run_facts import FinetuneRun, finetune_run
from launcher.progress_view import ProgressSnapshot
from launcher.store import JobRecord
from tui import text
from tui.data.compare import (
    CompareRow,
    Measured,
    PlanFacts,
    compare,
    finetune_text,
    plan_facts,
)
from tui.data.events import EventLog, TimelineItem
from tui.data.progress import Curves, ProgressSeries
from tui.data.telemetry import TelemetrySeries, TelemetryView

TIMELINE_LINES = 200


@dataclass(frozen=True)
class JobSnapshot:
    record: JobRecord
    dir_missing: bool
    spec_lines: tuple[tuple[str, str], ...]
    timeline: tuple[TimelineItem, ...]
    progress: ProgressSnapshot
    curves: Curves
    telemetry: TelemetryView
    plan: PlanFacts
    compare: tuple[CompareRow, ...]
    summary: tuple[tuple[str, str], ...]
    warnings: tuple[str, ...]
    layout_check: LayoutCheck | None = None
    """The plan's layout beside the trainer's ``layout_applied`` (None: no plan)."""
    finetune: FinetuneRun | None = None
    """A fine-tuning job's mode, adapters, trained parameters and export (None:
    pre-training)."""
    finetune_line: str | None = None
    """``finetune`` in one line (:func:`tui.data.compare.finetune_text`)."""


def _describe_entrypoint(spec: dict[str, Any]) -> str:
    entry = spec.get("entrypoint")
    entry = entry if isinstance(entry, dict) else {}
    if entry.get("module"):
        head = f"-m {entry['module']}"
    elif entry.get("script"):
        head = str(entry["script"])
    elif isinstance(entry.get("command"), list):
        head = " ".join(str(w) for w in entry["command"])
    else:
        head = text.MISSING
    args = spec.get("args")
    if isinstance(args, list) and args:
        head += " " + " ".join(str(a) for a in args)
    return head


def spec_summary(record: JobRecord, home: Path | None) -> tuple[tuple[str, str], ...]:
    """Label/value lines describing the job as submitted (from the registry's spec)."""
    try:
        spec = record.spec
    except ValueError:
        spec = {}
    gpus = f", {record.gpus_per_node} GPU/node" if record.gpus_per_node else ", CPU"
    lines = [
        ("job", f"{record.id}  {record.name}"),
        (
            "backend",
            f"{record.backend}" + (f" ({record.backend_job_id})" if record.backend_job_id else ""),
        ),
        ("state", record.state.value + (f": {record.reason}" if record.reason else "")),
        ("run", _describe_entrypoint(spec)),
        ("size", f"nodes {record.nodes} x {record.procs_per_node} ranks{gpus}"),
    ]
    restarts = spec.get("max_restarts")
    found = spec.get("checkpoint")
    checkpoint: dict[str, Any] = found if isinstance(found, dict) else {}
    policy = []
    if restarts is not None:
        policy.append(f"max restarts {restarts}")
    if checkpoint.get("every_steps"):
        policy.append(f"ckpt every {checkpoint['every_steps']}")
    if checkpoint.get("keep_last"):
        policy.append(f"keep {checkpoint['keep_last']}")
    if spec.get("time_limit_s"):
        policy.append(f"limit {text.seconds(float(spec['time_limit_s']))}")
    if policy:
        lines.append(("policy", ", ".join(policy)))
    times = f"created {text.datetime_text(record.created_ts)}"
    if record.started_ts is not None:
        times += f", started {text.clock(record.started_ts)}"
    if record.ended_ts is not None:
        times += f", ended {text.clock(record.ended_ts)}"
    if record.exit_code is not None:
        times += f", exit {record.exit_code}"
    lines.append(("time", times))
    lines.append(("dir", text.short_path(record.job_dir_text, home)))
    return tuple(lines)


def summary_lines(document: Any) -> tuple[tuple[str, str], ...]:
    """Top-level scalar fields of summary.json (the agent's end-of-run summary)."""
    if not isinstance(document, dict):
        return ()
    out = []
    for key, value in document.items():
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, float):
            out.append((str(key), f"{value:.4g}"))
        elif isinstance(value, int | str):
            out.append((str(key), str(value)))
    return tuple(out)


@dataclass
class JobView:
    """Incremental readers of one job directory (see module docstring)."""

    record: JobRecord
    home: Path | None = None
    jobdir: JobDir = field(init=False)
    events: EventLog = field(init=False)
    progress: ProgressSeries = field(init=False)
    telemetry: TelemetrySeries = field(init=False)
    plan: PlanFacts = field(default_factory=PlanFacts)
    plan_document: Plan | None = None
    plan_error: str | None = None
    plan_loaded: bool = False
    summary: tuple[tuple[str, str], ...] = ()
    summary_mtime: int | None = None

    def __post_init__(self) -> None:
        self.jobdir = JobDir(self.record.job_dir)
        self.events = EventLog(self.jobdir)
        self.progress = ProgressSeries(self.jobdir)
        self.telemetry = TelemetrySeries(self.jobdir)

    def poll(self, record: JobRecord | None = None) -> JobSnapshot:
        if record is not None:
            self.record = record
        warnings: list[str] = []
        missing = not os.path.isdir(self.jobdir.root)
        if missing:
            warnings.append(
                f"job directory {text.short_path(self.jobdir.root, self.home)} is gone "
                "(deleted or not mounted here); showing what was read before"
            )
        else:
            self.events.poll()
            self.progress.poll()
            self.telemetry.poll()
            self._load_plan()
            self._load_summary()
        if self.plan_error:
            warnings.append(self.plan_error)
        for what, count in (
            ("events.jsonl", self.events.bad_lines),
            ("progress/", self.progress.bad_lines),
        ):
            if count:
                warnings.append(f"{count} corrupt line(s) skipped in {what}")
        telemetry = self.telemetry.view()
        if telemetry.bad_lines:
            warnings.append(f"{telemetry.bad_lines} corrupt line(s) skipped in telemetry/")
        now = self.progress.now()
        measured = Measured(
            step_time_s=now.step_time_s,
            tokens_per_s=now.tokens_per_s,
            world_size=now.world_size,
            gpu_memory_mib=telemetry.latest_gpu_memory_mib(),
            rank_rss_mib=now.max_rss_mib,
            gpu_power_w=telemetry.gpu_power_w(),
            bubble_fraction=now.bubble_fraction,
            state_mib=now.state_mib,
        )
        has_plan = self.plan.step_time_s is not None
        layout_check = (
            check_layout(self.plan_document, self.events.layout_applied)
            if self.plan_document is not None
            else None
        )
        finetune = finetune_run(self.plan_document, self.events.trainer)
        return JobSnapshot(
            record=self.record,
            dir_missing=missing,
            spec_lines=spec_summary(self.record, self.home),
            timeline=tuple(self.events.timeline(TIMELINE_LINES)),
            progress=now,
            curves=self.progress.curves(),
            telemetry=telemetry,
            plan=self.plan,
            compare=tuple(compare(self.plan, measured)) if has_plan else (),
            summary=self.summary,
            warnings=tuple(warnings),
            layout_check=layout_check,
            finetune=finetune,
            finetune_line=finetune_text(finetune, self.home) if finetune else None,
        )

    def _load_plan(self) -> None:
        if self.plan_loaded:
            return
        self.plan_loaded = True
        path = self.jobdir.plan_json
        if not path.exists():
            return
        try:
            document = read_json(path)
        except (OSError, ValueError) as exc:
            self.plan_error = f"plan.json unreadable ({type(exc).__name__}); no prediction shown"
            return
        try:
            self.plan_document = parse_plan(document, PLAN_FILE)
            self.plan = plan_facts(self.plan_document)
        except PlanError as exc:
            self.plan_error = f"{exc}; no prediction shown"

    def _load_summary(self) -> None:
        path = self.jobdir.summary_json
        try:
            mtime = os.stat(path).st_mtime_ns
        except OSError:
            return
        if mtime == self.summary_mtime:
            return
        self.summary_mtime = mtime
        try:
            self.summary = summary_lines(read_json(path))
        except (OSError, ValueError):
            self.summary = (("summary.json", "unreadable"),)
