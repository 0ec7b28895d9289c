"""``scalectl plan calibrate``: fit the accelerator's constants to measured jobs.

Reads each job directory's plan.json and progress/<rank>.jsonl (``contract.jobdir``;
job ids through the registry, ``launcher.store``), fits with the planner
(``planner.calibration``, pure), writes the profile and prints each job's residuals. It
lives in the launcher because the planner never imports the launcher (planner/ruff.toml);
``launcher.cli.register`` mounts it under ``scalectl plan``. Bad input (no plan.json, too
few steps, an unknown id) is one line and exit code 2, and nothing is written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer


def calibrate_command(
    jobs: list[str] = typer.Argument(
        ..., help="Job directories or job ids (as `scalectl jobs` lists them)."
    ),
    output: str = typer.Option(..., "--output", "-o", help="Profile YAML file to write."),
    as_json: bool = typer.Option(False, "--json", help="Print the profile as one JSON object."),
) -> None:
    """Fit GEMM/attention efficiency, memory and network bandwidth and per-step overhead
    to the step times measured jobs reported; write a profile for --profile.

    Least squares over the terms each job's plan splits its step time into, on the median
    of the steady-state steps (the first 5 steps are warm-up); prints predicted against
    measured step time for every job, before and after.
    """
    import json

    profile = calibrate_jobs(jobs, output)
    if as_json:
        print(json.dumps(profile.model_dump(mode="json")))
        return
    from planner.render_calibration import render_profile

    render_profile(profile, output)


def calibrate_jobs(refs: list[str], output: str) -> Any:
    """Fit a ``CalibrationProfile`` to the jobs ``refs`` and write it to ``output`` (only
    once every job has been read and the fit is done)."""
    from planner.calibration import fit_profile
    from planner.errors import PlanInputError
    from planner.profile import dump_profile

    out = Path(output)
    if out.suffix not in (".yaml", ".yml"):
        raise PlanInputError(f"-o {output}: the profile is YAML; name it *.yaml.")
    if not out.parent.is_dir():
        raise PlanInputError(f"-o {output}: directory {out.parent} does not exist; create it.")
    profile = fit_profile([read_measured_job(ref) for ref in refs])
    out.write_text(dump_profile(profile), encoding="utf-8")
    return profile


def read_measured_job(ref: str) -> Any:
    """A job directory (or a job id from the registry) as a ``MeasuredJob``."""
    from pydantic import ValidationError

    from contract.jobdir import JobDir, read_all_jsonl
    from contract.plan import PLAN_SCHEMA_VERSION
    from planner.calibration import MeasuredJob, steady_step_time_s
    from planner.errors import PlanInputError
    from planner.result import Plan

    path = Path(ref)
    if not path.is_dir():
        from launcher.store import Store

        with Store() as store:
            path = store.resolve(ref).job_dir
    jobdir = JobDir(path)
    name = path.name
    if not jobdir.plan_json.is_file():
        raise PlanInputError(
            f"{name}: no plan.json in {path}; calibrate from jobs launched with a plan "
            "(a JobSpec with `plan:`, as `make run` launches)."
        )
    text = jobdir.plan_json.read_text(encoding="utf-8")
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        document = None  # the planner's model names the error below
    if isinstance(document, dict) and "schema_version" in document:
        # plan.json is the contract's document: the planner's Plan and its schema version
        # (contract.plan_layout.plan_document), as `plan --out` and `launch --plan` write it.
        version = document.pop("schema_version")
        if version != PLAN_SCHEMA_VERSION:
            raise PlanInputError(
                f"{name}: plan.json schema_version {version!r}: this scalectl reads version "
                f"{PLAN_SCHEMA_VERSION}; calibrate with the scalectl that launched it"
            )
        text = json.dumps(document)
    try:
        plan = Plan.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise PlanInputError(f"{name}: plan.json field {where}: {first['msg']}.") from None
    ranks = {p.stem: read_all_jsonl(p) for p in jobdir.progress_files()}
    step_s, steps = steady_step_time_s(name, ranks)
    return MeasuredJob(job=name, plan=plan, step_time_s=step_s, steps_used=steps)
