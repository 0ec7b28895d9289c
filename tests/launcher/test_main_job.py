"""`make run`'s main job end to end, shortened: calibrate, plan, launch, follow, summarise."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import pytest
from polling import run_to_end

from launcher.states import JobState
from launcher.store import Store

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def test_main_job_plans_trains_and_compares(scalectl_home: Path) -> None:
    env = {**os.environ, "SCALECTL_HOME": str(scalectl_home), "COLUMNS": "160"}
    # 1 s of planned training keeps the run short; how many steps the plan chose depends on
    # how fast the calibrated CPU was, so the assertions below use the plan's own figure.
    result = run_to_end(
        [sys.executable, str(REPO / "scripts" / "main_job.py"), "--target-s", "1"],
        env=env,
        cwd=REPO,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    for fragment in ("1. calibrating this CPU", "2. plan", "4. job COMPLETED",
                     "predicted against measured", "step time (ms, median)", "held-out loss",
                     "tok/s (last step)", "5. planner calibrated", "fit residual"):  # fmt: skip
        assert fragment in out, fragment
    with Store() as store:
        (record,) = store.list_jobs()
    assert record.state is JobState.COMPLETED and record.name == "main-job"
    plan_json = (record.job_dir / "plan.json").read_text()
    assert '"estimate"' in plan_json and "calibrated" in plan_json
    # step 5 fitted the planner to this job and wrote the profile next to it
    from planner.profile import load_profile

    profile = load_profile(str(record.job_dir / "calibration.yaml"))
    assert profile.jobs[0].job == record.id
    assert abs(profile.jobs[0].ratio_after - 1.0) < abs(profile.jobs[0].ratio_before - 1.0)
    # the trainer took its shape and step count from the plan; how many steps the plan
    # chose depends on how fast the calibrated CPU was, so the figure is the plan's own
    training = json.loads(plan_json)["training"]
    planned_steps = math.ceil(
        training["total_tokens"] / (training["global_batch_seqs"] * training["seq_len"])
    )
    assert f"→ {planned_steps} steps" in out
    log = next(record.job_dir.glob("logs/*.0.log")).read_text()
    assert "--plan" in log and "plan.json" in log
    assert f"training complete at step {planned_steps}" in log
