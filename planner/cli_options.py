"""Options ``plan estimate`` and ``plan search`` share, and the ``--zero`` aliases."""

from __future__ import annotations

from typing import Annotated

import typer

# Options `plan estimate` and `plan search` share (search's layout flags pin knobs instead).

ModelOption = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        help="Preset name (see `plan models`), a config.json path, or a YAML file of "
        "ModelSpec fields.",
    ),
]
GpuOption = Annotated[str | None, typer.Option("--gpu", help="Catalog GPU (see `plan gpus`).")]
GpuSpecOption = Annotated[
    str | None,
    typer.Option("--gpu-spec", help="YAML file with an AcceleratorSpec, instead of --gpu."),
]
GpusPerNodeOption = Annotated[int, typer.Option("--gpus-per-node", help="GPUs per node.")]
SeqLenOption = Annotated[
    str | None,
    typer.Option(
        "--seq-len",
        help="Tokens per sequence (4096, 8k = 8192); required unless --finetune (then 2048, "
        "or the model's max_position_embeddings when shorter).",
    ),
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
PrecisionOption = Annotated[
    str,
    typer.Option(
        "--precision",
        help="bf16 (mixed: FP32 master weights), bf16-pure (BF16 weights, gradients and "
        "optimizer states: torchtune's dtype bf16, Lightning's bf16-true), fp8 or fp32.",
    ),
]
LossChunksOption = Annotated[
    int,
    typer.Option(
        "--loss-chunks",
        help="Chunks a compiled cross-entropy upcasts to FP32 one at a time (torchtune's "
        "CEWithChunkedOutputLoss: 8); 1: all logits at once (compiled: the reference "
        "trainer's count; eager: three FP32 copies, so plan its eager chunks with 8).",
    ),
]
OptimizerOption = Annotated[str, typer.Option("--optimizer", help="adamw or sgd_momentum.")]
LossKernelsOption = Annotated[
    str | None,
    typer.Option(
        "--loss-kernels",
        help="How the cross-entropy runs when not as --kernels: eager (three FP32 copies of "
        "the logits at its backward) or fused.",
    ),
]
GradLifetimeOption = Annotated[
    str,
    typer.Option(
        "--grad-lifetime",
        help="step (gradients held all step: Megatron, DDP) or backward (freed by "
        "zero_grad(set_to_none=True); one micro-batch on one GPU or under FSDP).",
    ),
]
Fp8ScalingOption = Annotated[
    str,
    typer.Option(
        "--fp8-scaling",
        help="With --precision fp8: delayed (Transformer Engine), dynamic (torchao "
        "tensorwise, torchtitan's float8) or current (Transformer Engine current scaling).",
    ),
]
RingAttentionOption = Annotated[
    str,
    typer.Option(
        "--ring-attention",
        help="Whose ring attention --cp-impl ring runs: torch (context_parallel: scalectl's "
        "trainer, torchtitan) or te (Transformer Engine: Megatron-LM, NeMo).",
    ),
]
AttentionOption = Annotated[
    str,
    typer.Option(
        "--attention", help="flash, fa2, fa3, cudnn, cudnn8.9, triton, sdpa_math or unfused."
    ),
]
KernelsOption = Annotated[
    str,
    typer.Option(
        "--kernels",
        help="fused (Megatron/TE kernels, torch.compile) or eager (PyTorch eager mode, "
        "as the reference trainer runs without --compile).",
    ),
]
OverlapGradReduceOption = Annotated[
    bool,
    typer.Option("--overlap-grad-reduce/--no-overlap-grad-reduce", help="Overlap DP reduction."),
]
GradReduceDtypeOption = Annotated[str, typer.Option("--grad-dtype", help="fp32 or bf16 gradients.")]
MoeCapacityOption = Annotated[
    float | None,
    typer.Option("--moe-capacity", help="MoE expert capacity factor (default: dropless)."),
]
FinetuneOption = Annotated[
    str | None,
    typer.Option(
        "--finetune",
        help="Fine-tune: full (as pre-training), lora (frozen BF16 base + adapters) or "
        "qlora (frozen quantised base + adapters); default: pre-training.",
    ),
]
LoraRankOption = Annotated[
    int | None, typer.Option("--lora-rank", help="LoRA adapter rank r (default 8).")
]
LoraTargetsOption = Annotated[
    str | None,
    typer.Option(
        "--lora-targets",
        help="Projections with adapters: attn, mlp, all (default) or a comma list of "
        "q,k,v,o,gate,up,down.",
    ),
]
LoraAlphaOption = Annotated[
    float | None, typer.Option("--lora-alpha", help="LoRA alpha (recorded in the plan).")
]
BaseFormatOption = Annotated[
    str | None,
    typer.Option("--base-format", help="QLoRA base-weight storage: nf4, nf4-dq (default) or int8."),
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
ProfileOption = Annotated[
    str | None,
    typer.Option(
        "--profile",
        help="Calibration profile from `plan calibrate` (its fitted accelerator; --gpu optional).",
    ),
]
RestartMinOption = Annotated[
    float | None,
    typer.Option("--restart-min", help="Minutes to restart after a failure (before reload)."),
]

# Layout flags: `plan estimate` fills the ones not given from `plan search`; `plan search`
# pins the ones given and searches the rest (each command's docstring says so).

TpOption = Annotated[int | None, typer.Option("--tp", help="Tensor-parallel degree.")]
PpOption = Annotated[int | None, typer.Option("--pp", help="Pipeline stages.")]
CpOption = Annotated[int | None, typer.Option("--cp", help="Context-parallel degree.")]
DpOption = Annotated[int | None, typer.Option("--dp", help="Data-parallel degree.")]
EpOption = Annotated[int | None, typer.Option("--ep", help="Expert-parallel degree (MoE).")]
ZeroOption = Annotated[
    str | None, typer.Option("--zero", help="Sharding: 0|1|2|3 (ZeRO stage), fsdp, hsdp.")
]
HsdpShardOption = Annotated[int | None, typer.Option("--hsdp-shard", help="HSDP shard group size.")]
MicroBatchOption = Annotated[
    int | None, typer.Option("--micro-batch", help="Sequences per micro-batch.")
]
RecomputeOption = Annotated[
    str | None, typer.Option("--recompute", help="Recomputation: none|selective|full.")
]
InterleaveOption = Annotated[
    int | None, typer.Option("--interleave", help="Virtual pipeline stages per GPU.")
]
SequenceParallelOption = Annotated[
    bool | None,
    typer.Option(
        "--sequence-parallel/--no-sequence-parallel",
        help="Shard norm/dropout activations over TP (sequence parallelism).",
    ),
]
# Pipeline, offload and expert knobs (`plan estimate` only so far; `plan search` does not
# search them).

UnevenStagesOption = Annotated[
    bool | None,
    typer.Option("--uneven-stages/--even-stages", help="First and last stage one layer fewer."),
]
OffloadOption = Annotated[
    float | None,
    typer.Option("--offload", help="Share of saved activations offloaded to host (0-0.99)."),
]
ScheduleOption = Annotated[str | None, typer.Option("--schedule", help="Pipeline: 1f1b | gpipe.")]
CpImplOption = Annotated[
    str | None, typer.Option("--cp-impl", help="Context parallelism: ring | allgather.")
]
MicrobatchGroupOption = Annotated[
    int | None,
    typer.Option("--microbatch-group", help="Interleaved: micro-batches per chunk (default pp)."),
]
FreeStageOutputsOption = Annotated[
    bool | None,
    typer.Option("--free-stage-outputs/--keep-stage-outputs", help="Free sent stage outputs."),
]
ExpertTpOption = Annotated[
    int | None,
    typer.Option("--expert-tp", help="MoE: experts' tensor-parallel degree (default: tp)."),
]
HeadroomOption = Annotated[
    float,
    typer.Option(
        "--headroom",
        help="Share of GPU memory to leave free (0.1 = 10 %); the default 5 % covers the "
        "allocator's fragmentation, which the memory model does not count (0: every byte).",
    ),
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
