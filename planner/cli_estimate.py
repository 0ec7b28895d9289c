"""``scalectl plan estimate``: one layout's memory, time, energy, cost and CO2."""

from __future__ import annotations

from typing import Any

import typer

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
    ExpertTpOption,
    FinetuneOption,
    Fp8ScalingOption,
    FreeStageOutputsOption,
    GlobalBatchOption,
    GlobalBatchTokensOption,
    GpuOption,
    GpuSpecOption,
    GpusPerNodeOption,
    GradLifetimeOption,
    GradReduceDtypeOption,
    GridOption,
    HsdpShardOption,
    InterleaveOption,
    KernelsOption,
    LoraAlphaOption,
    LoraRankOption,
    LoraTargetsOption,
    LossChunksOption,
    LossKernelsOption,
    MicrobatchGroupOption,
    MicroBatchOption,
    ModelOption,
    MoeCapacityOption,
    MtbfHoursOption,
    OffloadOption,
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
    ScheduleOption,
    SeqLenOption,
    SequenceParallelOption,
    TokensOption,
    TpOption,
    UnevenStagesOption,
    ZeroOption,
)


def estimate_command(
    model: ModelOption,
    gpu: GpuOption = None,
    gpu_spec: GpuSpecOption = None,
    gpus: str = typer.Option(..., "--gpus", help="GPUs in the job (1024, 16k = 16384)."),
    gpus_per_node: GpusPerNodeOption = 8,
    seq_len: SeqLenOption = None,
    global_batch: GlobalBatchOption = None,
    global_batch_tokens: GlobalBatchTokensOption = None,
    tokens: TokensOption = None,
    tp: TpOption = None,
    pp: PpOption = None,
    cp: CpOption = None,
    dp: DpOption = None,
    ep: EpOption = None,
    zero: ZeroOption = None,
    hsdp_shard: HsdpShardOption = None,
    micro_batch: MicroBatchOption = None,
    recompute: RecomputeOption = None,
    interleave: InterleaveOption = None,
    sequence_parallel: SequenceParallelOption = None,
    uneven_stages: UnevenStagesOption = None,
    offload: OffloadOption = None,
    schedule: ScheduleOption = None,
    microbatch_group: MicrobatchGroupOption = None,
    free_stage_outputs: FreeStageOutputsOption = None,
    cp_impl: CpImplOption = None,
    expert_tp: ExpertTpOption = None,
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
    moe_capacity: MoeCapacityOption = None,
    pue: PueOption = None,
    grid: GridOption = None,
    price: PriceOption = None,
    mtbf_hours: MtbfHoursOption = None,
    ckpt_gb_s: CkptGbSOption = None,
    ckpt_gb_s_max: CkptGbSMaxOption = None,
    restart_min: RestartMinOption = None,
    profile: ProfileOption = None,
    as_json: bool = typer.Option(False, "--json", help="Print the estimate as one JSON object."),
    out: str | None = typer.Option(
        None, "--out", help="Also write the Plan to FILE (plan.json) for `scalectl launch --plan`."
    ),
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
        cp_impl=cp_impl,
        expert_tp=expert_tp,
        precision=precision,
        optimizer=optimizer,
        attention=attention,
        kernels=kernels,
        loss_chunks=loss_chunks,
        loss_kernels=loss_kernels,
        grad_lifetime=grad_lifetime,
        fp8_scaling=fp8_scaling,
        ring_attention=ring_attention,
        overlap_grad_reduce=overlap_grad_reduce,
        grad_reduce_dtype=grad_reduce_dtype,
        moe_capacity_factor=moe_capacity,
        finetune=finetune,
        lora_rank=lora_rank,
        lora_targets=lora_targets,
        lora_alpha=lora_alpha,
        base_format=base_format,
        pue=pue,
        grid=grid,
        price=price,
        mtbf_hours=mtbf_hours,
        ckpt_gb_s=ckpt_gb_s,
        ckpt_gb_s_max=ckpt_gb_s_max,
        restart_min=restart_min,
        profile=profile,
        explain=explain,
    )
    plan, defaults = run_request(request)
    est = plan.estimate
    # A plan that does not fit is never written: `launch --plan` would start a job that
    # runs out of memory. The report still prints, so the user sees by how much.
    if out is not None and est.fits:
        from planner.cli_out import write_plan_file

        write_plan_file(plan, out)
    if as_json:
        for note in defaults:
            print(f"default: {note}", file=sys.stderr)
        print(json.dumps({**est.model_dump(mode="json"), **_band_json(plan)}))
    else:
        from planner.render import render_plan

        render_plan(plan, defaults)
    if not est.fits:
        from planner.errors import PlanInputError
        from planner.search_explain import describe_layout

        mem = est.memory_gib
        raise PlanInputError(
            f"layout {describe_layout(est.layout)} does not fit: "
            + (
                f"{mem.total:.1f} GiB per GPU of {mem.capacity:.0f} GiB"
                if mem.total > mem.capacity
                else "its offloaded activations exceed the node's host memory"
            )
            + (f"; {out} not written" if out is not None else "")
            + "; pin more tp/pp/dp, --recompute full or more GPUs, or run `plan search`"
        )


def _band_json(where: Any, layout: Any = None) -> dict[str, Any]:
    """{"error_band": ...} of an estimate (planner.error_band), for --json output."""
    from planner.error_band import error_band

    band = error_band(where.model, where.training, layout or where.layout)
    return {"error_band": band.model_dump(mode="json")}
