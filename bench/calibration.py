"""How well ``plan calibrate`` predicts a job it was not fitted on (issue 17, item 6).

Three real jobs of the reference trainer on this CPU (scripts/calibration_jobs.py: 2 FSDP
ranks, 4 layers, seq 128, micro-batch 8, widths 64, 96 and 128), run in the order 64, 96,
128 so a drift in the machine's load hits the held-out width half-way; calibrated from
widths 64 and 128; width 96 predicted with the calibrated profile. Prints, per round, the
held-out job's measured step time and the plan's error before and after calibration; the
baseline is the plan as launched, measured in the same round.

    .venv/bin/python bench/calibration.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO))

from calibration_jobs import accelerator, held_out_prediction, plan_for, run_job  # noqa: E402

from contract.env import HOME_ENV  # noqa: E402


def one_round() -> tuple[float, float]:
    from launcher.cli_calibrate import read_measured_job
    from launcher.store import Store
    from planner.calibration import fit_profile

    acc = accelerator()
    with Store() as store:
        first = run_job(store, plan_for(acc, 64))
        held_out = run_job(store, plan_for(acc, 96))
        last = run_job(store, plan_for(acc, 128))
    profile = fit_profile([read_measured_job(str(first)), read_measured_job(str(last))])
    held = held_out_prediction(held_out, profile)
    print(
        f"held-out h96: measured {held.measured_s * 1e3:7.1f} ms   "
        f"plan as launched {held.before_s * 1e3:7.1f} ms ({held.error_before:+6.1%})   "
        f"calibrated {held.after_s * 1e3:7.1f} ms ({held.error_after:+6.1%})",
        flush=True,
    )
    return held.error_before, held.error_after


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        os.environ[HOME_ENV] = home  # a registry of its own
        rounds = [one_round() for _ in range(args.repeat)]
    before = statistics.median(abs(b) for b, _ in rounds)
    after = statistics.median(abs(a) for _, a in rounds)
    print(
        f"median |error| of the held-out width over {len(rounds)} rounds: "
        f"plan as launched {before:.1%}, calibrated {after:.1%}; "
        f"ratio {before / after if after else float('inf'):.1f}x"
    )


if __name__ == "__main__":
    main()
