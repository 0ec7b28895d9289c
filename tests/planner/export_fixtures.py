"""Plan documents for the export tests: the shape ``scalectl plan estimate --out`` writes
(every field the planner gives), with the layout, training and model fields a test sets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from planner.export_plan import ExportPlan, export_plan

DATA = Path(__file__).resolve().parents[1] / "data"

MODEL = {
    "name": "llama3-8b",
    "num_layers": 32,
    "hidden_size": 4096,
    "num_attention_heads": 32,
    "num_kv_heads": 8,
    "head_dim": None,
    "ffn_hidden_size": 14336,
    "activation": "swiglu",
    "vocab_size": 128256,
    "tied_embeddings": False,
    "num_experts": 1,
    "top_k": 1,
    "moe_ffn_hidden_size": None,
    "shared_expert_ffn_hidden_size": 0,
    "norm": "rmsnorm",
    "bias": False,
    "position_embedding": "rope",
    "max_position_embeddings": None,
    "hidden_dropout": 0.0,
    "attention_dropout": 0.0,
}
LAYOUT = {
    "dp": 16,
    "tp": 2,
    "pp": 2,
    "cp": 1,
    "sharding": "zero3",
    "hsdp_shard_size": None,
    "micro_batch": 2,
    "recompute": "selective",
    "interleave": 2,
    "sequence_parallel": True,
    "ep": 1,
    "expert_tp": None,
    "uneven_stages": False,
    "schedule": "1f1b",
    "microbatch_group": None,
    "free_stage_outputs": True,
    "activation_offload": 0.0,
}
TRAINING = {
    "seq_len": 8192,
    "global_batch_seqs": 512,
    "total_tokens": 1.6e11,
    "precision": "bf16",
    "optimizer": "adamw",
    "attention_kernel": "flash",
    "overlap_grad_reduce": True,
    "tp_comm_overlap": False,
    "grad_reduce_dtype": "fp32",
    "moe_capacity_factor": None,
}


def plan_document(
    model: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
    **layout: Any,
) -> dict[str, Any]:
    """A plan.json document: llama3-8b on 64 GPUs, dp16 tp2 pp2 vpp2 zero3 unless told."""
    lay = {**LAYOUT, **layout}
    return {
        "schema_version": 1,
        "model": {**MODEL, **(model or {})},
        "cluster": {"gpu": "H100-SXM-80GB", "num_gpus": 64, "num_nodes": 8, "gpus_per_node": 8},
        "training": {**TRAINING, **(training or {})},
        "layout": lay,
        "estimate": {"layout": lay, "train": {"steps": 1000}},
    }


def export_of(**kw: Any) -> ExportPlan:
    return export_plan(plan_document(**kw))


def write_plan(path: Path, **kw: Any) -> Path:
    path.write_text(json.dumps(plan_document(**kw)), encoding="utf-8")
    return path


def flag_values(words: list[str]) -> dict[str, str | None]:
    """{flag: value or None for a switch} of a command line."""
    values: dict[str, str | None] = {}
    for i, word in enumerate(words):
        if word.startswith("--"):
            following = words[i + 1] if i + 1 < len(words) else None
            takes = (
                following is not None and not following.startswith("--") and ":" not in following
            )
            values[word] = following if takes else None
    return values
