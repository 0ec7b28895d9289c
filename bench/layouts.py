"""Plan against measured, per layout (issue 16, item 8).

For each layout of the parity tests (tests/runtime/test_train_layouts.py): plan it on this
CPU calibrated as a planner accelerator (scripts/cpu_calibration.py, one rank's share of
the cores), launch that Plan for real on the local backend through the Python API
(``scalectl.launch``: the path of ``scalectl launch --plan``), and print the predicted and
measured step time and memory per rank with their ratio (measured / predicted, as
``contract.plan.ratio``). 4 gloo ranks, fp32, a tiny Llama-shaped model, global batch
8 sequences of 128 tokens; the first ``--skip`` steps of each job are warm-up and left
out; a job's step time is the median of its slowest rank (a synchronous step waits for it).

The planner is used as a user would: ``planner.make_plan`` with the layout pinned, on the
calibrated CPU, and with a calibration profile applied (``scalectl plan calibrate``'s fit,
``planner.calibration.fit_profile``) fitted to two of the layouts measured here
(``FIT_LAYOUTS``: their "calibrated" prediction is in-sample, marked ``fit``); the others
are planned with the profile before they run. ``--profile FILE`` uses a profile written by
``scalectl plan calibrate`` instead, ``--raw`` plans with the calibrated CPU only.

Baseline, measured first in the same run: one process training the same global batch
(micro-batch 2, 4 accumulation steps, all of the machine's cores); every layout's
measured step time is also shown relative to it, and it runs again at the end to show
how far the machine's load drifted meanwhile. ~3 minutes on the 2-core dev machine when
it is quiet, 7-10 when other work shares it (figures: bench/RESULTS.md).

Memory: the planner's per-GPU memory is weights + gradients + optimizer + activations,
plus an 'other' term that is a GPU's CUDA context and NCCL buffers; on a CPU the
comparable figure is a rank's peak resident memory (``max_rss_mib`` of its progress
records, ``runtime/train/measure.py``) above the framework floor (a process with torch, a
gloo group, FSDP and DCP loaded, measured here), as ``make run`` compares it.

    .venv/bin/python bench/layouts.py [--only "dp2 tp2 sp"] [--steps 15] [--skip 5]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO))

from contract.env import HOME_ENV  # noqa: E402
from contract.plan import ratio  # noqa: E402

RANKS = 4
MODEL = {"layers": 4, "hidden": 128, "heads": 4, "kv_heads": 2, "vocab": 257}
"""The reference trainer's default shape (``make run``'s model): Llama-style, GQA 4/2."""
GPT = {"activation": "gelu", "norm": "layernorm", "bias": True, "tied_embeddings": True}
"""A GPT-style model: GELU MLP of 4 x hidden, LayerNorm, biases, tied embeddings."""
MOE = {"num_experts": 4, "top_k": 2, "moe_ffn_hidden_size": 128, "dense_first_layers": 1}
"""The MoE model (issue 18): 4 routed SwiGLU experts of width 128, top-2, a dense first block."""
SEQ_LEN = 128
MICRO_BATCH = 2
GLOBAL_BATCH_SEQS = 8
"""As the parity tests: micro-batch 2 x dp x accumulation = 8 sequences on every layout."""
JOB_CEILING_S = 150.0
"""A job of 15 steps takes 10-25 s here under load; one still running after this is stuck."""
TRAINER_ARGS = ("--eval-every", "0", "--ckpt-every", "0", "--log-every", "100")
"""No held-out evaluation and no checkpoint before the last step: they are not in a step."""


@dataclass(frozen=True)
class Case:
    """One layout of the bench: the planner Layout's fields and the model's style."""

    name: str
    """As the parity tests name it."""
    layout: Mapping[str, Any]
    """Fields of ``planner.Layout`` besides the micro-batch."""
    gpt: bool = False
    """Train the GPT-style model instead of the Llama-style one."""
    moe: bool = False
    """Train the MoE model (:data:`MOE`) instead of the dense one."""
    ranks: int = RANKS
    """Processes (the layout's product)."""


BASELINE = Case("1 process", {"dp": 1, "sharding": "none"}, ranks=1)
GPT_BASELINE = Case("gpt 1 process", {"dp": 1, "sharding": "none"}, gpt=True, ranks=1)

CASES: tuple[Case, ...] = (
    Case("dp4 zero3", {"dp": 4, "sharding": "zero3"}),
    Case("dp2 tp2 sp", {"dp": 2, "tp": 2, "sharding": "zero3", "sequence_parallel": True}),
    Case("dp2 tp2 no sp", {"dp": 2, "tp": 2, "sharding": "zero3", "sequence_parallel": False}),
    Case("hsdp 2x2", {"dp": 4, "sharding": "hsdp", "hsdp_shard_size": 2}),
    Case("dp4 zero1", {"dp": 4, "sharding": "zero1"}),
    Case("dp4 recompute full", {"dp": 4, "sharding": "zero3", "recompute": "full"}),
    Case(
        "gpt dp2 tp2 sp",
        {"dp": 2, "tp": 2, "sharding": "zero3", "sequence_parallel": True},
        gpt=True,
    ),
    # Issue 18: pipelines, context parallelism, experts (2 blocks a stage, 2 micro-batches).
    Case("pp2 gpipe dp2", {"dp": 2, "pp": 2, "sharding": "zero3", "schedule": "gpipe"}),
    Case("pp2 1f1b dp2", {"dp": 2, "pp": 2, "sharding": "zero3"}),
    Case("pp2 interleave2 dp2", {"dp": 2, "pp": 2, "interleave": 2, "sharding": "zero3"}),
    Case("cp2 dp2", {"dp": 2, "cp": 2, "sharding": "zero3", "cp_impl": "allgather"}),
    Case("moe ep2 dp4", {"dp": 4, "ep": 2, "sharding": "zero3"}, moe=True),
)
"""The layouts of issue 16 item 5 (recompute none is ``dp4 zero3``) and issue 18 item 4."""
FIT_LAYOUTS = ("dp4 zero3", "dp2 tp2 sp")
"""The profile is fitted to these two: data-parallel and tensor-parallel communication."""


@dataclass(frozen=True)
class Measured:
    """What one job measured."""

    step_time_s: float
    """Median steady-state step time of the slowest rank, s."""
    steps_used: int
    """Steps that median is over."""
    peak_rss_mib: float
    """Largest peak resident memory of any rank, MiB."""
    forward_s: float = 0.0
    """Largest median over the ranks of the blocks' forward time (``compute_s`` of the
    progress records: the rank's own forward, FSDP's all-gather waits left out, TP's
    collectives inside a block left in), s."""
    bubble_fraction: float | None = None
    """Pipelines: the median over the ranks of each rank's median share of the schedule it
    idled (``bubble_fraction`` of the progress records)."""


@dataclass
class Row:
    """One line of the report."""

    name: str
    predicted_s: float
    """Step time the launched plan predicted, s."""
    measured: Measured
    predicted_mib: float
    """Weights + gradients + optimizer + activations per rank, MiB."""
    floor_mib: float
    """Framework floor subtracted from the measured peak RSS, MiB."""
    baseline_s: float | None = None
    """The one-process run's measured step time, s (None for the baseline itself)."""
    raw_s: float | None = None
    """Step time planned with the calibrated CPU alone (no profile), when it differs."""
    notes: list[str] = field(default_factory=list)
    """Printed after the figures."""
    breakdown: dict[str, float] = field(default_factory=dict)
    """The predicting plan's step-time terms (``Estimate.step.breakdown``), s."""
    raw_breakdown: dict[str, float] = field(default_factory=dict)
    """The terms of the plan on the calibrated CPU alone, when a profile predicted."""


def _median_after(records: Sequence[Mapping[str, Any]], key: str, skip: int) -> list[float]:
    return [
        float(r[key])
        for r in records
        if isinstance(r.get("step"), int)
        and r["step"] > skip
        and isinstance(r.get(key), int | float)
    ]


def steady_step(records_by_rank: Mapping[str, Sequence[Mapping[str, Any]]], skip: int) -> Measured:
    """Median step time after ``skip`` warm-up steps of the slowest rank, the largest peak
    RSS and forward time of any rank; ValueError when no rank has a step past the warm-up."""
    medians: list[tuple[float, int]] = []
    peak = forward = 0.0
    bubbles: list[float] = []
    for records in records_by_rank.values():
        idle = _median_after(records, "bubble_fraction", skip)
        if idle:
            bubbles.append(statistics.median(idle))
        times = _median_after(records, "step_time_s", skip)
        if times:
            medians.append((statistics.median(times), len(times)))
        compute = _median_after(records, "compute_s", skip)
        forward = max(forward, statistics.median(compute) if compute else 0.0)
        peak = max([peak, *(float(r["max_rss_mib"]) for r in records if "max_rss_mib" in r)])
    if not medians:
        raise ValueError(f"no progress record past the first {skip} (warm-up) steps")
    step_s, used = max(medians)
    bubble = statistics.median(bubbles) if bubbles else None
    return Measured(step_s, used, peak, forward, bubble)


def _ratio_text(measured: float, predicted: float) -> str:
    value = ratio(measured, predicted)
    return f"{value:5.2f}" if value is not None else "    -"


HEADER = (
    f"{'layout':<20} {'step pred':>9} {'meas':>7} {'ratio':>5} {'vs 1p':>5}  "
    f"{'mem pred':>8} {'meas':>7} {'ratio':>5}  notes"
)


def format_row(row: Row) -> str:
    """One layout's line: step time (ms) predicted, measured, measured/predicted, measured
    relative to the one-process run; memory per rank (MiB above the floor) likewise."""
    m = row.measured
    above = m.peak_rss_mib - row.floor_mib
    rel = f"{m.step_time_s / row.baseline_s:5.2f}" if row.baseline_s else "    -"
    notes = list(row.notes)
    if row.raw_s is not None:
        raw = _ratio_text(m.step_time_s, row.raw_s).strip()
        notes.insert(0, f"uncalibrated {row.raw_s * 1e3:.1f} ms ({raw})")
    notes.append(f"fwd {m.forward_s * 1e3:.1f} ms; rss {m.peak_rss_mib:,.0f} MiB")
    return (
        f"{row.name:<20} {row.predicted_s * 1e3:7.1f}ms {m.step_time_s * 1e3:5.1f}ms "
        f"{_ratio_text(m.step_time_s, row.predicted_s)} {rel}  "
        f"{row.predicted_mib:6.1f}Mi {above:5.1f}Mi {_ratio_text(above, row.predicted_mib)}  "
        + "; ".join(notes)
        + (f"\n{'':<21}{terms_text(row.breakdown)}" if row.breakdown else "")
        + (f"\n{'':<21}uncalibrated {terms_text(row.raw_breakdown)}" if row.raw_breakdown else "")
    )


def terms_text(breakdown: Mapping[str, float]) -> str:
    """The plan's step-time terms that are not zero, in ms ('gemm 20.1 + dp_comm 3.2')."""
    parts = [
        f"{key.removesuffix('_s')} {seconds * 1e3:.1f}"
        for key, seconds in breakdown.items()
        if seconds > 5e-5
    ]
    return "plan terms (ms): " + " + ".join(parts)


def plan_case(case: Case, accelerator: Any, steps: int) -> Any:
    """The planner's Plan of ``case`` on ``accelerator`` (layout pinned), ``steps`` steps."""
    from reference_model import model_spec

    import planner

    model = model_spec(f"bench-{'gpt' if case.gpt else 'moe' if case.moe else 'llama'}", **MODEL)
    if case.gpt:
        model = model.model_copy(update={**GPT, "ffn_hidden_size": 4 * MODEL["hidden"]})
    if case.moe:
        model = planner.ModelSpec(**{**model.model_dump(exclude_unset=True), **MOE})
    cluster = planner.ClusterSpec(
        gpu=accelerator, num_gpus=case.ranks, num_nodes=1, gpus_per_node=case.ranks
    )
    # The trainer computes in fp32 on a CPU: planned in fp32, as `make run` plans.
    training = planner.TrainingSpec(
        seq_len=SEQ_LEN,
        global_batch_seqs=GLOBAL_BATCH_SEQS,
        total_tokens=steps * GLOBAL_BATCH_SEQS * SEQ_LEN,
        precision="fp32",
    )
    layout = planner.Layout(micro_batch=MICRO_BATCH, **case.layout)
    return planner.make_plan(model, cluster, training, layout)


def state_mib(plan: Any) -> float:
    """The plan's weights + gradients + optimizer + activations per rank, MiB."""
    mem = plan.estimate.memory_gib
    return (mem.params + mem.grads + mem.optimizer + mem.activations) * 1024.0


def framework_floor_mib() -> float:
    """Peak RSS of a fresh process with what every rank loads before its model (torch, a
    gloo group, FSDP, DCP), MiB: measured in a child so this bench's own imports (planner,
    launcher, numpy) are not counted."""
    import subprocess

    code = "from cpu_calibration import framework_floor_mib as f; print(f())"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "scripts"), str(REPO)])}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip().splitlines()[-1])


CALIBRATIONS = 5
"""Calibrations per thread count; each rate is the fastest of them, as cpu_calibration
takes the fastest of its timings: what the machine delivers between interruptions. On
this 2-vCPU VM 15 of 18 2-thread matmul timings (6 fresh processes, load average ~2)
came out 2.3-2.8 GFLOP/s against 150-305 undisturbed, while 1-thread ones stayed at
150-175; a median of 3 calibrations was still ~60x slow in some runs."""


def calibrated_cpu(ranks: int) -> tuple[Any, Any]:
    """(AcceleratorSpec, Calibration): this CPU measured with one rank's share of the cores
    when ``ranks`` ranks share it, at the model's shapes (as ``make run`` does); every
    rate the fastest of ``CALIBRATIONS`` calibrations."""
    from cpu_calibration import accelerator_fields, calibrate

    import planner
    from launcher.commands import omp_threads
    from launcher.spec import JobSpec
    from runtime.train.config import default_ffn_hidden

    spec = JobSpec.model_validate(
        {"name": "probe", "entrypoint": {"module": "runtime.train"}, "procs_per_node": ranks}
    )
    hidden = MODEL["hidden"]
    runs = [
        calibrate(
            threads=omp_threads(spec, len(os.sched_getaffinity(0))),
            ranks=ranks,
            tokens=MICRO_BATCH * SEQ_LEN,
            hidden=hidden,
            ffn_hidden=default_ffn_hidden(hidden),
            heads=MODEL["heads"],
            seq_len=SEQ_LEN,
            micro_batch=MICRO_BATCH,
        )
        for _ in range(CALIBRATIONS)
    ]
    rates = ("gemm_tflops", "attention_fwd_tflops", "attention_bwd_tflops", "memory_gb_s",
             "loopback_gb_s")  # fmt: skip
    cal = dataclasses.replace(
        runs[0], **{name: max(getattr(r, name) for r in runs) for name in rates}
    )
    return planner.AcceleratorSpec(**accelerator_fields(cal)), cal


def run_job(case: Case, plan: Any, skip: int) -> tuple[Path, Measured]:
    """Launch ``plan`` on the local backend (``scalectl.launch``), wait, and measure it."""
    from contract.jobdir import JobDir, read_all_jsonl
    from launcher.states import JobState
    from scalectl import launch

    slug = case.name.replace(" ", "-")
    job = launch(plan, args=TRAINER_ARGS, name=f"bench-{slug}")
    try:
        state = job.wait(timeout=JOB_CEILING_S)
    except TimeoutError:
        job.cancel()
        raise
    if state is not JobState.COMPLETED:
        tail = "".join(job.logs(0).splitlines(keepends=True)[-15:])
        raise RuntimeError(f"{case.name}: job {job.id} {state.value}\n{tail}")
    ranks = {p.stem: read_all_jsonl(p) for p in JobDir(job.job_dir).progress_files()}
    return job.job_dir, steady_step(ranks, skip)


def selected(only: str | None, raw: bool, have_profile: bool) -> list[Case]:
    """The cases to run, in order: the fit layouts first (when a profile is to be fitted),
    then the others; ``only`` names one (ValueError naming the choices if unknown)."""
    names = [case.name for case in CASES]
    if only is not None and only not in names:
        raise ValueError(f"--only {only!r}: use one of {', '.join(repr(n) for n in names)}")
    fit = [] if raw or have_profile else list(FIT_LAYOUTS)
    wanted = fit + [n for n in names if (only is None or n == only) and n not in fit]
    return [next(case for case in CASES if case.name == name) for name in wanted]


def _row(case: Case, plan: Any, measured: Measured, floor: float, base: float | None) -> Row:
    est = plan.estimate
    row = Row(
        case.name, est.step.time_s, measured, state_mib(plan), floor, base,
        breakdown=dict(est.step.breakdown),
    )  # fmt: skip
    if measured.bubble_fraction is not None:
        row.notes.append(bubble_text(est.step.bubble_fraction, measured.bubble_fraction))
    return row


def bubble_text(planned: float, measured: float) -> str:
    """A pipeline's bubble, planned beside measured (share of the step a stage idles)."""
    return (
        f"bubble plan {planned:.2f} meas {measured:.2f} ({_ratio_text(measured, planned).strip()})"
    )


def _fit(fitted: list[tuple[Case, Path, Any, Measured]], floor: float, base: float) -> Any:
    """Fit the profile to the fit layouts' jobs as ``scalectl plan calibrate`` does, print
    it and their rows (in-sample); the profile."""
    from launcher.cli_calibrate import read_measured_job
    from planner.calibration import fit_profile

    profile = fit_profile([read_measured_job(str(job_dir)) for _, job_dir, _, _ in fitted])
    factors = ", ".join(f"{g} x{f:.2f}" for g, f in profile.time_factors.items())
    print(
        f"# profile fitted to {', '.join(c.name for c, *_ in fitted)}: time factors "
        f"{factors}; overhead {profile.step_overhead_s * 1e3:.1f} ms/step",
        flush=True,
    )
    for case, _, plan, measured in fitted:
        calibrated = plan_case(case, profile.accelerator, plan.estimate.train.steps)
        row = _row(case, calibrated, measured, floor, base)
        row.raw_s, row.notes = plan.estimate.step.time_s, ["fit (in-sample)"]
        row.raw_breakdown = dict(plan.estimate.step.breakdown)
        print(format_row(row), flush=True)
    return profile


def _baseline(
    case: Case, one: Any, args: argparse.Namespace, floor: float, first: float | None
) -> float:
    """Run and print the one-process baseline; its measured step time, s. ``first``: the
    step time of the same baseline earlier in the run (this run is the repeat)."""
    plan = plan_case(case, one, args.steps)
    _, measured = run_job(case, plan, args.skip)
    row = _row(case, plan, measured, floor, first)
    if first is None:
        row.notes.append("baseline, calibrated CPU, no profile")
    else:
        row.name += " again"
        row.notes.append("the baseline repeated at the end ('vs 1p': its drift)")
    print(format_row(row), flush=True)
    return measured.step_time_s


def run(args: argparse.Namespace, profile: Any) -> None:
    """Calibrate, run the baseline(s), then every selected layout; print as they end."""
    from planner.profile import profiled_accelerator

    start = time.monotonic()
    cases = selected(args.only, args.raw, profile is not None)
    floor = framework_floor_mib()
    # The one-process (all cores) rates first, with torch's default threads untouched:
    # the 2-thread rates are the fragile ones here (see CALIBRATIONS).
    one, cal_one = calibrated_cpu(1)
    cpu, cal = calibrated_cpu(RANKS)
    print(
        f"# this CPU: {cal.gemm_tflops * 1e3:.1f} GFLOP/s fp32 matmul at {cal.threads} "
        f"thread(s)/rank ({cal_one.gemm_tflops * 1e3:.1f} at {cal_one.threads}), "
        f"{cal.memory_gb_s:.1f} GB/s copy, {cal.loopback_gb_s:.2f} GB/s loopback; "
        f"framework floor {floor:,.0f} MiB; {args.steps} steps, first {args.skip} left out",
        flush=True,
    )
    # A --profile fitted for another accelerator (a GPU's) is refused, as `plan --profile`.
    planned_on = cpu if profile is None else profiled_accelerator(profile, cpu)
    print(HEADER, flush=True)
    base: dict[bool, float] = {}
    for case in (BASELINE, GPT_BASELINE):
        if not case.gpt or any(c.gpt for c in cases):
            base[case.gpt] = _baseline(case, one, args, floor, None)
    fitted: list[tuple[Case, Path, Any, Measured]] = []
    for case in cases:
        if case.name in FIT_LAYOUTS and not args.raw and profile is None:
            plan = plan_case(case, cpu, args.steps)
            job_dir, measured = run_job(case, plan, args.skip)
            fitted.append((case, job_dir, plan, measured))
            if len(fitted) == len(FIT_LAYOUTS):
                profile = _fit(fitted, floor, base[False])
                planned_on = profile.accelerator
            continue
        plan = plan_case(case, planned_on, args.steps)
        _, measured = run_job(case, plan, args.skip)
        row = _row(case, plan, measured, floor, base[case.gpt])
        if planned_on is not cpu:
            raw = plan_case(case, cpu, args.steps).estimate.step
            row.raw_s, row.raw_breakdown = raw.time_s, dict(raw.breakdown)
        print(format_row(row), flush=True)
    # The machine's load drifts over minutes: the baseline again shows by how much.
    _baseline(BASELINE, one, args, floor, base[False])
    print(f"# wall time {time.monotonic() - start:.0f} s", flush=True)


def main(argv: list[str] | None = None) -> int:
    from planner.calibration import MIN_STEADY_STEPS, WARMUP_STEPS
    from planner.errors import PlanInputError
    from planner.profile import load_profile

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", help="Run one layout (and the baseline) by its name.")
    parser.add_argument("--steps", type=int, default=15, help="Steps of every job.")
    parser.add_argument("--skip", type=int, default=WARMUP_STEPS, help="Warm-up steps left out.")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--raw", action="store_true", help="Plan with the calibrated CPU only.")
    group.add_argument("--profile", help="Plan with this `scalectl plan calibrate` profile.")
    args = parser.parse_args(argv)
    fit_steps = WARMUP_STEPS + MIN_STEADY_STEPS
    problem = None
    if args.skip < 0 or args.steps <= args.skip:
        problem = f"--steps {args.steps}: must exceed --skip {args.skip} (warm-up left out)"
    elif not args.raw and not args.profile and args.steps < fit_steps:
        problem = (
            f"--steps {args.steps}: fitting the profile needs at least {fit_steps}; "
            "give more steps, --raw or --profile FILE"
        )
    profile = None
    try:
        selected(args.only, args.raw, bool(args.profile))
        profile = load_profile(args.profile) if args.profile else None
    except (ValueError, PlanInputError) as exc:
        problem = problem or str(exc)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    os.chdir(REPO)
    # The ranks import this checkout's code, and the jobs go to a registry of their own.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    with tempfile.TemporaryDirectory() as home:
        os.environ[HOME_ENV] = home
        try:
            run(args, profile)
        except PlanInputError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
