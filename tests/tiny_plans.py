"""A tiny Llama-shaped model and the planner search that makes a dp2 x tp2 plan of it:
shared by the tests that launch a plan on each backend (local, Slurm, Kubernetes).

Importable as ``tiny_plans`` from any test (``tests/`` is on ``sys.path``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

TINY_LLAMA = {
    "model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 192,
    "vocab_size": 257, "max_position_embeddings": 32, "hidden_act": "silu",
    "tie_word_embeddings": False,
}  # fmt: skip
"""A Llama-shaped model small enough to train for a few steps on this machine's CPUs."""


def search_args(gpus_per_node: int) -> list[str]:
    """``scalectl plan search`` options for 4 GPUs, ``gpus_per_node`` to a node: global
    batch 8 sequences of 32 tokens, micro-batch 2."""
    return ["--gpu", "H100-SXM-80GB", "--gpus", "4", "--gpus-per-node", str(gpus_per_node),
            "--seq-len", "32", "--global-batch", "8", "--tokens", "2560",
            "--micro-batch", "2"]  # fmt: skip


def dp2_tp2_plan(cli: Callable[..., Any], directory: Path, gpus_per_node: int = 4) -> Path:
    """Write ``p.json``: the planner's dp2 x tp2 zero3 plan of :data:`TINY_LLAMA` with
    sequence parallelism, on nodes of ``gpus_per_node`` GPUs."""
    config = directory / "config.json"
    config.write_text(json.dumps(TINY_LLAMA))
    out = directory / "p.json"
    run = cli("plan", "search", "--model", str(config), *search_args(gpus_per_node),
              "--tp", "2", "--zero", "3", "--sequence-parallel", "--out", str(out))  # fmt: skip
    assert run.code == 0, run.err
    assert f"plan written to {out}: layout dp2 tp2 pp1 cp1 zero3 mb2" in run.err
    return out
