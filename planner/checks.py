"""Checks that need the model, cluster, training spec and layout together.

Like torchtitan's ``ParallelDims.__post_init__``: a layout that cannot run is refused
with the reason and a fix, before any estimate is made. :func:`layout_problems` lists
every problem; :func:`validate` raises the first as a one-line PlanInputError.

Each rule is written once, in :data:`RULES`, as a predicate on the layout's numbers that
works on Python ints (one layout, :func:`layout_problems`) and on numpy arrays of
candidates alike (the layout search filters its enumeration with :func:`rules_ok`): only
``%``, ``//``, comparisons and ``|``/``&`` on their results. Its message is built only
for a single layout that breaks it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from planner.errors import PlanInputError
from planner.specs import AcceleratorSpec, ClusterSpec, Layout, ModelSpec, TrainingSpec


def _divisors(n: int, limit: int = 12) -> str:
    found = [d for d in range(1, n + 1) if n % d == 0]
    shown = ", ".join(str(d) for d in found[:limit])
    return shown + (", ..." if len(found) > limit else "")


class Problem(NamedTuple):
    """The numbers of the model and training spec that the layout rules read."""

    model: ModelSpec
    training: TrainingSpec
    heads: int
    kv_heads: int
    ffn: int
    layers: int
    experts: int
    moe: bool
    seq: int
    batch: int
    windowed: bool


def problem_of(model: ModelSpec, training: TrainingSpec) -> Problem:
    """The :class:`Problem` of a model and training spec (memoised per spec objects: the
    specs are frozen, and the scalar estimate checks every layout it is given)."""
    found = _PROBLEMS.get((id(model), id(training)))
    if found is not None and found.model is model and found.training is training:
        return found
    if len(_PROBLEMS) > 256:
        _PROBLEMS.clear()
    problem = _PROBLEMS[(id(model), id(training))] = Problem(
        model=model,
        training=training,
        heads=model.num_attention_heads,
        kv_heads=model.num_kv_heads,
        ffn=model.ffn_hidden_size,
        layers=model.num_layers,
        experts=model.num_experts,
        moe=model.is_moe,
        seq=training.seq_len,
        batch=training.global_batch_seqs,
        windowed=model.windows_at(training.seq_len),
    )
    return problem


_PROBLEMS: dict[tuple[int, int], Problem] = {}


Values = Mapping[str, Any]
"""Layout numbers by Inputs name (dp, tp, pp, cp, ep, micro_batch, interleave) plus
``gpus``: Python ints for one layout, numpy arrays for many."""


@dataclass(frozen=True)
class Rule:
    """One condition every runnable layout meets."""

    fields: tuple[str, ...]
    """The layout numbers ``ok`` reads (the search applies a rule as soon as it has them)."""
    ok: Callable[[Values, Problem], Any]
    """True (or an array of truth values) where the layout meets the rule."""
    message: Callable[[Layout, Problem, int], str]
    """The refusal for one layout that breaks the rule (layout, problem, GPU count)."""


def _tp_rule(field: str, attr: str) -> Rule:
    def ok(v: Values, p: Problem) -> Any:
        return getattr(p, attr) % v["tp"] == 0

    def message(lo: Layout, p: Problem, gpus: int) -> str:
        value = getattr(p, attr)
        return (
            f"layout: tp={lo.tp} does not divide {field}={value} of {p.model.name}; "
            f"choose tp from {_divisors(value)}."
        )

    return Rule(("tp",), ok, message)


RULES: tuple[Rule, ...] = (
    Rule(
        ("dp", "tp", "pp", "cp", "gpus"),
        lambda v, p: v["dp"] * v["tp"] * v["pp"] * v["cp"] == v["gpus"],
        lambda lo, p, gpus: (
            f"layout: dp·tp·pp·cp = {lo.dp}·{lo.tp}·{lo.pp}·{lo.cp} = {lo.num_gpus} but the "
            f"cluster has {gpus} GPUs; make the product equal the GPU count."
        ),
    ),
    _tp_rule("num_attention_heads", "heads"),
    _tp_rule("num_kv_heads", "kv_heads"),
    _tp_rule("ffn_hidden_size", "ffn"),
    Rule(
        ("cp",),
        lambda v, p: p.seq % v["cp"] == 0,
        lambda lo, p, gpus: (
            f"layout: cp={lo.cp} does not divide seq_len={p.seq}; "
            "choose a cp that divides the sequence length."
        ),
    ),
    Rule(
        ("cp",),
        lambda v, p: (v["cp"] == 1) | (not p.windowed),
        lambda lo, p, gpus: (
            f"layout: cp={lo.cp} with the sliding-window layers of {p.model.name}: a ring "
            "would pass K/V blocks the window never reads, and that is not priced; use cp 1."
        ),
    ),
    Rule(
        ("dp",),
        lambda v, p: p.batch % v["dp"] == 0,
        lambda lo, p, gpus: (
            f"layout: dp={lo.dp} does not divide the global batch of {p.batch} sequences; "
            f"choose dp from {_divisors(p.batch)} or change the batch."
        ),
    ),
    Rule(  # reported only once dp divides the batch
        ("dp", "micro_batch"),
        lambda v, p: (p.batch % v["dp"] != 0) | ((p.batch // v["dp"]) % v["micro_batch"] == 0),
        lambda lo, p, gpus: (
            f"layout: micro_batch={lo.micro_batch} does not divide the {p.batch // lo.dp} "
            f"sequences per data-parallel replica; choose from {_divisors(p.batch // lo.dp)}."
        ),
    ),
    Rule(
        ("pp",),
        lambda v, p: v["pp"] <= p.layers,
        lambda lo, p, gpus: f"layout: pp={lo.pp} exceeds the {p.layers} layers of {p.model.name}.",
    ),
    Rule(  # reported only once pp itself fits
        ("pp", "interleave"),
        lambda v, p: (v["pp"] > p.layers) | (v["pp"] * v["interleave"] <= p.layers),
        lambda lo, p, gpus: (
            f"layout: pp·interleave = {lo.pp * lo.interleave} exceeds the "
            f"{p.layers} layers of {p.model.name}; lower interleave."
        ),
    ),
    Rule(
        ("ep",),
        lambda v, p: (v["ep"] == 1) | p.moe,
        lambda lo, p, gpus: f"layout: ep={lo.ep} needs a mixture-of-experts model.",
    ),
    Rule(
        ("ep",),
        lambda v, p: (v["ep"] == 1) | (not p.moe) | (p.experts % v["ep"] == 0),
        lambda lo, p, gpus: (
            f"layout: ep={lo.ep} does not divide num_experts={p.experts}; "
            f"choose ep from {_divisors(p.experts)}."
        ),
    ),
    Rule(
        ("etp", "ep", "tp", "dp", "cp"),
        lambda v, p: (
            (v["etp"] == 0)
            | (
                p.moe
                & ((v["tp"] * v["cp"] * v["dp"]) % ((v["etp"] + (v["etp"] == 0)) * v["ep"]) == 0)
            )
        ),
        lambda lo, p, gpus: (
            f"layout: expert_tp={lo.expert_tp} needs a mixture-of-experts model, and "
            f"ep·expert_tp = {lo.ep * (lo.expert_tp or 1)} must divide tp·cp·dp = "
            f"{lo.tp * lo.cp * lo.dp}."
        ),
    ),
    Rule(
        ("etp", "ep", "dp", "cp"),
        lambda v, p: (v["ep"] == 1) | (v["etp"] > 0) | ((v["dp"] * v["cp"]) % v["ep"] == 0),
        lambda lo, p, gpus: (
            f"layout: ep={lo.ep} must divide dp·cp = {lo.dp * lo.cp} "
            "(experts are split across data-parallel ranks); or pin --expert-tp so that "
            "ep·expert_tp divides tp·cp·dp (MoE parallel folding)."
        ),
    ),
)
"""Every layout rule, in the order problems are reported."""


def layout_values(layout: Layout, gpus: int) -> dict[str, int]:
    """The numbers :data:`RULES` read, for one layout on ``gpus`` GPUs."""
    lo = layout
    return {"dp": lo.dp, "tp": lo.tp, "pp": lo.pp, "cp": lo.cp, "ep": lo.ep,
            "etp": lo.expert_tp or 0,
            "micro_batch": lo.micro_batch, "interleave": lo.interleave, "gpus": gpus}  # fmt: skip


def rules_ok(values: Values, problem: Problem, fields: set[str] | None = None) -> Any:
    """Truth (or a truth array) of every rule whose fields are all in ``fields`` (default:
    all rules): the vectorised form of :func:`layout_problems` for the layout search."""
    result: Any = True
    for rule in RULES:
        if fields is None or set(rule.fields) <= fields:
            result = result & rule.ok(values, problem)
    return result


def precision_problems(training: TrainingSpec, accelerator: AcceleratorSpec | None) -> list[str]:
    """Numerics the accelerator cannot run (independent of the layout)."""
    if accelerator is None:
        return []
    problems = []
    if training.precision == "fp8" and accelerator.fp8_dense_tflops is None:
        problems.append(
            f"training: precision fp8 needs FP8 tensor cores, which {accelerator.name} "
            "lacks; use bf16."
        )
    if training.precision == "fp32" and accelerator.fp32_dense_tflops is None:
        problems.append(
            f"training: precision fp32 needs the FP32 rate of {accelerator.name}, which is "
            "not given; set fp32_dense_tflops in its spec or use bf16."
        )
    return problems


def layout_problems(
    model: ModelSpec,
    cluster: ClusterSpec,
    training: TrainingSpec,
    layout: Layout,
    accelerator: AcceleratorSpec | None = None,
) -> list[str]:
    """Every reason ``layout`` cannot run this model on this cluster (empty when valid)."""
    problem = problem_of(model, training)
    values = layout_values(layout, cluster.num_gpus)
    problems = [
        rule.message(layout, problem, cluster.num_gpus)
        for rule in RULES
        if not rule.ok(values, problem)
    ]
    return problems + precision_problems(training, accelerator)


def validate(
    model: ModelSpec,
    cluster: ClusterSpec,
    training: TrainingSpec,
    layout: Layout,
    accelerator: AcceleratorSpec | None = None,
) -> None:
    """Raise PlanInputError (one line) if the layout cannot run; otherwise return."""
    problems = layout_problems(model, cluster, training, layout, accelerator)
    if problems:
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise PlanInputError(problems[0] + more)
