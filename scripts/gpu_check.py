"""On a machine with an NVIDIA GPU: NVML telemetry, and the trainer's MFU against the plan.

Run where a GPU exists (it refuses without one, exit 2)::

    PYTHONPATH=. python3 scripts/gpu_check.py --out OUTDIR            # a few minutes
    PYTHONPATH=. python3 scripts/gpu_check.py --only all --out OUTDIR  # every config
    PYTHONPATH=. python3 scripts/gpu_check.py --cpu-dry-run --out OUTDIR  # CPU, seconds

1. NVML: open the sampler, print two samples of every GPU (``runtime.telemetry``).
2. For each model in ``CONFIGS`` (by default ``DEFAULT``: Llama 3 8B's shape with 8 of its
   32 layers, which fits one 80 GB GPU, compiled per block, with the chunked loss): plan
   it with the planner on the catalog entry of this GPU (one GPU, bf16 mixed precision,
   FSDP), launch the reference trainer by ``scalectl launch --plan``'s path
   (``launcher.plan_job``: node agent, elastic torchrun, NCCL, telemetry sampled by the
   agent), wait for it, and compare the planner's step time, MFU and per-GPU memory with
   the trainer's progress records (median step time after the warm-up steps, peak
   ``torch.cuda.max_memory_allocated``) and the agent's NVML telemetry (power, energy).
3. Print the measured MFU against the plan's and against torchtitan's published 33-39 %
   (``TORCHTITAN_MFU``), as ratios; write everything to ``OUTDIR/gpu_check.json``.

``--cpu-dry-run`` runs the same path on this CPU with a tiny model (``DRY_CONFIG``, planned
on the CPU as ``scripts/cpu_calibration.py`` measures it, fp32): what a test runs so the
script cannot rot where no GPU is lent. Its MFU is a CPU's and is not compared with
torchtitan's. Each stage is independent: one that fails is reported and the next runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Any

WARMUP_STEPS_SKIPPED = 5
"""Steps left out of the measured step time: compilation (step 1), cuBLAS/NCCL warm-up
and the allocator."""

TORCHTITAN_MFU = (0.33, 0.39)
"""Llama 3.1 8B, 1D parallelism (FSDP) on 8 or 128 H100 GPUs without Float8: "33% to 39%
MFU" (pytorch/torchtitan, docs/performance.md, the Llama 3.1 section measured on Grand
Teton hosts: H100 96 GB HBM2e at the default 500 W power limit, local batch size 2,
selective activation checkpointing, with and without torch.compile)."""

KERNEL_ARGS = ["--loss-chunks", "8", "--no-final-checkpoint"]
"""Trainer flags of the MFU configs (which also plan ``compile``: each block compiled): the
loss in 8 sequence chunks, and no final checkpoint (multi-GB, and nothing resumes it)."""

LLAMA3_8B = {"hidden": 4096, "heads": 32, "kv_heads": 8, "ffn_hidden": 14336, "vocab": 128256}
"""Llama 3 8B's shapes (Meta, "The Llama 3 Herd of Models", 2024, table 3)."""

CONFIGS: list[dict[str, Any]] = [
    {
        # 2.8 B parameters: planned at 63 GiB on an H100 (bf16, AdamW, no recompute); its
        # checkpoint would be 45 GB.
        "name": "llama3-8b-shape-8l",
        "model": {"layers": 8, **LLAMA3_8B},
        "seq_len": 8192,
        "micro_batch": 1,
        "steps": 20,
        "compile": True,
        "trainer_args": KERNEL_ARGS,
    },
    {
        "name": "llama-350m",
        "model": {"layers": 24, "hidden": 1024, "heads": 16, "kv_heads": 8, "vocab": 32000},
        "seq_len": 2048,
        "micro_batch": 8,
        "steps": 30,
    },
    {
        "name": "llama-1b",
        "model": {"layers": 16, "hidden": 2048, "heads": 16, "kv_heads": 8, "vocab": 32000},
        "seq_len": 2048,
        "micro_batch": 4,
        "steps": 25,
    },
    {
        # The node agent's recovery on NCCL: a SIGKILLed rank and a Python exception, each
        # resumed from the newest checkpoint in place (summary.json: faults).
        "name": "llama-350m-faults",
        "model": {"layers": 24, "hidden": 1024, "heads": 16, "kv_heads": 8, "vocab": 32000},
        "seq_len": 2048,
        "micro_batch": 8,
        "steps": 40,
        "ckpt_every": 10,
        "faults": "kill@step=15;crash@step=27",
    },
]

DEFAULT = ("llama3-8b-shape-8l",)
"""Configs a plain run does (``--only all``: every config)."""

DRY_CONFIG: dict[str, Any] = {
    "name": "cpu-dry-run",
    "model": {"layers": 2, "hidden": 64, "heads": 4, "kv_heads": 2, "vocab": 512},
    "seq_len": 64,
    "micro_batch": 2,
    "steps": 4,
    # Eager: inductor's first compile on a fresh 2-core CPU takes over a minute without a
    # line of output, longer than a test may wait in silence (tests/polling.py); the
    # compiled path is checked in-process by tests/runtime/test_train_kernels.py.
    "compile": False,
    "trainer_args": KERNEL_ARGS,
}
"""The ``--cpu-dry-run`` model: seconds per step on one core."""

CATALOG_BY_NAME = (
    ("H200", "H200-SXM-141GB"),
    ("H100 PCIe", "H100-PCIe"),
    ("H100", "H100-SXM-80GB"),
)
"""Substring of the CUDA device name → planner catalog entry (first match wins)."""


def check_nvml() -> dict[str, Any]:
    from runtime.telemetry import NvmlSampler
    from runtime.telemetry.snapshots import as_dict

    sampler = NvmlSampler.open()
    try:
        first = sampler.sample(time.monotonic())
        time.sleep(0.5)
        second = sampler.sample(time.monotonic())
    finally:
        sampler.close()
    gpus = [as_dict(g) for g in second]
    for gpu in gpus:
        print("nvml:", json.dumps(gpu))
    missing = sorted({k for g in gpus for k, v in g.items() if v is None})
    return {
        "gpu_count": len(gpus),
        "first": [as_dict(g) for g in first],
        "second": gpus,
        "fields_na": missing,
    }


def plan_for(config: dict[str, Any], gpu: Any, precision: str = "bf16") -> Any:
    """The Plan of one config on one ``gpu`` (a catalog name or an ``AcceleratorSpec``)."""
    from reference_model import model_spec

    import planner

    model = model_spec(config["name"], **config["model"])
    accelerator = planner.get_gpu(gpu) if isinstance(gpu, str) else gpu
    cluster = planner.ClusterSpec(gpu=accelerator, num_gpus=1, num_nodes=1, gpus_per_node=1)
    batch = config["micro_batch"]
    training = planner.TrainingSpec(
        seq_len=config["seq_len"],
        global_batch_seqs=batch,
        total_tokens=config["steps"] * batch * config["seq_len"],
        precision=precision,
        compile=config.get("compile", False),
    )
    layout = planner.Layout(dp=1, sharding="zero3", micro_batch=batch)
    return planner.make_plan(model, cluster, training, layout)


def calibrated_cpu(config: dict[str, Any]) -> Any:
    """This CPU as a planner accelerator at the dry-run model's shapes (one thread)."""
    from cpu_calibration import accelerator_fields, calibrate

    import planner
    from runtime.train.config import default_ffn_hidden

    model, seq, batch = config["model"], config["seq_len"], config["micro_batch"]
    cal = calibrate(threads=1, ranks=1, tokens=batch * seq, hidden=model["hidden"],
                    ffn_hidden=default_ffn_hidden(model["hidden"]), heads=model["heads"],
                    seq_len=seq, micro_batch=batch,
                    report=lambda line: print(f"  calibration: {line}", flush=True))  # fmt: skip
    return planner.AcceleratorSpec(**accelerator_fields(cal))


def job_spec(config: dict[str, Any], plan: Any, gpus: int = 1) -> Any:
    """The JobSpec of one config, by `scalectl launch --plan`'s path (launcher.plan_job)."""
    from contract.env import FAULTS_ENV
    from launcher import LaunchFlags, plan_job

    # One rank on one GPU; shapes and layout from the plan.
    flags = LaunchFlags(
        name=f"gpu-check-{config['name']}",
        gpus_per_node=gpus,
        max_restarts=3 if config.get("faults") else 0,
        env=[f"{FAULTS_ENV}={config['faults']}"] if config.get("faults") else [],
    )
    words = ["--steps", str(config["steps"]), "--eval-every", "0", "--log-every", "5"]
    words += ["--ckpt-every", str(config.get("ckpt_every", 0)), *config.get("trainer_args", [])]
    return plan_job(plan, flags, words).spec


def run_job(
    config: dict[str, Any], plan: Any, timeout_s: float, skipped: int = WARMUP_STEPS_SKIPPED
) -> dict[str, Any]:
    import torch

    from contract.events import EventKind
    from contract.jobdir import JobDir, read_all_jsonl
    from launcher import api
    from launcher.store import Store

    spec = job_spec(config, plan, gpus=1 if torch.cuda.is_available() else 0)
    start = time.monotonic()
    with Store() as store:
        record = api.launch(spec, store)
        print(f"launched {record.id} ({config['name']}), job dir {record.job_dir}")
        while not record.state.is_terminal:
            if time.monotonic() - start > timeout_s:
                api.cancel(store, store.get(record.id) or record)
                break
            time.sleep(1.0)
            record = api.refresh(store, store.get(record.id) or record)
    wall_s = time.monotonic() - start
    jobdir = JobDir(record.job_dir)
    progress = read_all_jsonl(jobdir.progress_file(0))
    steady = [r for r in progress if r.get("step", 0) > skipped]
    telemetry: list[dict[str, Any]] = []
    for path in sorted(Path(record.job_dir, "telemetry").glob("*.jsonl")):
        telemetry += read_all_jsonl(path)
    gpu_samples = [g for r in telemetry for g in r.get("gpus", []) if isinstance(g, dict)]
    summary_path = Path(record.job_dir, "summary.json")
    applied = [e for e in read_all_jsonl(jobdir.events)
               if e.get("event") == EventKind.LAYOUT_APPLIED.value]  # fmt: skip
    return {
        "job_id": record.id,
        "applied_layout": applied[-1] if applied else None,
        "state": record.state.value,
        "reason": record.reason,
        "wall_s": round(wall_s, 1),
        "steps_reported": len(progress),
        "step_time_s_median": statistics.median(r["step_time_s"] for r in steady)
        if steady
        else None,
        "gpu_memory_peak_mib": max(
            (r.get("gpu_memory_peak_mib", 0) for r in progress), default=None
        ),
        "gpu_memory_reserved_peak_mib": max(
            (r.get("gpu_memory_reserved_peak_mib", 0) for r in progress), default=None
        ),
        "loss_first_last": [progress[0].get("loss"), progress[-1].get("loss")]
        if progress
        else None,
        "telemetry_records": len(telemetry),
        "telemetry_nvml": any(r.get("nvml") for r in telemetry),
        "telemetry_notices": sorted({str(r["notice"]) for r in telemetry if r.get("notice")}),
        "gpu_power_w_max": max((g.get("power_w") or 0 for g in gpu_samples), default=None),
        "gpu_util_percent_max": max(
            (g.get("utilization_gpu_percent") or 0 for g in gpu_samples), default=None
        ),
        "gpu_memory_used_mib_max": max(
            (g.get("memory_used_mib") or 0 for g in gpu_samples), default=None
        ),
        "summary": json.loads(summary_path.read_text()) if summary_path.exists() else None,
        "log_tail": tail_logs(Path(record.job_dir)),
    }


def tail_logs(job_dir: Path, lines: int = 15) -> list[str]:
    out: list[str] = []
    for path in sorted((job_dir / "logs").glob("**/*")):
        if path.is_file():
            text = path.read_text(errors="replace").splitlines()
            out += [f"{path.name}: {line}" for line in text[-lines:]]
    return out


def compare(plan: Any, measured: dict[str, Any]) -> dict[str, Any]:
    from contract.plan import measured_mfu, ratio

    est = plan.estimate
    step_s = measured.get("step_time_s_median")
    tokens_per_s = plan.training.global_batch_tokens / step_s if step_s else None
    mfu = measured_mfu(est.step.mfu, est.step.tokens_per_s, 1, tokens_per_s, 1)
    step_ratio = ratio(step_s, est.step.time_s)
    mem = est.memory_gib
    predicted_tensors_gib = mem.params + mem.grads + mem.optimizer + mem.activations
    peak_mib = measured.get("gpu_memory_peak_mib")
    return {
        "params_m": round(plan.model.num_params / 1e6, 1),
        "predicted_step_s": round(est.step.time_s, 4),
        "measured_step_s": round(step_s, 4) if step_s else None,
        "step_ratio_measured_over_predicted": round(step_ratio, 3) if step_ratio else None,
        "predicted_mfu": round(est.step.mfu, 6),
        "measured_mfu": round(mfu, 6) if mfu is not None else None,
        "predicted_memory_gib_total": round(mem.total, 2),
        "predicted_memory_gib_tensors": round(predicted_tensors_gib, 2),
        "predicted_memory_breakdown_gib": {
            k: round(getattr(mem, k), 3)
            for k in ("params", "grads", "optimizer", "activations", "other")
        },
        "measured_peak_allocated_gib": round(peak_mib / 1024, 2) if peak_mib else None,
        "faults": (measured.get("summary") or {}).get("faults"),
        "restarts": (measured.get("summary") or {}).get("restarts_by_cause"),
        "final_step": (measured.get("summary") or {}).get("final_step"),
        "energy_per_step": ((measured.get("summary") or {}).get("energy") or {}).get("per_step"),
        "memory_ratio_allocated_over_tensors": (
            round(peak_mib / 1024 / predicted_tensors_gib, 3) if peak_mib else None
        ),
        **mfu_ratios(mfu, est.step.mfu),
    }


def mfu_ratios(measured: float | None, planned: float) -> dict[str, Any]:
    """Measured MFU over the plan's, and over torchtitan's published range (low, high)."""
    if measured is None:
        return {"mfu_ratio_measured_over_plan": None, "mfu_ratio_over_torchtitan": None}
    low, high = TORCHTITAN_MFU
    return {
        "mfu_ratio_measured_over_plan": _figure(measured / planned),
        "mfu_ratio_over_torchtitan": [_figure(measured / low), _figure(measured / high)],
    }


def _figure(value: float) -> float:
    """Four significant digits (a ratio of 0.0114 on a CPU keeps its digits too)."""
    return float(f"{value:.4g}")


def mfu_line(name: str, compare: dict[str, Any], on_gpu: bool) -> str:
    """One line a person reads: measured MFU against the plan and against torchtitan."""
    measured, planned = compare["measured_mfu"], compare["predicted_mfu"]
    if measured is None:
        return f"{name}: no measured MFU (no steady-state steps)"
    line = (f"{name}: measured MFU {measured:.1%}, plan {planned:.1%} "
            f"(ratio {compare['mfu_ratio_measured_over_plan']:.2f})")  # fmt: skip
    low, high = compare["mfu_ratio_over_torchtitan"]
    if on_gpu:
        return line + (
            f"; torchtitan Llama 3.1 8B on H100 {TORCHTITAN_MFU[0]:.0%}-{TORCHTITAN_MFU[1]:.0%}"
            f" (ratio {low:.2f}-{high:.2f})"
        )
    return line + "; a CPU's MFU, not compared with torchtitan's GPU figures"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("gpu-check"), help="Result folder.")
    parser.add_argument("--job-timeout-s", type=float, default=240.0)
    parser.add_argument("--only", default=",".join(DEFAULT),
                        help="Comma-separated config names to run, or 'all'.")  # fmt: skip
    parser.add_argument("--layers", type=int, default=0,
                        help="Blocks of the Llama 3 8B-shaped config (default 8).")  # fmt: skip
    parser.add_argument("--cpu-dry-run", action="store_true",
                        help="Run DRY_CONFIG on this CPU through the same path.")  # fmt: skip
    args = parser.parse_args(argv)
    import torch

    if args.cpu_dry_run:
        return dry_run(args.out, args.job_timeout_s)
    if not torch.cuda.is_available():
        print("error: no CUDA device visible to torch; run this on a machine with a GPU "
              "(or pass --cpu-dry-run)")  # fmt: skip
        return 2
    device_name = torch.cuda.get_device_name(0)
    gpu_name = next((entry for key, entry in CATALOG_BY_NAME if key in device_name), None)
    results: dict[str, Any] = {
        "device": device_name,
        "torch": torch.__version__,
        "catalog_gpu": gpu_name,
        "torchtitan_mfu": list(TORCHTITAN_MFU),
        "runs": {},
    }
    print(f"device {device_name}, torch {torch.__version__}, planner catalog {gpu_name}")
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        results["nvml"] = check_nvml()
    except Exception as exc:  # reported, the trainer checks still run
        results["nvml"] = {"error": repr(exc)}
        traceback.print_exc()
    wanted = {n for n in args.only.split(",") if n}
    for config in CONFIGS:
        if ("all" not in wanted and config["name"] not in wanted) or gpu_name is None:
            continue
        if args.layers and config["name"] in DEFAULT:
            config = {**config, "model": {**config["model"], "layers": args.layers}}
        entry = check_config(config, plan_for(config, gpu_name), args.job_timeout_s, True)
        results["runs"][config["name"]] = entry
        (args.out / "gpu_check.json").write_text(json.dumps(results, indent=2, default=str))
    (args.out / "gpu_check.json").write_text(json.dumps(results, indent=2, default=str))
    return 0


def check_config(config: dict[str, Any], plan: Any, timeout_s: float, on_gpu: bool,
                 skipped: int = WARMUP_STEPS_SKIPPED) -> dict[str, Any]:  # fmt: skip
    """Launch one config's plan, measure it, compare; an error is recorded, not raised."""
    entry: dict[str, Any] = {"config": config}
    try:
        entry["measured"] = run_job(config, plan, timeout_s, skipped)
        entry["compare"] = compare(plan, entry["measured"])
        print(config["name"], json.dumps(entry["compare"]))
        print(mfu_line(config["name"], entry["compare"], on_gpu))
    except Exception as exc:
        entry["error"] = repr(exc)
        traceback.print_exc()
    return entry


def dry_run(out: Path, timeout_s: float) -> int:
    """``DRY_CONFIG`` on this CPU, planned on the calibrated CPU in fp32; exit 0 when the
    job completed and its figures were compared."""
    import torch

    out.mkdir(parents=True, exist_ok=True)
    plan = plan_for(DRY_CONFIG, calibrated_cpu(DRY_CONFIG), precision="fp32")
    # Step 1 warms up (and compiles, where a config compiles): the steady state is after it.
    entry = check_config(DRY_CONFIG, plan, timeout_s, False, skipped=1)
    results = {
        "device": "cpu",
        "torch": torch.__version__,
        "dry_run": True,
        "torchtitan_mfu": list(TORCHTITAN_MFU),
        "runs": {DRY_CONFIG["name"]: entry},
    }
    (out / "gpu_check.json").write_text(json.dumps(results, indent=2, default=str))
    done = entry.get("measured", {}).get("state") == "COMPLETED" and "compare" in entry
    return 0 if done else 1


if __name__ == "__main__":
    sys.path[:0] = [
        str(Path(__file__).resolve().parent),
        str(Path(__file__).resolve().parent.parent),
    ]
    sys.exit(main())
