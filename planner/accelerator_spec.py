"""One accelerator type: peak rates, memory, links, power and price.

A frozen pydantic model that refuses unknown keys (see :mod:`planner.specs`, which
re-exports it); the catalog (:mod:`planner.catalog`) builds them from data/gpus.yaml.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from planner.errors import PlanInputError

_FROZEN = ConfigDict(extra="forbid", frozen=True)


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
    power_limit_w: float | None = Field(default=None, gt=0)
    """Board power limit the operator set below tdp_w (``nvidia-smi -pl``), W; under hours
    of dense load the clock settles where the dynamic power fits the limit
    (:func:`planner.formulas.step.power_capped_clock_fraction`) and the GPU draws at
    most this. None: the board runs at tdp_w."""
    price_usd_per_gpu_hour: float = Field(ge=0)
    """Indicative on-demand price, USD per GPU-hour."""
    gemm_efficiency: float = Field(default=0.8, gt=0, le=1)
    """Best achievable fraction of the BF16 peak for large GEMMs (MAMF / spec)."""
    fp8_gemm_efficiency: float | None = Field(default=None, gt=0, le=1)
    """Same for FP8 GEMMs; None means gemm_efficiency."""
    gemm_mn_half: float | None = Field(default=None, gt=0)
    """Output dimension (M or N) at which this accelerator's GEMMs reach half the best-case
    rate (planner.formulas.kernels.gemm_shape_factor), fitted from its measured GEMM table
    (data/gemm_measured.yaml, scripts/fit_gemm_shape.py); None: constants.yaml gemm_mn_half."""
    gemm_k_half: float | None = Field(default=None, gt=0)
    """Same for the reduction dimension K; None: constants.yaml gemm_k_half."""
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
    host_link_gb_s: float = Field(default=32.0, gt=0)
    """GPU-to-host bandwidth per direction, GB/s (PCIe: Gen4 x16 32, Gen5 x16 64; C2C on
    Grace-Hopper): what activation offloading copies over."""
    node_host_memory_gib: float = Field(default=2048.0, gt=0)
    """Host (CPU) memory of one node, GiB: what offloaded activations of all its GPUs must
    fit in. Default: DGX H100 datasheet, 2 TB DDR5 system memory per 8-GPU node."""
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
        limit = self.power_limit_w
        if limit is not None and not self.idle_w < limit <= self.tdp_w:
            raise PlanInputError(
                f"accelerator {self.name}: power_limit_w {limit:g} must lie above idle_w "
                f"{self.idle_w:g} and at most tdp_w {self.tdp_w:g}; set it in that range or "
                "leave it out."
            )
        return self

    @property
    def board_power_w(self) -> float:
        """The power the board may draw: the operator's limit, else the TDP."""
        return self.tdp_w if self.power_limit_w is None else self.power_limit_w
