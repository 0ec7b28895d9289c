"""``scalectl plan search``: every valid layout, ranked, with the Pareto front."""

from __future__ import annotations

import typer

from planner.cli_estimate import _band_json
from planner.cli_options import (
    _SHARDING_ALIASES,
    AttentionOption,
    BaseFormatOption,
    CkptGbSMaxOption,
    CkptGbSOption,
    CpImplOption,
    CpOption,
    DpOption,
    EpOption,
    FinetuneOption,
    Fp8ScalingOption,
    GlobalBatchOption,
    GlobalBatchTokensOption,
    GpuOption,
    GpuSpecOption,
    GpusPerNodeOption,
    GradLifetimeOption,
    GradReduceDtypeOption,
    GridOption,
    HeadroomOption,
    HsdpShardOption,
    InterleaveOption,
    KernelsOption,
    LoraAlphaOption,
    LoraRankOption,
    LoraTargetsOption,
    LossChunksOption,
    LossKernelsOption,
    MicroBatchOption,
    ModelOption,
    MtbfHoursOption,
    OptimizerOption,
    OverlapGradReduceOption,
    PpOption,
    PrecisionOption,
    PriceOption,
    ProfileOption,
    PueOption,
    RecomputeOption,
    RestartMinOption,
    RingAttentionOption,
    SeqLenOption,
    SequenceParallelOption,
    TokensOption,
    TpOption,
    ZeroOption,
)
from planner.margins import DEFAULT_MEMORY_HEADROOM


def search_command(
    model: ModelOption,
    gpu: GpuOption = None,
    gpu_spec: GpuSpecOption = None,
    gpus: str | None = typer.Option(
        None, "--gpus", help="GPUs in the job (1024, 16k); or give --max-gpus."
    ),
    gpus_per_node: GpusPerNodeOption = 8,
    seq_len: SeqLenOption = None,
    global_batch: GlobalBatchOption = None,
    global_batch_tokens: GlobalBatchTokensOption = None,
    tokens: TokensOption = None,
    tp: TpOption = None,
    pp: PpOption = None,
    cp: CpOption = None,
    cp_impl: CpImplOption = None,
    dp: DpOption = None,
    ep: EpOption = None,
    zero: ZeroOption = None,
    hsdp_shard: HsdpShardOption = None,
    micro_batch: MicroBatchOption = None,
    recompute: RecomputeOption = None,
    interleave: InterleaveOption = None,
    sequence_parallel: SequenceParallelOption = None,
    precision: PrecisionOption = "bf16",
    optimizer: OptimizerOption = "adamw",
    attention: AttentionOption = "flash",
    kernels: KernelsOption = "fused",
    loss_chunks: LossChunksOption = 1,
    loss_kernels: LossKernelsOption = None,
    grad_lifetime: GradLifetimeOption = "step",
    fp8_scaling: Fp8ScalingOption = "delayed",
    ring_attention: RingAttentionOption = "torch",
    overlap_grad_reduce: OverlapGradReduceOption = True,
    grad_reduce_dtype: GradReduceDtypeOption = "fp32",
    finetune: FinetuneOption = None,
    lora_rank: LoraRankOption = None,
    lora_targets: LoraTargetsOption = None,
    lora_alpha: LoraAlphaOption = None,
    base_format: BaseFormatOption = None,
    pue: PueOption = None,
    grid: GridOption = None,
    price: PriceOption = None,
    mtbf_hours: MtbfHoursOption = None,
    ckpt_gb_s: CkptGbSOption = None,
    ckpt_gb_s_max: CkptGbSMaxOption = None,
    restart_min: RestartMinOption = None,
    profile: ProfileOption = None,
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
    headroom: HeadroomOption = DEFAULT_MEMORY_HEADROOM,
    plot: str | None = typer.Option(
        None, "--plot", help="Write time against cost of every feasible layout to FILE.png."
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print the ranked layouts as a JSON list of estimates."
    ),
    out: str | None = typer.Option(
        None, "--out", help="Also write the Plan of one ranked layout to FILE (plan.json)."
    ),
    pick: int = typer.Option(1, "--pick", help="With --out: which ranked layout (1 = best)."),
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
    if cp_impl not in (None, "ring", "allgather"):
        raise PlanInputError(f"--cp-impl {cp_impl!r}: use ring or allgather.")
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
        optimizer=optimizer, attention=attention, kernels=kernels, loss_chunks=loss_chunks,
        loss_kernels=loss_kernels, grad_lifetime=grad_lifetime, fp8_scaling=fp8_scaling,
        ring_attention=ring_attention,
        overlap_grad_reduce=overlap_grad_reduce,
        grad_reduce_dtype=grad_reduce_dtype, pue=pue, grid=grid, price=price,
        mtbf_hours=mtbf_hours, ckpt_gb_s=ckpt_gb_s, ckpt_gb_s_max=ckpt_gb_s_max,
        restart_min=restart_min, profile=profile,
        finetune=finetune, lora_rank=lora_rank, lora_targets=lora_targets,
        lora_alpha=lora_alpha, base_format=base_format,
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
        "cp_impl": cp_impl,
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
    if out is not None:
        from planner.cli_out import picked_plan, write_plan_file

        write_plan_file(picked_plan(model_spec, cluster, training, result.ranked, pick), out)
    if plot is not None and result.ranked:
        from planner.plot import plot_search

        plot_search(result, plot)
        defaults.append(f"plot written to {plot}")
    if as_json:
        for note in defaults:
            print(f"default: {note}", file=sys.stderr)
        if result.ranked:
            print(json.dumps([{**est.model_dump(mode="json"), **_band_json(result, est.layout)}
                              for est in result.ranked]))  # fmt: skip
    else:
        from planner.render_search import render_search

        render_search(result, defaults)
    result.raise_if_infeasible()
