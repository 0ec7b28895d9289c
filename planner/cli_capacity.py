"""``scalectl plan capacity``: the cluster for a deadline, or N and D for a budget."""

from __future__ import annotations

from typing import Any

import typer

from planner.cli_options import (
    CkptGbSMaxOption,
    CkptGbSOption,
    GlobalBatchOption,
    GpuOption,
    GpuSpecOption,
    GpusPerNodeOption,
    GridOption,
    HeadroomOption,
    MtbfHoursOption,
    OptimizerOption,
    PrecisionOption,
    PriceOption,
    PueOption,
    RestartMinOption,
)
from planner.margins import DEFAULT_MEMORY_HEADROOM


def capacity_command(
    model: str | None = typer.Option(
        None, "--model", "-m", help="Preset or config.json (for the cluster size)."
    ),
    gpu: GpuOption = None,
    gpu_spec: GpuSpecOption = None,
    days: str | None = typer.Option(
        None, "--days", help="Deadline: the smallest cluster that trains in this (30d, 6w)."
    ),
    flops: str | None = typer.Option(
        None, "--flops", help="Compute budget in FLOPs (5.76e23): compute-optimal N and D."
    ),
    budget: str | None = typer.Option(
        None, "--budget", help="Dollar budget (2M$): compute-optimal N and D on --gpu."
    ),
    mfu: float | None = typer.Option(
        None, "--mfu", help="MFU assumed to turn dollars into FLOPs (default 0.40, Llama 3)."
    ),
    gpus_per_node: GpusPerNodeOption = 8,
    max_gpus: str = typer.Option("128k", "--max-gpus", help="Largest cluster considered."),
    seq_len: str | None = typer.Option(None, "--seq-len", help="Tokens per sequence (8k)."),
    global_batch: GlobalBatchOption = None,
    global_batch_tokens: str | None = typer.Option(
        None, "--global-batch-tokens", help="Tokens per optimizer step (16M), instead."
    ),
    tokens: str | None = typer.Option(
        None, "--tokens", help="Training tokens, decimal (15T); default 20 x parameters."
    ),
    precision: PrecisionOption = "bf16",
    optimizer: OptimizerOption = "adamw",
    attention: str = typer.Option("flash", "--attention", help="flash or unfused."),
    pue: PueOption = None,
    grid: GridOption = None,
    price: PriceOption = None,
    mtbf_hours: MtbfHoursOption = None,
    ckpt_gb_s: CkptGbSOption = None,
    ckpt_gb_s_max: CkptGbSMaxOption = None,
    restart_min: RestartMinOption = None,
    headroom: HeadroomOption = DEFAULT_MEMORY_HEADROOM,
    top: int = typer.Option(5, "--top", help="Layouts listed at the answer's size."),
    as_json: bool = typer.Option(False, "--json", help="Print the answer as one JSON object."),
) -> None:
    """Size a run: the smallest cluster for a deadline (--days), or the compute-optimal model
    size and tokens for a FLOP or dollar budget (--flops / --budget), with predicted loss.

    The cluster size counts failures: expected interruptions from a per-GPU MTBF, the
    optimal checkpoint interval (Young/Daly) and restarts; totals with and without.
    """
    import json

    from planner.errors import PlanInputError
    from planner.units import parse_days, parse_int_count

    if (flops is not None or budget is not None) == (days is not None):
        raise PlanInputError(
            "give --days D (the smallest cluster for a deadline) or --flops C / --budget $ "
            "(compute-optimal size), not both and not neither."
        )
    if days is None:
        _capacity_sizing(gpu, gpu_spec, flops, budget, mfu, precision, price, as_json)
        return
    if model is None or seq_len is None:
        raise PlanInputError("--days needs --model, --seq-len and the batch (--global-batch).")
    if not 0.0 <= headroom < 1.0:
        raise PlanInputError(f"--headroom: a share of memory in [0, 1), got {headroom}.")
    if top <= 0:
        raise PlanInputError(f"--top: must be a positive whole number, got {top}.")
    from planner.capacity import raise_if_infeasible, reliability_facts, smallest_cluster
    from planner.request import EstimateRequest, specs_from_request

    deadline = parse_days(days, "--days")
    limit = parse_int_count(max_gpus, "--max-gpus")
    request = EstimateRequest(
        model=model, gpu=gpu, gpu_spec=gpu_spec, gpus=str(gpus_per_node),
        gpus_per_node=gpus_per_node, seq_len=seq_len, global_batch=global_batch,
        global_batch_tokens=global_batch_tokens, tokens=tokens, precision=precision,
        optimizer=optimizer, attention=attention, pue=pue, grid=grid, price=price,
        mtbf_hours=mtbf_hours, ckpt_gb_s=ckpt_gb_s, ckpt_gb_s_max=ckpt_gb_s_max,
        restart_min=restart_min,
    )  # fmt: skip
    model_spec, cluster, training, defaults = specs_from_request(request)
    answer = smallest_cluster(
        model_spec, cluster, training, deadline, max_gpus=limit, memory_headroom=headroom,
        top_k=top,
    )  # fmt: skip
    result = answer.result
    best = result.ranked[0] if result.ranked else None
    facts = (
        reliability_facts(model_spec, result.plan(0).cluster, training, best.layout)
        if best is not None
        else None
    )
    if as_json:
        print(json.dumps({
            "gpus": answer.gpus,
            "nodes": answer.nodes,
            "deadline_days": deadline,
            "lower_bound_gpus": answer.lower_bound_gpus,
            "probes": [{"gpus": g, "fastest_days": d} for g, d in sorted(answer.probes)],
            "reliability": facts.__dict__ if facts is not None else None,
            "ranked": [e.model_dump(mode="json") for e in result.ranked],
        }))  # fmt: skip
    else:
        from planner.render_search import render_capacity

        render_capacity(answer, facts, defaults)
    raise_if_infeasible(answer)


def _capacity_sizing(
    gpu: str | None,
    gpu_spec: str | None,
    flops: str | None,
    budget: str | None,
    mfu: float | None,
    precision: str,
    price: float | None,
    as_json: bool,
) -> None:
    """``plan capacity --flops C`` or ``--budget $``: compute-optimal N and D."""
    import json
    import math

    from planner.catalog import list_models
    from planner.errors import PlanInputError
    from planner.request import resolve_accelerator
    from planner.scaling import compute_optimal, default_mfu, flops_for_budget
    from planner.specs import AcceleratorSpec
    from planner.units import parse_count, parse_usd

    if flops is not None and budget is not None:
        raise PlanInputError("give --flops C or --budget $, not both.")
    spend = parse_usd(budget, "--budget") if budget is not None else None
    use_mfu = None
    if spend is not None:
        use_mfu = default_mfu() if mfu is None else mfu
        if not 0.0 < use_mfu <= 1.0:
            raise PlanInputError(f"--mfu: a fraction in (0, 1], got {use_mfu}.")
        acc = resolve_accelerator(gpu, gpu_spec)
        spec = acc if isinstance(acc, AcceleratorSpec) else _catalog_gpu(acc)
        peak = {"fp8": spec.fp8_dense_tflops, "fp32": spec.fp32_dense_tflops}.get(precision)
        if precision not in ("bf16", "bf16-pure", "fp8", "fp32"):
            raise PlanInputError(f"--precision {precision!r}: use bf16, bf16-pure, fp8 or fp32.")
        # Pure BF16 computes at the BF16 rate, as mixed precision does.
        peak_tflops = spec.bf16_dense_tflops if precision.startswith("bf16") else peak
        if peak_tflops is None:
            raise PlanInputError(f"--precision {precision}: {spec.name} has no {precision} rate.")
        hourly = spec.price_usd_per_gpu_hour if price is None else price
        total = flops_for_budget(spend, hourly, peak_tflops * 1e12, use_mfu)
    else:
        total = parse_count(flops or "", "--flops")
    rows = compute_optimal(total)
    optimum = rows[0].params
    presets = sorted(
        ((m.name, m.num_params) for m in list_models()),
        key=lambda item: abs(math.log(item[1] / optimum)),
    )[:3]
    if as_json:
        print(json.dumps({
            "flops": total,
            "budget_usd": spend,
            "mfu": use_mfu,
            "sizings": [row.__dict__ for row in rows],
            "closest_presets": [{"name": n, "params": p} for n, p in presets],
        }))  # fmt: skip
        return
    from planner.render_search import render_sizing

    render_sizing(rows, total, spend, use_mfu, presets)


def _catalog_gpu(name: str) -> Any:
    from planner.catalog import get_gpu

    return get_gpu(name)
