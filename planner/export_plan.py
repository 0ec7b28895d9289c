"""What every framework export of a plan shares (pure): reading the Plan, its pipeline
split, the refusal of a knob a framework cannot express.

``scalectl plan export plan.json --to torchtitan|megatron`` and ``scalectl launch --plan
--framework`` turn a plan.json (``contract.plan.Plan``) into another trainer's
configuration: :mod:`planner.export_torchtitan`, :mod:`planner.export_megatron`. A knob
the plan sets that the target cannot express is refused with :class:`ExportError`, one
line naming the plan's field and the way out, never dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contract.plan import Plan, PlanError, parse_plan, read_plan
from contract.plan_layout import ResolvedLayout, resolve_layout

from planner.errors import PlanInputError

TARGETS = ("torchtitan", "megatron")
"""Frameworks a plan exports to."""


class ExportError(PlanInputError):
    """The plan cannot be written in the target's configuration (exit code 2)."""


@dataclass(frozen=True)
class ExportPlan:
    """A Plan checked for export, with its resolved layout."""

    plan: Plan
    """The plan document."""
    resolved: ResolvedLayout
    """World size, tokens per step and gradient accumulation of its layout."""

    def layout_value(self, name: str, default: Any = None) -> Any:
        """A layout field, declared (``dp``) or one the planner writes beside them
        (``uneven_stages``, ``schedule``, ``expert_tp``…)."""
        layout = self.plan.layout
        if name in type(layout).model_fields:
            value = getattr(layout, name)
        else:
            value = (layout.model_extra or {}).get(name)
        return default if value is None else value

    def degree(self, name: str) -> int:
        return int(self.layout_value(name, 1))

    def model_value(self, name: str, default: Any = None) -> Any:
        model = self.plan.model
        if name in type(model).model_fields:
            value = getattr(model, name)
        else:
            value = (model.model_extra or {}).get(name)
        return default if value is None else value

    def training_value(self, name: str, default: Any = None) -> Any:
        training = self.plan.training
        if name in type(training).model_fields:
            value = getattr(training, name)
        else:
            value = (training.model_extra or {}).get(name)
        return default if value is None else value

    @property
    def has_experts(self) -> bool:
        return int(self.model_value("num_experts", 1)) > 1


def export_plan(plan: Plan | dict[str, Any], source: str = "plan") -> ExportPlan:
    """Check a Plan (or its JSON document) for export: this schema version, a runnable
    layout (``contract.plan_layout.resolve_layout``)."""
    try:
        parsed = plan if isinstance(plan, Plan) else parse_plan(plan, source)
        return ExportPlan(parsed, resolve_layout(parsed, source))
    except PlanError as exc:
        raise ExportError(str(exc)) from None


def read_export_plan(path: Path) -> ExportPlan:
    """:func:`export_plan` of a plan.json file."""
    try:
        plan = read_plan(Path(path))
    except PlanError as exc:
        raise ExportError(str(exc)) from None
    return export_plan(plan, str(path))


def refuse(target: str, field: str, value: Any, why: str) -> ExportError:
    """``plan layout.sharding 'zero1': torchtitan has no …; plan with …``."""
    return ExportError(f"plan {field} {value!r}: {target} {why}")


@dataclass(frozen=True)
class StageSplit:
    """The planner's pipeline split: ``stages`` (virtual) stages of ``layers_per_stage``
    transformer layers, the first and the last holding ``edge_less_layers`` fewer."""

    stages: int
    """pp x interleave."""
    layers_per_stage: int
    """Layers of a middle stage."""
    edge_less_layers: int
    """0 (even stages) or 1 (the plan's uneven_stages: Llama 3 paper, Sec. 3.3.2)."""


def stage_split(export: ExportPlan, target: str) -> StageSplit | None:
    """The plan's pipeline split, or None without pipeline stages; refuses a model whose
    layers do not split the way the planner priced them."""
    pp, interleave = export.degree("pp"), export.degree("interleave")
    if pp == 1:
        return None
    layers = export.plan.model.num_layers
    if layers is None:
        raise refuse(target, "model.num_layers", None, "needs the layer count to split stages")
    stages = pp * interleave
    less = 1 if export.layout_value("uneven_stages", False) else 0
    if (layers + 2 * less) % stages:
        shape = "evenly" if not less else "with the first and last stage one layer short"
        raise refuse(
            target,
            "layout.pp",
            pp,
            f"cannot split model.num_layers {layers} into pp x interleave = {stages} stages "
            f"{shape} as the plan assumes; plan with a pp x interleave that divides the layers",
        )
    return StageSplit(stages, (layers + 2 * less) // stages, less)


def common_refusals(export: ExportPlan, target: str) -> None:
    """Knobs neither framework's command line takes."""
    offload = float(export.layout_value("activation_offload", 0.0))
    if offload:
        raise refuse(
            target,
            "layout.activation_offload",
            offload,
            "has no knob for a fraction of activations offloaded; plan with --offload 0",
        )
    if not export.layout_value("free_stage_outputs", True):
        raise refuse(
            target,
            "layout.free_stage_outputs",
            False,
            "always frees a stage's sent outputs; plan with free_stage_outputs true",
        )
    if export.plan.layout.sharding is None:
        raise refuse(target, "layout.sharding", None, "needs the plan's sharding; plan again")
    if export.plan.training.precision == "bf16-pure":
        raise refuse(
            target,
            "training.precision",
            "bf16-pure",
            "keeps FP32 master weights under bf16 (no pure-BF16 optimizer); plan with bf16",
        )
    chunks = int(export.training_value("loss_chunks", 1))
    if chunks > 1:
        raise refuse(
            target,
            "training.loss_chunks",
            chunks,
            "has no chunked cross-entropy on its command line; plan with --loss-chunks 1",
        )


def ring_refusals(export: ExportPlan, target: str, runs: str) -> None:
    """A ring-attention plan priced as another framework's ring (``training
    .ring_attention``: torch's ``context_parallel`` or Transformer Engine's) would not be
    the job ``target`` runs: its ring is ``runs``. Plans written before the field, which
    do not name it, pass."""
    priced = export.training_value("ring_attention")
    ring = export.degree("cp") > 1 and export.layout_value("cp_impl", "ring") == "ring"
    if ring and priced is not None and priced != runs:
        raise refuse(
            target,
            "training.ring_attention",
            priced,
            f"runs {RING_OWNERS[runs]}'s ring attention; plan with --ring-attention {runs}",
        )


RING_OWNERS = {"torch": "torch", "te": "Transformer Engine"}
"""Whose ring each ``TrainingSpec.ring_attention`` value prices."""
