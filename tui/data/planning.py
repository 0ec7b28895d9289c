"""The Planner tab's logic: form text to planner specs, ranked layouts, and a job to launch.

Ranking is :func:`planner.search` (issue 5): every valid layout of the model on the
cluster, enumerated and costed as numpy arrays, those that fit ranked by the chosen
objective, with the reason each loses to the first. Every number shown is the
planner's; this module only turns the form into specs and a chosen plan into a JobSpec.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from launcher import PlannedJob
    from planner import ClusterSpec, Estimate, Layout, ModelSpec, Plan, TrainingSpec
    from planner import layout_search as planner_search

MAX_RESULTS = 100
"""Ranked layouts asked of the search (the table's rows)."""
OBJECTIVES = ("time", "cost", "energy", "mfu")
"""What ``planner.search`` can rank by (expected wall time, cost, facility energy, MFU)."""


class PlanFormError(ValueError):
    """A Planner form field the user filled in is wrong (message names the field)."""

    user_error = True


@dataclass(frozen=True)
class PlanForm:
    """The Planner form as typed (counts accept ``2k``, ``15T`` like ``scalectl plan``)."""

    model: str
    """A preset (``scalectl plan models``) or a path to a Hugging Face config.json."""
    gpu: str
    """A catalog accelerator (``scalectl plan gpus``)."""
    gpus: str
    """GPUs in the job."""
    seq_len: str
    """Tokens per sequence."""
    batch: str
    """Global batch, sequences per optimizer step."""
    tokens: str
    """Training budget in tokens."""
    gpus_per_node: str = "8"
    """GPUs per node (tensor parallelism stays inside one)."""
    objective: str = "time"
    """What the layouts are ranked by (see OBJECTIVES)."""


@dataclass(frozen=True)
class Candidate:
    rank: int
    layout: Layout
    estimate: Estimate
    why_not: str
    """Why it loses to the first ('' for the first), from the search."""


@dataclass(frozen=True)
class SearchResult:
    """The planner's answer, as the table shows it."""

    found: planner_search.SearchResult
    ranked: tuple[Candidate, ...]

    @property
    def model(self) -> ModelSpec:
        return self.found.model

    @property
    def cluster(self) -> ClusterSpec:
        return self.found.cluster

    @property
    def training(self) -> TrainingSpec:
        return self.found.training

    def plan(self, index: int) -> Plan:
        """Row ``index`` as the Plan a job is launched with (plan.json)."""
        return self.found.plan(index)


def resolve_model(value: str) -> ModelSpec:
    """A preset name, or a config.json (or its directory) for paths."""
    import planner

    value = value.strip()
    if not value:
        raise PlanFormError("model: give a preset (e.g. llama3-8b) or a config.json path")
    path = Path(value).expanduser()
    if value.endswith(".json") or "/" in value or path.is_dir():
        return planner.load_hf_config(path)
    return planner.get_model(value)


def _whole(text: str, field: str, *, binary: bool) -> int:
    import planner

    value = planner.parse_count(text.strip() or "0", field, binary=binary)
    if value != int(value):
        raise PlanFormError(f"{field}: must be a whole number, got {text!r}")
    return int(value)


def build_specs(form: PlanForm) -> tuple[ModelSpec, ClusterSpec, TrainingSpec]:
    """The planner specs the form describes; PlanInputError/PlanFormError name the field."""
    from pydantic import ValidationError

    import planner

    model = resolve_model(form.model)
    gpu = planner.get_gpu(form.gpu.strip() or "?").name
    gpus = _whole(form.gpus, "GPUs", binary=True)
    per_node = _whole(form.gpus_per_node, "GPUs per node", binary=False)
    seq_len = _whole(form.seq_len, "sequence length", binary=True)
    batch = _whole(form.batch, "batch", binary=True)
    tokens = planner.parse_count(form.tokens.strip() or "0", "tokens")
    try:
        cluster = planner.ClusterSpec(gpu=gpu, num_gpus=gpus, gpus_per_node=min(per_node, gpus))
        training = planner.TrainingSpec(
            seq_len=seq_len, global_batch_seqs=batch, total_tokens=tokens
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise PlanFormError(f"{where}: {first.get('msg')}") from None
    return model, cluster, training


def search(form: PlanForm) -> SearchResult:
    """Ranked layouts that fit (``planner.search``); an infeasible problem is reported
    as a PlanInputError naming the nearest answer."""
    import planner

    if form.objective not in OBJECTIVES:
        raise PlanFormError(f"rank by: choose one of {', '.join(OBJECTIVES)}")
    objective: Any = form.objective  # one of OBJECTIVES, checked above
    model, cluster, training = build_specs(form)
    found = planner.search(model, cluster, training, objective=objective, top_k=MAX_RESULTS)
    found.raise_if_infeasible()
    ranked = tuple(
        Candidate(rank=i + 1, layout=estimate.layout, estimate=estimate, why_not=why)
        for i, (estimate, why) in enumerate(zip(found.ranked, found.why_not, strict=True))
    )
    return SearchResult(found=found, ranked=ranked)


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def job_name(model_name: str) -> str:
    """A valid job name (``[A-Za-z0-9][A-Za-z0-9._-]{0,62}``) from a model name."""
    name = _UNSAFE.sub("-", model_name).strip("-._") or "planned"
    return name[:63]


def planned_job(plan: Plan, backend: str) -> PlannedJob:
    """The job that runs the reference trainer on ``plan``: ``scalectl launch --plan``'s
    path (:func:`launcher.plan_job`), named after the model.

    One rank per planned GPU: ``nodes`` x ``procs_per_node`` = the plan's GPUs. On the
    local backend the ranks are processes on this machine and no GPU is requested (the
    trainer uses CUDA when it finds it); elsewhere every node asks for its GPUs.
    """
    from launcher import LaunchFlags, plan_job

    flags = LaunchFlags(backend=backend, name=job_name(plan.model.name))
    return plan_job(plan, flags, source="planner tab")


def launch_notes(plan: Plan) -> list[str]:
    """What the user should know before launching ``plan`` with the reference trainer."""
    notes = []
    layout = plan.layout
    if layout.pp > 1 or layout.cp > 1 or layout.ep > 1:
        notes.append(
            "the reference trainer applies dp, tp and sharding; pp/cp/ep of this layout "
            "are not applied yet, so it refuses to start (exit 2 naming the degree)"
        )
    steps = plan.estimate.train.steps
    notes.append(f"{steps:,} steps of {plan.training.global_batch_tokens:,} tokens")
    return notes
