"""The expected relative error of a prediction, from the planner's own validation residuals.

``scripts/error_bands.py`` evaluates every published run in tests/validation, groups the
signed relative errors by regime (dense or MoE; pipeline or not; sequence-length band)
and writes data/error_bands.yaml: per group the root-mean-square relative error of step
time (throughput and iteration-time rows, whose errors are step-time errors) and of
memory, with the number of runs behind it. A regime without runs of its own takes the
nearest coarser group (same dense/MoE class, then all runs), and says so.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict

from planner.specs import Layout, ModelSpec, TrainingSpec

SEQ_BANDS = ((4096, "seq<=4k"), (16384, "seq 4k-16k"), (None, "seq>16k"))
"""Upper bounds (tokens, inclusive) and names of the sequence-length bands."""


class ErrorBand(BaseModel):
    """Expected relative error of an estimate in its regime."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    regime: str
    """The regime the band was looked up for (e.g. 'dense, pp, seq<=4k')."""
    basis: str
    """The group of validation runs it comes from (the regime, or a coarser one)."""
    step_time_rel: float
    """Root-mean-square relative error of step time (and throughput) in that group."""
    step_time_runs: int
    """Published runs behind step_time_rel."""
    memory_rel: float
    """Root-mean-square relative error of per-GPU memory (the pre-training memory rows, or
    for LoRA/QLoRA the fine-tuning ones: few exist)."""
    memory_runs: int
    """Published memory figures behind memory_rel."""


def seq_band(seq_len: int) -> str:
    """The name of the sequence-length band ``seq_len`` falls in."""
    return next(name for bound, name in SEQ_BANDS if bound is None or seq_len <= bound)


def regime_key(moe: bool, pp: bool, seq_len: int) -> str:
    """The regime's name: the key of data/error_bands.yaml's step-time groups."""
    return f"{'moe' if moe else 'dense'}, {'pp' if pp else 'no pp'}, {seq_band(seq_len)}"


@lru_cache(maxsize=1)
def _bands() -> dict[str, Any]:
    from planner.catalog import read_data

    data: dict[str, Any] = read_data("error_bands.yaml")
    return data


def error_band(model: ModelSpec, training: TrainingSpec, layout: Layout) -> ErrorBand:
    """The error band of an estimate of ``layout`` (data/error_bands.yaml)."""
    moe = model.num_experts > 1
    key = regime_key(moe, layout.pp > 1, training.seq_len)
    data = _bands()
    groups = data["step_time"]
    for basis in (key, "moe" if moe else "dense", "all"):
        if basis in groups:
            break
    # Fine-tuning memory has its own published rows (tests/validation/finetune.yaml):
    # LoRA/QLoRA runs, and full fine-tuning runs (torchtune trains those in pure BF16).
    memory_key = {
        "lora": "memory_finetune",
        "qlora": "memory_finetune",
        "full": "memory_finetune_full",
    }
    key_memory = memory_key.get(training.finetune or "", "memory")
    group, memory = groups[basis], data[key_memory if key_memory in data else "memory"]
    return ErrorBand(
        regime=key,
        basis=basis,
        step_time_rel=group["rms_rel"],
        step_time_runs=group["runs"],
        memory_rel=memory["rms_rel"],
        memory_runs=memory["runs"],
    )
