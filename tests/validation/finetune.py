"""The rows of finetune.yaml (published LoRA/QLoRA peak memory) as planner inputs, and the
planner's prediction for each.

One rule set for every row: the model preset named by the row, the section's adapters
(rank, targets), QLoRA's base format as the config names it (litgpt ``bnb.nf4``: NF4 with
FP32 block constants, no double quantisation), one GPU without sharding, the sequence
length at the config's ``max_seq_length`` (litgpt pads or truncates Alpaca samples to at
most that; the longest batch sets the peak). litgpt's ``bf16-true`` keeps the adapters'
AdamW states in BF16; the planner's FP32 states for the adapters add < 0.2 GB here. The
published figure is ``torch.cuda.max_memory_allocated`` in GB (1e9 bytes), so the planner's
total is compared without the CUDA context (``runtime_reserved_gib``, never allocated by
the caching allocator) but with the rest of its "other" memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import planner
from tests.validation.cases import Check, load

FINETUNE = Path(__file__).resolve().parent / "finetune.yaml"
GB = 1e9
"""The source's unit (decimal)."""


def estimate_row(row: dict[str, Any]) -> planner.Estimate:
    """The planner's estimate of one row (section common values merged in)."""
    model = planner.get_model(row["model"])
    cluster = planner.ClusterSpec(gpu="L40S", num_gpus=row["gpus"])
    training = planner.TrainingSpec(
        seq_len=row["seq_len"],
        global_batch_seqs=row["micro_batch"],
        total_tokens=1e6,
        finetune=row["finetune"],
        lora_rank=row["lora_rank"],
        lora_targets=row["lora_targets"],
        base_format="nf4" if row["finetune"] == "qlora" else None,
        kernels=row["kernels"],
    )
    layout = planner.Layout(dp=1, micro_batch=row["micro_batch"], recompute=row["recompute"])
    return planner.estimate(model, cluster, training, layout)


def finetune_checks(path: Path = FINETUNE) -> Iterator[Check]:
    """One memory Check per row of finetune.yaml."""
    for section in load(path)["sections"]:
        for case in section["cases"]:
            row = {**section["common"], **case}
            est = estimate_row(row)
            reserved = planner.get_gpu("L40S").runtime_reserved_gib
            predicted = (est.memory_gib.total - reserved) * 2**30 / GB
            yield Check(
                f"{section['name']}-{row['id']}",
                "memory",
                "peak_memory_gb",
                row["published_gb"],
                predicted,
                section["source"],
                tolerance=section["tolerance"],
                layout=f"1 GPU mb{row['micro_batch']} s{row['seq_len']} {row['finetune']} "
                f"r{row['lora_rank']} {row['lora_targets']}",
                regime={"moe": False, "pp": False, "seq_len": row["seq_len"], "finetune": True},
            )
