"""``plan estimate``'s unpinned layout knobs: what ``plan search`` picks under the pins.

An estimate with some knobs given (say tp, pp and dp) fills the others with the fastest
layout the search finds under those pins, so an estimate and a search of the same request
agree; :func:`explain` says why the alternatives lost (the runner-up, and the chosen
layout with one knob changed: slower, or does not fit).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from planner.errors import PlanInputError
from planner.estimator import estimate
from planner.layout_search import SearchResult, search
from planner.result import Estimate
from planner.search_explain import describe_layout, why_it_loses
from planner.specs import ClusterSpec, Layout, ModelSpec, TrainingSpec

FLAGS = {
    "tp": "--tp",
    "pp": "--pp",
    "cp": "--cp",
    "dp": "--dp",
    "ep": "--ep",
    "sharding": "--zero",
    "hsdp_shard_size": "--hsdp-shard",
    "micro_batch": "--micro-batch",
    "recompute": "--recompute",
    "interleave": "--interleave",
    "sequence_parallel": "--sequence-parallel",
    "uneven_stages": "--uneven-stages",
    "activation_offload": "--offload",
}
"""Layout field -> the ``plan estimate`` flag that pins it (and the search fills in)."""

PINNED_ONLY = {
    "schedule": "--schedule",
    "microbatch_group": "--microbatch-group",
    "free_stage_outputs": "--free-stage-outputs",
    "expert_tp": "--expert-tp",
    "cp_impl": "--cp-impl",
}
"""Knobs the search does not vary (their defaults are never slower): given or default."""

_NEGATED = {"sequence_parallel": "--no-sequence-parallel", "uneven_stages": "--even-stages"}


def flag_text(field: str, value: Any) -> str:
    """``--tp 8``, ``--no-sequence-parallel``: one knob as the flag that pins it."""
    if isinstance(value, bool):
        return FLAGS[field] if value else _NEGATED[field]
    return f"{FLAGS[field]} {value:g}" if isinstance(value, float) else f"{FLAGS[field]} {value}"


def searched_layout(
    model: ModelSpec,
    cluster: ClusterSpec,
    training: TrainingSpec,
    pins: Mapping[str, Any],
) -> tuple[Layout, SearchResult, list[str]] | None:
    """The search's best layout under ``pins`` (objective: time), the search result and
    one note per knob it chose; None when nothing fits or no layout is valid."""
    result = search(model, cluster, training, pinned=dict(pins), top_k=2)
    if not result.ranked:
        return None
    best = result.ranked[0].layout
    notes = [
        f"{flag_text(field, getattr(best, field))} (`plan search`'s fastest layout "
        "under the given pins)"
        for field in FLAGS
        if field not in pins and getattr(best, field) is not None
    ]
    return best, result, notes


_ALTERNATIVES: dict[str, Any] = {
    "recompute": lambda lo: [m for m in ("none", "selective", "full") if m != lo.recompute],
    "uneven_stages": lambda lo: [not lo.uneven_stages] if lo.pp > 1 else [],
    "activation_offload": lambda lo: [0.0] if lo.activation_offload > 0 else [],
    "interleave": lambda lo: [1] if lo.interleave > 1 else [],
    "sequence_parallel": lambda lo: [not lo.sequence_parallel] if lo.tp > 1 else [],
}
"""Per knob, the values :func:`explain` tries in place of the chosen one."""


def explain(
    model: ModelSpec,
    cluster: ClusterSpec,
    training: TrainingSpec,
    chosen: Estimate,
    result: SearchResult,
    pins: Mapping[str, Any],
) -> list[str]:
    """Why the chosen layout won: the runner-up's loss, then each unpinned knob of
    :data:`_ALTERNATIVES` changed alone (``selective recompute: +3.1 % step``, or
    ``even stages: 91/80 GiB, does not fit``)."""
    lines = []
    if len(result.ranked) > 1:
        runner = result.ranked[1]
        why = result.why_not[1] or why_it_loses(runner, chosen, result.objective)
        lines.append(f"runner-up {describe_layout(runner.layout)}: {why}")
    layout = chosen.layout
    for field, options in _ALTERNATIVES.items():
        if field in pins:
            continue
        for value in options(layout):
            try:
                other = estimate(model, cluster, training, layout.model_copy(update={field: value}))
            except (PlanInputError, ValueError):
                continue
            name = flag_text(field, value)
            mem = other.memory_gib
            if not other.fits:
                lines.append(
                    f"{name}: {mem.total:.0f}/{mem.capacity:.0f} GiB "
                    f"(+{mem.total - chosen.memory_gib.total:.1f}), does not fit"
                )
            else:
                slower = other.step.time_s / chosen.step.time_s - 1
                lines.append(f"{name}: step {slower:+.1%}, {mem.total:.0f} GiB")
    return lines
