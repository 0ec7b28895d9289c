"""What the user plans: the model, the hardware, the training budget and the parallel layout.

All specs are frozen pydantic models that refuse unknown keys. They check what can be
checked on their own (a head count that does not divide the hidden size, an interleave
without pipeline stages); checks that need several specs together (does tp divide the
heads, does dp·tp·pp·cp equal the GPU count) live in :mod:`planner.checks`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from planner.errors import PlanInputError

Activation = Literal["swiglu", "gelu"]
Sharding = Literal["none", "zero1", "zero2", "zero3", "hsdp"]
Recompute = Literal["none", "selective", "full"]
Precision = Literal["bf16", "fp8", "fp32"]
Optimizer = Literal["adamw", "sgd_momentum"]
AttentionKernel = Literal["flash", "fa2", "fa3", "cudnn", "sdpa_math", "unfused"]

_FROZEN = ConfigDict(extra="forbid", frozen=True)


class ModelSpec(BaseModel):
    """A decoder-only transformer, dense or mixture-of-experts."""

    model_config = _FROZEN

    name: str = Field(min_length=1)
    """Label shown in outputs (a preset name, or the config.json's folder)."""
    num_layers: int = Field(gt=0)
    """Transformer blocks (L)."""
    hidden_size: int = Field(gt=0)
    """Residual-stream width (h, d_model)."""
    num_attention_heads: int = Field(gt=0)
    """Query heads (a)."""
    num_kv_heads: int = Field(gt=0)
    """Key/value heads: equal to num_attention_heads for MHA, fewer for GQA, 1 for MQA."""
    head_dim: int | None = Field(default=None, gt=0)
    """Per-head width; None means hidden_size / num_attention_heads."""
    ffn_hidden_size: int = Field(gt=0)
    """Inner width of the dense MLP (4h for GPT, 8/3·h rounded for Llama)."""
    activation: Activation = "swiglu"
    """'swiglu': three matrices (gate, up, down); 'gelu': two (up, down)."""
    vocab_size: int = Field(gt=0)
    """Vocabulary size (padded, as trained)."""
    tied_embeddings: bool = False
    """Output layer shares the input embedding matrix."""
    num_experts: int = Field(default=1, gt=0)
    """Routed experts per MoE layer; 1 means a dense model."""
    top_k: int = Field(default=1, gt=0)
    """Experts each token is routed to (MoE only)."""
    moe_ffn_hidden_size: int | None = Field(default=None, gt=0)
    """Inner width of one routed expert; None means ffn_hidden_size."""
    shared_expert_ffn_hidden_size: int = Field(default=0, ge=0)
    """Inner width of an always-active shared expert (Qwen-MoE, DeepSeek-MoE); 0 for none."""
    norm: Literal["rmsnorm", "layernorm"] = "rmsnorm"
    """Normalisation: RMSNorm (weight only) or LayerNorm (weight and bias)."""
    bias: bool = False
    """Linear layers carry biases (GPT-2/Megatron GPT do, Llama does not)."""
    position_embedding: Literal["rope", "learned"] = "rope"
    """Rotary (no parameters) or a learned table of max_position_embeddings rows."""
    max_position_embeddings: int | None = Field(default=None, gt=0)
    """Rows of the learned position table (required when position_embedding is 'learned')."""
    hidden_dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    """Dropout after attention and MLP; > 0 stores a byte mask per element (Korthikanti 2022)."""
    attention_dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    """Dropout on attention probabilities; > 0 stores an s x s byte mask with unfused attention."""

    @model_validator(mode="before")
    @classmethod
    def _default_kv_heads(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("num_kv_heads") is None:
            data = {**data, "num_kv_heads": data.get("num_attention_heads")}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> ModelSpec:
        if self.head_dim is None and self.hidden_size % self.num_attention_heads:
            raise PlanInputError(
                f"model {self.name}: hidden_size {self.hidden_size} is not divisible by "
                f"num_attention_heads {self.num_attention_heads}; set head_dim explicitly."
            )
        if self.num_attention_heads % self.num_kv_heads:
            raise PlanInputError(
                f"model {self.name}: num_kv_heads {self.num_kv_heads} must divide "
                f"num_attention_heads {self.num_attention_heads} (GQA groups)."
            )
        if self.top_k > self.num_experts:
            raise PlanInputError(
                f"model {self.name}: top_k {self.top_k} exceeds num_experts {self.num_experts}."
            )
        if self.position_embedding == "learned" and self.max_position_embeddings is None:
            raise PlanInputError(
                f"model {self.name}: learned position embeddings need max_position_embeddings."
            )
        return self

    @property
    def head_dim_eff(self) -> int:
        """Per-head width actually used."""
        return self.head_dim or self.hidden_size // self.num_attention_heads

    @property
    def is_moe(self) -> bool:
        """True for a mixture-of-experts model."""
        return self.num_experts > 1

    @property
    def num_params(self) -> float:
        """Total parameters, embeddings included (every expert counted)."""
        from planner.formulas import params

        return float(params.total_params(*params.model_shape_args(self)))

    @property
    def num_active_params(self) -> float:
        """Parameters a token passes through (top_k experts, not all), embeddings included."""
        from planner.formulas import params

        return float(params.active_params(*params.model_shape_args(self)))


class AcceleratorSpec(BaseModel):
    """One GPU (or any accelerator) type: peak rates, memory, links, power and price.

    Catalog entries live in ``planner/data/gpus.yaml`` with a source per number; a custom
    accelerator (for example this CPU, calibrated by a benchmark) can be given inline.
    """

    model_config = _FROZEN

    name: str = Field(min_length=1)
    """Catalog name, e.g. 'H100-SXM-80GB'."""
    aliases: tuple[str, ...] = ()
    """Other names that resolve to this entry (e.g. 'H100')."""
    vendor: str = "custom"
    """Maker, for display."""
    bf16_dense_tflops: float = Field(gt=0)
    """Dense BF16 tensor throughput, TFLOP/s (no sparsity)."""
    fp8_dense_tflops: float | None = Field(default=None, gt=0)
    """Dense FP8 throughput, TFLOP/s; None when the device has no FP8 units."""
    fp32_dense_tflops: float | None = Field(default=None, gt=0)
    """FP32 throughput (IEEE FP32 math, not TF32), TFLOP/s: the peak of an FP32 run; None
    when unknown (FP32 training is then refused)."""
    hbm_gib: float = Field(gt=0)
    """Device memory, GiB."""
    hbm_tb_s: float = Field(gt=0)
    """Device memory bandwidth, TB/s."""
    intra_node_gb_s: float = Field(gt=0)
    """GPU-to-GPU bandwidth inside a node, GB/s per direction (NVLink, Infinity Fabric, PCIe)."""
    inter_node_gb_s_per_gpu: float = Field(gt=0)
    """Network bandwidth between nodes per GPU, GB/s per direction (NIC line rate)."""
    tdp_w: float = Field(gt=0)
    """Board power limit, W."""
    idle_w: float = Field(ge=0)
    """Power drawn when idle, W."""
    price_usd_per_gpu_hour: float = Field(ge=0)
    """Indicative on-demand price, USD per GPU-hour."""
    gemm_efficiency: float = Field(default=0.8, gt=0, le=1)
    """Best achievable fraction of the BF16 peak for large GEMMs (MAMF / spec)."""
    fp8_gemm_efficiency: float | None = Field(default=None, gt=0, le=1)
    """Same for FP8 GEMMs; None means gemm_efficiency."""
    sustained_clock_fraction: float = Field(default=1.0, gt=0, le=1)
    """Compute rate under hours of full load relative to the burst rate behind the
    efficiencies above (power-capped GPUs settle below boost clock); 1 for measured rates."""
    hbm_efficiency: float = Field(default=0.85, gt=0, le=1)
    """Fraction of hbm_tb_s that streaming (element-wise) kernels reach."""
    intra_node_efficiency: float = Field(default=0.8, gt=0, le=1)
    """Collective bus bandwidth inside a node as a fraction of intra_node_gb_s."""
    inter_node_efficiency: float = Field(default=0.9, gt=0, le=1)
    """Collective bandwidth across nodes as a fraction of inter_node_gb_s_per_gpu."""
    attention_fwd_efficiency: float = Field(default=0.5, gt=0, le=1)
    """Fraction of the BF16 peak that fused (flash) attention forward reaches."""
    attention_bwd_efficiency: float = Field(default=0.4, gt=0, le=1)
    """Same for fused attention backward."""
    attention_benchmarks: str | None = None
    """Key of the measured attention-kernel table (constants.yaml attention_kernels) that
    times the fa2/fa3/cudnn kernels on this accelerator; None: the efficiencies above."""
    node_overhead_w: float = Field(default=0.0, ge=0)
    """Power of one node excluding its GPUs (CPUs, DRAM, NICs, fans), W."""
    runtime_reserved_gib: float = Field(default=0.0, ge=0)
    """Device memory the runtime takes per process before any tensor (CUDA context,
    cuBLAS/cuDNN workspaces), GiB; 0 for a host (CPU) accelerator."""
    comm_buffer_gib_per_group: float = Field(default=0.0, ge=0)
    """Device memory the collective library reserves per process group (NCCL buffers), GiB."""
    step_overhead_s: float = Field(default=0.0, ge=0)
    """Seconds per optimizer step that no kernel term covers (framework and Python work,
    logging, host synchronisation), counted in the step breakdown's ``optimizer_s``; 0
    unless fitted from measured jobs by ``scalectl plan calibrate``."""

    @model_validator(mode="after")
    def _idle_below_tdp(self) -> AcceleratorSpec:
        if self.idle_w > self.tdp_w:
            raise PlanInputError(
                f"accelerator {self.name}: idle_w {self.idle_w} exceeds tdp_w {self.tdp_w}."
            )
        return self


class ClusterSpec(BaseModel):
    """Where the run happens: which accelerator, how many, and the site's energy facts.

    Give ``num_gpus`` or ``num_nodes`` (or both, consistent); the other is filled in.
    """

    model_config = _FROZEN

    gpu: str | AcceleratorSpec
    """A catalog name (see ``scalectl plan gpus``) or an inline AcceleratorSpec."""
    num_gpus: int = Field(default=0, ge=0)
    """Accelerators in the job (derived from num_nodes when omitted)."""
    num_nodes: int = Field(default=0, ge=0)
    """Nodes (servers) in the job; GPUs fill nodes in order (derived when omitted)."""
    gpus_per_node: int = Field(default=8, gt=0)
    """Accelerators per node sharing the fast intra-node link."""
    pue: float | None = Field(default=None, ge=1.0)
    """Data-centre power usage effectiveness; None means the catalog default."""
    grid_kg_co2_per_kwh: float | None = Field(default=None, ge=0)
    """Grid carbon intensity, kg CO2 per kWh; None means the catalog default."""
    price_usd_per_gpu_hour: float | None = Field(default=None, ge=0)
    """Overrides the accelerator's list price."""
    node_overhead_w: float | None = Field(default=None, ge=0)
    """Overrides the accelerator's per-node host power."""
    mtbf_gpu_hours: float | None = Field(default=None, gt=0)
    """Mean time between job-interrupting failures per GPU, hours (the job's MTBF is this
    over the GPU count); None means the catalog default (data/reliability.yaml)."""
    checkpoint_gb_s_per_node: float | None = Field(default=None, gt=0)
    """Checkpoint write (and reload) bandwidth each node reaches to shared storage, GB/s;
    None means the catalog default."""
    checkpoint_gb_s_max: float | None = Field(default=None, gt=0)
    """The storage system's aggregate bandwidth, GB/s (caps nodes x per-node); None means
    the catalog default."""
    restart_min: float | None = Field(default=None, ge=0)
    """Minutes from an interruption to training again, before reloading the checkpoint
    (detection, rescheduling, process-group start-up); None means the catalog default."""
    co2_basis: Literal["estimated", "tdp"] = "estimated"
    """Energy that co2_t is computed from: 'estimated' (utilisation, host, PUE) or 'tdp'
    (GPU-hours x TDP, the convention of model cards such as Llama 2's)."""

    @model_validator(mode="before")
    @classmethod
    def _fill_counts(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        gpus, nodes = data.get("num_gpus"), data.get("num_nodes")
        per_node = data.get("gpus_per_node", 8)
        if gpus is None and nodes is None:
            raise PlanInputError("cluster: give num_gpus or num_nodes.")
        if not isinstance(per_node, int) or per_node <= 0:
            return data  # field validation reports it
        if gpus is None and isinstance(nodes, int):
            data = {**data, "num_gpus": nodes * per_node}
        elif nodes is None and isinstance(gpus, int) and gpus > 0:
            data = {**data, "num_nodes": -(-gpus // per_node)}
        elif (
            isinstance(gpus, int)
            and isinstance(nodes, int)
            and gpus > 0
            and nodes > 0
            and not (nodes - 1) * per_node < gpus <= nodes * per_node
        ):
            raise PlanInputError(
                f"cluster: {gpus} GPUs do not fill {nodes} nodes of {per_node}; "
                "fix num_gpus, num_nodes or gpus_per_node."
            )
        return data

    @model_validator(mode="after")
    def _counts_positive(self) -> ClusterSpec:
        if self.num_gpus <= 0 or self.num_nodes <= 0:
            raise PlanInputError("cluster: num_gpus and num_nodes must be positive.")
        return self

    def accelerator(self) -> AcceleratorSpec:
        """The AcceleratorSpec, resolving a catalog name (close matches on a typo)."""
        if isinstance(self.gpu, AcceleratorSpec):
            return self.gpu
        from planner.catalog import get_gpu

        return get_gpu(self.gpu)  # cached lookup; raises PlanInputError when unknown


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
    optimizer), 'fp8' GEMMs with BF16 elsewhere (Transformer Engine), or 'fp32' (FP32
    weights, gradients, activations and optimizer states, no master copy, at the
    accelerator's FP32 rate: a CPU, or a GPU run without autocast)."""
    optimizer: Optimizer = "adamw"
    """'adamw' (two FP32 states) or 'sgd_momentum' (one)."""
    attention_kernel: AttentionKernel = "flash"
    """'flash': fused, causal-aware, O(s) memory, timed by the accelerator's attention
    efficiencies; 'fa2' (FlashAttention-2, torch SDPA's flash backend), 'fa3'
    (FlashAttention-3), 'cudnn' (cuDNN fused attention, Transformer Engine's default on
    Hopper): fused, timed from measured tables where the accelerator has them
    (constants.yaml attention_kernels), else as 'flash'; 'unfused' / 'sdpa_math':
    materialise the s x s scores (Megatron-LM before 2022; torch SDPA's math backend)."""
    overlap_grad_reduce: bool = True
    """Bucketed gradient reduction overlapped with backward (PyTorch DDP/FSDP,
    Megatron --overlap-grad-reduce); False reduces after backward (Megatron-LM 2021)."""
    tp_comm_overlap: bool = False
    """Tensor-parallel collectives overlapped with GEMMs (Transformer Engine userbuffers)."""
    grad_reduce_dtype: Literal["fp32", "bf16"] = "fp32"
    """Dtype of gradient accumulation buffers and their reduction."""

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
    """Context-parallel degree: the sequence split across GPUs, ring attention."""
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
