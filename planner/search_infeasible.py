"""When the search finds nothing: how many more GPUs would fit, why no layout is valid.

The search's own messages for an infeasible request (exit code 2) name the nearest answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from planner.checks import layout_problems
from planner.errors import PlanInputError
from planner.layouts import enumerate_layouts
from planner.search_explain import describe_layout
from planner.specs import ClusterSpec, ModelSpec, TrainingSpec


def cluster_with(cluster: ClusterSpec, num_gpus: int) -> ClusterSpec:
    """``cluster`` with ``num_gpus`` GPUs (nodes recomputed)."""
    if num_gpus == cluster.num_gpus:
        return cluster
    data = cluster.model_dump()
    data.update(num_gpus=num_gpus, num_nodes=None)
    return ClusterSpec(**data)


DOUBLINGS = 10
"""When nothing fits, GPU counts up to 2**DOUBLINGS times larger are tried (memory only)."""


def fits_on_more_gpus(
    model: ModelSpec,
    cluster: ClusterSpec,
    training: TrainingSpec,
    pinned: Mapping[str, Any] | None,
    gpus: int,
    capacity_gib: float,
    costs: Any,
) -> tuple[int, str] | None:
    """The first of 2x, 4x, ... ``gpus`` at which some layout fits (memory pass only), with
    that layout (the one with the most memory to spare); None when none up to 2**10 x."""
    for doubling in range(1, DOUBLINGS + 1):
        count = gpus * 2**doubling
        tree = enumerate_layouts(model, cluster_with(cluster, count), training, [count], pinned)
        if tree.size == 0:
            continue
        memory = costs.memory(tree)
        best = int(np.argmin(memory))
        if memory[best] <= capacity_gib:
            return count, describe_layout(tree.layout(best))
    return None


def no_valid_layout(
    model: ModelSpec,
    cluster: ClusterSpec,
    training: TrainingSpec,
    pins: Mapping[str, float],
    counts: list[int],
) -> str:
    """Why the enumeration is empty: a fully pinned layout gets the checks' own message."""
    from planner.layouts import PINNABLE, layout_from_values

    optional = {
        "hsdp_shard": 1.0,
        "uneven": 0.0,
        "offload": 0.0,
        "gpipe": 0.0,
        "mb_group": 0.0,
        "keep_outputs": 0.0,
        "etp": 0.0,
        "cp_allgather": 0.0,
    }
    full = set(PINNABLE.values()) - set(optional)
    if full <= set(pins) and len(counts) == 1:
        values = {**optional, **pins}
        try:
            layout = layout_from_values(values)
        except PlanInputError as exc:
            return str(exc)
        problems = layout_problems(model, cluster_with(cluster, counts[0]), training, layout)
        if problems:
            return problems[0]
    shown = ", ".join(f"{k}={v:g}" for k, v in pins.items()) or "none"
    where = f"{counts[0]} GPUs" if len(counts) == 1 else f"up to {counts[-1]} GPUs"
    return (
        f"no valid layout of {model.name} on {where} with the pinned knobs ({shown}): "
        f"check that the GPU count factors into dp·tp·pp·cp with dp dividing the global "
        f"batch of {training.global_batch_seqs} and tp dividing the heads; unpin knobs or "
        "change the GPU count."
    )


def money(value: float | None) -> str:
    """``value`` dollars in a few characters: 1.2M, 850k."""
    value = float(value or 0.0)
    for suffix, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.0f}"
