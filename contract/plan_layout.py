"""The layout of a Plan as a job runs it: its checks and the figures derived from it.

``scalectl launch --plan`` and the reference trainer agree here on what a layout means:
the names of the sharding and recomputation choices, which degrees must hold, the world
size (dp x tp x pp x cp, the product torchtitan's ``ParallelDims`` checks), the tokens
of one optimiser step (the plan's global batch, whatever the tensor-parallel degree)
and the gradient accumulation (global batch / (dp x micro-batch), never divided by tp).

Every check raises :class:`~contract.plan.PlanError` with one line naming the field.
Standard library and pydantic only (every rank imports the contract).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contract import env
from contract.jobdir import write_json_atomic
from contract.plan import PLAN_SCHEMA_VERSION, Plan, PlanError, PlanLayout, parse_plan

SHARDINGS = ("none", "zero1", "zero2", "zero3", "hsdp")
"""Data-parallel sharding, the planner's names (planner.specs.Layout.sharding)."""

RECOMPUTES = ("none", "selective", "full")
"""Activation recomputation, the planner's names (planner.specs.Layout.recompute)."""

DEGREES = ("dp", "tp", "pp", "cp", "ep")
"""The layout's degrees of parallelism."""


@dataclass(frozen=True)
class ResolvedLayout:
    """What one job of a Plan runs, in numbers."""

    layout: PlanLayout
    """The plan's layout."""
    world_size: int
    """Ranks: dp x tp x pp x cp (experts are spread over these ranks, not added)."""
    global_batch_seqs: int | None
    """Sequences per optimiser step, the whole job (None: the plan does not say)."""
    tokens_per_step: int | None
    """global_batch_seqs x seq_len."""
    grad_accum: int | None
    """Micro-steps per optimiser step: global batch / (dp x micro-batch)."""

    def text(self) -> str:
        """One line for ``launch --dry-run``."""
        lay = self.layout
        extra = [f"sequence_parallel={bool(lay.sequence_parallel)}"]
        extra.append(f"recompute={lay.recompute or 'none'}")
        if lay.hsdp_shard_size:
            extra.append(f"hsdp_shard_size={lay.hsdp_shard_size}")
        tokens = "?" if self.tokens_per_step is None else f"{self.tokens_per_step:,}"
        accum = "?" if self.grad_accum is None else str(self.grad_accum)
        return (
            f"layout {lay.text()} ({', '.join(extra)}); world size {self.world_size}; "
            f"tokens per step {tokens}; grad accum {accum}"
        )


def _degree(layout: PlanLayout, name: str, source: str) -> int:
    value = getattr(layout, name)
    if value is None:
        return 1
    if value < 1:
        raise PlanError(f"{source}: plan layout.{name} {value}: must be 1 or more")
    return int(value)


def resolve_layout(plan: Plan, source: str = "plan") -> ResolvedLayout:
    """Check the plan's layout and derive world size, tokens per step and accumulation."""
    layout = plan.layout
    degrees = {name: _degree(layout, name, source) for name in DEGREES}
    if layout.sharding is not None and layout.sharding not in SHARDINGS:
        raise PlanError(
            f"{source}: plan layout.sharding {layout.sharding!r}: use one of {', '.join(SHARDINGS)}"
        )
    if layout.recompute is not None and layout.recompute not in RECOMPUTES:
        raise PlanError(
            f"{source}: plan layout.recompute {layout.recompute!r}: use one of "
            f"{', '.join(RECOMPUTES)}"
        )
    tp = degrees["tp"]
    for field in ("num_attention_heads", "num_kv_heads"):
        heads = getattr(plan.model, field)
        if heads is not None and heads % tp:
            raise PlanError(
                f"{source}: plan layout.tp {tp}: must divide model.{field} {heads}; "
                "plan with a tp that divides the heads"
            )
    micro = layout.micro_batch if layout.micro_batch is not None else 1
    if micro < 1:
        raise PlanError(f"{source}: plan layout.micro_batch {micro}: must be 1 or more")
    batch, seq = plan.training.global_batch_seqs, plan.training.seq_len
    accum = None
    if batch is not None:
        per_step = degrees["dp"] * micro
        if batch < 1 or batch % per_step:
            raise PlanError(
                f"{source}: plan training.global_batch_seqs {batch}: must be a positive "
                f"multiple of layout.dp x layout.micro_batch = {per_step}"
            )
        accum = batch // per_step
    world = degrees["dp"] * tp * degrees["pp"] * degrees["cp"]
    tokens = batch * seq if batch is not None and seq is not None else None
    return ResolvedLayout(layout, world, batch, tokens, accum)


def layout_environment(resolved: ResolvedLayout) -> dict[str, str]:
    """The ``SCALECTL_LAYOUT_*`` variables of a resolved layout (``contract.env.layout``
    reads them); a value the plan does not give is left unset."""
    lay = resolved.layout
    values: dict[str, Any] = {
        env.LAYOUT_DP_ENV: lay.dp or 1,
        env.LAYOUT_TP_ENV: lay.tp or 1,
        env.LAYOUT_PP_ENV: lay.pp or 1,
        env.LAYOUT_CP_ENV: lay.cp or 1,
        env.LAYOUT_EP_ENV: lay.ep or 1,
        env.LAYOUT_SEQUENCE_PARALLEL_ENV: "1" if lay.sequence_parallel else "0",
        env.LAYOUT_SHARDING_ENV: lay.sharding,
        env.LAYOUT_HSDP_SHARD_SIZE_ENV: lay.hsdp_shard_size,
        env.LAYOUT_RECOMPUTE_ENV: lay.recompute,
        env.LAYOUT_MICRO_BATCH_ENV: lay.micro_batch,
        env.LAYOUT_GRAD_ACCUM_ENV: resolved.grad_accum,
        env.LAYOUT_GLOBAL_BATCH_TOKENS_ENV: resolved.tokens_per_step,
    }
    return {name: str(value) for name, value in values.items() if value is not None}


def plan_document(plan_fields: dict[str, Any]) -> dict[str, Any]:
    """The plan.json document of a planner Plan's JSON fields, with its schema version."""
    return {"schema_version": PLAN_SCHEMA_VERSION, **plan_fields}


def write_plan(document: dict[str, Any], path: Path) -> Plan:
    """Validate ``document`` as a Plan with a runnable layout and write it to ``path``
    (atomically); returns the Plan. Nothing is written when it is not one."""
    plan = parse_plan(document, str(path))
    resolve_layout(plan, str(path))
    write_json_atomic(path, document)
    return plan


def read_document(path: Path) -> dict[str, Any]:
    """The JSON object of a plan file as written (to embed it unchanged in a job)."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PlanError(f"{path}: no such file; pass the plan.json the planner wrote") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PlanError(f"{path}: not a readable JSON file ({exc})") from None
    if not isinstance(document, dict):
        raise PlanError(f"{path}: expected a JSON object (a planner Plan)")
    return document
