"""A plan as torchtitan configuration (pure): the command-line overrides torchtitan 0.3
takes, and the TOML file torchtitan 0.2 reads.

torchtitan 0.3.0 (PyPI, ``torchtitan/config/configs.py``, ``torchtitan/trainer.py``)
builds its config from a Python function (``--module llama3 --config llama3_8b``) and
takes tyro's ``--section.field value`` overrides after it, which win over the function;
activation checkpointing is a tyro subcommand (``activation-checkpoint:full``). torchtitan
0.2.2 (``torchtitan/config/job_config.py``) reads a TOML file (``--job.config_file``) of the
same sections. The field names of both are recorded in tests/data/torchtitan_fields.json
(scripts/torchtitan_fields.py) and every exported key is tested against them.

The model is the user's config function (0.3) or ``[model]`` section (0.2): the plan's
shape is not exported, only how it is split and trained. Every value the plan gives is
written explicitly, so the plan wins over the config function's defaults.

What the layout means in torchtitan's knobs:

- sharding (``ParallelismConfig``): none → ``data_parallel_replicate_degree`` dp (DDP);
  zero3 → ``data_parallel_shard_degree`` dp with ``fsdp_reshard_after_forward always``;
  zero2 → the same with ``never`` (FSDP2 keeps gathered parameters until backward: ZeRO-2's
  memory, torch ``fully_shard`` docs); hsdp → replicate dp / shard, shard ``hsdp_shard_size``.
  ZeRO-1 (optimizer states only) has no knob: FSDP2 shards gradients too.
- pipeline: ``pipeline_parallel_layers_per_stage`` with
  ``pipeline_parallel_first/last_stage_less_layers`` 0 (even) or 1 (uneven: the first and
  last virtual stage one layer short, torchtitan's own split in
  ``torchtitan/distributed/pipeline_parallel.py``); schedule ``1F1B``, ``Interleaved1F1B``
  (interleave > 1) or ``GPipe``.
- batch: ``local_batch_size`` is one data-parallel rank's sequences per accumulation step
  and ``global_batch_size`` the step's; with pp > 1 the rank's whole step is one pipeline
  round of ``pipeline_parallel_microbatch_size`` micro-batches.
- recompute: none / full, and selective as torchtitan's per-op selective checkpointing (0.2:
  ``selective_ac_option = "op"``), its nearest policy to recomputing the attention core.
- precision: bf16 → ``mixed_precision_param bfloat16``, fp32 → ``float32``; fp8 → 0.2's
  ``quantize.linear.float8`` model converter; 0.3 sets float8 in the config function only.
- tensor-parallel communication overlap → async tensor parallelism (compiled models only).
  The attention kernel and the optimizer belong to the model and optimizer config of the
  user's config function (0.3) or TOML (0.2) and are not exported.
"""

from __future__ import annotations

from typing import Any

from planner.export_plan import ExportPlan, common_refusals, refuse, ring_refusals, stage_split

TARGET_NEW = "torchtitan 0.3"
TARGET_OLD = "torchtitan 0.2"

AC_SUBCOMMAND = "activation-checkpoint"
"""tyro's name for the ``activation_checkpoint`` subcommand field (torchtitan 0.3)."""

_SCHEDULES = {"1f1b": "1F1B", "gpipe": "GPipe"}
"""The planner's schedule → ``torch.distributed.pipelining`` schedule name."""


def _dp_split(export: ExportPlan, target: str) -> tuple[int, int, str]:
    """(replicate degree, shard degree, fsdp_reshard_after_forward)."""
    layout = export.plan.layout
    dp = export.degree("dp")
    sharding = layout.sharding
    if sharding == "none":
        return dp, 1, "default"
    if sharding == "zero1":
        raise refuse(
            target,
            "layout.sharding",
            sharding,
            "has no ZeRO-1 (FSDP2 shards gradients with the optimizer states); plan with "
            "--zero 2, --zero 3 or --zero 0",
        )
    if sharding == "hsdp":
        shard = int(layout.hsdp_shard_size or dp)
        return dp // shard, shard, "always"
    return 1, dp, "never" if sharding == "zero2" else "always"


def _checks(export: ExportPlan, target: str) -> None:
    common_refusals(export, target)
    ring_refusals(export, target, "torch")
    if export.degree("cp") > 1 and export.layout_value("cp_impl", "ring") == "allgather":
        raise refuse(
            target,
            "layout.cp_impl",
            "allgather",
            "runs context parallelism as torch's ring attention (context_parallel); plan "
            "with --cp-impl ring",
        )
    if export.layout_value("microbatch_group") is not None:
        raise refuse(
            target,
            "layout.microbatch_group",
            export.layout_value("microbatch_group"),
            "has no knob for micro-batches per chunk; plan without --microbatch-group",
        )
    window = export.model_value("sliding_window")
    if window is not None:
        raise refuse(
            target,
            "model.sliding_window",
            window,
            "builds Llama and DeepSeek models whose every layer attends to the whole "
            "sequence; export with --to megatron instead, or plan a model without a window",
        )
    capacity = export.training_value("moe_capacity_factor")
    if capacity is not None:
        raise refuse(
            target,
            "training.moe_capacity_factor",
            capacity,
            "routes without a capacity factor (dropless); plan without it",
        )
    if export.training_value("grad_reduce_dtype") == "bf16":
        raise refuse(
            target,
            "training.grad_reduce_dtype",
            "bf16",
            "reduces gradients in float32 only (mixed_precision_reduce); plan with fp32",
        )
    if export.training_value("fsdp_version", 2) == 1:
        raise refuse(
            target,
            "training.fsdp_version",
            1,
            "shards with FSDP2 (fully_shard) only; plan with fsdp_version 2",
        )
    if not export.training_value("overlap_grad_reduce", True):
        raise refuse(
            target,
            "training.overlap_grad_reduce",
            False,
            "always overlaps the gradient reduction with backward (FSDP2, DDP); plan with it",
        )


def _settings(export: ExportPlan, target: str) -> dict[str, dict[str, Any]]:
    """{section: {field: value}} that both versions share."""
    _checks(export, target)
    plan, resolved = export.plan, export.resolved
    replicate, shard, reshard = _dp_split(export, target)
    tp = export.degree("tp")
    parallelism: dict[str, Any] = {
        "data_parallel_replicate_degree": replicate,
        "data_parallel_shard_degree": shard,
        "fsdp_reshard_after_forward": reshard,
        "tensor_parallel_degree": tp,
        "pipeline_parallel_degree": export.degree("pp"),
        "context_parallel_degree": export.degree("cp"),
        "expert_parallel_degree": export.degree("ep"),
    }
    micro = int(plan.layout.micro_batch or 1)
    accum = resolved.grad_accum or 1
    training: dict[str, Any] = {"local_batch_size": micro}
    split = stage_split(export, target)
    if split is not None:
        schedule = str(export.layout_value("schedule", "1f1b"))
        if schedule not in _SCHEDULES:
            raise refuse(target, "layout.schedule", schedule, "takes 1f1b or gpipe")
        interleave = export.degree("interleave")
        parallelism["pipeline_parallel_schedule"] = (
            "Interleaved1F1B" if interleave > 1 else _SCHEDULES[schedule]
        )
        parallelism["pipeline_parallel_layers_per_stage"] = split.layers_per_stage
        parallelism["pipeline_parallel_first_stage_less_layers"] = split.edge_less_layers
        parallelism["pipeline_parallel_last_stage_less_layers"] = split.edge_less_layers
        parallelism["pipeline_parallel_microbatch_size"] = micro
        # One pipeline round per step: the rank's micro-batches are its local batch.
        training["local_batch_size"] = micro * accum
    if resolved.global_batch_seqs is not None:
        training["global_batch_size"] = resolved.global_batch_seqs
    if plan.training.seq_len is not None:
        training["seq_len"] = plan.training.seq_len
    if plan.steps is not None:
        training["steps"] = plan.steps
    precision = plan.training.precision
    if precision is not None:
        training["mixed_precision_param"] = "float32" if precision == "fp32" else "bfloat16"
    return {"parallelism": parallelism, "training": training}


def _sequence_parallel(export: ExportPlan) -> bool | None:
    """The plan's sequence parallelism where it means something (tp > 1)."""
    if export.degree("tp") == 1:
        return None
    return bool(export.plan.layout.sequence_parallel)


def _expert_tp_new(export: ExportPlan) -> None:
    expert_tp = export.layout_value("expert_tp")
    tp, ep = export.degree("tp"), export.degree("ep")
    _, shard, _ = _dp_split(export, TARGET_NEW)
    dense = shard * export.degree("cp") * tp
    if ep > 1 and dense % ep:
        raise refuse(
            TARGET_NEW,
            "layout.ep",
            ep,
            f"takes expert-parallel ranks from the sharded data-parallel, context and tensor "
            f"ranks (dp_shard x cp x tp = {dense}), which ep must divide; plan with sharding "
            "zero3 or an ep that divides them",
        )
    effective = int(expert_tp) if expert_tp is not None else tp
    if ep > 1 and effective > 1:
        raise refuse(
            TARGET_NEW,
            "layout.expert_tp",
            expert_tp if expert_tp is not None else f"None (= tp {tp})",
            "does not split experts over tensor-parallel ranks (expert parallelism borrows "
            "them); plan with expert_tp 1",
        )


def torchtitan_overrides(export: ExportPlan, compile_model: bool | None = None) -> list[str]:
    """The words to put after ``--module M --config C`` of torchtitan 0.3's trainer."""
    if export.plan.training.precision == "fp8":
        raise refuse(
            TARGET_NEW,
            "training.precision",
            "fp8",
            "takes float8 only in the config function (Float8LinearConverter on the model "
            "spec), not on the command line; add it there and export a bf16 plan, or "
            "export --toml for torchtitan 0.2",
        )
    _expert_tp_new(export)
    settings = _settings(export, TARGET_NEW)
    words: list[str] = []
    for section, fields in settings.items():
        for name, value in fields.items():
            words += [f"--{section}.{name}", str(value)]
    if export.degree("pp") > 1 or export.degree("ep") > 1:
        # Trainer.Config refuses CUDA graphs with pipeline stages, and with the expert
        # dispatchers that synchronise with the host (torchtitan/trainer.py,
        # _validate_cuda_graphs); the planner does not price graph capture.
        words.append("--training.disable_cuda_graphs")
    sequence_parallel = _sequence_parallel(export)
    if sequence_parallel is not None:
        prefix = "" if sequence_parallel else "no-"
        words.append(f"--parallelism.{prefix}enable-sequence-parallel")
    if compile_model is not None:
        words.append("--compile.enable" if compile_model else "--compile.no-enable")
    if export.training_value("tp_comm_overlap", False):
        words.append("--compile.enable-async-tensor-parallel")
    words.append(f"{AC_SUBCOMMAND}:{export.plan.layout.recompute or 'none'}")
    return words


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def torchtitan_toml_sections(
    export: ExportPlan, compile_model: bool | None = None
) -> dict[str, dict[str, Any]]:
    """{section: {field: value}} of torchtitan 0.2's JobConfig."""
    settings = _settings(export, TARGET_OLD)
    sequence_parallel = _sequence_parallel(export)
    if sequence_parallel is False:
        raise refuse(
            TARGET_OLD,
            "layout.sequence_parallel",
            False,
            "always splits the sequence under tp > 1 (no knob); plan with --sequence-parallel",
        )
    expert_tp = export.layout_value("expert_tp")
    if export.degree("ep") > 1:
        tp = export.degree("tp")
        etp = int(expert_tp) if expert_tp is not None else tp
        if etp not in (1, tp):
            raise refuse(
                TARGET_OLD,
                "layout.expert_tp",
                etp,
                f"takes an expert tensor-parallel degree of 1 or tp ({tp}) only",
            )
        settings["parallelism"]["expert_tensor_parallel_degree"] = etp
    if export.training_value("tp_comm_overlap", False):
        settings["parallelism"]["enable_async_tensor_parallel"] = True
    recompute = export.plan.layout.recompute or "none"
    checkpoint: dict[str, Any] = {"mode": recompute}
    if recompute == "selective":
        checkpoint["selective_ac_option"] = "op"
    sections: dict[str, dict[str, Any]] = {**settings, "activation_checkpoint": checkpoint}
    if compile_model is not None:
        sections["compile"] = {"enable": compile_model}
    if export.plan.training.precision == "fp8":
        sections["model"] = {"converters": ["quantize.linear.float8"]}
    return sections


def torchtitan_toml(export: ExportPlan, compile_model: bool | None = None) -> str:
    """The TOML torchtitan 0.2 reads (``--job.config_file``): the plan's sections, to merge
    with a model's own file (its ``[model]``, ``[optimizer]``, data sections)."""
    sections = torchtitan_toml_sections(export, compile_model)
    lines = [f"# scalectl plan export: {export.plan.layout_text() or 'plan'} ({TARGET_OLD})"]
    for section, fields in sections.items():
        lines += ["", f"[{section}]"]
        lines += [f"{name} = {_toml_value(value)}" for name, value in fields.items()]
    return "\n".join(lines) + "\n"
