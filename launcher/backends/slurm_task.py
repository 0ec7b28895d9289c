"""Inside a Slurm allocation, after the step: ``python -m launcher.backends.slurm_task end
JOB_DIR STEP_RC``.

The step itself is one ``scalectl agent --policy=slurm`` per node, the only process
between ``slurmstepd`` and torchrun (``launcher.backends.slurm_node`` completes its
command line, ``runtime.agent.slurm_policy`` is what it does differently under Slurm);
each agent records ``slurm_node_started`` and ``slurm_node_ended`` with its outcome
(completed, preempted, stopped, lost, failed).

``end JOB_DIR STEP_RC`` runs in the batch shell after the step. From this run's node
outcomes it decides (:func:`decide_end`): COMPLETED, FAILED, or — after a preemption
signal or a lost node — ``scontrol requeue`` while the requeue budget
(``slurm.max_requeues``, counted as ``requeued`` events in the job directory) lasts. A
run that finished never requeues, and neither does one the user cancelled.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contract.events import EventKind, append_event
from contract.jobdir import JobDir, read_all_jsonl
from runtime.agent.slurm_policy import SlurmContext

END_WAIT_S = 120.0
"""How long the end helper waits to be killed after ``scontrol requeue`` or a cancel."""


def say(message: str) -> None:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    print(f"[{stamp}] slurm_task: {message}", flush=True)


# -- end of the step ---------------------------------------------------------------


@dataclass(frozen=True)
class EndDecision:
    """What the batch shell does once the step is over."""

    requeue: bool
    """True: ``scontrol requeue`` (the budget allows it)."""
    state: str
    """Final state when not requeued (COMPLETED, FAILED, CANCELLED); REQUEUED otherwise."""
    reason: str
    """Why, in one line (shown by ``scalectl jobs``)."""
    exit_code: int
    """Exit code of the batch script (what sacct reports)."""


def run_outcomes(
    events: list[dict[str, Any]], job_id: str, slurm_job_id: str, restart: int
) -> dict[str, str]:
    """Node → outcome for this run; a node that started but never ended was lost."""
    outcomes: dict[str, str] = {}
    for event in events:
        if (
            event.get("job_id") != job_id
            or event.get("slurm_job_id") != slurm_job_id
            or event.get("restart") != restart
        ):
            continue
        node = str(event.get("node"))
        if event.get("event") == EventKind.SLURM_NODE_STARTED:
            outcomes.setdefault(node, "lost")
        elif event.get("event") == EventKind.SLURM_NODE_ENDED:
            outcomes[node] = str(event.get("outcome", "failed"))
    return outcomes


def decide_end(
    outcomes: Mapping[str, str],
    step_rc: int,
    *,
    cancelled: bool,
    requeues_used: int,
    requeue: bool,
    max_requeues: int,
) -> EndDecision:
    """The end helper's decision (pure). See the module docstring."""
    if cancelled:
        return EndDecision(False, "CANCELLED", "cancelled by user", 143)
    if not outcomes:
        return EndDecision(
            False,
            "FAILED",
            f"the srun step failed before any node task started (exit {step_rc})",
            step_rc or 1,
        )
    if step_rc == 0 and "completed" in outcomes.values():
        lost = sorted(n for n, o in outcomes.items() if o == "lost")
        note = f"finished without {', '.join(lost)} (lost)" if lost else ""
        return EndDecision(False, "COMPLETED", note, 0)
    preempted = sorted(n for n, o in outcomes.items() if o == "preempted")
    lost = sorted(n for n, o in outcomes.items() if o == "lost")
    if preempted or lost:
        why = "stopped by the preemption signal" if preempted else f"lost {', '.join(lost)}"
        if not requeue:
            return EndDecision(False, "FAILED", f"{why}; requeue is off (slurm.requeue)", 1)
        if requeues_used >= max_requeues:
            return EndDecision(False, "FAILED", f"{why}; requeue budget of {max_requeues} spent", 1)
        return EndDecision(
            True, "REQUEUED", f"{why}; requeue {requeues_used + 1} of {max_requeues}", 0
        )
    failed = ", ".join(f"{n}: {o}" for n, o in sorted(outcomes.items()) if o != "completed")
    return EndDecision(False, "FAILED", f"step exit {step_rc} ({failed})", step_rc or 1)


def run_end(jobdir: JobDir, ctx: SlurmContext, step_rc: int) -> int:
    from contract.job import read_job_file
    from launcher.spec import SlurmOptions

    job = read_job_file(jobdir)
    job_id: str = job.job_id
    slurm = SlurmOptions.model_validate(job.spec.get("slurm", {}))
    events = read_all_jsonl(jobdir.events)
    mine = [e for e in events if e.get("job_id") == job_id]
    decision = decide_end(
        run_outcomes(mine, job_id, ctx.slurm_job_id, ctx.restart),
        step_rc,
        cancelled=any(e.get("event") == EventKind.CANCELLED for e in mine),
        requeues_used=sum(1 for e in mine if e.get("event") == EventKind.REQUEUED),
        requeue=slurm.requeue,
        max_requeues=slurm.max_requeues,
    )
    say(f"step exit {step_rc}: {decision.state} {decision.reason}".rstrip())
    if decision.requeue:
        used = sum(1 for e in mine if e.get("event") == EventKind.REQUEUED)
        append_event(
            jobdir,
            EventKind.REQUEUED,
            job_id=job_id,
            reason=decision.reason,
            count=used + 1,
            max_requeues=slurm.max_requeues,
            **ctx.tags(),
        )
        result = subprocess.run(
            ["scontrol", "requeue", ctx.slurm_job_id], capture_output=True, text=True
        )
        if result.returncode == 0:
            # The requeue terminates this batch shell; wait for it rather than end the
            # job ourselves (the exit code of a requeued run is not recorded anyway).
            time.sleep(END_WAIT_S)
            return 0
        detail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        reason = f"scontrol requeue failed: {detail[0]}"
        say(reason)
        decision = EndDecision(False, "FAILED", reason, 1)
    append_event(
        jobdir,
        EventKind.FINISHED,
        job_id=job_id,
        state=decision.state,
        reason=decision.reason,
        exit_code=decision.exit_code,
        **ctx.tags(),
    )
    if decision.state == "CANCELLED":
        # `scalectl cancel` follows its stop signal with scancel; let that end the job,
        # so sacct says CANCELLED rather than an exit code.
        time.sleep(END_WAIT_S)
    return decision.exit_code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m launcher.backends.slurm_task")
    sub = parser.add_subparsers(dest="what", required=True)
    end = sub.add_parser("end", help="after the srun step: finish or requeue")
    end.add_argument("job_dir", type=Path)
    end.add_argument("step_rc", type=int)
    args = parser.parse_args(argv)
    ctx = SlurmContext.from_env(os.environ)
    jobdir = JobDir(args.job_dir.resolve())
    return run_end(jobdir, ctx, args.step_rc)


if __name__ == "__main__":
    sys.exit(main())
