"""Checks that need the model, cluster, training spec and layout together.

Like torchtitan's ``ParallelDims.__post_init__``: a layout that cannot run is refused
with the reason and a fix, before any estimate is made. :func:`layout_problems` lists
every problem; :func:`validate` raises the first as a one-line PlanInputError.
"""

from __future__ import annotations

from planner.errors import PlanInputError
from planner.specs import AcceleratorSpec, ClusterSpec, Layout, ModelSpec, TrainingSpec


def _divisors(n: int, limit: int = 12) -> str:
    found = [d for d in range(1, n + 1) if n % d == 0]
    shown = ", ".join(str(d) for d in found[:limit])
    return shown + (", ..." if len(found) > limit else "")


def layout_problems(
    model: ModelSpec,
    cluster: ClusterSpec,
    training: TrainingSpec,
    layout: Layout,
    accelerator: AcceleratorSpec | None = None,
) -> list[str]:
    """Every reason ``layout`` cannot run this model on this cluster (empty when valid)."""
    problems: list[str] = []
    lo = layout
    if lo.num_gpus != cluster.num_gpus:
        problems.append(
            f"layout: dp·tp·pp·cp = {lo.dp}·{lo.tp}·{lo.pp}·{lo.cp} = {lo.num_gpus} but the "
            f"cluster has {cluster.num_gpus} GPUs; make the product equal the GPU count."
        )
    for field, value in (
        ("num_attention_heads", model.num_attention_heads),
        ("num_kv_heads", model.num_kv_heads),
        ("ffn_hidden_size", model.ffn_hidden_size),
    ):
        if value % lo.tp:
            problems.append(
                f"layout: tp={lo.tp} does not divide {field}={value} of {model.name}; "
                f"choose tp from {_divisors(value)}."
            )
    if training.seq_len % lo.cp:
        problems.append(
            f"layout: cp={lo.cp} does not divide seq_len={training.seq_len}; "
            "choose a cp that divides the sequence length."
        )
    if training.global_batch_seqs % lo.dp:
        problems.append(
            f"layout: dp={lo.dp} does not divide the global batch of "
            f"{training.global_batch_seqs} sequences; choose dp from "
            f"{_divisors(training.global_batch_seqs)} or change the batch."
        )
    else:
        per_replica = training.global_batch_seqs // lo.dp
        if per_replica % lo.micro_batch:
            problems.append(
                f"layout: micro_batch={lo.micro_batch} does not divide the {per_replica} "
                f"sequences per data-parallel replica; choose from {_divisors(per_replica)}."
            )
    if lo.pp > model.num_layers:
        problems.append(
            f"layout: pp={lo.pp} exceeds the {model.num_layers} layers of {model.name}."
        )
    elif lo.pp * lo.interleave > model.num_layers:
        problems.append(
            f"layout: pp·interleave = {lo.pp * lo.interleave} exceeds the "
            f"{model.num_layers} layers of {model.name}; lower interleave."
        )
    if lo.ep > 1:
        if not model.is_moe:
            problems.append(f"layout: ep={lo.ep} needs a mixture-of-experts model.")
        elif model.num_experts % lo.ep:
            problems.append(
                f"layout: ep={lo.ep} does not divide num_experts={model.num_experts}; "
                f"choose ep from {_divisors(model.num_experts)}."
            )
        if (lo.dp * lo.cp) % lo.ep:
            problems.append(
                f"layout: ep={lo.ep} must divide dp·cp = {lo.dp * lo.cp} "
                "(experts are split across data-parallel ranks)."
            )
    if (
        training.precision == "fp8"
        and accelerator is not None
        and accelerator.fp8_dense_tflops is None
    ):
        problems.append(
            f"training: precision fp8 needs FP8 tensor cores, which {accelerator.name} "
            "lacks; use bf16."
        )
    return problems


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
