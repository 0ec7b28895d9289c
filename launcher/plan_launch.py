"""``scalectl launch --plan plan.json``: the planner's Plan becomes the job (pure, no I/O
beyond reading the plan file).

Nodes and ranks per node come from the plan's cluster; ``--nodes`` and
``--nproc-per-node`` may override them while the layout still holds (nodes x ranks per
node = dp x tp x pp x cp, whole tensor-parallel groups on each node), otherwise the
launch is refused naming the flag. ``--nodes MIN:MAX`` makes the job elastic: ranks per
node stay, and every node count of the range must run the layout with tp kept and dp
resized (:func:`check_node_range`); the trainer then derives dp and gradient
accumulation at each rendezvous round (``--elastic-dp``). The entrypoint is the
reference trainer (the words after ``--`` are its arguments) unless
``--module``/``--script`` or the spec file names the user's program; the plan is
embedded in the spec, so it lands in the job directory as ``plan.json`` and the trainer
reads its layout from there.

:func:`plan_job` is the one path from a plan to a JobSpec: ``scalectl launch --plan``,
``make run`` (scripts/main_job.py), scripts/gpu_check.py and the TUI's ``l`` all take it.
"""

from __future__ import annotations

import dataclasses
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from contract.plan import Plan, PlanError, parse_plan
from contract.plan_layout import (
    ResolvedLayout,
    dp_at_world_size,
    plan_document,
    read_document,
    resolve_layout,
)
from contract.plan_trainer import reference_trainer_refusal
from launcher.errors import LaunchInputError
from launcher.flags import LaunchFlags, build_mapping, default_name
from launcher.spec import JobSpec, spec_from_mapping
from planner.export_frameworks import framework_arguments, framework_environment
from planner.export_plan import TARGETS, ExportError, export_plan

REFERENCE_TRAINER = "runtime.train"
"""The module run when the launch names no program."""


def with_default_entrypoint(flags: LaunchFlags, file_data: dict[str, Any] | None) -> LaunchFlags:
    """The flags with the reference trainer as ``--module`` when nothing names a program:
    the words after ``--`` are then the trainer's arguments."""
    if flags.module or flags.script or (file_data and "entrypoint" in file_data):
        return flags
    return dataclasses.replace(flags, module=REFERENCE_TRAINER)


def _plan_nodes_and_procs(plan: Any, world: int) -> tuple[int, int]:
    """(nodes, ranks per node) of the plan's cluster for ``world`` ranks."""
    cluster = plan.cluster
    per_node = cluster.gpus_per_node or world
    nodes = cluster.num_nodes or max(1, -(-world // per_node))
    return nodes, max(1, world // nodes)


def _node_range(nodes: str) -> tuple[int, int]:
    """``--nodes N`` or ``MIN:MAX`` as (min, max); the spec's own check names a bad one."""
    parts = [p.strip() for p in nodes.strip().split(":")]
    if len(parts) in (1, 2) and all(p.isdigit() and int(p) >= 1 for p in parts):
        low, high = int(parts[0]), int(parts[-1])
        if low <= high:
            return low, high
    raise LaunchInputError(f"--nodes {nodes}: write N or MIN:MAX with 1 <= MIN <= MAX, e.g. 1:2")


def check_node_range(plan: Plan, low: int, high: int, procs: int, knob: str) -> None:
    """Refuse a node range of a planned reference-trainer job unless every node count in
    it runs the layout: whole tp x pp x cp replicas, an hsdp shard group and an ep that
    divide dp, and a global batch that divides into dp x micro-batch (elastic resizing keeps tp and
    the plan's tokens per step and changes only dp and gradient accumulation,
    ``contract.plan_layout.dp_at_world_size``). ``knob`` names the flag or field."""
    lay = plan.layout
    for count in range(low, high + 1):
        try:
            dp_at_world_size(
                count * procs,
                model_ranks=(lay.tp or 1) * (lay.pp or 1) * (lay.cp or 1),
                global_batch_seqs=plan.training.global_batch_seqs,
                micro_batch=lay.micro_batch or 1,
                hsdp_shard_size=lay.hsdp_shard_size if lay.sharding == "hsdp" else None,
                ep=lay.ep or 1,
            )
        except PlanError as exc:
            raise LaunchInputError(
                f"{knob} {low}:{high}: at {count} node(s) x {procs} rank(s) {exc}; give a "
                "node range whose every count runs the plan's layout, or plan another "
                "global batch"
            ) from None


def apply_plan_document(
    document: dict[str, Any],
    source: str,
    data: dict[str, Any],
    flags: LaunchFlags,
    prefix: str = "",
) -> tuple[dict[str, Any], ResolvedLayout]:
    """The spec mapping ``data`` with the plan document's job in it, and the resolved
    layout; ``source`` names the plan in errors (its path), ``prefix`` the flag."""
    try:
        plan = parse_plan(document, source)
        resolved = resolve_layout(plan, source)
    except PlanError as exc:
        raise LaunchInputError(f"{prefix}{exc}") from None
    if data.get("plan") is not None:
        raise LaunchInputError(
            "--plan: the spec file has a plan: block too; give one of them, not both"
        )
    world = resolved.world_size
    nodes, procs = _plan_nodes_and_procs(plan, world)
    if flags.nodes is not None and len(set(_node_range(flags.nodes))) == 2:
        return _apply_node_range(plan, document, data, flags, resolved, procs)
    if flags.nodes is not None:
        nodes = _node_range(flags.nodes)[0]
        if flags.procs_per_node is None and nodes and world % nodes == 0:
            procs = world // nodes
    if flags.procs_per_node is not None:
        procs = flags.procs_per_node
        if flags.nodes is None and procs and world % procs == 0:
            nodes = world // procs
    if nodes * procs != world:
        knob = "--nproc-per-node" if flags.procs_per_node is not None else "--nodes"
        raise LaunchInputError(
            f"{knob}: {nodes} node(s) x {procs} rank(s) = {nodes * procs} ranks, but the "
            f"plan's layout {plan.layout.text()} needs {world}; drop the flag or plan "
            f"for {nodes * procs} GPUs"
        )
    tp = plan.layout.tp or 1
    if procs % tp:
        raise LaunchInputError(
            f"--nproc-per-node {procs}: a node must hold whole tensor-parallel groups of "
            f"tp {tp}; give a multiple of {tp}"
        )
    return _planned_mapping(document, data, str(nodes), procs), resolved


def _apply_node_range(
    plan: Plan,
    document: dict[str, Any],
    data: dict[str, Any],
    flags: LaunchFlags,
    resolved: ResolvedLayout,
    procs: int,
) -> tuple[dict[str, Any], ResolvedLayout]:
    """``--nodes MIN:MAX`` with a plan: ranks per node as planned (or ``--nproc-per-node``),
    dp follows the node count of each rendezvous round (the trainer's ``--elastic-dp``)."""
    low, high = _node_range(flags.nodes or "")
    if flags.procs_per_node is not None:
        procs = flags.procs_per_node
    tp = plan.layout.tp or 1
    if procs % tp:
        raise LaunchInputError(
            f"--nproc-per-node {procs}: a node must hold whole tensor-parallel groups of "
            f"tp {tp}; give a multiple of {tp}"
        )
    check_node_range(plan, low, high, procs, "--nodes")
    return _planned_mapping(document, data, f"{low}:{high}", procs), resolved


def _planned_mapping(
    document: dict[str, Any], data: dict[str, Any], nodes: str, procs: int
) -> dict[str, Any]:
    out = {**data, "plan": document, "nodes": nodes, "procs_per_node": procs}
    if out.get("backend", "local") != "local" and "gpus_per_node" not in out:
        # One GPU per planned rank on a cluster; on the local backend the ranks are
        # processes of this machine and the trainer takes CUDA when it finds it.
        out["gpus_per_node"] = procs
    if "name" not in out and isinstance(out.get("entrypoint"), dict):
        out["name"] = default_name(out["entrypoint"])
    return out


def describe(resolved: ResolvedLayout, data: dict[str, Any]) -> str:
    """The ``--dry-run`` lines about the plan, broken between words before column 80
    (the width of the command lines that follow); for a node range, the dp and gradient
    accumulation each node count runs (tp kept)."""
    lines = [
        f"plan: {resolved.text()}",
        f"plan: {data['nodes']} node(s) x {data['procs_per_node']} rank(s) per node",
    ]
    low, _, high = str(data["nodes"]).partition(":")
    if high:
        plan = parse_plan(data["plan"])
        lay, procs = plan.layout, int(data["procs_per_node"])
        for count in range(int(low), int(high) + 1):
            dp, accum = dp_at_world_size(
                count * procs,
                model_ranks=(lay.tp or 1) * (lay.pp or 1) * (lay.cp or 1),
                global_batch_seqs=plan.training.global_batch_seqs,
                micro_batch=lay.micro_batch or 1,
            )
            lines.append(
                f"plan: elastic: at {count} node(s) dp{dp} tp{lay.tp or 1}, grad accum "
                f"{'?' if accum is None else accum}"
            )
    return "\n".join(textwrap.fill(line, 80, subsequent_indent="      ") for line in lines)


@dataclasses.dataclass(frozen=True)
class PlannedJob:
    """A plan made a job, not yet launched."""

    spec: JobSpec
    """What ``launcher.api.launch`` submits (the plan embedded: plan.json in the job)."""
    resolved: ResolvedLayout
    """The plan's layout, world size, tokens per step and gradient accumulation."""
    text: str
    """The ``--dry-run`` lines about the plan."""


def _plan_document(plan: Any) -> tuple[dict[str, Any], str]:
    """(document, name in errors) of a plan file's path, a mapping or a Plan model."""
    if isinstance(plan, str | Path):
        try:
            return read_document(Path(plan)), str(plan)
        except PlanError as exc:
            raise LaunchInputError(f"--plan {exc}") from None
    if isinstance(plan, Mapping):
        return dict(plan), "plan"
    if hasattr(plan, "model_dump"):  # planner.Plan or contract.plan.Plan
        return plan_document(plan.model_dump(mode="json")), "plan"
    raise LaunchInputError(
        f"plan {type(plan).__name__}: give a plan.json path, a planner Plan or its JSON mapping"
    )


def framework_words(
    document: dict[str, Any],
    source: str,
    framework: str,
    flags: LaunchFlags,
    words: Sequence[str],
    file_data: dict[str, Any] | None,
) -> list[str]:
    """``words`` (the framework's entrypoint and the user's arguments) followed by the
    plan exported for ``framework`` (planner.export_frameworks): torchtitan's overrides
    or Megatron-LM's arguments."""
    if framework not in TARGETS:
        raise LaunchInputError(f"--framework {framework}: use one of {', '.join(TARGETS)}")
    if not (words or flags.module or flags.script or (file_data and "entrypoint" in file_data)):
        example = _FRAMEWORK_EXAMPLES.get(framework, "")
        raise LaunchInputError(f"--framework {framework}: name its entrypoint after --{example}")
    try:
        return [*words, *framework_arguments(export_plan(document, source), framework)]
    except ExportError as exc:
        raise LaunchInputError(f"--framework {framework}: {exc}") from None


def _with_framework_env(flags: LaunchFlags, environment: dict[str, str]) -> LaunchFlags:
    """The flags with the variables the framework requires for the layout (Megatron-LM's
    CUDA_DEVICE_MAX_CONNECTIONS), except those the user sets with --env."""
    given = {item.split("=", 1)[0] for item in flags.env}
    extra = [f"{name}={value}" for name, value in environment.items() if name not in given]
    return dataclasses.replace(flags, env=[*flags.env, *extra]) if extra else flags


_FRAMEWORK_EXAMPLES = {
    "torchtitan": " (-- python -m torchtitan.train --module llama3 --config llama3_8b)",
    "megatron": " (-- pretrain_gpt.py --data-path ... --tokenizer-type ...)",
}


def plan_job(
    plan: Any,
    flags: LaunchFlags | None = None,
    words: Sequence[str] = (),
    file_data: dict[str, Any] | None = None,
    source: str = "launch flags",
    framework: str | None = None,
) -> PlannedJob:
    """The JobSpec of ``scalectl launch --plan PLAN [flags] [spec file] [-- words]``.

    ``plan`` is a plan.json path, a planner ``Plan`` or its JSON mapping; ``flags`` are
    the launch options (nodes and ranks may override the plan's while the layout holds);
    ``words`` the trainer's arguments (or the program, as after ``--``); ``file_data``
    a job.yaml's mapping. With ``framework`` (torchtitan, megatron) ``words`` name that
    framework's entrypoint and the plan, exported for it, follows them. Raises
    :class:`LaunchInputError` naming the field.
    """
    document, name = _plan_document(plan)
    flags = flags or LaunchFlags()
    if framework is not None:
        words = framework_words(document, name, framework, flags, words, file_data)
        flags = _with_framework_env(flags, framework_environment(export_plan(document), framework))
    else:
        flags = with_default_entrypoint(flags, file_data)
    mapping = build_mapping(file_data, flags, list(words))
    prefix = "--plan " if name != "plan" else ""
    mapping, resolved = apply_plan_document(document, name, mapping, flags, prefix=prefix)
    spec = spec_from_mapping(mapping, source=source)
    if spec.entrypoint.is_reference_trainer:
        _refuse_what_the_trainer_would(parse_plan(document, name), prefix)
    return PlannedJob(spec, resolved, describe(resolved, mapping))


def _refuse_what_the_trainer_would(plan: Plan, prefix: str) -> None:
    """Refuse, before any job exists, a plan the reference trainer would refuse at start
    on every rank (contract.plan_trainer)."""
    refusal = reference_trainer_refusal(plan)
    if refusal is not None:
        raise LaunchInputError(f"{prefix}{refusal}")


def check_embedded_plan(spec: Any) -> None:
    """The checks of ``--plan`` for a JobSpec's ``plan`` (a ``plan:`` block in job.yaml,
    the TUI's launch): a Plan of this schema with a runnable layout; for the reference
    trainer also whole tensor-parallel groups per node and either a fixed node count whose
    ranks are the layout's world size or a node range whose every count runs the layout
    with dp resized (:func:`check_node_range`); the trainer would refuse anything else."""
    if spec.plan is None:
        return
    try:
        plan = parse_plan(spec.plan, "plan")
        resolved = resolve_layout(plan, "plan")
    except PlanError as exc:
        raise LaunchInputError(str(exc)) from None
    if not spec.entrypoint.is_reference_trainer:
        return
    _refuse_what_the_trainer_would(plan, "")
    nodes, procs = spec.nodes, spec.procs_per_node
    world = nodes.min * procs
    if nodes.min == nodes.max and world != resolved.world_size:
        raise LaunchInputError(
            f"procs_per_node: {nodes.min} node(s) x {procs} rank(s) = {world} ranks, but the "
            f"plan's layout {plan.layout.text()} needs {resolved.world_size}; change nodes "
            "or procs_per_node, or plan again"
        )
    tp = plan.layout.tp or 1
    if procs % tp:
        raise LaunchInputError(
            f"procs_per_node {procs}: a node must hold whole tensor-parallel groups of tp {tp}"
        )
    if nodes.min != nodes.max:
        check_node_range(plan, nodes.min, nodes.max, procs, "nodes")
