"""Real jobs of the reference trainer on this CPU for ``plan calibrate``: the test
(tests/launcher/test_calibrate_jobs.py) and the benchmark (bench/calibration.py) run the
same three widths.

2 FSDP ranks, 4 layers, seq 128, micro-batch 8, 16 steps: three jobs that differ only in
the model width (64, 96, 128), planned on this CPU calibrated by scripts/cpu_calibration.py
and launched on the local backend.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cpu_calibration import accelerator_fields, calibrate
from reference_model import model_spec

import planner
from launcher import api
from launcher.commands import omp_threads
from launcher.spec import JobSpec
from launcher.states import JobState
from launcher.store import JobRecord, Store
from runtime.train.config import default_ffn_hidden

REPO = Path(__file__).resolve().parents[1]
RANKS = 2
SEQ_LEN = 128
MICRO_BATCH = 8
STEPS = 16
JOB_CEILING_S = 120.0
"""A job of 16 steps takes 5-15 s here; one still running after this is reported stuck."""


def accelerator() -> planner.AcceleratorSpec:
    """This CPU as a planner accelerator, measured at the jobs' shapes."""
    spec = JobSpec.model_validate(
        {"name": "probe", "entrypoint": {"module": "runtime.train"}, "procs_per_node": RANKS}
    )
    cal = calibrate(
        threads=omp_threads(spec, len(os.sched_getaffinity(0))), ranks=RANKS,
        tokens=MICRO_BATCH * SEQ_LEN, hidden=128, ffn_hidden=default_ffn_hidden(128),
        heads=4, seq_len=SEQ_LEN, micro_batch=MICRO_BATCH,
    )  # fmt: skip
    return planner.AcceleratorSpec(**accelerator_fields(cal))


def plan_for(acc: planner.AcceleratorSpec, hidden: int) -> planner.Plan:
    """The plan of the job of this width."""
    model = model_spec(f"ref-h{hidden}", layers=4, hidden=hidden, heads=4, kv_heads=2, vocab=257)
    cluster = planner.ClusterSpec(gpu=acc, num_gpus=RANKS, num_nodes=1, gpus_per_node=RANKS)
    batch = RANKS * MICRO_BATCH
    training = planner.TrainingSpec(
        seq_len=SEQ_LEN, global_batch_seqs=batch, total_tokens=STEPS * batch * SEQ_LEN,
        precision="fp32",
    )  # fmt: skip
    layout = planner.Layout(dp=RANKS, sharding="zero3", micro_batch=MICRO_BATCH)
    return planner.make_plan(model, cluster, training, layout)


def run_job(store: Store, plan: planner.Plan) -> Path:
    """Launch the plan on the local backend and wait for it; its job directory."""
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
    record: JobRecord = api.launch(spec, store, cwd=REPO)
    deadline = time.monotonic() + JOB_CEILING_S
    while True:
        record = api.refresh(store, store.get(record.id) or record)
        if record.state.is_terminal:
            break
        if time.monotonic() > deadline:
            api.cancel(store, record)
            raise RuntimeError(f"job {record.id} still {record.state.value} after "
                               f"{JOB_CEILING_S:.0f} s")  # fmt: skip
        time.sleep(0.3)
    if record.state is not JobState.COMPLETED:
        raise RuntimeError(f"job {record.id} {record.state.value}: {record.reason}")
    return record.job_dir


@dataclass(frozen=True)
class HeldOut:
    """The held-out job's measured step time against the plan before and after calibration."""

    measured_s: float
    before_s: float
    after_s: float

    @property
    def error_before(self) -> float:
        return self.before_s / self.measured_s - 1.0

    @property
    def error_after(self) -> float:
        return self.after_s / self.measured_s - 1.0


def held_out_prediction(job_dir: Path, profile: Any) -> HeldOut:
    """Predict ``job_dir``'s step time with the calibrated accelerator of ``profile``."""
    from launcher.cli_calibrate import read_measured_job

    job = read_measured_job(str(job_dir))
    p = job.plan
    after_s = planner.estimate(
        p.model, p.cluster.model_copy(update={"gpu": profile.accelerator}), p.training, p.layout
    ).step.time_s
    return HeldOut(job.step_time_s, p.estimate.step.time_s, after_s)
