"""The layout knobs by Inputs name: which can be pinned, how pins are read, and how a
row of knob values becomes a :class:`~planner.specs.Layout` (used by the layout search's
candidate tree, :mod:`planner.layouts`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from planner.errors import PlanInputError
from planner.inputs import RECOMPUTE_CODES, SHARDING_CODES
from planner.specs import Layout

PINNABLE = {
    "dp": "dp",
    "tp": "tp",
    "pp": "pp",
    "cp": "cp",
    "ep": "ep",
    "sharding": "sharding",
    "hsdp_shard_size": "hsdp_shard",
    "micro_batch": "micro_batch",
    "recompute": "recompute",
    "interleave": "interleave",
    "sequence_parallel": "sp",
    "expert_tp": "etp",
    "uneven_stages": "uneven",
    "activation_offload": "offload",
    "schedule": "gpipe",
    "microbatch_group": "mb_group",
    "free_stage_outputs": "keep_outputs",
    "cp_impl": "cp_allgather",
}
"""Layout field -> Inputs name of the knobs that can be pinned."""

OFFLOAD_OPTIONS = (0.5,)
"""Fractions of saved activations the search tries offloading (with no recomputation):
half, which PCIe Gen5 hides under the forward and backward of the large layers that
need it; other fractions can be pinned (--offload). One option keeps the search's
candidate count within 1.4x of the search without offload."""

_SHARDING_NAMES = {code: name for name, code in SHARDING_CODES.items()}
_RECOMPUTE_NAMES = {code: name for name, code in RECOMPUTE_CODES.items()}


def layout_from_values(values: Mapping[str, float]) -> Layout:
    """A Layout from knob values keyed by Inputs name (codes for the categorical ones)."""
    sharding = _SHARDING_NAMES[float(values["sharding"])]
    return Layout(
        dp=int(values["dp"]),
        tp=int(values["tp"]),
        pp=int(values["pp"]),
        cp=int(values["cp"]),
        sharding=sharding,
        hsdp_shard_size=int(values["hsdp_shard"]) if sharding == "hsdp" else None,
        micro_batch=int(values["micro_batch"]),
        recompute=_RECOMPUTE_NAMES[float(values["recompute"])],
        interleave=int(values["interleave"]),
        sequence_parallel=bool(values["sp"]),
        ep=int(values["ep"]),
        expert_tp=int(values["etp"]) if values.get("etp", 0.0) else None,
        uneven_stages=bool(values.get("uneven", 0.0)),
        activation_offload=float(values.get("offload", 0.0)),
        schedule="gpipe" if values.get("gpipe", 0.0) else "1f1b",
        microbatch_group=int(values["mb_group"]) if values.get("mb_group", 0.0) else None,
        free_stage_outputs=not values.get("keep_outputs", 0.0),
        cp_impl="allgather" if values.get("cp_allgather", 0.0) else "ring",
    )


def pinned_values(pinned: Mapping[str, Any] | None) -> dict[str, float]:
    """Pinned Layout fields as Inputs names and numbers; unknown fields are refused."""
    out: dict[str, float] = {}
    for key, value in (pinned or {}).items():
        if value is None:
            continue
        name = PINNABLE.get(key)
        if name is None:
            raise PlanInputError(
                f"pinned: {key!r} is not a layout knob; pin one of {', '.join(PINNABLE)}."
            )
        if name == "sharding":
            text = str(value).lower()
            aliases = {"0": "none", "1": "zero1", "2": "zero2", "3": "zero3", "fsdp": "zero3"}
            text = aliases.get(text, text)
            if text not in SHARDING_CODES:
                raise PlanInputError(
                    f"pinned sharding {value!r}: use none, zero1, zero2, zero3 (fsdp) or hsdp."
                )
            out[name] = SHARDING_CODES[text]
        elif name == "recompute":
            if value not in RECOMPUTE_CODES:
                raise PlanInputError(f"pinned recompute {value!r}: use none, selective or full.")
            out[name] = RECOMPUTE_CODES[value]
        elif name in ("sp", "uneven"):
            out[name] = 1.0 if value else 0.0
        elif name == "keep_outputs":
            out[name] = 0.0 if value else 1.0
        elif name == "gpipe":
            if value not in ("1f1b", "gpipe"):
                raise PlanInputError(f"pinned schedule {value!r}: use 1f1b or gpipe.")
            out[name] = 1.0 if value == "gpipe" else 0.0
        elif name == "cp_allgather":
            if value not in ("ring", "allgather"):
                raise PlanInputError(f"pinned cp_impl {value!r}: use ring or allgather.")
            out[name] = 1.0 if value == "allgather" else 0.0
        elif name == "offload":
            if isinstance(value, bool) or not 0.0 <= float(value) <= 1.0:
                raise PlanInputError(
                    f"pinned activation_offload: a fraction in [0, 1], got {value!r}."
                )
            out[name] = float(value)
        else:
            if isinstance(value, bool) or int(value) != value or value <= 0:
                raise PlanInputError(
                    f"pinned {key}: must be a positive whole number, got {value!r}."
                )
            out[name] = float(value)
    if "hsdp_shard" in out:
        if out.setdefault("sharding", SHARDING_CODES["hsdp"]) != SHARDING_CODES["hsdp"]:
            raise PlanInputError("pinned hsdp_shard_size goes with sharding='hsdp' only.")
        if out["hsdp_shard"] <= 1:
            raise PlanInputError("pinned hsdp_shard_size must be at least 2.")
    return out
