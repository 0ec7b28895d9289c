"""Job directories of the reference trainer's newer figures, for the TUI's tests.

An MoE pipeline pre-training job (progress with ``bubble_fraction``, ``state_mib`` and
the ``moe_*`` routing figures) and a completed LoRA fine-tune (plan ``training.finetune``,
the trainer's ``started`` event with ``trained_params``, ``training_complete`` with its
``export``). Plans come from ``planner.make_plan``; records follow ``runtime.progress``
and the event contract. Values are fixed, so screenshots are identical on every run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import tui_fixtures as fx

from contract.event_kinds import EventKind
from contract.jobdir import JobDir, write_json_atomic
from launcher.states import JobState
from launcher.store import Store

MOE_ID = "20250615-143000-b0b0"
"""A running mixtral-8x7b job, pp2 ep4, on 16 GPUs."""
LORA_ID = "20250615-130000-f1f1"
"""A completed LoRA fine-tune of llama3-8b on 8 GPUs."""
EXPERT_LOADS = (1200, 980, 1010, 1500, 900, 1100, 1050, 1040)
"""Routed assignments per expert of each MoE step: max/mean = 1500 / 1097.5."""
DROPPED = 88
MOE_STATE_MIB = 52_000.0
LORA_STATE_MIB = 1_980.0
LORA_PARAMS = 8_030_261_248
LORA_TRAINED = 13_631_488


def moe_plan() -> dict[str, Any]:
    import planner

    model = planner.get_model("mixtral-8x7b")
    cluster = planner.ClusterSpec(gpu="H100", num_gpus=16, gpus_per_node=8)
    training = planner.TrainingSpec(seq_len=4096, global_batch_seqs=256, total_tokens=1e11)
    layout = planner.Layout(
        dp=4, tp=2, pp=2, ep=4, sharding="zero1", micro_batch=1, recompute="selective"
    )
    document: dict[str, Any] = planner.make_plan(model, cluster, training, layout).model_dump(
        mode="json"
    )
    return document


def lora_plan() -> dict[str, Any]:
    import planner

    model = planner.get_model("llama3-8b")
    cluster = planner.ClusterSpec(gpu="H100", num_gpus=8, gpus_per_node=8)
    training = planner.TrainingSpec(
        seq_len=4096,
        global_batch_seqs=64,
        total_tokens=1e9,
        finetune="lora",
        lora_rank=16,
        lora_targets="attn",
    )
    layout = planner.Layout(dp=8, sharding="zero3", micro_batch=1, recompute="selective")
    document: dict[str, Any] = planner.make_plan(model, cluster, training, layout).model_dump(
        mode="json"
    )
    return document


def write_records(jobdir: JobDir, rank: int, records: list[dict[str, Any]]) -> None:
    jobdir.progress_dir.mkdir(parents=True, exist_ok=True)
    with open(jobdir.progress_file(rank), "a", encoding="utf-8") as handle:
        handle.write("".join(json.dumps(r) + "\n" for r in records))


def moe_records(steps: range, *, t0: float, rank: int) -> list[dict[str, Any]]:
    return [
        fx.progress_record(step, t0=t0, rank=rank)
        | {
            "bubble_fraction": 0.021 if step % 2 else 0.019,
            # The last pipeline stage holds the output layer: the larger state.
            "state_mib": MOE_STATE_MIB + 1000.0 * rank,
            "moe_tokens_per_expert": list(EXPERT_LOADS),
            "moe_dropped_tokens": DROPPED,
            "moe_aux_loss": 0.0123,
        }
        for step in steps
    ]


def add_trainer_jobs(store: Store, root: Path) -> tuple[JobDir, JobDir]:
    """The MoE pipeline job and the LoRA fine-tune, registered in ``store``."""
    moe = fx.add_job(
        store,
        root,
        fx.Job(MOE_ID, "mixtral-pp2", "slurm", JobState.RUNNING, "", (2, 2), 8, 8, fx.NOW - 1800),
    )
    write_json_atomic(moe.plan_json, moe_plan())
    t0 = fx.NOW - 1800
    for rank in (0, 15):
        write_records(moe, rank, moe_records(range(1, 41), t0=t0, rank=rank))
    fx.event(moe, t0 + 20, EventKind.STARTED, source="trainer", step=0, world_size=16)

    lora = fx.add_job(
        store,
        root,
        fx.Job(LORA_ID, "llama3-8b-lora", "local", JobState.COMPLETED, "", (1, 1), 8, 8),
    )
    write_json_atomic(lora.plan_json, lora_plan())
    t0 = fx.NOW - 3600
    records = [
        fx.progress_record(step, t0=t0, world=8) | {"state_mib": LORA_STATE_MIB}
        for step in range(1, 31)
    ]
    write_records(lora, 0, records)
    start_trainer(lora, t0 + 20)
    complete(lora, t0 + 600)
    return moe, lora


def start_trainer(jobdir: JobDir, ts: float) -> None:
    fx.event(
        jobdir,
        ts,
        EventKind.STARTED,
        source="trainer",
        step=0,
        world_size=8,
        params=LORA_PARAMS,
        finetune="lora",
        trained_params=LORA_TRAINED,
        lora_rank=16,
        lora_targets="attn",
    )


def complete(jobdir: JobDir, ts: float) -> None:
    fx.event(
        jobdir,
        ts,
        EventKind.TRAINING_COMPLETE,
        source="trainer",
        step=30,
        export=str(jobdir.root / "export"),
    )
