"""``plan calibrate`` on real jobs of the reference trainer on this CPU: calibrate from two
model widths, predict a third (scripts/calibration_jobs.py runs the jobs).

What this test asserts does not depend on how fast or how loaded the machine is:

* the fit reproduces the jobs it was fitted on: their residual after calibration is no
  larger than before, or under 10 % (calibrated on the same machine minutes earlier, the
  plan may already be within a few per cent of a job, and a regularised fit of two jobs
  need not beat that job by job);
* the held-out width is predicted within a factor of 2 (|log(predicted / measured)| <
  log 2): a broken fit (a rate in the wrong unit, a term fitted to the wrong group) is off
  by far more.

How close the held-out prediction is, is a measurement, not a test: bench/calibration.py
prints it (before and after calibration, as ratios), and bench/RESULTS.md records it. On
this 2-core machine, loaded by other work, it came out between -35 % and +22 % after
calibration against -46 % to -70 % before.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

from launcher.store import Store
from planner.profile import load_profile
from scalectl.cli import main

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

from calibration_jobs import (  # noqa: E402
    accelerator,
    held_out_prediction,
    plan_for,
    run_job,
)

FIT_RESIDUAL = 0.10
"""Residual of a fitted job that always counts as reproduced (see the module docstring)."""
HELD_OUT_FACTOR = 2.0
"""The held-out prediction must be within this factor of the measurement."""


def _rms(values: list[float]) -> float:
    return math.sqrt(sum(v * v for v in values) / len(values))


def test_calibrated_from_two_widths_predicts_a_third(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    acc = accelerator()
    with Store() as store:
        first = run_job(store, plan_for(acc, 64))
        # Run between the two it is predicted from, so a drift in load hits it half-way.
        held_out = run_job(store, plan_for(acc, 96))
        fit_dirs = [first, run_job(store, plan_for(acc, 128))]
    profile_path = tmp_path / "cluster.yaml"
    try:
        main(["plan", "calibrate", *map(str, fit_dirs), "-o", str(profile_path)])
    except SystemExit as exc:
        assert exc.code in (0, None), capsys.readouterr().err
    out = capsys.readouterr().out
    assert "fit residual" in out and profile_path.is_file()
    profile = load_profile(str(profile_path))
    assert len(profile.jobs) == 2
    before = _rms([job.ratio_before - 1.0 for job in profile.jobs])
    after = _rms([job.ratio_after - 1.0 for job in profile.jobs])
    assert after <= max(before, FIT_RESIDUAL), (before, after)

    held = held_out_prediction(held_out, profile)
    print(f"held-out h96: measured {held.measured_s * 1e3:.1f} ms, "
          f"before {held.before_s * 1e3:.1f} ({held.error_before:+.1%}), "
          f"after {held.after_s * 1e3:.1f} ({held.error_after:+.1%})")  # fmt: skip
    assert abs(math.log(held.after_s / held.measured_s)) < math.log(HELD_OUT_FACTOR)
