"""What the user plans: the model, the hardware, the training budget and the parallel layout.

All specs are frozen pydantic models that refuse unknown keys. They check what can be
checked on their own (a head count that does not divide the hidden size, an interleave
without pipeline stages); checks that need several specs together (does tp divide the
heads, does dp·tp·pp·cp equal the GPU count) live in :mod:`planner.checks`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from planner.accelerator_spec import AcceleratorSpec
from planner.cluster_spec import ClusterSpec
from planner.errors import PlanInputError
from planner.model_spec import Activation, ModelSpec

__all__ = [
    "AcceleratorSpec",
    "Activation",
    "AttentionKernel",
    "ClusterSpec",
    "Layout",
    "ModelSpec",
    "Optimizer",
    "Precision",
    "Recompute",
    "Sharding",
    "TrainingSpec",
]
Sharding = Literal["none", "zero1", "zero2", "zero3", "hsdp"]
Recompute = Literal["none", "selective", "full"]
Precision = Literal["bf16", "bf16-pure", "fp8", "fp32"]
Optimizer = Literal["adamw", "sgd_momentum"]
AttentionKernel = Literal[
    "flash", "fa2", "fa3", "cudnn", "cudnn8.9", "triton", "sdpa_math", "unfused"
]

_FROZEN = ConfigDict(extra="forbid", frozen=True)


class TrainingSpec(BaseModel):
    """The training run: sequence, batch, token budget and numerics.

    ``global_batch_tokens`` may be given instead of ``global_batch_seqs``; it is converted
    (and must be a whole number of sequences).
    """

    model_config = _FROZEN

    seq_len: int = Field(gt=0)
    """Tokens per sequence (s)."""
    global_batch_seqs: int = Field(gt=0)
    """Sequences per optimizer step, across all data-parallel replicas (B)."""
    total_tokens: float = Field(gt=0)
    """Tokens to train on (the run's budget)."""
    precision: Precision = "bf16"
    """'bf16' mixed precision (BF16 weights and activations, FP32 master weights in the
    optimizer), 'bf16-pure' (the model built and trained in BF16: BF16 weights, gradients
    and optimizer states, no FP32 master copy, 8 bytes per trained parameter with AdamW;
    torchtune's ``dtype: bf16``, Lightning's ``precision: bf16-true``; named for what it
    keeps, since 'bf16' here already means mixed precision), 'fp8' GEMMs with BF16
    elsewhere (Transformer Engine), or 'fp32' (FP32 weights, gradients, activations and
    optimizer states, no master copy, at the accelerator's FP32 rate: a CPU, or a GPU run
    without autocast)."""
    optimizer: Optimizer = "adamw"
    """'adamw' (two FP32 states) or 'sgd_momentum' (one)."""
    attention_kernel: AttentionKernel = "flash"
    """'flash': fused, causal-aware, O(s) memory, timed by the accelerator's attention
    efficiencies; 'fa2' (FlashAttention-2, torch SDPA's flash backend), 'fa3'
    (FlashAttention-3), 'cudnn' (cuDNN 9 fused attention, Transformer Engine's default on
    Hopper), 'cudnn8.9' (cuDNN 8.9's, in NGC containers before 24.02), 'triton'
    (FlashAttention in Triton, flash-attn 1.x; llm-foundry's attn_impl triton): fused, timed from
    measured tables where the accelerator has them (constants.yaml attention_kernels),
    else as 'flash'; 'unfused' / 'sdpa_math':
    materialise the s x s scores (Megatron-LM before 2022; torch SDPA's math backend)."""
    overlap_grad_reduce: bool = True
    """Bucketed gradient reduction overlapped with backward (PyTorch DDP/FSDP,
    Megatron --overlap-grad-reduce); False reduces after backward (Megatron-LM 2021)."""
    tp_comm_overlap: bool = False
    """Tensor-parallel collectives overlapped with GEMMs (Transformer Engine userbuffers)."""
    cross_entropy_fusion: bool = True
    """Softmax cross-entropy in fused kernels (Megatron --cross-entropy-loss-fusion, NeMo
    recipes); False: Megatron-LM's default unfused vocab-parallel kernels, which stream the
    FP32 logits about twice as often (constants.yaml loss_traffic_bytes_unfused)."""
    ep_comm_overlap: bool = False
    """MoE all-to-alls hidden under the compute of an adjacent micro-batch, whose forward
    and backward run merged (Megatron-Core --overlap-moe-expert-parallel-comm
    --delay-wgrad-compute; DeepSeek-V3 report, Sec. 3.2.1, DualPipe)."""
    grad_reduce_dtype: Literal["fp32", "bf16"] = "fp32"
    """Dtype of gradient accumulation buffers and their reduction. Under precision
    'bf16-pure' the gradients are BF16 whatever this says (autograd gives a parameter's
    gradient its dtype, and FSDP2 without a mixed-precision policy reduces in it)."""
    kernels: Literal["fused", "eager"] = "fused"
    """How the element-wise ops (norms, activation function, rotary, residual adds, the
    loss) run. 'fused': one kernel per fused group that reads its inputs and writes its
    output once (Megatron-LM / Transformer Engine fused kernels, or torch.compile's
    generated kernels). 'eager': PyTorch eager mode, one kernel per op, as the reference
    trainer runs without --compile and torchtitan and Composer runs without compile do:
    RMSNorm as a chain of FP32 ops, the SwiGLU gate and product as separate kernels,
    rotary through complex FP32, GQA key/value heads copied to every query head, the
    logits upcast to FP32 for the loss (planner.formulas.kernels.eager_extra_bytes_fwd)."""
    ring_attention: Literal["torch", "te"] = "torch"
    """Whose ring attention a ``cp_impl`` ring layout runs. 'torch': torch's
    ``context_parallel`` (scalectl's trainer, torchtitan): the K/V all-gathered once per
    layer, partial outputs merged and dK/dV passed on in FP32 (planner.terms.layer_comm
    .torch_ring). 'te': Transformer Engine's ``AttnFuncWithCPAndKVP2P`` (Megatron-LM,
    NeMo): K/V passed by P2P under each step's kernel, merges in the activation dtype."""
    selective_recompute: Literal["attention", "op"] = "attention"
    """What Layout.recompute='selective' recomputes. 'attention': the attention core
    (Korthikanti et al. 2022, Sec. 5; Megatron-LM, and the reference trainer's only
    selective mode). 'op': torchtitan's op-level selective activation checkpointing
    (selective_ac_option 'op'): it saves the attention kernel's output and every other
    matmul's, and recomputes the other matmuls (K, the output projection and one MLP
    matrix of a Llama block) and every element-wise op in backward. A description of a
    published run for the planner: the search never picks it, and a plan that names it
    is refused by the reference trainer (it cannot run it)."""
    fsdp_version: Literal[1, 2] = 2
    """Which PyTorch FSDP shards the weights under sharding zero3/hsdp: 2 (per-parameter
    ``fully_shard``: torchtitan, the reference trainer) or 1 (``FullyShardedDataParallel``
    with FlatParameters: Composer/llm-foundry, Hugging Face Accelerate before 2024). FSDP1
    divides each layer's unsharded gradient before its reduce-scatter as well as after it,
    one more pass over the reduce-dtype gradient per layer and micro-batch
    (planner.formulas.step.fsdp1_predivide_time); FSDP1 and FSDP2 otherwise overlap alike
    (torchtitan PR #165: FSDP2 ~1-2 % faster on Llama 7B, 8 H100)."""
    compile: bool = False
    """The reference trainer compiles each transformer block (``torch.compile``); carried
    to the job in the plan, not modelled: the estimate does not depend on it."""
    loss_chunks: int = Field(default=1, ge=1)
    """Pieces of the sequence the cross-entropy upcasts to FP32 one at a time. 1: the whole
    micro-batch's logits are held in BF16 and in FP32 (``logits_stored_bytes``). n > 1
    with ``kernels`` 'fused': torchtune's ``CEWithChunkedOutputLoss`` (8 chunks) under
    torch.compile keeps the BF16 logits of every chunk for the backward and one chunk's
    FP32 copy at a time, so the FP32 share is divided by n. With ``kernels`` 'eager' the
    chunks change no memory: eager ``log_softmax`` saves its FP32 output of every chunk
    for the backward (the reference trainer's ``--loss-chunks``: bench/loss_memory.py
    measured 5.3 bytes per logit in 8 chunks, within the unchunked count of 6, so its
    plans keep 1). FLOPs and HBM traffic do not change (each logit is computed once)."""
    moe_capacity_factor: float | None = Field(default=None, ge=1.0)
    """MoE: each expert processes (and the all-to-all carries) capacity_factor x its even
    share of the routed tokens, padded or dropped beyond (Fedus et al. 2021, Switch
    Transformer, Sec. 2.2; GShard); None is dropless routing with balanced experts
    (Gale et al. 2022, MegaBlocks)."""
    finetune: Literal["full", "lora", "qlora"] | None = None
    """None: pre-training. 'full': fine-tuning every weight (costed as pre-training).
    'lora': frozen BF16 base weights plus trained low-rank adapters (Hu et al. 2021);
    'qlora': the same over base weights stored in ``base_format`` (Dettmers et al. 2023)."""
    lora_rank: int | None = Field(default=None, gt=0)
    """Adapter rank r (lora/qlora; default planner.finetune.DEFAULT_RANK)."""
    lora_targets: str | None = None
    """Projections with adapters: attn, mlp, all or a comma list of q,k,v,o,gate,up,down
    (default all)."""
    lora_alpha: float | None = Field(default=None, gt=0)
    """Adapter scale numerator (alpha / r); recorded for the trainer, not costed."""
    base_format: Literal["bf16", "nf4", "nf4-dq", "int8"] | None = None
    """qlora: storage of the frozen block weights (default nf4-dq, the QLoRA paper's)."""
    loss_kernels: Literal["fused", "eager"] | None = None
    """How the cross-entropy runs when it differs from ``kernels`` (None: as ``kernels``).
    'eager' in one piece holds three FP32 copies of the logits at the start of its
    backward (planner.formulas.memory.EAGER_LOSS_PEAK_BYTES) and moves more bytes
    (planner.formulas.kernels.eager_loss_extra_bytes). A description of a published run:
    torchtune's recipes at 1814feb17a compile the blocks but call
    ``training.compile_loss(self._loss_fn)`` without keeping the module it returns, and
    for an ``nn.CrossEntropyLoss`` that is a new compiled wrapper, so the loss they run
    stays eager (CEWithChunkedOutputLoss is compiled in place)."""
    grad_lifetime: Literal["step", "backward"] = "step"
    """'step': the gradients take their memory for the whole step (Megatron-LM's
    contiguous grad buffer, DDP's buckets), counted on top of the activations' peak.
    'backward': the optimizer step frees them (``zero_grad(set_to_none=True)``, torch's
    default since 2.0; torchtune's single-device recipes), so with one micro-batch per
    step on one GPU or under FSDP (sharded gradients made at each layer's
    reduce-scatter) they appear during the backward as the activations it consumes are
    freed: the peak is the larger of the two ends of the backward, not their sum
    (planner.terms.activations.peak_memory). Gradient accumulation keeps them for the
    whole step either way."""

    fp8_scaling: Literal["delayed", "dynamic", "current"] = "delayed"
    """How precision 'fp8' scales GEMM inputs. 'delayed': from past steps' amax, a cast reads
    BF16 once and writes FP8 (Transformer Engine DelayedScaling). 'dynamic': torchao's
    tensorwise Float8Linear (torchtitan's float8): an amax pass over each GEMM input and
    output gradient and ``_scaled_mm``'s transposed FP8 copies. 'current': Transformer
    Engine's Float8CurrentScaling (Megatron Bridge FP8-CS): the amax passes alone, its cast
    writes the transpose too (planner.formulas.kernels fp8_dynamic_scaling_bytes,
    fp8_amax_bytes). No effect outside 'fp8'."""

    fp8_param_gather: bool = False
    """Precision 'fp8': weights kept in FP8 between optimizer steps (Transformer Engine
    ``fp8_model_init``; Megatron ``--fp8-param-gather``, Megatron Bridge's FP8-CS recipes),
    so ZeRO-1/2's and FSDP's weight all-gathers move one byte per parameter (Megatron-FSDP's
    FP8 weight buffers are ``torch.uint8``: Megatron-LM core_v0.15.0 megatron_fsdp/
    param_and_grad_buffer.py); the FP8 weight and its transpose replace BF16 + FP8 cache."""

    qlora_input_copies: int = Field(default=0, ge=0, le=2)
    """qlora: micro-batches whose 4-bit matmul inputs are held at the peak besides what the
    frozen BF16 path keeps. bitsandbytes before 0.43.2 keeps each matmul's input A although
    its backward only uses the 4-bit weight (``MatMul4Bit.forward``: ``ctx.tensors = (A,
    B)``; bitsandbytes#1270, "fix QLoRA mem bug: delete useless buffered activation",
    0.43.2, keeps ``(None, B)``), and as a ``ctx`` attribute, not ``save_for_backward``, it
    outlives the backward for as long as the micro-batch's graph does: 1 where the training
    loop drops the step's outputs after the backward, 2 where it holds the previous
    micro-batch's logits and loss (hence its graph) until the next forward and loss have
    run, as litgpt's finetune loop does (``logits = model(...)``, ``loss = ...`` rebound
    each iteration). 0: torchao's ``linear_nf4`` (torchtune, the reference trainer) and
    bitsandbytes 0.43.2 or later, which keep only the 4-bit weight
    (planner.terms.states.qlora_kept_input_bytes). A description of a published run; the
    search never sets it."""
    nf4_init_unchunked: bool = False
    """qlora: each base weight is quantised to NF4 on the GPU at model init in one pass over
    the whole tensor, as torchao before 0.2 does (torchtune pinned torchao==0.1 until May
    2024): ``NF4Tensor.quantize_tensor_nearest`` takes ``(value - nf4).abs()`` against all
    16 NF4 codes at once, 16 BF16 values per weight twice over, so model init briefly holds
    the quantised model plus ``planner.finetune.UNCHUNKED_NF4_INIT_BYTES`` per element of
    the largest block matrix (torchao#196, "perform in chunks", 2024-05-01, quantises 1M
    elements at a time). The peak is then the larger of the training peak and this init
    peak, as a figure that counts model init shows (a peak read from process start, or
    ``max_memory_reserved``, whose caching allocator keeps init's blocks reserved unless
    ``torch.cuda.empty_cache`` runs). False: chunked quantisation (torchao 0.2 or later,
    the reference trainer), whose init peak stays below training's. A description of a
    published run; the search never sets it."""

    @model_validator(mode="after")
    def _finetune_flags(self) -> TrainingSpec:
        lora = self.finetune in ("lora", "qlora")
        given = [f for f in ("lora_rank", "lora_targets", "lora_alpha") if getattr(self, f)]
        if given and not lora:
            flag = "--" + given[0].replace("_", "-")
            raise PlanInputError(f"{flag} needs --finetune lora or qlora; add it or drop {flag}.")
        if self.base_format is not None and self.finetune != "qlora":
            raise PlanInputError("--base-format needs --finetune qlora; add it or drop it.")
        for flag in ("qlora_input_copies", "nf4_init_unchunked"):
            if getattr(self, flag) and self.finetune != "qlora":
                raise PlanInputError(
                    f"training.{flag} needs finetune qlora; set finetune: qlora or drop it."
                )
        if self.lora_targets is not None:
            from planner.finetune import resolve_targets

            resolve_targets(self.lora_targets)
        return self

    @model_validator(mode="after")
    def _fp8_params_need_fp8(self) -> TrainingSpec:
        if self.fp8_param_gather and self.precision != "fp8":
            raise PlanInputError(
                "training: fp8_param_gather needs precision fp8; set it or drop it."
            )
        return self

    @model_validator(mode="before")
    @classmethod
    def _tokens_to_seqs(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "global_batch_tokens" not in data:
            return data
        data = dict(data)
        tokens = data.pop("global_batch_tokens")
        seq_len = data.get("seq_len")
        if data.get("global_batch_seqs") is not None:
            raise PlanInputError(
                "training: give global_batch_seqs or global_batch_tokens, not both."
            )
        if not isinstance(seq_len, int) or seq_len <= 0:
            return data
        seqs = float(tokens) / seq_len
        if seqs != int(seqs) or seqs <= 0:
            raise PlanInputError(
                f"training: global_batch_tokens {tokens} is not a positive multiple of "
                f"seq_len {seq_len}; use {max(1, round(seqs)) * seq_len}."
            )
        data["global_batch_seqs"] = int(seqs)
        return data

    @property
    def global_batch_tokens(self) -> int:
        """Tokens per optimizer step."""
        return self.global_batch_seqs * self.seq_len


class Layout(BaseModel):
    """How the job is split across GPUs: a validated value object like torchtitan's ParallelDims.

    dp·tp·pp·cp must equal the cluster's GPU count (checked by planner.checks).
    Ranks are ordered tp (innermost, inside a node), cp, dp, pp (outermost), as Megatron-LM.
    """

    model_config = _FROZEN

    dp: int = Field(gt=0)
    """Data-parallel replicas (model copies; sharded under ZeRO/FSDP)."""
    tp: int = Field(default=1, gt=0)
    """Tensor-parallel degree: heads and MLP columns split across GPUs (Shoeybi 2019)."""
    pp: int = Field(default=1, gt=0)
    """Pipeline stages (Narayanan 2021)."""
    cp: int = Field(default=1, gt=0)
    """Context-parallel degree: the sequence split across GPUs."""
    cp_impl: Literal["ring", "allgather"] = "ring"
    """How cp splits attention: 'ring' (K/V chunks passed from rank to rank under the
    attention blocks, Liu et al. 2023, Ring Attention; torch's context_parallel, CUDA only)
    or 'allgather' (each layer's K/V all-gathered over the cp group, exposed, with the
    whole sequence's K/V held; Llama 3 paper, Dubey et al. 2024, Sec. 3.3.2; what the
    reference trainer runs off CUDA)."""
    sharding: Sharding = "none"
    """Data-parallel sharding: none (DDP), zero1 (optimizer), zero2 (+gradients),
    zero3 (+parameters, = FSDP full shard), hsdp (zero3 inside groups of hsdp_shard_size)."""
    hsdp_shard_size: int | None = Field(default=None, gt=1)
    """HSDP shard group size (a divisor of dp); only with sharding='hsdp'."""
    micro_batch: int = Field(default=1, gt=0)
    """Sequences per micro-batch; per-replica batch / micro_batch = accumulation steps."""
    recompute: Recompute = "none"
    """Activation recomputation: none, selective (attention core, Korthikanti 2022), full."""
    interleave: int = Field(default=1, gt=0)
    """Virtual pipeline stages per GPU (interleaved 1F1B, Narayanan 2021 Sec. 2.2.2)."""
    sequence_parallel: bool = False
    """Shard LayerNorm/dropout activations across the TP group (Korthikanti 2022 Sec. 4.2.2)."""
    ep: int = Field(default=1, gt=0)
    """Expert-parallel degree (MoE): experts split across data-parallel ranks."""
    expert_tp: int | None = Field(default=None, gt=0)
    """MoE: tensor-parallel degree of the experts, apart from the attention's tp
    (Megatron-Core --expert-tensor-parallel-size, "MoE parallel folding"); the experts are
    split over ep x expert_tp ranks of the stage's tp·cp·dp. None means tp."""
    uneven_stages: bool = False
    """The first and the last pipeline stage hold one layer fewer than the others, which
    balances the embedding, the output layer and the first stage's extra micro-batches in
    flight (Llama 3 paper, Sec. 3.3.2; Megatron-LM --decoder-first/last-pipeline-num-layers)."""
    schedule: Literal["1f1b", "gpipe"] = "1f1b"
    """Pipeline schedule: '1f1b' (one forward, one backward; interleaved when interleave
    > 1; Narayanan et al. 2021) or 'gpipe' (every forward, then every backward; Huang et
    al. 2019): the same bubble, with all micro-batches' activations in flight."""
    microbatch_group: int | None = Field(default=None, gt=0)
    """Interleaved schedules: micro-batches a chunk runs before the next chunk (Megatron-LM
    microbatch_group_size_per_vp_stage; Llama 3's N, Sec. 3.3.2); None means pp. Fewer
    than pp keeps fewer micro-batches in flight and idles the stage between chunks."""
    free_stage_outputs: bool = True
    """Free the data of each tensor a stage sends once sent, keeping only its autograd
    node (Megatron-LM deallocate_pipeline_outputs / deallocate_output_tensor); False keeps
    every chunk's output until its backward (plain autograd), one hidden state per chunk
    in flight."""
    activation_offload: float = Field(default=0.0, ge=0.0, le=1.0)
    """Fraction of each layer's saved activations copied to host memory after its forward
    and back before its backward, overlapped with compute (Megatron-LM fine-grained
    activation offloading; torch.autograd.graph.save_on_cpu); 0 keeps all on the GPU, 1
    offloads every one (torchtune's OffloadActivations: each saved tensor of 1 KiB or
    more, the output layer's and the loss's excepted, which stay on the GPU as the
    planner's logits do)."""

    @model_validator(mode="after")
    def _self_consistent(self) -> Layout:
        if (self.sharding == "hsdp") != (self.hsdp_shard_size is not None):
            raise PlanInputError(
                "layout: hsdp_shard_size goes with sharding='hsdp' (and only with it)."
            )
        if self.hsdp_shard_size is not None and self.dp % self.hsdp_shard_size:
            raise PlanInputError(
                f"layout: hsdp_shard_size {self.hsdp_shard_size} must divide dp {self.dp}."
            )
        if self.interleave > 1 and self.pp == 1:
            raise PlanInputError("layout: interleave > 1 needs pipeline stages (pp > 1).")
        if self.uneven_stages and self.pp == 1:
            raise PlanInputError("layout: uneven_stages needs pipeline stages (pp > 1).")
        if self.schedule == "gpipe" and (self.pp == 1 or self.interleave > 1):
            raise PlanInputError(
                "layout: schedule 'gpipe' needs pipeline stages and no interleave."
            )
        if self.microbatch_group is not None and self.interleave == 1:
            raise PlanInputError("layout: microbatch_group needs an interleaved schedule.")
        return self

    @property
    def num_gpus(self) -> int:
        """GPUs this layout occupies: dp·tp·pp·cp."""
        return self.dp * self.tp * self.pp * self.cp

    @field_validator("sharding", mode="before")
    @classmethod
    def _sharding_alias(cls, value: Any) -> Any:
        aliases = {"0": "none", "1": "zero1", "2": "zero2", "3": "zero3", "fsdp": "zero3"}
        return aliases.get(str(value).lower(), value) if value is not None else value
