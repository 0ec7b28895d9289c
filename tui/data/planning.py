"""The Planner tab's logic: form text to planner specs, ranked layouts, and a job to launch.

Ranking uses the planner's public API only. Until ``planner.search`` (issue 5) lands,
:func:`search` enumerates a bounded family of layouts itself — tensor parallel inside a
node, pipeline stages, context parallel for long sequences, data-parallel sharding,
micro-batch and recomputation — drops those :func:`planner.layout_problems` refuses or
that do not fit in memory, estimates each with :func:`planner.estimate`, and ranks by
step time (equivalently tokens/s: the batch is fixed). Every number shown is the
planner's.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from planner import ClusterSpec, Estimate, Layout, ModelSpec, Plan, TrainingSpec

SHARDINGS = ("none", "zero1", "zero2", "zero3")
MICRO_BATCHES = (1, 2, 4, 8)
RECOMPUTES = ("none", "selective", "full")
LONG_SEQUENCE = 16384
"""Context parallelism is only tried from this sequence length up."""
MAX_RESULTS = 100
"""Ranked layouts kept for the table."""


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


@dataclass(frozen=True)
class Candidate:
    rank: int
    layout: Layout
    estimate: Estimate


@dataclass(frozen=True)
class SearchResult:
    model: ModelSpec
    cluster: ClusterSpec
    training: TrainingSpec
    ranked: tuple[Candidate, ...]
    considered: int
    """Layouts enumerated."""
    refused: int
    """Layouts the planner's checks refused (divisibility, GPU count)."""
    too_big: int
    """Valid layouts that do not fit in memory."""
    seconds: float

    def plan(self, index: int) -> Plan:
        import planner

        chosen = self.ranked[index]
        return planner.Plan(
            model=self.model,
            cluster=self.cluster,
            training=self.training,
            layout=chosen.layout,
            estimate=chosen.estimate,
        )


def _field(error: Exception, field: str) -> PlanFormError:
    return PlanFormError(f"{field}: {error}")


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


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def candidate_layouts(
    model: ModelSpec, cluster: ClusterSpec, training: TrainingSpec
) -> Iterator[Layout]:
    """The layouts the interim search tries (see module docstring)."""
    import planner

    gpus, per_node = cluster.num_gpus, cluster.gpus_per_node
    cps = [1]
    if training.seq_len >= LONG_SEQUENCE:
        cps = [cp for cp in (1, 2, 4, 8) if training.seq_len % cp == 0]
    for tp in (d for d in divisors(gpus) if d <= per_node):
        for cp in cps:
            if (gpus // tp) % cp:
                continue
            for pp in divisors(gpus // (tp * cp)):
                if pp > model.num_layers:
                    continue
                dp = gpus // (tp * cp * pp)
                if training.global_batch_seqs % dp:
                    continue
                per_replica = training.global_batch_seqs // dp
                shardings = SHARDINGS if dp * cp > 1 else ("none",)
                for sharding in shardings:
                    for micro in (m for m in MICRO_BATCHES if per_replica % m == 0):
                        for recompute in RECOMPUTES:
                            yield planner.Layout(
                                dp=dp,
                                tp=tp,
                                pp=pp,
                                cp=cp,
                                sharding=sharding,
                                micro_batch=micro,
                                recompute=recompute,
                                sequence_parallel=tp > 1,
                            )


def search(form: PlanForm) -> SearchResult:
    """Ranked layouts that fit, fastest first (see module docstring)."""
    import planner

    started = time.perf_counter()
    model, cluster, training = build_specs(form)
    accelerator = cluster.accelerator()
    found: list[tuple[float, float, Layout, Estimate]] = []
    considered = refused = too_big = 0
    for layout in candidate_layouts(model, cluster, training):
        considered += 1
        if planner.layout_problems(model, cluster, training, layout, accelerator):
            refused += 1
            continue
        estimate = planner.estimate(model, cluster, training, layout)
        if not estimate.fits:
            too_big += 1
            continue
        found.append((estimate.step.time_s, estimate.memory_gib.total, layout, estimate))
    found.sort(key=lambda item: (item[0], item[1]))
    ranked = tuple(
        Candidate(rank=i + 1, layout=layout, estimate=estimate)
        for i, (_, _, layout, estimate) in enumerate(found[:MAX_RESULTS])
    )
    return SearchResult(
        model=model,
        cluster=cluster,
        training=training,
        ranked=ranked,
        considered=considered,
        refused=refused,
        too_big=too_big,
        seconds=time.perf_counter() - started,
    )


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def job_name(model_name: str) -> str:
    """A valid job name (``[A-Za-z0-9][A-Za-z0-9._-]{0,62}``) from a model name."""
    name = _UNSAFE.sub("-", model_name).strip("-._") or "planned"
    return name[:63]


def launch_mapping(plan: Plan, backend: str) -> dict[str, Any]:
    """A JobSpec mapping that runs the reference trainer on ``plan``.

    One rank per planned GPU: ``nodes`` x ``procs_per_node`` = the plan's GPUs. On the
    local backend the ranks are processes on this machine and no GPU is requested (the
    trainer uses CUDA when it finds it); elsewhere every node asks for its GPUs.
    """
    cluster = plan.cluster
    per_node = min(cluster.gpus_per_node, cluster.num_gpus)
    return {
        "name": job_name(plan.model.name),
        "backend": backend,
        "entrypoint": {"module": "runtime.train"},
        "nodes": cluster.num_nodes,
        "procs_per_node": per_node,
        "gpus_per_node": 0 if backend == "local" else per_node,
        "plan": plan.model_dump(mode="json"),
    }


def launch_notes(plan: Plan) -> list[str]:
    """What the user should know before launching ``plan`` with the reference trainer."""
    notes = []
    layout = plan.layout
    if layout.tp > 1 or layout.pp > 1 or layout.cp > 1:
        notes.append(
            "the reference trainer is data-parallel FSDP only: tp/pp/cp of this layout "
            "are not applied (every rank holds a shard of the whole model)"
        )
    steps = plan.estimate.train.steps
    notes.append(f"{steps:,} steps of {plan.training.global_batch_tokens:,} tokens")
    return notes
