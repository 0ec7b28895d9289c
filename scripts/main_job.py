"""``make run``: plan a small model for this machine, train it, compare with the plan.

1. Calibrate this CPU as a planner accelerator (``cpu_calibration``: matmul, attention,
   memory and loopback rates at the model's shapes, one rank's share of the cores).
2. Plan the reference trainer's default model (4 layers, width 128, GQA, SwiGLU) with
   ``planner.make_plan``: 2 data-parallel FSDP ranks; the step count is chosen so the
   predicted training time is about ``--target-s`` seconds.
3. Launch it on the local backend through ``scalectl launch --plan``'s path
   (``launcher.plan_job``: 2 processes, elastic torchrun, the plan embedded: the trainer
   takes its shapes and layout from plan.json) and follow it with a progress bar.
4. Summarise predicted against measured step time, throughput and memory per rank.
5. Calibrate the planner from the job (``scalectl plan calibrate``): fit this CPU's
   efficiency constants and per-step overhead to the measured step time, write the
   profile next to the job, and show predicted against measured with it.

Ctrl-C cancels the job (the trainer checkpoints on the way out).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from contract.events import EventKind
from contract.jobdir import JobDir, read_all_jsonl
from launcher import LaunchFlags, api, plan_job
from launcher.commands import omp_threads
from launcher.progress_view import read_progress
from launcher.spec import JobSpec
from launcher.states import JobState
from launcher.store import JobRecord, Store
from runtime.processes import job_processes

RANKS = 2
MODEL = {"layers": 4, "hidden": 128, "heads": 4, "kv_heads": 2, "vocab": 257}
SEQ_LEN = 128
MICRO_BATCH = 8
WARMUP_STEPS_SKIPPED = 5
"""Steps left out of the measured step time: allocator warm-up and first collectives."""

console = Console()


def plan_for_this_machine(target_s: float, cal: Any) -> tuple[Any, int]:
    """(Plan, steps): the model planned on the calibrated CPU, about target_s of training."""
    from cpu_calibration import accelerator_fields
    from reference_model import model_spec

    import planner

    model = model_spec("reference-tiny", **MODEL)
    cluster = planner.ClusterSpec(
        gpu=planner.AcceleratorSpec(**accelerator_fields(cal)),
        num_gpus=RANKS,
        num_nodes=1,
        gpus_per_node=RANKS,
    )
    layout = planner.Layout(dp=RANKS, sharding="zero3", micro_batch=MICRO_BATCH)
    batch = RANKS * MICRO_BATCH

    def training(steps: int) -> Any:
        # The trainer computes in fp32 on a CPU: fp32 weights, gradients, activations and
        # AdamW states, no master copy, at the calibrated fp32 rate.
        return planner.TrainingSpec(
            seq_len=SEQ_LEN,
            global_batch_seqs=batch,
            total_tokens=steps * batch * SEQ_LEN,
            precision="fp32",
        )

    probe = planner.estimate(model, cluster, training(1), layout)
    steps = int(min(400, max(20, target_s / probe.step.time_s)))
    return planner.make_plan(model, cluster, training(steps), layout), steps


def peak_rss_mib(pid: int) -> float | None:
    """Peak resident memory of a process (VmHWM), MiB; None if it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def sample_rank_memory(job_id: str, peaks: dict[str, float]) -> None:
    """Update each rank's peak RSS from /proc (the ranks carry RANK in their env)."""
    for proc in job_processes(job_id):
        try:
            env = proc.environ()
        except Exception:
            continue
        rank = env.get("RANK")
        if rank is None or "torch.distributed.run" in " ".join(proc.cmdline()):
            continue
        peak = peak_rss_mib(proc.pid)
        if peak is not None:
            peaks[rank] = max(peaks.get(rank, 0.0), peak)


def follow(store: Store, record: JobRecord, steps: int, peaks: dict[str, float]) -> JobRecord:
    jobdir = JobDir(record.job_dir)
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("step {task.completed:>4.0f}/{task.total:.0f}"),
        TextColumn("loss {task.fields[loss]}"),
        TextColumn("{task.fields[tps]} tok/s (last step)"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("training", total=steps, loss="-", tps="-")
        while True:
            snap = read_progress(jobdir)
            sample_rank_memory(record.id, peaks)
            if snap.step is not None:
                bar.update(
                    task,
                    completed=snap.step,
                    loss=f"{snap.loss:.4f}" if snap.loss is not None else "-",
                    tps=f"{snap.tokens_per_s:,.0f}" if snap.tokens_per_s else "-",
                )
            record = api.refresh(store, store.get(record.id) or record)
            if record.state.is_terminal:
                return record
            time.sleep(0.5)


def measured_step_time_s(jobdir: JobDir) -> float | None:
    records = read_all_jsonl(jobdir.progress_file(0))
    times = [r["step_time_s"] for r in records if r.get("step", 0) > WARMUP_STEPS_SKIPPED]
    return statistics.median(times) if times else None


def summary(record: JobRecord, plan: Any, cal: Any, peaks: dict[str, float], wall_s: float):
    jobdir = JobDir(record.job_dir)
    est = plan.estimate
    progress = read_all_jsonl(jobdir.progress_file(0))
    tokens_per_step = plan.training.global_batch_tokens
    step_s = measured_step_time_s(jobdir)
    mem = est.memory_gib
    predicted_state_mib = (mem.params + mem.grads + mem.optimizer + mem.activations) * 1024
    measured_peak = max(peaks.values()) if peaks else None

    table = Table(title=f"job {record.id}: predicted against measured", title_justify="left")
    table.add_column("")
    table.add_column("predicted", justify="right")
    table.add_column("measured", justify="right")
    table.add_column("measured / predicted", justify="right")

    def row(name: str, predicted: float, measured: float | None, fmt: str) -> None:
        ratio = f"{measured / predicted:.2f}" if measured and predicted else "-"
        shown = format(measured, fmt) if measured is not None else "-"
        table.add_row(name, format(predicted, fmt), shown, ratio)

    row("step time (ms, median)", est.step.time_s * 1000, step_s * 1000 if step_s else None, ".1f")
    row(
        "tokens/s (job, median step)",
        est.step.tokens_per_s,
        tokens_per_step / step_s if step_s else None,
        ",.0f",
    )
    above_floor = measured_peak - cal.baseline_rss_mib if measured_peak is not None else None
    row("memory/rank above floor (MiB)", predicted_state_mib, above_floor, ",.1f")
    table.add_row(
        "peak RSS/rank (MiB)",
        f"{mem.total * 1024:,.0f} (incl. {mem.other * 1024:,.0f} 'other')",
        f"{measured_peak:,.0f}" if measured_peak is not None else "-",
        "",
    )
    console.print(table)
    losses = [r["loss"] for r in progress if isinstance(r.get("loss"), int | float)]
    evals = [r["eval_loss"] for r in progress if isinstance(r.get("eval_loss"), int | float)]
    started = [e for e in read_all_jsonl(jobdir.events) if e.get("event") == EventKind.STARTED]
    first_eval = next((e.get("eval_loss") for e in started if e.get("source") == "trainer"), None)
    if losses:
        console.print(f"training loss {losses[0]:.4f} → {losses[-1]:.4f} over {len(losses)} steps")
    if evals and first_eval is not None:
        console.print(f"held-out loss {first_eval:.4f} → {evals[-1]:.4f}")
    console.print(
        f"wall time {wall_s:.1f} s; calibration: {cal.gemm_tflops * 1000:.1f} GFLOP/s matmul, "
        f"{cal.memory_gb_s:.1f} GB/s copy, {cal.loopback_gb_s:.2f} GB/s loopback, "
        f"{cal.threads} thread(s)/rank, {cal.seconds:.1f} s to measure"
    )
    console.print(
        "memory: the planner's 'other' is a GPU's CUDA context and NCCL buffers; on a CPU the "
        "comparable floor is a process with torch, a gloo group, FSDP and DCP loaded "
        f"({cal.baseline_rss_mib:,.0f} MiB measured here), so the memory row compares the "
        "planner's weights + gradients + optimizer + activations with what a rank holds "
        "above that floor, planned in fp32 as the trainer runs on a CPU; the allocator's "
        "caching and per-step temporaries are not in the plan."
    )
    # Paths and commands on lines of their own, never broken by rich (copy and paste).
    console.print("job directory:")
    console.print(Text(f"  {record.job_dir}"), soft_wrap=True)
    console.print(Text(f"  scalectl logs {record.id}"), soft_wrap=True)


def calibrate_planner(record: JobRecord) -> None:
    """Step 5: ``scalectl plan calibrate JOB -o <job dir>/calibration.yaml``, in-process."""
    from launcher.cli_calibrate import calibrate_jobs
    from planner.errors import PlanInputError
    from planner.render_calibration import render_profile

    path = record.job_dir / "calibration.yaml"
    try:
        profile = calibrate_jobs([str(record.job_dir)], str(path))
    except PlanInputError as exc:  # e.g. a job cut short before its steady state
        console.print(f"[bold]5. calibration skipped[/]: {exc}")
        return
    console.print(f"[bold]5. planner calibrated[/] from job {record.id}, as")
    console.print(Text(f"  scalectl plan calibrate {record.id} -o {path}"), soft_wrap=True)
    render_profile(profile, str(path), console)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target-s", type=float, default=45.0, help="Training time to plan.")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from cpu_calibration import calibrate

    from runtime.train.config import default_ffn_hidden

    cpus = len(os.sched_getaffinity(0))
    probe_spec = JobSpec.model_validate(
        {"name": "probe", "entrypoint": {"module": "runtime.train"}, "procs_per_node": RANKS}
    )
    threads = omp_threads(probe_spec, cpus)
    console.print(f"[bold]1. calibrating this CPU[/] ({cpus} cores, {threads} thread(s)/rank)")
    hidden = MODEL["hidden"]
    cal = calibrate(
        threads=threads,
        ranks=RANKS,
        tokens=MICRO_BATCH * SEQ_LEN,
        hidden=hidden,
        ffn_hidden=default_ffn_hidden(hidden),
        heads=MODEL["heads"],
        seq_len=SEQ_LEN,
        micro_batch=MICRO_BATCH,
        report=lambda line: console.print(f"   {line}"),
    )
    plan, steps = plan_for_this_machine(args.target_s, cal)
    est = plan.estimate
    console.print(
        f"[bold]2. plan[/]: {plan.model.name}, {plan.model.num_params / 1e6:.2f} M parameters, "
        f"dp={RANKS} FSDP, micro-batch {MICRO_BATCH}×{SEQ_LEN}; predicted "
        f"{est.step.time_s * 1000:.0f} ms/step, {est.step.tokens_per_s:,.0f} tok/s → {steps} steps"
    )
    # Shapes, layout, micro-batch, accumulation and steps come from the plan.
    flags = LaunchFlags(name="main-job", ckpt_every=max(10, steps // 2), keep_last=2)
    spec = plan_job(plan, flags, ["--eval-every", str(steps), "--log-every", "10"]).spec
    peaks: dict[str, float] = {}
    with Store() as store:
        record = api.launch(spec, store)
        console.print(
            f"[bold]3. launched[/] job {record.id} on the local backend "
            f"(logs: scalectl logs {record.id} -f)"
        )
        start = time.monotonic()
        try:
            record = follow(store, record, steps, peaks)
        except KeyboardInterrupt:
            console.print("interrupted: cancelling the job (it checkpoints first)")
            outcome = api.cancel(store, store.get(record.id) or record)
            console.print(f"job {outcome.record.id} {outcome.record.state.value}")
            return 130
        wall_s = time.monotonic() - start
    reason = f" ({record.reason})" if record.reason else ""
    console.print(f"[bold]4. job {record.state.value}[/]{reason}")
    summary(record, plan, cal, peaks, wall_s)
    if record.state is JobState.COMPLETED:
        calibrate_planner(record)
    return 0 if record.state is JobState.COMPLETED else 1


if __name__ == "__main__":
    sys.exit(main())
