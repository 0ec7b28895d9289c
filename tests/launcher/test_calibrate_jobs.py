"""``plan calibrate`` on real jobs of the reference trainer on this CPU: calibrate from two
model widths, predict a third.

Measured while writing this test (2 shared cores, 6 people's work on them; 2 FSDP ranks,
4 layers, seq 128, micro-batch 8): planned on the calibrated CPU alone, step times came
out 1.9-2.9x the plan (h64: 51 ms planned, 116-118 ms measured; h128: 110 vs 205-207 ms).
Calibrated from h64 and h128, the error on h96 in four runs was -11 %, +22 %, -17 % and
-35 %, then -5 % once the held-out job ran between the two it is predicted from (before
calibration -56 %, -46 %, -70 %, -65 %, -53 %): the load other people put on this machine
changes between the jobs, and the planner cannot know it; running the held-out job in the
middle means a drift in load hits it half-way. The tolerance (50 %) is the worst seen
plus margin, and calibration must beat the plan as launched.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from polling import wait_for

import planner
from launcher import api
from launcher.cli_calibrate import read_measured_job
from launcher.commands import omp_threads
from launcher.spec import JobSpec
from launcher.states import JobState
from launcher.store import JobRecord, Store
from planner.profile import load_profile
from scalectl.cli import main

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
RANKS = 2
SEQ_LEN = 128
MICRO_BATCH = 8
STEPS = 16
TOLERANCE = 0.5
"""|predicted / measured - 1| allowed for the held-out width (measured: 11-35 %)."""


def _accelerator() -> planner.AcceleratorSpec:
    sys.path.insert(0, str(REPO / "scripts"))
    from cpu_calibration import accelerator_fields, calibrate

    from runtime.train.config import default_ffn_hidden

    spec = JobSpec.model_validate(
        {"name": "probe", "entrypoint": {"module": "runtime.train"}, "procs_per_node": RANKS}
    )
    cal = calibrate(
        threads=omp_threads(spec, len(os.sched_getaffinity(0))), ranks=RANKS,
        tokens=MICRO_BATCH * SEQ_LEN, hidden=128, ffn_hidden=default_ffn_hidden(128),
        heads=4, seq_len=SEQ_LEN, micro_batch=MICRO_BATCH,
    )  # fmt: skip
    return planner.AcceleratorSpec(**accelerator_fields(cal))


def _plan(acc: planner.AcceleratorSpec, hidden: int) -> planner.Plan:
    from reference_model import model_spec

    model = model_spec(f"ref-h{hidden}", layers=4, hidden=hidden, heads=4, kv_heads=2, vocab=257)
    cluster = planner.ClusterSpec(gpu=acc, num_gpus=RANKS, num_nodes=1, gpus_per_node=RANKS)
    batch = RANKS * MICRO_BATCH
    training = planner.TrainingSpec(
        seq_len=SEQ_LEN, global_batch_seqs=batch, total_tokens=STEPS * batch * SEQ_LEN,
        precision="fp32",
    )  # fmt: skip
    layout = planner.Layout(dp=RANKS, sharding="zero3", micro_batch=MICRO_BATCH)
    return planner.make_plan(model, cluster, training, layout)


def _run(store: Store, plan: planner.Plan) -> Path:
    spec = JobSpec.model_validate(
        {
            "name": f"calibrate-{plan.model.name}",
            "entrypoint": {"module": "runtime.train"},
            # No held-out evaluation and no checkpoint before the end: startup is most of
            # each job's wall time already.
            "args": ["--eval-every", "0", "--ckpt-every", "0", "--log-every", "10"],
            "procs_per_node": RANKS,
            "plan": plan,
        }
    )
    for _ in range(2):
        record = api.launch(spec, store, cwd=REPO)

        def done(record: JobRecord = record) -> JobRecord | None:
            current = api.refresh(store, store.get(record.id) or record)
            return current if current.state.is_terminal else None

        final: JobRecord = wait_for(done, timeout_s=60.0, poll_s=0.3)
        # One relaunch when torch's store lost the race for the port it picked (another
        # process on this shared machine bound it first): not what this test is about.
        if "EADDRINUSE" not in final.reason:
            break
    assert final.state is JobState.COMPLETED, final.reason
    return final.job_dir


def test_calibrated_from_two_widths_predicts_a_third(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    acc = _accelerator()
    with Store() as store:
        first = _run(store, _plan(acc, 64))
        held_out = _run(store, _plan(acc, 96))
        fit_dirs = [first, _run(store, _plan(acc, 128))]
    profile_path = tmp_path / "cluster.yaml"
    try:
        main(["plan", "calibrate", *map(str, fit_dirs), "-o", str(profile_path)])
    except SystemExit as exc:
        assert exc.code in (0, None), capsys.readouterr().err
    out = capsys.readouterr().out
    assert "fit residual" in out and profile_path.is_file()
    profile = load_profile(str(profile_path))
    for job in profile.jobs:
        assert abs(job.ratio_after - 1.0) < abs(job.ratio_before - 1.0)

    job = read_measured_job(str(held_out))
    p = job.plan
    after_s = planner.estimate(
        p.model, p.cluster.model_copy(update={"gpu": profile.accelerator}), p.training, p.layout
    ).step.time_s
    before_s = p.estimate.step.time_s
    error_after = after_s / job.step_time_s - 1.0
    error_before = before_s / job.step_time_s - 1.0
    print(f"held-out h96: measured {job.step_time_s * 1e3:.1f} ms, before {before_s * 1e3:.1f} "
          f"({error_before:+.1%}), after {after_s * 1e3:.1f} ({error_after:+.1%})")  # fmt: skip
    assert abs(error_after) < TOLERANCE
    assert abs(error_after) < abs(error_before)
