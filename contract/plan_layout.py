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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contract import env
from contract.event_kinds import EventKind
from contract.events import Event
from contract.jobdir import write_json_atomic
from contract.plan import PLAN_SCHEMA_VERSION, Plan, PlanError, PlanLayout, parse_plan

SHARDINGS = ("none", "zero1", "zero2", "zero3", "hsdp")
"""Data-parallel sharding, the planner's names (planner.specs.Layout.sharding)."""

RECOMPUTES = ("none", "selective", "full")
"""Activation recomputation, the planner's names (planner.specs.Layout.recompute)."""

SCHEDULES = ("1f1b", "gpipe")
"""Pipeline schedules, the planner's names (planner.specs.Layout.schedule); 1f1b with
interleave > 1 is interleaved 1F1B."""

CP_IMPLS = ("allgather", "ring")
"""Context parallelism: keys/values all-gathered over the cp group (Llama 3 paper,
Dubey et al. 2024, section 3.3.2) or ring attention (Liu et al. 2023)."""

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
    if layout.schedule is not None and layout.schedule not in SCHEDULES:
        raise PlanError(
            f"{source}: plan layout.schedule {layout.schedule!r}: use one of {', '.join(SCHEDULES)}"
        )
    if layout.cp_impl is not None and layout.cp_impl not in CP_IMPLS:
        raise PlanError(
            f"{source}: plan layout.cp_impl {layout.cp_impl!r}: use one of {', '.join(CP_IMPLS)}"
        )
    seq_len = plan.training.seq_len
    if seq_len is not None and seq_len % (2 * degrees["cp"]):
        raise PlanError(
            f"{source}: plan layout.cp {degrees['cp']}: 2 x cp must divide training.seq_len "
            f"{seq_len} (load-balanced causal chunks); plan a cp that divides"
        )
    interleave = layout.interleave if layout.interleave is not None else 1
    if interleave < 1:
        raise PlanError(f"{source}: plan layout.interleave {interleave}: must be 1 or more")
    layers = plan.model.num_layers
    stages = degrees["pp"] * interleave
    if layers is not None and degrees["pp"] > 1:
        needed = stages + (2 if layout.uneven_stages else 0)
        if layers < needed:
            raise PlanError(
                f"{source}: plan layout.pp x layout.interleave = {stages} virtual stages "
                f"for model.num_layers {layers}: every stage needs a block"
                + (" (uneven stages: two more)" if layout.uneven_stages else "")
                + "; plan with fewer stages"
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


def dp_at_world_size(
    world_size: int,
    *,
    model_ranks: int,
    global_batch_seqs: int | None,
    micro_batch: int,
    hsdp_shard_size: int | None = None,
    ep: int = 1,
) -> tuple[int, int | None]:
    """(dp, grad_accum) of a planned job running on ``world_size`` ranks, as elastic
    resizing runs it: the ranks of one model replica (``model_ranks`` = tp x pp x cp) and
    the hsdp shard group stay, dp is what the world size leaves, and gradient
    accumulation changes so an optimiser step still takes the plan's global batch
    (grad_accum = global batch / (dp x micro-batch), Megatron-LM's number of
    micro-batches: global_batch_size / (micro_batch_size x data_parallel_size)); the
    expert-parallel degree ``ep`` must divide dp (its ranks split the experts). Raises
    :class:`PlanError` saying what does not hold; the caller names the node count."""
    if world_size < model_ranks or world_size % model_ranks:
        raise PlanError(
            f"{world_size} ranks do not hold whole model replicas of tp x pp x cp = "
            f"{model_ranks} ranks"
        )
    dp = world_size // model_ranks
    if hsdp_shard_size and dp % hsdp_shard_size:
        raise PlanError(f"dp {dp} is not a multiple of the hsdp shard group {hsdp_shard_size}")
    if dp % ep:
        raise PlanError(f"dp {dp} is not a multiple of ep {ep}, the ranks that split the experts")
    if global_batch_seqs is None:
        return dp, None
    if global_batch_seqs % (dp * micro_batch):
        raise PlanError(
            f"the global batch of {global_batch_seqs} sequences does not divide into "
            f"dp {dp} x micro_batch {micro_batch}"
        )
    return dp, global_batch_seqs // (dp * micro_batch)


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


APPLIED_FIELDS = (
    "dp_replicate",
    "dp_shard",
    "tp",
    "pp",
    "interleave",
    "schedule",
    "uneven_stages",
    "cp",
    "cp_impl",
    "ep",
    "sequence_parallel",
    "recompute",
    "sharding",
    "precision",
    "world_size",
    "global_batch_tokens",
    "micro_batch",
    "grad_accum",
)
"""The fields of the ``layout_applied`` event that a plan also says, in the event's order."""

ELASTIC_DP_FIELD = "elastic_dp"
"""The ``layout_applied`` field that says dp followed the world size at this start (the
job's node range allowed it: ``launch --nodes MIN:MAX`` of a plan)."""

RESIZE_FIELDS = ("dp_replicate", "dp_shard", "world_size", "grad_accum")
"""What a resize of dp changes (:func:`dp_at_world_size`); tp, the batch and the rest stay."""


def planned_layout_fields(plan: Plan) -> dict[str, Any]:
    """The plan's layout in the ``layout_applied`` event's fields.

    A field the plan leaves to the trainer (no sharding, no precision) is absent, and so
    are world size, tokens per step and accumulation when the layout does not resolve:
    nothing is claimed the plan did not say.
    """
    lay = plan.layout
    if not lay.model_fields_set:
        return {}
    tp = lay.tp or 1
    fields: dict[str, Any] = {
        "tp": tp,
        "pp": lay.pp or 1,
        "interleave": lay.interleave or 1,
        "cp": lay.cp or 1,
        "ep": lay.ep or 1,
        # The trainer splits the sequence only under tp > 1 (the event says what ran).
        "sequence_parallel": bool(lay.sequence_parallel) and tp > 1,
        "recompute": lay.recompute or "none",
        "micro_batch": lay.micro_batch or 1,
    }
    if (lay.cp or 1) > 1:
        # How the sequence is split only means something with context parallelism.
        fields["cp_impl"] = lay.cp_impl or "allgather"
    if (lay.pp or 1) > 1:
        # Schedule and stage balance only mean something with a pipeline.
        fields["schedule"] = lay.schedule or "1f1b"
        fields["uneven_stages"] = bool(lay.uneven_stages)
    dp = lay.dp or 1
    if lay.sharding is not None:
        fields["sharding"] = lay.sharding
        # The split of dp that runtime.train.parallel.dims_from_layout makes.
        if lay.sharding == "hsdp" and lay.hsdp_shard_size:
            fields["dp_replicate"] = dp // lay.hsdp_shard_size
            fields["dp_shard"] = lay.hsdp_shard_size
        elif lay.sharding == "none":
            fields["dp_replicate"], fields["dp_shard"] = dp, 1
        elif lay.sharding != "hsdp":
            fields["dp_replicate"], fields["dp_shard"] = 1, dp
    if plan.training.precision is not None:
        fields["precision"] = plan.training.precision
    try:
        resolved = resolve_layout(plan)
    except PlanError:
        return fields
    fields["world_size"] = resolved.world_size
    if resolved.tokens_per_step is not None:
        fields["global_batch_tokens"] = resolved.tokens_per_step
    if resolved.grad_accum is not None:
        fields["grad_accum"] = resolved.grad_accum
    return fields


def last_layout_applied(events: Iterable[Event]) -> dict[str, Any] | None:
    """The fields of the newest ``layout_applied`` event (each restart writes one), or
    None before the trainer has written any."""
    found = None
    for event in events:
        if event.kind is EventKind.LAYOUT_APPLIED:
            found = event.record
    if found is None:
        return None
    return {name: found[name] for name in (*APPLIED_FIELDS, ELASTIC_DP_FIELD) if name in found}


@dataclass(frozen=True)
class LayoutCheck:
    """The plan's layout beside the one the trainer says it applied."""

    planned: dict[str, Any]
    """The plan's layout in the event's fields (:func:`planned_layout_fields`)."""
    applied: dict[str, Any] | None
    """The newest ``layout_applied`` event's fields; None before the trainer wrote one."""
    differs: tuple[str, ...]
    """Fields both give, with different values, in :data:`APPLIED_FIELDS` order, except
    those in ``resized``: what ran is not what was planned (flagged)."""
    resized: tuple[str, ...] = ()
    """Fields that differ only because dp followed the world size as the job's node range
    allows (tp and the global batch kept, grad_accum changed to keep it): the values
    :func:`dp_at_world_size` gives at the world size that ran. Shown, not flagged."""

    def json(self) -> dict[str, Any]:
        """The form ``scalectl jobs --json`` prints."""
        return {
            "planned": self.planned,
            "applied": self.applied,
            "differs": list(self.differs),
            "resized": list(self.resized),
        }

    def difference_text(self, name: str) -> str:
        """``grad_accum: plan 2, ran 4``."""
        applied = self.applied or {}
        return f"{name}: plan {self.planned.get(name)}, ran {applied.get(name)}"


def check_layout(plan: Plan, applied: Mapping[str, Any] | None) -> LayoutCheck:
    """Compare a plan's layout with a ``layout_applied`` record (pure).

    A field only one side gives is not a difference: a plan that leaves sharding to the
    trainer, or an event from a trainer that did not write that field yet. When the
    record says dp followed the world size (``elastic_dp``), the fields of
    :data:`RESIZE_FIELDS` that equal what the plan gives at the world size that ran are
    ``resized``, not ``differs``; any other value still differs.
    """
    planned = planned_layout_fields(plan)
    if applied is None:
        return LayoutCheck(planned, None, ())
    ran = {name: applied[name] for name in APPLIED_FIELDS if name in applied}
    differs = tuple(
        name
        for name in APPLIED_FIELDS
        if name in planned and name in ran and planned[name] != ran[name]
    )
    resized: tuple[str, ...] = ()
    if differs and applied.get(ELASTIC_DP_FIELD) is True:
        allowed = _fields_at_world_size(plan, ran.get("world_size"))
        resized = tuple(n for n in differs if n in RESIZE_FIELDS and allowed.get(n) == ran[n])
        differs = tuple(n for n in differs if n not in resized)
    return LayoutCheck(planned, ran, differs, resized)


def _fields_at_world_size(plan: Plan, world_size: Any) -> dict[str, Any]:
    """The plan's layout fields with dp resized to ``world_size`` ranks; none when that
    size is not one the plan can run at."""
    lay = plan.layout
    if not isinstance(world_size, int) or isinstance(world_size, bool):
        return {}
    try:
        dp, _ = dp_at_world_size(
            world_size,
            model_ranks=(lay.tp or 1) * (lay.pp or 1) * (lay.cp or 1),
            global_batch_seqs=plan.training.global_batch_seqs,
            micro_batch=lay.micro_batch or 1,
            hsdp_shard_size=lay.hsdp_shard_size if lay.sharding == "hsdp" else None,
        )
    except PlanError:
        return {}
    return planned_layout_fields(
        plan.model_copy(update={"layout": lay.model_copy(update={"dp": dp})})
    )
