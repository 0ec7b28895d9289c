"""``scalectl plan ...``: the planner's commands.

Heavy imports (numpy, pydantic models, rich) happen inside the command functions so
``scalectl --help`` stays fast. Bad input raises PlanInputError (or a pydantic
ValidationError), which the root CLI prints as one line with exit code 2.
"""

from __future__ import annotations

import typer

plan_app = typer.Typer(
    help="Estimate memory, time, energy, cost and CO2 of a training run; list the catalogs.",
    no_args_is_help=True,
)

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
    model: str = typer.Option(
        ..., "--model", "-m", help="Preset name (see `plan models`) or a config.json path."
    ),
    gpu: str | None = typer.Option(None, "--gpu", help="Catalog GPU (see `plan gpus`)."),
    gpu_spec: str | None = typer.Option(
        None, "--gpu-spec", help="YAML file with an AcceleratorSpec, instead of --gpu."
    ),
    gpus: str = typer.Option(..., "--gpus", help="GPUs in the job (1024, 16k = 16384)."),
    gpus_per_node: int = typer.Option(8, "--gpus-per-node", help="GPUs per node."),
    seq_len: str = typer.Option(..., "--seq-len", help="Tokens per sequence (4096, 8k = 8192)."),
    global_batch: str | None = typer.Option(
        None, "--global-batch", help="Sequences per optimizer step."
    ),
    global_batch_tokens: str | None = typer.Option(
        None, "--global-batch-tokens", help="Tokens per optimizer step (4M = 4,194,304), instead."
    ),
    tokens: str | None = typer.Option(
        None,
        "--tokens",
        help="Training tokens, decimal (15T = 1.5e13, 2e12); default 20 x parameters.",
    ),
    tp: int = typer.Option(1, "--tp", help="Tensor-parallel degree."),
    pp: int = typer.Option(1, "--pp", help="Pipeline stages."),
    cp: int = typer.Option(1, "--cp", help="Context-parallel degree."),
    dp: int | None = typer.Option(None, "--dp", help="Data-parallel degree (default: the rest)."),
    ep: int = typer.Option(1, "--ep", help="Expert-parallel degree (MoE)."),
    zero: str | None = typer.Option(
        None, "--zero", help="Sharding: 0|1|2|3 (ZeRO stage), fsdp, hsdp (default 1 if dp>1)."
    ),
    hsdp_shard: int | None = typer.Option(None, "--hsdp-shard", help="HSDP shard group size."),
    micro_batch: int = typer.Option(1, "--micro-batch", help="Sequences per micro-batch."),
    recompute: str | None = typer.Option(
        None, "--recompute", help="none|selective|full (default: the least that fits)."
    ),
    interleave: int = typer.Option(1, "--interleave", help="Virtual pipeline stages per GPU."),
    sequence_parallel: bool | None = typer.Option(
        None,
        "--sequence-parallel/--no-sequence-parallel",
        help="Shard norm/dropout activations over TP (default: on when tp > 1).",
    ),
    precision: str = typer.Option("bf16", "--precision", help="bf16 or fp8."),
    optimizer: str = typer.Option("adamw", "--optimizer", help="adamw or sgd_momentum."),
    attention: str = typer.Option("flash", "--attention", help="flash or unfused."),
    overlap_grad_reduce: bool = typer.Option(
        True, "--overlap-grad-reduce/--no-overlap-grad-reduce", help="Overlap DP reduction."
    ),
    grad_reduce_dtype: str = typer.Option("fp32", "--grad-dtype", help="fp32 or bf16 gradients."),
    pue: float | None = typer.Option(None, "--pue", help="Data-centre PUE."),
    grid: float | None = typer.Option(None, "--grid", help="Grid kg CO2 per kWh."),
    price: float | None = typer.Option(None, "--price", help="USD per GPU-hour."),
    as_json: bool = typer.Option(False, "--json", help="Print the estimate as one JSON object."),
) -> None:
    """Predict memory, step time, MFU, days, GPU-hours, energy, cost and CO2 of one layout."""
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
        precision=precision,
        optimizer=optimizer,
        attention=attention,
        overlap_grad_reduce=overlap_grad_reduce,
        grad_reduce_dtype=grad_reduce_dtype,
        pue=pue,
        grid=grid,
        price=price,
    )
    plan, defaults = run_request(request)
    if as_json:
        for note in defaults:
            print(f"default: {note}", file=sys.stderr)
        print(json.dumps(plan.estimate.model_dump(mode="json")))
        return
    from planner.render import render_plan

    render_plan(plan, defaults)


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
