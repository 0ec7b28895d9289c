"""On a machine with an NVIDIA GPU: check NVML telemetry and the trainer, plan against reality.

Run where a GPU exists (it refuses without one, exit 2)::

    PYTHONPATH=. python3 scripts/gpu_check.py --out OUTDIR

1. NVML: open the sampler, print two samples of every GPU (``runtime.telemetry``).
2. For each model in ``CONFIGS``: plan it with the planner on the catalog entry of this
   GPU (one GPU, bf16 mixed precision, FSDP), launch the reference trainer through the
   local backend (node agent, elastic torchrun, NCCL, telemetry sampled by the agent),
   wait for it, and compare the planner's step time, MFU and per-GPU memory with the
   trainer's progress records (median step time after the warm-up steps, peak
   ``torch.cuda.max_memory_allocated``) and the agent's NVML telemetry (power, energy).
3. Write everything to ``OUTDIR/gpu_check.json`` and print a table.

Each stage is independent: one that fails is reported and the next still runs.
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
"""Steps left out of the measured step time: cuBLAS/NCCL warm-up and the allocator."""

CONFIGS: list[dict[str, Any]] = [
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


def plan_for(config: dict[str, Any], gpu_name: str) -> Any:
    from reference_model import model_spec

    import planner

    model = model_spec(config["name"], **config["model"])
    cluster = planner.ClusterSpec(
        gpu=planner.get_gpu(gpu_name), num_gpus=1, num_nodes=1, gpus_per_node=1
    )
    batch = config["micro_batch"]
    training = planner.TrainingSpec(
        seq_len=config["seq_len"],
        global_batch_seqs=batch,
        total_tokens=config["steps"] * batch * config["seq_len"],
        precision="bf16",
    )
    layout = planner.Layout(dp=1, sharding="zero3", micro_batch=batch)
    return planner.make_plan(model, cluster, training, layout)


def job_spec(config: dict[str, Any], plan: Any) -> Any:
    """The JobSpec of one config, by `scalectl launch --plan`'s path (launcher.plan_job)."""
    from contract.env import FAULTS_ENV
    from launcher import LaunchFlags, plan_job

    # One rank on one GPU; shapes and layout from the plan.
    flags = LaunchFlags(
        name=f"gpu-check-{config['name']}",
        gpus_per_node=1,
        max_restarts=3 if config.get("faults") else 0,
        env=[f"{FAULTS_ENV}={config['faults']}"] if config.get("faults") else [],
    )
    words = ["--steps", str(config["steps"]), "--eval-every", "0", "--log-every", "5"]
    words += ["--ckpt-every", str(config.get("ckpt_every", 0))]
    return plan_job(plan, flags, words).spec


def run_job(config: dict[str, Any], plan: Any, timeout_s: float) -> dict[str, Any]:
    from contract.jobdir import JobDir, read_all_jsonl
    from launcher import api
    from launcher.store import Store

    spec = job_spec(config, plan)
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
    steady = [r for r in progress if r.get("step", 0) > WARMUP_STEPS_SKIPPED]
    telemetry: list[dict[str, Any]] = []
    for path in sorted(Path(record.job_dir, "telemetry").glob("*.jsonl")):
        telemetry += read_all_jsonl(path)
    gpu_samples = [g for r in telemetry for g in r.get("gpus", []) if isinstance(g, dict)]
    summary_path = Path(record.job_dir, "summary.json")
    return {
        "job_id": record.id,
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
        "predicted_mfu": round(est.step.mfu, 4),
        "measured_mfu": round(mfu, 4) if mfu is not None else None,
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
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("gpu-check"), help="Result folder.")
    parser.add_argument("--job-timeout-s", type=float, default=150.0)
    parser.add_argument("--only", default="", help="Comma-separated config names to run.")
    args = parser.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("error: no CUDA device visible to torch; run this on a machine with a GPU")
        return 2
    device_name = torch.cuda.get_device_name(0)
    gpu_name = next((entry for key, entry in CATALOG_BY_NAME if key in device_name), None)
    results: dict[str, Any] = {
        "device": device_name,
        "torch": torch.__version__,
        "catalog_gpu": gpu_name,
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
        if (wanted and config["name"] not in wanted) or gpu_name is None:
            continue
        entry: dict[str, Any] = {"config": config}
        try:
            plan = plan_for(config, gpu_name)
            entry["measured"] = run_job(config, plan, args.job_timeout_s)
            entry["compare"] = compare(plan, entry["measured"])
            print(config["name"], json.dumps(entry["compare"]))
        except Exception as exc:
            entry["error"] = repr(exc)
            traceback.print_exc()
        results["runs"][config["name"]] = entry
        (args.out / "gpu_check.json").write_text(json.dumps(results, indent=2, default=str))
    (args.out / "gpu_check.json").write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.path[:0] = [
        str(Path(__file__).resolve().parent),
        str(Path(__file__).resolve().parent.parent),
    ]
    sys.exit(main())
