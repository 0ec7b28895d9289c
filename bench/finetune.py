"""Fine-tuning memory per rank, planned against measured (issue 19, item 5).

A tiny Llama-family Hugging Face checkpoint (``examples/make_tiny_hf.py``) is planned for
full, LoRA and QLoRA fine-tuning on 2 GPUs (``scalectl plan estimate --finetune ...``
through ``planner.request.run_request``, dp 2, ZeRO-3, fp32 as the trainer computes on a
CPU) and each plan is launched for real on the local backend through the Python API
(``scalectl.launch``: the path of ``scalectl launch --plan``) on ``examples/sft/tiny.jsonl``.

Measured per rank: ``state_mib`` of the progress records (runtime/train/measure.py: the
rank's parameter shards, frozen weights in their storage format (NF4 for QLoRA), gradients
and optimizer states, counted tensor by tensor) against the plan's params + grads +
optimizer per GPU; and ``max_rss_mib`` above the framework floor against the plan's
params + grads + optimizer + activations. The baseline is the full fine-tune measured in
the same run: each adapter mode's state relative to it, measured and planned, shows
whether the planner gets the saving right.

    PYTHONPATH=. .venv/bin/python bench/finetune.py [--steps 6]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO))

SFT = REPO / "examples" / "sft" / "tiny.jsonl"
MODES = ("full", "lora", "qlora")
SEQ_LEN, MICRO_BATCH, GLOBAL_BATCH = 64, 4, 8
"""Each step: 2 ranks x micro-batch 4 = the global batch of 8 windows of 64 tokens."""
JOB_CEILING_S = 300.0


def plan_for(checkpoint: Path, mode: str, steps: int) -> Any:
    """The planner's plan of ``mode`` fine-tuning of ``checkpoint`` on 2 GPUs, dp2 ZeRO-3."""
    from planner.request import EstimateRequest, run_request

    request = EstimateRequest(
        model=str(checkpoint), gpus="2", gpus_per_node=2, gpu="H100-SXM-80GB",
        seq_len=str(SEQ_LEN), global_batch=str(GLOBAL_BATCH),
        tokens=str(steps * GLOBAL_BATCH * SEQ_LEN), micro_batch=MICRO_BATCH, dp=2, tp=1,
        pp=1, cp=1, zero="3", recompute="none", precision="fp32", finetune=mode,
        lora_rank=None if mode == "full" else 8,
        base_format="nf4-dq" if mode == "qlora" else None,
    )  # fmt: skip
    plan, _ = run_request(request)
    return plan


def run(checkpoint: Path, plan: Any, mode: str, steps: int) -> dict[str, float]:
    """Launch ``plan``; the median over steps of each rank's figures, the largest rank."""
    from contract.jobdir import JobDir, read_all_jsonl
    from launcher.states import JobState
    from scalectl import launch

    args = ["--from", str(checkpoint), "--data", str(SFT), "--steps", str(steps),
            "--eval-every", "0", "--ckpt-every", "0", "--no-final-checkpoint"]  # fmt: skip
    job = launch(plan, args=args, name=f"bench-finetune-{mode}")
    try:
        state = job.wait(timeout=JOB_CEILING_S)
    except TimeoutError:
        job.cancel()
        raise
    if state is not JobState.COMPLETED:
        raise RuntimeError(f"{mode}: job {job.id} {state.value}\n{job.logs(0)[-2000:]}")
    figures: dict[str, float] = {"state_mib": 0.0, "max_rss_mib": 0.0}
    for path in JobDir(job.job_dir).progress_files():
        records = [r for r in read_all_jsonl(path) if "loss" in r]
        for key in figures:
            figures[key] = max(figures[key], statistics.median(r[key] for r in records))
    return figures


def planned_mib(plan: Any) -> tuple[float, float]:
    """(params + grads + optimizer, that + activations) per GPU, MiB."""
    mem = plan.estimate.memory_gib
    state = (mem.params + mem.grads + mem.optimizer) * 1024.0
    return state, state + mem.activations * 1024.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args(argv)
    from layouts import framework_floor_mib

    from examples.make_tiny_hf import make_tiny_hf

    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("SCALECTL_HOME", str(Path(tmp) / "home"))
        checkpoint = make_tiny_hf(Path(tmp) / "tiny-hf")
        floor = framework_floor_mib()
        print(f"framework floor (torch + gloo + FSDP + DCP loaded): {floor:.1f} MiB")
        header = (
            f"{'mode':6} {'state pred':>10} {'meas':>8} {'ratio':>6} {'vs full pred':>12} "
            f"{'meas':>6}   {'rss-floor':>9} {'pred':>8} {'ratio':>6}"
        )
        print(header)
        base: tuple[float, float] | None = None
        for mode in MODES:
            plan = plan_for(checkpoint, mode, args.steps)
            state_pred, total_pred = planned_mib(plan)
            measured = run(checkpoint, plan, mode, args.steps)
            if base is None:
                base = (state_pred, measured["state_mib"])
            above = measured["max_rss_mib"] - floor
            print(
                f"{mode:6} {state_pred:9.2f}M {measured['state_mib']:7.2f}M "
                f"{measured['state_mib'] / state_pred:6.2f} {state_pred / base[0]:12.3f} "
                f"{measured['state_mib'] / base[1]:6.3f}   {above:8.1f}M {total_pred:7.2f}M "
                f"{above / total_pred:6.2f}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
