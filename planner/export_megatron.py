"""A plan as Megatron-LM arguments (pure), for Megatron-LM core_v0.16 (megatron-core 0.16).

Megatron-LM builds most flags from megatron-core's config dataclasses
(``ArgumentGroupFactory``, megatron/training/argument_utils.py: field
``tensor_model_parallel_size`` → ``--tensor-model-parallel-size``, or the field's
``argparse_meta`` ``arg_names``: ``fp8`` → ``--fp8-format``); the others are written by
hand in megatron/training/arguments.py. :data:`FLAG_SOURCES` says where each flag this
module emits comes from; tests/planner/test_export_megatron.py checks every one against
the names recorded from megatron-core 0.16.1 and Megatron-LM core_v0.16.1
(tests/data/megatron_fields.json, scripts/megatron_fields.py).

Virtual stages are given as ``--num-virtual-stages-per-pipeline-rank`` (arguments.py →
``ModelParallelConfig.virtual_pipeline_model_parallel_size`` as is): the plan says virtual
stages per rank, and ``--num-layers-per-virtual-pipeline-stage`` is refused by
Megatron-LM together with uneven first/last stages.

Sharding: zero1 → ``--use-distributed-optimizer`` (optimizer states sharded over dp);
zero2/zero3 → Megatron FSDP (``--use-megatron-fsdp --data-parallel-sharding-strategy
optim_grads|optim_grads_params``); hsdp is refused (Megatron FSDP's outer replication
takes more than the plan says).

Every value the planner priced is passed even where it is the planner's default, because
Megatron-LM's defaults differ (dropout 0.1, no gradient-reduction overlap): the model's
shape, dropout, the attention kernel (``--attention-backend``), the optimizer, and the
gradient-reduction overlap and dtype. Data, tokenizer, learning rate and checkpoint flags
stay the user's.
"""

from __future__ import annotations

from planner.export_plan import ExportPlan, common_refusals, refuse, ring_refusals, stage_split

TARGET = "Megatron-LM"

ARGUMENTS_PY = "arguments.py"
"""Source of a flag written by hand in megatron/training/arguments.py."""

FLAG_SOURCES = {
    "--tensor-model-parallel-size": "ModelParallelConfig.tensor_model_parallel_size",
    "--pipeline-model-parallel-size": "ModelParallelConfig.pipeline_model_parallel_size",
    "--num-virtual-stages-per-pipeline-rank": ARGUMENTS_PY,
    "--microbatch-group-size-per-virtual-pipeline-stage": (
        "ModelParallelConfig.microbatch_group_size_per_vp_stage"
    ),
    "--decoder-first-pipeline-num-layers": ARGUMENTS_PY,
    "--decoder-last-pipeline-num-layers": ARGUMENTS_PY,
    "--sequence-parallel": "ModelParallelConfig.sequence_parallel",
    "--context-parallel-size": "ModelParallelConfig.context_parallel_size",
    "--cp-comm-type": ARGUMENTS_PY,
    "--expert-model-parallel-size": "ModelParallelConfig.expert_model_parallel_size",
    "--expert-tensor-parallel-size": "ModelParallelConfig.expert_tensor_parallel_size",
    "--recompute-granularity": "TransformerConfig.recompute_granularity",
    "--recompute-method": "TransformerConfig.recompute_method",
    "--recompute-num-layers": "TransformerConfig.recompute_num_layers",
    "--use-distributed-optimizer": ARGUMENTS_PY,
    "--use-megatron-fsdp": ARGUMENTS_PY,
    "--data-parallel-sharding-strategy": ARGUMENTS_PY,
    "--ckpt-format": "CheckpointConfig.ckpt_format",
    "--micro-batch-size": "TrainingConfig.micro_batch_size",
    "--global-batch-size": "TrainingConfig.global_batch_size",
    "--train-iters": "TrainingConfig.train_iters",
    "--seq-length": ARGUMENTS_PY,
    "--max-position-embeddings": ARGUMENTS_PY,
    "--bf16": "ModelParallelConfig.bf16",
    "--fp8-format": "TransformerConfig.fp8",
    "--num-layers": "TransformerConfig.num_layers",
    "--hidden-size": "TransformerConfig.hidden_size",
    "--ffn-hidden-size": "TransformerConfig.ffn_hidden_size",
    "--num-attention-heads": "TransformerConfig.num_attention_heads",
    "--group-query-attention": ARGUMENTS_PY,
    "--num-query-groups": "TransformerConfig.num_query_groups",
    "--kv-channels": "TransformerConfig.kv_channels",
    "--swiglu": ARGUMENTS_PY,
    "--normalization": "TransformerConfig.normalization",
    "--disable-bias-linear": "TransformerConfig.add_bias_linear",
    "--untie-embeddings-and-output-weights": ARGUMENTS_PY,
    "--position-embedding-type": ARGUMENTS_PY,
    "--vocab-size": ARGUMENTS_PY,
    "--hidden-dropout": "TransformerConfig.hidden_dropout",
    "--attention-dropout": "TransformerConfig.attention_dropout",
    "--num-experts": ARGUMENTS_PY,
    "--moe-router-topk": "TransformerConfig.moe_router_topk",
    "--moe-router-score-function": "TransformerConfig.moe_router_score_function",
    "--moe-ffn-hidden-size": "TransformerConfig.moe_ffn_hidden_size",
    "--moe-shared-expert-intermediate-size": (
        "TransformerConfig.moe_shared_expert_intermediate_size"
    ),
    "--moe-expert-capacity-factor": "TransformerConfig.moe_expert_capacity_factor",
    "--overlap-grad-reduce": ARGUMENTS_PY,
    "--grad-reduce-in-bf16": ARGUMENTS_PY,
    "--tp-comm-overlap": "ModelParallelConfig.tp_comm_overlap",
    "--attention-backend": "TransformerConfig.attention_backend",
    "--optimizer": ARGUMENTS_PY,
}
"""Every flag emitted → the megatron-core/Megatron-LM dataclass field it is built from
(``Class.field``: megatron-core's, or Megatron-LM's own TrainingConfig/CheckpointConfig in
megatron/training/training_config.py), or :data:`ARGUMENTS_PY` for a flag written in
arguments.py."""

_ATTENTION = {
    "flash": "flash",
    "fa2": "flash",
    "fa3": "flash",
    "cudnn": "fused",
    "unfused": "unfused",
    "sdpa_math": "unfused",
}
"""The planner's attention kernel → megatron.core.transformer.enums.AttnBackend: FlashAttention,
Transformer Engine's fused (cuDNN) attention, or the unfused scores."""

_OPTIMIZERS = {"adamw": "adam", "sgd_momentum": "sgd"}
"""Megatron-LM's ``adam`` is AdamW (decoupled weight decay, Loshchilov & Hutter 2019)."""

_NORMS = {"rmsnorm": "RMSNorm", "layernorm": "LayerNorm"}
_POSITIONS = {"rope": "rope", "learned": "learned_absolute", "none": "none"}


def _parallel(export: ExportPlan) -> list[str]:
    tp, pp, cp, ep = (export.degree(name) for name in ("tp", "pp", "cp", "ep"))
    args = ["--tensor-model-parallel-size", str(tp), "--pipeline-model-parallel-size", str(pp)]
    split = stage_split(export, TARGET)
    schedule = str(export.layout_value("schedule", "1f1b"))
    if split is not None and schedule != "1f1b":
        raise refuse(
            TARGET, "layout.schedule", schedule, "runs 1F1B schedules only; plan with 1f1b"
        )
    interleave = export.degree("interleave")
    if interleave > 1:
        args += ["--num-virtual-stages-per-pipeline-rank", str(interleave)]
        group = export.layout_value("microbatch_group")
        if group is not None:
            args += ["--microbatch-group-size-per-virtual-pipeline-stage", str(group)]
    if split is not None and split.edge_less_layers:
        if interleave > 1:
            raise refuse(
                TARGET,
                "layout.uneven_stages",
                True,
                "counts --decoder-first/last-pipeline-num-layers per pipeline rank, not "
                "per virtual stage as the plan does with interleave; plan with --even-stages",
            )
        edge = str(split.layers_per_stage - split.edge_less_layers)
        args += ["--decoder-first-pipeline-num-layers", edge]
        args += ["--decoder-last-pipeline-num-layers", edge]
    if tp > 1 and export.plan.layout.sequence_parallel:
        args.append("--sequence-parallel")
    args += ["--context-parallel-size", str(cp)]
    if cp > 1:
        # Megatron-Core's all_gather is the Llama 3 variant (K/V gathered before the
        # attention, not overlapped); p2p its ring.
        impl = export.layout_value("cp_impl", "ring")
        args += ["--cp-comm-type", "all_gather" if impl == "allgather" else "p2p"]
    if ep > 1 or export.has_experts:
        args += ["--expert-model-parallel-size", str(ep)]
    expert_tp = export.layout_value("expert_tp")
    if expert_tp is not None:
        args += ["--expert-tensor-parallel-size", str(expert_tp)]
    return args


def _recompute_and_sharding(export: ExportPlan) -> list[str]:
    args: list[str] = []
    recompute = export.plan.layout.recompute or "none"
    if recompute == "selective":
        # Megatron's selective recomputation recomputes the attention core (recompute_modules
        # default ["core_attn"]): the planner's selective (Korthikanti et al. 2022, Sec. 5).
        args += ["--recompute-granularity", "selective"]
    elif recompute == "full":
        args += ["--recompute-granularity", "full", "--recompute-method", "uniform"]
        args += ["--recompute-num-layers", "1"]
    sharding = export.plan.layout.sharding
    if sharding == "zero1":
        args.append("--use-distributed-optimizer")
    elif sharding in ("zero2", "zero3"):
        strategy = "optim_grads" if sharding == "zero2" else "optim_grads_params"
        args += ["--use-megatron-fsdp", "--data-parallel-sharding-strategy", strategy]
        # Megatron FSDP saves only this format (validate_args asserts it).
        args += ["--ckpt-format", "fsdp_dtensor"]
    elif sharding == "hsdp":
        raise refuse(
            TARGET,
            "layout.sharding",
            sharding,
            "FSDP with outer replication needs --num-distributed-optimizer-instances and an "
            "outer sharding strategy the plan does not give; plan with --zero 3 or --zero 1",
        )
    return args


def _batch_and_precision(export: ExportPlan) -> list[str]:
    plan, resolved = export.plan, export.resolved
    args = ["--micro-batch-size", str(plan.layout.micro_batch or 1)]
    if resolved.global_batch_seqs is not None:
        args += ["--global-batch-size", str(resolved.global_batch_seqs)]
    seq = plan.training.seq_len
    if seq is not None:
        positions = export.model_value("max_position_embeddings", seq)
        args += ["--seq-length", str(seq), "--max-position-embeddings", str(positions)]
    if plan.steps is not None:
        args += ["--train-iters", str(plan.steps)]
    precision = plan.training.precision
    if precision in ("bf16", "fp8"):
        args.append("--bf16")
    if precision == "fp8":
        # fp8 GEMMs with BF16 elsewhere (planner.specs.TrainingSpec.precision): Transformer
        # Engine's "hybrid" format, E4M3 forward and E5M2 gradients (Micikevicius et al.
        # 2022, "FP8 Formats for Deep Learning", Sec. 3).
        args += ["--fp8-format", "hybrid"]
    capacity = export.training_value("moe_capacity_factor")
    if capacity is not None:
        args += ["--moe-expert-capacity-factor", str(capacity)]
    return args


def _training_knobs(export: ExportPlan) -> list[str]:
    """The training assumptions the planner prices that Megatron-LM has a flag for."""
    args: list[str] = []
    if export.training_value("overlap_grad_reduce", False):
        args.append("--overlap-grad-reduce")
    if export.training_value("grad_reduce_dtype") == "bf16":
        args.append("--grad-reduce-in-bf16")
    if export.training_value("tp_comm_overlap", False):
        args.append("--tp-comm-overlap")
    kernel = export.training_value("attention_kernel")
    if kernel is not None:
        if kernel not in _ATTENTION:
            raise refuse(TARGET, "training.attention_kernel", kernel, "has no such backend")
        args += ["--attention-backend", _ATTENTION[kernel]]
    optimizer = export.training_value("optimizer")
    if optimizer is not None:
        if optimizer not in _OPTIMIZERS:
            raise refuse(TARGET, "training.optimizer", optimizer, "takes adamw or sgd_momentum")
        args += ["--optimizer", _OPTIMIZERS[optimizer]]
    return args


def _model(export: ExportPlan) -> list[str]:
    model = export.plan.model
    args: list[str] = []
    for flag, value in (
        ("--num-layers", model.num_layers),
        ("--hidden-size", model.hidden_size),
        ("--ffn-hidden-size", model.ffn_hidden_size),
        ("--num-attention-heads", model.num_attention_heads),
        ("--kv-channels", model.head_dim),
        ("--vocab-size", model.vocab_size),
    ):
        if value is not None:
            args += [flag, str(value)]
    heads, kv = model.num_attention_heads, model.num_kv_heads
    if kv is not None and heads is not None and kv != heads:
        args += ["--group-query-attention", "--num-query-groups", str(kv)]
    activation = model.activation
    if activation == "swiglu":
        args.append("--swiglu")
    elif activation not in (None, "gelu"):
        raise refuse(TARGET, "model.activation", activation, "takes swiglu or gelu")
    if model.norm is not None:
        if model.norm not in _NORMS:
            raise refuse(TARGET, "model.norm", model.norm, "takes rmsnorm or layernorm")
        args += ["--normalization", _NORMS[model.norm]]
    if model.bias is False:
        args.append("--disable-bias-linear")
    if model.tied_embeddings is False:
        args.append("--untie-embeddings-and-output-weights")
    position = export.model_value("position_embedding")
    if position is not None:
        if position not in _POSITIONS:
            raise refuse(
                TARGET, "model.position_embedding", position, "takes rope, learned or none"
            )
        args += ["--position-embedding-type", _POSITIONS[position]]
    for flag, name in (
        ("--hidden-dropout", "hidden_dropout"),
        ("--attention-dropout", "attention_dropout"),
    ):
        value = export.model_value(name)
        if value is not None:
            args += [flag, str(value)]
    window = export.model_value("sliding_window")
    if window is not None:
        # TE/flash-attn window_size (left, right) spans i - left .. i + right: w keys, the
        # model's own, are left = w - 1 (transformers: kv_idx > q_idx - sliding_window)
        args += ["--window-size", f"{int(window) - 1},0"]
        every = export.model_value("full_attention_every")
        if every is not None:  # "(N-1):1", N-th layer full (arguments.py, core_v0.16.1)
            args += ["--window-attn-skip-freq", str(every)]
    if export.has_experts:
        args += ["--num-experts", str(export.model_value("num_experts"))]
        args += ["--moe-router-topk", str(export.model_value("top_k", 1))]
        score = export.model_value("router_score")
        if score is not None:  # Megatron's default is softmax; a sigmoid router must say so
            args += ["--moe-router-score-function", str(score)]
        moe_ffn = export.model_value("moe_ffn_hidden_size")
        if moe_ffn is not None:
            args += ["--moe-ffn-hidden-size", str(moe_ffn)]
        shared = int(export.model_value("shared_expert_ffn_hidden_size", 0))
        if shared:
            args += ["--moe-shared-expert-intermediate-size", str(shared)]
    return args


MAX_CONNECTIONS_ENV = "CUDA_DEVICE_MAX_CONNECTIONS"
"""CUDA's hardware work queues per device; Megatron-LM's validate_args (core_v0.16.1)
asserts 1 with tensor or context parallelism (so each layer's collective is queued before
the next GEMM, for the overlap) and more than 1 with Megatron FSDP."""


def megatron_environment(export: ExportPlan) -> dict[str, str]:
    """The environment Megatron-LM asserts for this plan's layout (on GPUs before
    Blackwell): ``CUDA_DEVICE_MAX_CONNECTIONS=1`` with tp or cp > 1, unless Megatron FSDP
    runs (which wants CUDA's default, 8)."""
    fsdp = export.plan.layout.sharding in ("zero2", "zero3")
    if fsdp or (export.degree("tp") == 1 and export.degree("cp") == 1):
        return {}
    return {MAX_CONNECTIONS_ENV: "1"}


def megatron_arguments(export: ExportPlan) -> list[str]:
    """The Megatron-LM arguments of a plan (to follow ``pretrain_gpt.py``; data, tokenizer,
    optimizer and checkpoint flags stay the user's)."""
    common_refusals(export, TARGET)
    ring_refusals(export, TARGET, "te")
    return [
        *_parallel(export),
        *_recompute_and_sharding(export),
        *_batch_and_precision(export),
        *_training_knobs(export),
        *_model(export),
    ]
