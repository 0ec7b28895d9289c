"""Small spec builders shared by the planner tests."""

from __future__ import annotations

from typing import Any

import planner
from planner import ClusterSpec, Layout, ModelSpec, TrainingSpec


def llama(name: str = "llama3-8b") -> ModelSpec:
    return planner.get_model(name)


def cluster(gpus: int = 64, gpu: str = "H100-SXM-80GB", **kw: Any) -> ClusterSpec:
    return ClusterSpec(gpu=gpu, num_gpus=gpus, **kw)


def training(seq: int = 4096, batch: int = 256, tokens: float = 1e12, **kw: Any) -> TrainingSpec:
    return TrainingSpec(seq_len=seq, global_batch_seqs=batch, total_tokens=tokens, **kw)


def layout(dp: int, **kw: Any) -> Layout:
    return Layout(dp=dp, **kw)
