"""The rows of finetune.yaml (published fine-tuning peak memory and tokens/s) as planner
inputs, and the planner's prediction for each.

One rule set for every row: the model preset named by the row, the section's GPU (a
catalog stand-in where the run's GPU is not in the catalog: such a section has memory rows
only), the row's adapters (rank, targets) and QLoRA base format as the recipe's config
names them, one GPU without sharding or, where a row names ``sharding: zero3``, FSDP's
full sharding of every weight (frozen ones too) over its GPUs, micro-batch = the recipe's
batch size (gradient accumulation only keeps the adapters' gradients alive), the
sequence length the config sets (litgpt pads or truncates Alpaca samples to at most
``max_seq_length``, the longest batch sets the peak; torchtune packs samples into
``max_seq_len``-token sequences), recompute ``full`` for activation checkpointing, and
element-wise ``kernels`` ``fused`` under torch.compile, ``eager`` without.

Memory: litgpt and torchtune's flags table report what PyTorch's caching allocator handed
out (``max_memory_allocated``, or torchtune's ``active_bytes.all.peak``, the same blocks plus
those freed but not yet synchronised), torchtune's tutorials ``max_memory_reserved`` (those
plus the blocks the allocator keeps cached), torchtune's README does not say which. Each is
compared with the planner's total without the CUDA context (``runtime_reserved_gib``, never
held by the caching allocator) but with the rest of its "other" memory (workspace and
fragmentation allowance), in the source's unit (GB = 1e9 bytes or GiB).
Precision: litgpt's ``bf16-true`` (Lightning's HalfPrecision plugin converts the module's
parameters to BF16) and torchtune's ``dtype: bf16`` (the model built in BF16,
torchtune/training/precision.py) both train without an FP32 master copy, so every row
is planned with ``precision: bf16-pure``; a row's ``loss_chunks`` is its recipe's
CEWithChunkedOutputLoss chunks (absent: one ``nn.CrossEntropyLoss`` over all logits),
``loss_kernels`` how that loss runs where it differs from the blocks, ``grad_lifetime:
backward`` a recipe that frees the gradients after each step without accumulation, and
``activation_offload`` torchtune's ``enable_activation_offloading`` (1: every saved
tensor of the layers); a
section's ``qlora_input_copies`` (micro-batches of its QLoRA rows' 4-bit matmul inputs
held at the peak: bitsandbytes before 0.43.2) and ``nf4_init_unchunked`` (its QLoRA rows
quantise each weight in one pass at init: torchao 0.1) apply to its qlora rows only.
Throughput: the planner's tokens/s per GPU against the recipe's
``tokens_per_second_per_gpu``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import planner
from tests.validation.cases import Check, load

FINETUNE = Path(__file__).resolve().parent / "finetune.yaml"
BYTES_PER_UNIT = {"GB": 1e9, "GiB": 2.0**30}
"""The sources' memory units."""


def estimate_row(row: dict[str, Any]) -> planner.Estimate:
    """The planner's estimate of one row (section common values merged in)."""
    model = planner.get_model(row["model"])
    cluster = planner.ClusterSpec(gpu=row["gpu"], num_gpus=row["gpus"])
    adapters = row["finetune"] in ("lora", "qlora")
    training = planner.TrainingSpec(
        seq_len=row["seq_len"],
        global_batch_seqs=row["micro_batch"] * row["gpus"],
        total_tokens=1e6,
        finetune=row["finetune"],
        lora_rank=row["lora_rank"] if adapters else None,
        lora_targets=row["lora_targets"] if adapters else None,
        base_format=row["base_format"] if row["finetune"] == "qlora" else None,
        qlora_input_copies=row.get("qlora_input_copies", 0) if row["finetune"] == "qlora" else 0,
        nf4_init_unchunked=row.get("nf4_init_unchunked", False) and row["finetune"] == "qlora",
        kernels=row["kernels"],
        precision=row["precision"],
        loss_chunks=row.get("loss_chunks", 1),
        loss_kernels=row.get("loss_kernels"),
        grad_lifetime=row.get("grad_lifetime", "step"),
    )
    layout = planner.Layout(
        dp=row["gpus"],
        micro_batch=row["micro_batch"],
        recompute=row["recompute"],
        sharding=row.get("sharding", "none"),
        activation_offload=row.get("activation_offload", 0.0),
    )
    return planner.estimate(model, cluster, training, layout)


def describe(row: dict[str, Any]) -> str:
    """The run's layout in words (the ``plan validate`` layout column)."""
    method = row["finetune"]
    if method in ("lora", "qlora"):
        method += f" r{row['lora_rank']} {row['lora_targets']}"
        if row["finetune"] == "qlora":
            method += f" {row['base_format']}"
    recompute = "" if row["recompute"] == "none" else f" {row['recompute']} recompute"
    sharding = f" {row['sharding']}" if row.get("sharding", "none") != "none" else ""
    chunks = f" ce/{row['loss_chunks']}" if row.get("loss_chunks", 1) > 1 else ""
    offload = f" offload {row['activation_offload']:g}" if row.get("activation_offload") else ""
    return (
        f"{row['gpus']}x {row['gpu']}{sharding} mb{row['micro_batch']} s{row['seq_len']} "
        f"{method} {row['precision']} {row['kernels']}{recompute}{chunks}{offload}"
    )


def finetune_checks(path: Path = FINETUNE) -> Iterator[Check]:
    """A memory Check per row of finetune.yaml, and a throughput Check per row that
    publishes tokens/s."""
    for section in load(path)["sections"]:
        unit = section["memory_unit"]
        tolerance = section["tolerance"]
        for case in section["cases"]:
            row = {**section["common"], **case}
            est = estimate_row(row)
            reserved = planner.get_gpu(row["gpu"]).runtime_reserved_gib
            regime = {
                "moe": False, "pp": False, "seq_len": row["seq_len"],
                "finetune": row["finetune"],
            }  # fmt: skip
            common = {
                "source": section["source"], "layout": describe(row), "regime": regime,
                "fits": est.fits,
            }  # fmt: skip
            yield Check(
                f"{section['name']}-{row['id']}",
                "memory",
                f"peak_memory_{unit.lower()}",
                row[f"published_{unit.lower()}"],
                (est.memory_gib.total - reserved) * 2**30 / BYTES_PER_UNIT[unit],
                tolerance=tolerance["memory"],
                **common,
            )
            if "published_tokens_per_s" in row:
                yield Check(
                    f"{section['name']}-{row['id']}-throughput",
                    "throughput",
                    "tokens_per_s_per_gpu",
                    row["published_tokens_per_s"],
                    est.step.tokens_per_s / row["gpus"],
                    tolerance=tolerance["throughput"],
                    **common,
                )
