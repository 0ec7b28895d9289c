"""From loose user input (CLI flags) to validated specs, with the defaults stated.

Kept apart from the CLI so it can be tested without typer: :func:`run_request` returns
the :class:`~planner.result.Plan` and the list of defaults it filled in (printed by the
CLI on stderr with ``--json``, or under the tables otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from planner.catalog import constants_data, get_gpu, get_model, load_gpu_spec, load_model_spec
from planner.errors import PlanInputError
from planner.estimator import estimate
from planner.hf_config import load_hf_config
from planner.result import Plan
from planner.specs import AcceleratorSpec, ClusterSpec, Layout, ModelSpec, TrainingSpec
from planner.units import format_count, parse_count, parse_int_count

RECOMPUTE_ORDER = ("none", "selective", "full")
"""Tried in this order when --recompute is omitted: the first whose memory fits wins."""


@dataclass(frozen=True)
class EstimateRequest:
    """The flags of ``scalectl plan estimate``, unparsed where they accept ``2k``/``15T``."""

    model: str
    gpus: str
    seq_len: str | None = None
    gpu: str | None = None
    gpu_spec: str | None = None
    gpus_per_node: int = 8
    global_batch: str | None = None
    global_batch_tokens: str | None = None
    tokens: str | None = None
    tp: int | None = None
    pp: int | None = None
    cp: int | None = None
    dp: int | None = None
    ep: int | None = None
    zero: str | None = None
    hsdp_shard: int | None = None
    micro_batch: int | None = None
    recompute: str | None = None
    interleave: int | None = None
    sequence_parallel: bool | None = None
    uneven_stages: bool | None = None
    activation_offload: float | None = None
    schedule: str | None = None
    microbatch_group: int | None = None
    free_stage_outputs: bool | None = None
    expert_tp: int | None = None
    cp_impl: str | None = None
    precision: str = "bf16"
    optimizer: str = "adamw"
    attention: str = "flash"
    kernels: str = "fused"
    loss_chunks: int = 1
    loss_kernels: str | None = None
    grad_lifetime: str = "step"
    fp8_scaling: str = "delayed"
    ring_attention: str = "torch"
    overlap_grad_reduce: bool = True
    grad_reduce_dtype: str = "fp32"
    moe_capacity_factor: float | None = None
    finetune: str | None = None
    lora_rank: int | None = None
    lora_targets: str | None = None
    lora_alpha: float | None = None
    base_format: str | None = None
    pue: float | None = None
    grid: float | None = None
    price: float | None = None
    mtbf_hours: float | None = None
    ckpt_gb_s: float | None = None
    ckpt_gb_s_max: float | None = None
    restart_min: float | None = None
    profile: str | None = None
    explain: bool = False
    """Add why the chosen layout beat the alternatives to the notes."""


def resolve_model(text: str) -> ModelSpec:
    """A preset name, a YAML file of ModelSpec fields, or a path to a config.json (or its
    directory)."""
    path = Path(text)
    if text.endswith((".yaml", ".yml")):
        return load_model_spec(text)
    if text.endswith(".json") or path.is_dir() or path.is_file() or "/" in text:
        return load_hf_config(path)
    return get_model(text)


def resolve_accelerator(gpu: str | None, gpu_spec: str | None) -> AcceleratorSpec | str:
    """The catalog name (checked) or the AcceleratorSpec read from --gpu-spec."""
    if gpu and gpu_spec:
        raise PlanInputError("give --gpu NAME or --gpu-spec FILE, not both.")
    if gpu_spec:
        return load_gpu_spec(gpu_spec)
    if not gpu:
        raise PlanInputError("--gpu: required; name a catalog GPU or pass --gpu-spec FILE.")
    return get_gpu(gpu).name


def _accelerator(r: EstimateRequest, defaults: list[str]) -> AcceleratorSpec | str:
    """--gpu / --gpu-spec, or the accelerator of --profile (checked against them)."""
    if r.profile is None:
        return resolve_accelerator(r.gpu, r.gpu_spec)
    from planner.profile import load_profile, profiled_accelerator

    profile = load_profile(r.profile)
    named = None
    if r.gpu or r.gpu_spec:
        acc = resolve_accelerator(r.gpu, r.gpu_spec)
        named = acc if isinstance(acc, AcceleratorSpec) else get_gpu(acc)
    defaults.append(
        f"--profile {r.profile}: {profile.fitted_for} with constants fitted to "
        f"{len(profile.jobs)} measured job(s)"
    )
    return profiled_accelerator(profile, named)


def _positive(value: int, flag: str) -> int:
    if value <= 0:
        raise PlanInputError(f"{flag}: must be a positive whole number, got {value}.")
    return value


def specs_from_request(
    request: EstimateRequest,
) -> tuple[ModelSpec, ClusterSpec, TrainingSpec, list[str]]:
    """The model, cluster and training specs of a request (and the defaults used); the
    layout flags are left to the caller (``plan estimate`` fills them in, ``plan search``
    pins the ones given)."""
    defaults: list[str] = []
    model = resolve_model(request.model)
    r = finetune_request_defaults(request, defaults) if request.finetune else request
    if r.seq_len is None:
        raise PlanInputError("--seq-len: required; give the tokens per sequence (e.g. 4096).")
    accelerator = _accelerator(r, defaults)
    gpus = parse_int_count(r.gpus, "--gpus")
    seq_len = parse_int_count(r.seq_len, "--seq-len")
    _positive(r.gpus_per_node, "--gpus-per-node")
    if (r.global_batch is None) == (r.global_batch_tokens is None):
        raise PlanInputError("give exactly one of --global-batch SEQS or --global-batch-tokens N.")
    if r.global_batch is not None:
        batch_seqs = parse_int_count(r.global_batch, "--global-batch")
    else:
        batch_tokens = parse_int_count(r.global_batch_tokens or "", "--global-batch-tokens")
        if batch_tokens % seq_len:
            raise PlanInputError(
                f"--global-batch-tokens: {batch_tokens} is not a multiple of --seq-len "
                f"{seq_len}; use {max(1, round(batch_tokens / seq_len)) * seq_len}."
            )
        batch_seqs = batch_tokens // seq_len
    if r.tokens is not None:
        tokens = parse_count(r.tokens, "--tokens")
    elif r.finetune:
        tokens = FINETUNE_STEPS * batch_seqs * seq_len
        defaults.append(
            f"--tokens {format_count(tokens)} ({FINETUNE_STEPS:,} steps of the global batch; "
            "give your data's tokens x epochs)"
        )
    else:
        per_param = constants_data()["chinchilla_tokens_per_param"]
        tokens = per_param * model.num_params
        defaults.append(
            f"--tokens {format_count(tokens)} ({per_param} x {format_count(model.num_params)} "
            "parameters, Hoffmann et al. 2022)"
        )
    cluster = ClusterSpec(
        gpu=accelerator,
        num_gpus=gpus,
        gpus_per_node=r.gpus_per_node,
        pue=r.pue,
        grid_kg_co2_per_kwh=r.grid,
        price_usd_per_gpu_hour=r.price,
        mtbf_gpu_hours=r.mtbf_hours,
        checkpoint_gb_s_per_node=r.ckpt_gb_s,
        checkpoint_gb_s_max=r.ckpt_gb_s_max,
        restart_min=r.restart_min,
    )
    training = TrainingSpec(
        seq_len=seq_len,
        global_batch_seqs=batch_seqs,
        total_tokens=tokens,
        precision=r.precision,
        optimizer=r.optimizer,
        attention_kernel=r.attention,
        kernels=r.kernels,
        loss_chunks=r.loss_chunks,
        loss_kernels=r.loss_kernels,
        grad_lifetime=r.grad_lifetime,
        fp8_scaling=r.fp8_scaling,
        ring_attention=r.ring_attention,
        overlap_grad_reduce=r.overlap_grad_reduce,
        grad_reduce_dtype=r.grad_reduce_dtype,
        moe_capacity_factor=r.moe_capacity_factor,
        finetune=r.finetune,
        lora_rank=r.lora_rank,
        lora_targets=r.lora_targets,
        lora_alpha=r.lora_alpha,
        base_format=r.base_format,
    )
    defaults.extend(finetune_defaults(training))
    return model, cluster, training, defaults


FINETUNE_GPU = "H100-SXM-80GB"
"""Accelerator a fine-tuning request without --gpu is planned on: the most common
data-centre GPU in the catalog (stated among the defaults)."""
FINETUNE_SEQ_LEN = 2048
"""Sequence length a fine-tuning request without --seq-len packs its records into (capped at
the model's max_position_embeddings): long enough for most instruction records."""
FINETUNE_GLOBAL_BATCH = 16
"""Sequences per step of a fine-tuning request without --global-batch: litgpt's fine-tuning
default (``global_batch_size=16`` in litgpt/finetune/lora.py's TrainArgs)."""
FINETUNE_STEPS = 1000
"""Steps a fine-tuning request without --tokens is planned for."""


def finetune_request_defaults(r: EstimateRequest, defaults: list[str]) -> EstimateRequest:
    """A fine-tuning request with its GPU, sequence length and global batch filled in when
    left out (each stated in ``defaults``): the question is whether a checkpoint fine-tunes
    on these GPUs, so only the model and the GPU count must be given."""
    filled: dict[str, object] = {}
    if r.gpu is None and r.gpu_spec is None and r.profile is None:
        filled["gpu"] = FINETUNE_GPU
        defaults.append(f"--gpu {FINETUNE_GPU} (fine-tuning default; name yours with --gpu)")
    if r.seq_len is None:
        limit = _max_positions(r.model)
        seq = min(FINETUNE_SEQ_LEN, limit) if limit else FINETUNE_SEQ_LEN
        filled["seq_len"] = str(seq)
        capped = ", the model's max_position_embeddings" if seq != FINETUNE_SEQ_LEN else ""
        defaults.append(f"--seq-len {seq} (fine-tuning default{capped})")
    if r.global_batch is None and r.global_batch_tokens is None:
        filled["global_batch"] = str(FINETUNE_GLOBAL_BATCH)
        defaults.append(f"--global-batch {FINETUNE_GLOBAL_BATCH} (litgpt's fine-tuning default)")
    return replace(r, **filled) if filled else r  # type: ignore[arg-type]


def _max_positions(model: str) -> int | None:
    """max_position_embeddings of a config.json the --model path names, if any."""
    import json

    path = Path(model)
    path = path / "config.json" if path.is_dir() else path
    try:
        value = json.loads(path.read_text(encoding="utf-8")).get("max_position_embeddings")
    except (OSError, ValueError, AttributeError):
        return None
    return int(value) if isinstance(value, int) and value > 0 else None


def finetune_defaults(training: TrainingSpec) -> list[str]:
    """The fine-tuning flags a LoRA/QLoRA request left to their defaults, stated."""
    from planner import finetune

    if training.finetune not in ("lora", "qlora"):
        return []
    out = []
    if training.lora_rank is None:
        out.append(f"--lora-rank {finetune.DEFAULT_RANK} (Hu et al. 2021's usual rank)")
    if training.lora_targets is None:
        out.append(f"--lora-targets {finetune.DEFAULT_TARGETS} (QLoRA paper, Sec. 4)")
    if training.finetune == "qlora" and training.base_format is None:
        out.append("--base-format nf4-dq (the QLoRA paper's NF4 with double quantisation)")
    return out


def _pins(r: EstimateRequest, sharding: str | None) -> dict[str, object]:
    """The layout knobs the request gives (None: left to the search)."""
    given = {
        "tp": r.tp, "pp": r.pp, "cp": r.cp, "dp": r.dp, "ep": r.ep, "sharding": sharding,
        "hsdp_shard_size": r.hsdp_shard, "micro_batch": r.micro_batch,
        "recompute": r.recompute, "interleave": r.interleave,
        "sequence_parallel": r.sequence_parallel, "uneven_stages": r.uneven_stages,
        "activation_offload": r.activation_offload, "schedule": r.schedule,
        "microbatch_group": r.microbatch_group, "free_stage_outputs": r.free_stage_outputs,
        "expert_tp": r.expert_tp, "cp_impl": r.cp_impl,
    }  # fmt: skip
    return {k: v for k, v in given.items() if v is not None}


def run_request(request: EstimateRequest) -> tuple[Plan, list[str]]:
    """Build the specs (stating every default used) and estimate the layout.

    Knobs not given are what ``plan search`` picks under the given ones (the fastest layout
    that fits; :mod:`planner.estimate_defaults`); when nothing fits, the least
    recomputation with one GPU per degree not given, dp the rest, ZeRO-1.
    """
    from planner.checks import validate
    from planner.estimate_defaults import explain, searched_layout

    r = request
    if r.schedule not in (None, "1f1b", "gpipe"):
        raise PlanInputError(f"--schedule {r.schedule!r}: use 1f1b or gpipe.")
    if r.cp_impl not in (None, "ring", "allgather"):
        raise PlanInputError(f"--cp-impl {r.cp_impl!r}: use ring or allgather.")
    for flag, value in (
        ("--microbatch-group", r.microbatch_group),
        ("--expert-tp", r.expert_tp),
        ("--tp", r.tp),
        ("--pp", r.pp),
        ("--cp", r.cp),
        ("--ep", r.ep),
        ("--micro-batch", r.micro_batch),
        ("--interleave", r.interleave),
    ):
        if value is not None:
            _positive(value, flag)
    model, cluster, training, defaults = specs_from_request(r)
    gpus = cluster.num_gpus
    tp, pp, cp = r.tp or 1, r.pp or 1, r.cp or 1

    model_parallel = tp * pp * cp
    if r.dp is None:
        if gpus % model_parallel:
            raise PlanInputError(
                f"--tp·--pp·--cp = {model_parallel} does not divide --gpus {gpus}; "
                "change the degrees or the GPU count."
            )
        dp = gpus // model_parallel
    else:
        dp = _positive(r.dp, "--dp")
    sharding = r.zero if r.zero is not None else ("zero1" if dp * cp > 1 else "none")
    hsdp_shard = r.hsdp_shard
    if sharding == "hsdp" and hsdp_shard is None:
        raise PlanInputError("--zero hsdp needs --hsdp-shard N (the shard group size).")
    if sharding != "hsdp" and hsdp_shard is not None:
        raise PlanInputError("--hsdp-shard only applies with --zero hsdp.")
    offload = 0.0 if r.activation_offload is None else r.activation_offload
    if not 0.0 <= offload <= 1.0:
        raise PlanInputError(f"--offload: a share of activations in [0, 1], got {offload}.")
    sequence_parallel = r.sequence_parallel if r.sequence_parallel is not None else tp > 1

    def layout(recompute: str) -> Layout:
        return Layout(
            dp=dp,
            tp=tp,
            pp=pp,
            cp=cp,
            ep=r.ep or 1,
            sharding=sharding,
            hsdp_shard_size=hsdp_shard,
            micro_batch=r.micro_batch or 1,
            recompute=recompute,
            interleave=r.interleave or 1,
            sequence_parallel=sequence_parallel,
            uneven_stages=bool(r.uneven_stages),
            activation_offload=offload,
            schedule="gpipe" if r.schedule == "gpipe" else "1f1b",
            microbatch_group=r.microbatch_group,
            free_stage_outputs=r.free_stage_outputs is not False,
            expert_tp=r.expert_tp,
            cp_impl="allgather" if r.cp_impl == "allgather" else "ring",
        )

    # The given knobs must make a valid layout with the others at 1 (the checks' own
    # messages), unless dp is given without all of tp, pp and cp: the search fills those.
    if r.dp is None or None not in (r.tp, r.pp, r.cp):
        validate(model, cluster, training, layout(r.recompute or "none"), cluster.accelerator())
    pins = _pins(r, r.zero)
    fully_pinned = set(_pins_all()) <= set(pins)
    found = None if fully_pinned else searched_layout(model, cluster, training, pins)
    if found is not None:
        chosen, searched, notes = found
        result = estimate(model, cluster, training, chosen)
        defaults += notes
        if r.explain:
            defaults += [
                f"why: {line}" for line in explain(model, cluster, training, result, searched, pins)
            ]
    elif r.recompute is not None:
        chosen = layout(r.recompute)
        result = estimate(model, cluster, training, chosen)
    else:
        for mode in RECOMPUTE_ORDER:
            chosen = layout(mode)
            result = estimate(model, cluster, training, chosen)
            if result.fits:
                break
        reason = "the least recomputation that fits" if result.fits else "nothing fits"
        defaults.append(f"--recompute {chosen.recompute} ({reason})")
    if found is None and not fully_pinned:
        if r.dp is None:
            defaults.append(f"--dp {dp} (GPUs / (tp·pp·cp))")
        if r.zero is None:
            defaults.append(f"--zero {sharding} (distributed optimizer when data-parallel)")
        defaults.append("`plan search` found no layout that fits under the given pins")
    plan = Plan(model=model, cluster=cluster, training=training, layout=chosen, estimate=result)
    return plan, defaults


def _pins_all() -> tuple[str, ...]:
    """Every knob an estimate can pin (hsdp_shard_size only goes with HSDP)."""
    from planner.estimate_defaults import FLAGS

    return tuple(name for name in FLAGS if name != "hsdp_shard_size")
