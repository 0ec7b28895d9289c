"""``scalectl plan ...``: the planner's commands.

Heavy imports (numpy, pydantic models, rich) happen inside the command functions so
``scalectl --help`` stays fast. Bad input raises PlanInputError (or a pydantic
ValidationError), which the root CLI prints as one line with exit code 2.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

plan_app = typer.Typer(
    help="Estimate memory, time, energy, cost and CO2 of a training run, search the layouts, "
    "size the cluster; list the catalogs.",
    no_args_is_help=True,
)


# Options `plan estimate` and `plan search` share (search's layout flags pin knobs instead).

ModelOption = Annotated[
    str,
    typer.Option("--model", "-m", help="Preset name (see `plan models`) or a config.json path."),
]
GpuOption = Annotated[str | None, typer.Option("--gpu", help="Catalog GPU (see `plan gpus`).")]
GpuSpecOption = Annotated[
    str | None,
    typer.Option("--gpu-spec", help="YAML file with an AcceleratorSpec, instead of --gpu."),
]
GpusPerNodeOption = Annotated[int, typer.Option("--gpus-per-node", help="GPUs per node.")]
SeqLenOption = Annotated[
    str, typer.Option("--seq-len", help="Tokens per sequence (4096, 8k = 8192).")
]
GlobalBatchOption = Annotated[
    str | None, typer.Option("--global-batch", help="Sequences per optimizer step.")
]
GlobalBatchTokensOption = Annotated[
    str | None,
    typer.Option(
        "--global-batch-tokens", help="Tokens per optimizer step (4M = 4,194,304), instead."
    ),
]
TokensOption = Annotated[
    str | None,
    typer.Option(
        "--tokens", help="Training tokens, decimal (15T = 1.5e13, 2e12); default 20 x parameters."
    ),
]
PrecisionOption = Annotated[str, typer.Option("--precision", help="bf16, fp8 or fp32.")]
OptimizerOption = Annotated[str, typer.Option("--optimizer", help="adamw or sgd_momentum.")]
AttentionOption = Annotated[str, typer.Option("--attention", help="flash or unfused.")]
OverlapGradReduceOption = Annotated[
    bool,
    typer.Option("--overlap-grad-reduce/--no-overlap-grad-reduce", help="Overlap DP reduction."),
]
GradReduceDtypeOption = Annotated[str, typer.Option("--grad-dtype", help="fp32 or bf16 gradients.")]
MoeCapacityOption = Annotated[
    float | None,
    typer.Option("--moe-capacity", help="MoE expert capacity factor (default: dropless)."),
]
PueOption = Annotated[float | None, typer.Option("--pue", help="Data-centre PUE.")]
GridOption = Annotated[float | None, typer.Option("--grid", help="Grid kg CO2 per kWh.")]
PriceOption = Annotated[float | None, typer.Option("--price", help="USD per GPU-hour.")]
MtbfHoursOption = Annotated[
    float | None,
    typer.Option(
        "--mtbf-hours", help="GPU-hours between failures per GPU (default: Llama 3's rate)."
    ),
]
CkptGbSOption = Annotated[
    float | None,
    typer.Option("--ckpt-gb-s", help="Checkpoint bandwidth per node to storage, GB/s."),
]
CkptGbSMaxOption = Annotated[
    float | None,
    typer.Option("--ckpt-gb-s-max", help="Storage system's aggregate bandwidth, GB/s."),
]
RestartMinOption = Annotated[
    float | None,
    typer.Option("--restart-min", help="Minutes to restart after a failure (before reload)."),
]

_SHARDING_ALIASES = {
    "0": "none",
    "none": "none",
    "1": "zero1",
    "zero1": "zero1",
    "2": "zero2",
    "zero2": "zero2",
    "3": "zero3",
    "zero3": "zero3",
    "fsdp": "zero3",
    "hsdp": "hsdp",
}


@plan_app.command("estimate")
def estimate_command(
    model: ModelOption,
    seq_len: SeqLenOption,
    gpu: GpuOption = None,
    gpu_spec: GpuSpecOption = None,
    gpus: str = typer.Option(..., "--gpus", help="GPUs in the job (1024, 16k = 16384)."),
    gpus_per_node: GpusPerNodeOption = 8,
    global_batch: GlobalBatchOption = None,
    global_batch_tokens: GlobalBatchTokensOption = None,
    tokens: TokensOption = None,
    tp: int | None = typer.Option(None, "--tp", help="Tensor-parallel degree."),
    pp: int | None = typer.Option(None, "--pp", help="Pipeline stages."),
    cp: int | None = typer.Option(None, "--cp", help="Context-parallel degree."),
    dp: int | None = typer.Option(None, "--dp", help="Data-parallel degree."),
    ep: int | None = typer.Option(None, "--ep", help="Expert-parallel degree (MoE)."),
    zero: str | None = typer.Option(
        None, "--zero", help="Sharding: 0|1|2|3 (ZeRO stage), fsdp, hsdp (default 1 if dp>1)."
    ),
    hsdp_shard: int | None = typer.Option(None, "--hsdp-shard", help="HSDP shard group size."),
    micro_batch: int | None = typer.Option(
        None, "--micro-batch", help="Sequences per micro-batch."
    ),
    recompute: str | None = typer.Option(None, "--recompute", help="none|selective|full."),
    interleave: int | None = typer.Option(
        None, "--interleave", help="Virtual pipeline stages per GPU."
    ),
    sequence_parallel: bool | None = typer.Option(
        None,
        "--sequence-parallel/--no-sequence-parallel",
        help="Shard norm/dropout activations over TP (default: on when tp > 1).",
    ),
    uneven_stages: bool | None = typer.Option(
        None, "--uneven-stages/--even-stages", help="First and last stage one layer fewer."
    ),
    offload: float | None = typer.Option(
        None, "--offload", help="Share of saved activations offloaded to host (0-0.99)."
    ),
    schedule: str | None = typer.Option(None, "--schedule", help="Pipeline: 1f1b | gpipe."),
    microbatch_group: int | None = typer.Option(
        None, "--microbatch-group", help="Interleaved: micro-batches per chunk (default pp)."
    ),
    free_stage_outputs: bool | None = typer.Option(
        None, "--free-stage-outputs/--keep-stage-outputs", help="Free sent stage outputs."
    ),
    expert_tp: int | None = typer.Option(
        None, "--expert-tp", help="MoE: experts' tensor-parallel degree (default: tp)."
    ),
    precision: PrecisionOption = "bf16",
    optimizer: OptimizerOption = "adamw",
    attention: AttentionOption = "flash",
    overlap_grad_reduce: OverlapGradReduceOption = True,
    grad_reduce_dtype: GradReduceDtypeOption = "fp32",
    moe_capacity: MoeCapacityOption = None,
    pue: PueOption = None,
    grid: GridOption = None,
    price: PriceOption = None,
    mtbf_hours: MtbfHoursOption = None,
    ckpt_gb_s: CkptGbSOption = None,
    ckpt_gb_s_max: CkptGbSMaxOption = None,
    restart_min: RestartMinOption = None,
    as_json: bool = typer.Option(False, "--json", help="Print the estimate as one JSON object."),
    explain: bool = typer.Option(
        False, "--explain", help="Say why the chosen layout beat the runner-up and variants."
    ),
) -> None:
    """Predict memory, step time, MFU, days, GPU-hours, energy, cost and CO2 of one layout.

    Layout flags not given take what `plan search` picks under the given ones (the
    fastest layout that fits); the output says so.
    """
    import json
    import sys

    from planner.request import EstimateRequest, run_request

    request = EstimateRequest(
        model=model,
        gpu=gpu,
        gpu_spec=gpu_spec,
        gpus=gpus,
        gpus_per_node=gpus_per_node,
        seq_len=seq_len,
        global_batch=global_batch,
        global_batch_tokens=global_batch_tokens,
        tokens=tokens,
        tp=tp,
        pp=pp,
        cp=cp,
        dp=dp,
        ep=ep,
        zero=_SHARDING_ALIASES.get(zero.lower(), zero) if zero is not None else None,
        hsdp_shard=hsdp_shard,
        micro_batch=micro_batch,
        recompute=recompute,
        interleave=interleave,
        sequence_parallel=sequence_parallel,
        uneven_stages=uneven_stages,
        activation_offload=offload,
        schedule=schedule,
        microbatch_group=microbatch_group,
        free_stage_outputs=free_stage_outputs,
        expert_tp=expert_tp,
        precision=precision,
        optimizer=optimizer,
        attention=attention,
        overlap_grad_reduce=overlap_grad_reduce,
        grad_reduce_dtype=grad_reduce_dtype,
        moe_capacity_factor=moe_capacity,
        pue=pue,
        grid=grid,
        price=price,
        mtbf_hours=mtbf_hours,
        ckpt_gb_s=ckpt_gb_s,
        ckpt_gb_s_max=ckpt_gb_s_max,
        restart_min=restart_min,
        explain=explain,
    )
    plan, defaults = run_request(request)
    if as_json:
        for note in defaults:
            print(f"default: {note}", file=sys.stderr)
        print(json.dumps(plan.estimate.model_dump(mode="json")))
        return
    from planner.render import render_plan

    render_plan(plan, defaults)


@plan_app.command("search")
def search_command(
    model: ModelOption,
    seq_len: SeqLenOption,
    gpu: GpuOption = None,
    gpu_spec: GpuSpecOption = None,
    gpus: str | None = typer.Option(
        None, "--gpus", help="GPUs in the job (1024, 16k); or give --max-gpus."
    ),
    gpus_per_node: GpusPerNodeOption = 8,
    global_batch: GlobalBatchOption = None,
    global_batch_tokens: GlobalBatchTokensOption = None,
    tokens: TokensOption = None,
    tp: int | None = typer.Option(None, "--tp", help="Pin the tensor-parallel degree."),
    pp: int | None = typer.Option(None, "--pp", help="Pin the pipeline stages."),
    cp: int | None = typer.Option(None, "--cp", help="Pin the context-parallel degree."),
    dp: int | None = typer.Option(None, "--dp", help="Pin the data-parallel degree."),
    ep: int | None = typer.Option(None, "--ep", help="Pin the expert-parallel degree (MoE)."),
    zero: str | None = typer.Option(
        None, "--zero", help="Pin the sharding: 0|1|2|3 (ZeRO stage), fsdp, hsdp."
    ),
    hsdp_shard: int | None = typer.Option(None, "--hsdp-shard", help="Pin the HSDP group size."),
    micro_batch: int | None = typer.Option(None, "--micro-batch", help="Pin the micro-batch."),
    recompute: str | None = typer.Option(
        None, "--recompute", help="Pin recomputation: none|selective|full."
    ),
    interleave: int | None = typer.Option(
        None, "--interleave", help="Pin the virtual pipeline stages per GPU."
    ),
    sequence_parallel: bool | None = typer.Option(
        None, "--sequence-parallel/--no-sequence-parallel", help="Pin sequence parallelism."
    ),
    uneven_stages: bool | None = typer.Option(
        None, "--uneven-stages/--even-stages", help="Pin uneven first/last pipeline stages."
    ),
    offload: float | None = typer.Option(
        None, "--offload", help="Pin the share of activations offloaded to host."
    ),
    schedule: str | None = typer.Option(None, "--schedule", help="Pin the pipeline schedule."),
    microbatch_group: int | None = typer.Option(
        None, "--microbatch-group", help="Pin micro-batches per chunk (interleaved)."
    ),
    free_stage_outputs: bool | None = typer.Option(
        None, "--free-stage-outputs/--keep-stage-outputs", help="Pin freeing sent outputs."
    ),
    expert_tp: int | None = typer.Option(
        None, "--expert-tp", help="Pin the experts' tensor-parallel degree (MoE)."
    ),
    precision: PrecisionOption = "bf16",
    optimizer: OptimizerOption = "adamw",
    attention: AttentionOption = "flash",
    overlap_grad_reduce: OverlapGradReduceOption = True,
    grad_reduce_dtype: GradReduceDtypeOption = "fp32",
    moe_capacity: MoeCapacityOption = None,
    pue: PueOption = None,
    grid: GridOption = None,
    price: PriceOption = None,
    mtbf_hours: MtbfHoursOption = None,
    ckpt_gb_s: CkptGbSOption = None,
    ckpt_gb_s_max: CkptGbSMaxOption = None,
    restart_min: RestartMinOption = None,
    objective: str = typer.Option("time", "--objective", help="time | cost | energy | mfu."),
    top: int = typer.Option(10, "--top", help="How many layouts to list."),
    deadline: str | None = typer.Option(
        None, "--deadline", help="Longest expected wall time, failures included (30d, 12h, 6w)."
    ),
    budget: str | None = typer.Option(
        None, "--budget", help="Largest expected cost, failures included (2M$, $750k)."
    ),
    max_gpus: str | None = typer.Option(
        None, "--max-gpus", help="Search GPU counts up to this (node multiples 1,2,3,4,6,8,...)."
    ),
    headroom: float = typer.Option(
        0.0, "--headroom", help="Share of GPU memory to leave free (0.1 = 10 %)."
    ),
    plot: str | None = typer.Option(
        None, "--plot", help="Write time against cost of every feasible layout to FILE.png."
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print the ranked layouts as a JSON list of estimates."
    ),
) -> None:
    """Search every valid layout; rank them; show why each loses and the Pareto front.

    Any layout flag given pins that knob; the others are searched. Infeasible requests
    (nothing fits, deadline or budget impossible) print the nearest answer and exit 2.
    """
    import json
    import sys

    from planner.errors import PlanInputError
    from planner.layout_search import OBJECTIVES, SearchConstraints, search
    from planner.request import EstimateRequest, specs_from_request
    from planner.units import parse_days, parse_int_count, parse_usd

    if objective not in OBJECTIVES:
        raise PlanInputError(f"--objective {objective!r}: choose one of {', '.join(OBJECTIVES)}.")
    if top <= 0:
        raise PlanInputError(f"--top: must be a positive whole number, got {top}.")
    if not 0.0 <= headroom < 1.0:
        raise PlanInputError(f"--headroom: a share of memory in [0, 1), got {headroom}.")
    for flag, value in (("--tp", tp), ("--pp", pp), ("--cp", cp), ("--dp", dp), ("--ep", ep),
                        ("--hsdp-shard", hsdp_shard), ("--micro-batch", micro_batch),
                        ("--interleave", interleave)):  # fmt: skip
        if value is not None and value <= 0:
            raise PlanInputError(f"{flag}: must be a positive whole number, got {value}.")
    if recompute is not None and recompute not in ("none", "selective", "full"):
        raise PlanInputError(f"--recompute {recompute!r}: use none, selective or full.")
    sharding = _SHARDING_ALIASES.get(zero.lower(), zero) if zero is not None else None
    if sharding is not None and sharding not in _SHARDING_ALIASES.values():
        raise PlanInputError(f"--zero {zero!r}: use 0, 1, 2, 3, fsdp or hsdp.")
    limit = parse_int_count(max_gpus, "--max-gpus") if max_gpus is not None else None
    if gpus is None and limit is None:
        raise PlanInputError("give --gpus N (a fixed cluster) or --max-gpus N (search counts).")
    request = EstimateRequest(
        model=model, gpu=gpu, gpu_spec=gpu_spec, gpus=gpus or str(limit),
        gpus_per_node=gpus_per_node, seq_len=seq_len, global_batch=global_batch,
        global_batch_tokens=global_batch_tokens, tokens=tokens, precision=precision,
        optimizer=optimizer, attention=attention, overlap_grad_reduce=overlap_grad_reduce,
        grad_reduce_dtype=grad_reduce_dtype, moe_capacity_factor=moe_capacity, pue=pue,
        grid=grid, price=price,
        mtbf_hours=mtbf_hours, ckpt_gb_s=ckpt_gb_s, ckpt_gb_s_max=ckpt_gb_s_max,
        restart_min=restart_min,
    )  # fmt: skip
    model_spec, cluster, training, defaults = specs_from_request(request)
    constraints = SearchConstraints(
        max_gpus=limit,
        deadline_days=parse_days(deadline, "--deadline") if deadline is not None else None,
        budget_usd=parse_usd(budget, "--budget") if budget is not None else None,
        memory_headroom=headroom,
    )
    pinned = {
        "tp": tp, "pp": pp, "cp": cp, "dp": dp, "ep": ep, "sharding": sharding,
        "hsdp_shard_size": hsdp_shard, "micro_batch": micro_batch, "recompute": recompute,
        "interleave": interleave, "sequence_parallel": sequence_parallel,
        "uneven_stages": uneven_stages, "activation_offload": offload,
        "schedule": schedule, "microbatch_group": microbatch_group,
        "free_stage_outputs": free_stage_outputs, "expert_tp": expert_tp,
    }  # fmt: skip
    if plot is not None:
        from planner.plot import check_plot_path

        check_plot_path(plot)
    result = search(
        model_spec, cluster, training,
        pinned={k: v for k, v in pinned.items() if v is not None},
        objective=objective,  # type: ignore[arg-type]
        top_k=top, constraints=constraints,
    )  # fmt: skip
    if plot is not None and result.ranked:
        from planner.plot import plot_search

        plot_search(result, plot)
        defaults.append(f"plot written to {plot}")
    if as_json:
        for note in defaults:
            print(f"default: {note}", file=sys.stderr)
        if result.ranked:
            print(json.dumps([est.model_dump(mode="json") for est in result.ranked]))
    else:
        from planner.render_search import render_search

        render_search(result, defaults)
    result.raise_if_infeasible()


@plan_app.command("capacity")
def capacity_command(
    model: str | None = typer.Option(
        None, "--model", "-m", help="Preset or config.json (for the cluster size)."
    ),
    gpu: str | None = typer.Option(None, "--gpu", help="Catalog GPU (see `plan gpus`)."),
    gpu_spec: str | None = typer.Option(
        None, "--gpu-spec", help="YAML file with an AcceleratorSpec, instead of --gpu."
    ),
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
    gpus_per_node: int = typer.Option(8, "--gpus-per-node", help="GPUs per node."),
    max_gpus: str = typer.Option("128k", "--max-gpus", help="Largest cluster considered."),
    seq_len: str | None = typer.Option(None, "--seq-len", help="Tokens per sequence (8k)."),
    global_batch: str | None = typer.Option(
        None, "--global-batch", help="Sequences per optimizer step."
    ),
    global_batch_tokens: str | None = typer.Option(
        None, "--global-batch-tokens", help="Tokens per optimizer step (16M), instead."
    ),
    tokens: str | None = typer.Option(
        None, "--tokens", help="Training tokens, decimal (15T); default 20 x parameters."
    ),
    precision: str = typer.Option("bf16", "--precision", help="bf16, fp8 or fp32."),
    optimizer: str = typer.Option("adamw", "--optimizer", help="adamw or sgd_momentum."),
    attention: str = typer.Option("flash", "--attention", help="flash or unfused."),
    pue: float | None = typer.Option(None, "--pue", help="Data-centre PUE."),
    grid: float | None = typer.Option(None, "--grid", help="Grid kg CO2 per kWh."),
    price: float | None = typer.Option(None, "--price", help="USD per GPU-hour."),
    mtbf_hours: float | None = typer.Option(
        None, "--mtbf-hours", help="GPU-hours between failures per GPU (default: Llama 3's rate)."
    ),
    ckpt_gb_s: float | None = typer.Option(
        None, "--ckpt-gb-s", help="Checkpoint bandwidth per node to storage, GB/s."
    ),
    ckpt_gb_s_max: float | None = typer.Option(
        None, "--ckpt-gb-s-max", help="Storage system's aggregate bandwidth, GB/s."
    ),
    restart_min: float | None = typer.Option(
        None, "--restart-min", help="Minutes to restart after a failure (before reload)."
    ),
    headroom: float = typer.Option(
        0.0, "--headroom", help="Share of GPU memory to leave free (0.1 = 10 %)."
    ),
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
        if precision not in ("bf16", "fp8", "fp32"):
            raise PlanInputError(f"--precision {precision!r}: use bf16, fp8 or fp32.")
        peak_tflops = peak if precision != "bf16" else spec.bf16_dense_tflops
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


@plan_app.command("gpus")
def gpus_command(
    as_json: bool = typer.Option(False, "--json", help="Print the catalog as JSON."),
) -> None:
    """List the accelerator catalog (planner/data/gpus.yaml)."""
    import json

    from planner.catalog import list_gpus

    specs = list_gpus()
    if as_json:
        print(json.dumps([spec.model_dump(mode="json") for spec in specs]))
        return
    from planner.render import render_gpus

    render_gpus(specs)


@plan_app.command("models")
def models_command(
    as_json: bool = typer.Option(False, "--json", help="Print the presets as JSON."),
) -> None:
    """List the model presets (planner/data/models.yaml)."""
    import json

    from planner.catalog import list_models

    specs = list_models()
    if as_json:
        print(json.dumps([spec.model_dump(mode="json") for spec in specs]))
        return
    from planner.render import render_models

    render_models(specs)


def register(app: typer.Typer) -> None:
    app.add_typer(plan_app, name="plan")
