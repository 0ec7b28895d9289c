"""A planning problem as flat tuples of numbers: :class:`Inputs`, one candidate in Python
floats or many in numpy arrays of one shape (the search's layout fields; the rest broadcast),
choices as numeric codes (below), booleans 0.0 / 1.0; :class:`Constants`: constants.yaml."""

from __future__ import annotations

from functools import lru_cache
from typing import Any, NamedTuple

from planner.attention_rates import measured_attention
from planner.cluster_inputs import cluster_inputs
from planner.formulas.step import power_capped_clock_fraction
from planner.model_spec import model_shape_args
from planner.specs import AcceleratorSpec, ClusterSpec, Layout, ModelSpec, TrainingSpec
from planner.units import GIGA, TERA

SHARDING_CODES = {"none": 0.0, "zero1": 1.0, "zero2": 2.0, "zero3": 3.0, "hsdp": 4.0}
"""Numeric codes of Layout.sharding (ordered: each stage shards a superset)."""
RECOMPUTE_CODES = {"none": 0.0, "selective": 1.0, "full": 2.0}
"""Numeric codes of Layout.recompute."""
UNFUSED_KERNELS = ("unfused", "sdpa_math")
"""Attention kernels that materialise the s x s scores (the rest are fused, flash-style)."""


class Inputs(NamedTuple):
    """One planning problem (or many, as arrays) in numbers; units in the names."""

    # model
    layers: Any
    hidden: Any
    heads: Any
    kv_heads: Any
    head_dim: Any
    ffn: Any
    gated: Any
    vocab: Any
    tied: Any
    experts: Any
    top_k: Any
    moe_ffn: Any
    shared_ffn: Any
    layernorm: Any
    bias: Any
    learned_pos_rows: Any
    dense_layers: Any
    hidden_dropout: Any
    attention_dropout: Any
    rope: Any
    window: Any
    windowed_share: Any
    # accelerator
    peak_flops: Any
    peak_fp8_flops: Any
    peak_fp32_flops: Any
    gemm_eff: Any
    fp8_gemm_eff: Any
    sustained_clock: Any
    hbm_gib: Any
    hbm_bytes_s: Any
    hbm_eff: Any
    intra_bytes_s: Any
    intra_eff: Any
    inter_bytes_s: Any
    inter_eff: Any
    attn_fwd_eff: Any
    attn_bwd_eff: Any
    attn_seq_half: Any
    tdp_w: Any
    idle_w: Any
    node_overhead_w: Any
    price_usd_per_gpu_hour: Any
    runtime_reserved_gib: Any
    comm_buffer_gib_per_group: Any
    step_overhead_s: Any
    host_bytes_s: Any
    node_host_memory_gib: Any
    gemm_mn_half: Any
    gemm_k_half: Any
    # cluster
    gpus: Any
    gpus_per_node: Any
    pue: Any
    grid_kg_per_kwh: Any
    co2_tdp_basis: Any
    mtbf_gpu_s: Any
    ckpt_node_bytes_s: Any
    ckpt_max_bytes_s: Any
    restart_s: Any
    # training
    seq: Any
    batch_seqs: Any
    total_tokens: Any
    fp8: Any
    fp32: Any
    weight_bytes: Any
    act_bytes: Any
    logits_bytes: Any
    loss_bytes: Any
    optimizer_state_bytes: Any
    optimizer_step_bytes: Any
    flash: Any
    overlap_grad_reduce: Any
    tp_comm_overlap: Any
    ep_comm_overlap: Any
    grad_bytes: Any
    moe_capacity: Any
    eager: Any
    op_sac: Any
    fsdp1: Any
    frozen: Any
    base_weight_bytes: Any
    lora_rank: Any
    lora_width: Any
    lora_matrices: Any
    dequant: Any
    fp8_dynamic: Any
    grads_freed: Any
    fp8_params: Any
    quant_inputs: Any
    nf4_init_bytes: Any
    fp8_current: Any
    torch_ring: Any
    # layout
    dp: Any
    tp: Any
    pp: Any
    cp: Any
    sharding: Any
    hsdp_shard: Any
    micro_batch: Any
    recompute: Any
    interleave: Any
    sp: Any
    ep: Any
    etp: Any
    uneven: Any
    offload: Any
    gpipe: Any
    mb_group: Any
    keep_outputs: Any
    cp_allgather: Any


class Constants(NamedTuple):
    """Software constants (data/constants.yaml); see that file for sources."""

    fp8_weight_cache_bytes: float
    mask_bytes: float
    softmax_stat_bytes: float
    gemm_mn_half: float
    gemm_k_half: float
    attention_seq_half: float
    flash_causal_block: float
    flash_bwd_flops_ratio: float
    elementwise_bwd_ratio: float
    kernels_per_layer_fwd: float
    kernel_overhead_s: float
    fp8_cast_bytes: float
    alpha_intra_s: float
    alpha_inter_s: float
    grad_bucket_bytes: float
    comm_power_fraction: float
    allocator_fragmentation: float
    host_copy_efficiency: float
    overlap_contention_per_comm_s: float


@lru_cache(maxsize=1)
def constants() -> Constants:
    """The software constants, read once from data/constants.yaml."""
    from planner.catalog import constants_data

    data = constants_data()
    return Constants(**{name: float(data[name]) for name in Constants._fields})


def _f(flag: bool) -> float:
    return 1.0 if flag else 0.0


def model_inputs(model: ModelSpec) -> dict[str, float]:
    """The model's fields of :class:`Inputs`."""
    shape = model_shape_args(model)
    names = Inputs._fields[: Inputs._fields.index("hidden_dropout")]
    out = dict(zip(names, shape, strict=True))
    out["hidden_dropout"] = _f(model.hidden_dropout > 0)
    out["attention_dropout"] = _f(model.attention_dropout > 0)
    out["rope"] = _f(model.position_embedding == "rope")
    out["window"] = float(model.sliding_window or 0)
    out["windowed_share"] = model.windowed_layers / model.num_layers
    return out


def accelerator_inputs(acc: AcceleratorSpec, cluster: ClusterSpec) -> dict[str, float]:
    """The accelerator's fields of :class:`Inputs` (cluster overrides applied)."""
    price = cluster.price_usd_per_gpu_hour
    overhead = cluster.node_overhead_w
    return {
        "peak_flops": acc.bf16_dense_tflops * TERA,
        "peak_fp8_flops": (acc.fp8_dense_tflops or 0.0) * TERA,
        "peak_fp32_flops": (acc.fp32_dense_tflops or 0.0) * TERA,
        "gemm_eff": acc.gemm_efficiency,
        "fp8_gemm_eff": acc.fp8_gemm_efficiency or acc.gemm_efficiency,
        "sustained_clock": acc.sustained_clock_fraction
        * power_capped_clock_fraction(acc.board_power_w, acc.tdp_w, acc.idle_w),
        "hbm_gib": float(acc.hbm_gib),
        "hbm_bytes_s": acc.hbm_tb_s * TERA,
        "hbm_eff": acc.hbm_efficiency,
        "intra_bytes_s": acc.intra_node_gb_s * GIGA,
        "intra_eff": acc.intra_node_efficiency,
        "inter_bytes_s": acc.inter_node_gb_s_per_gpu * GIGA,
        "inter_eff": acc.inter_node_efficiency,
        "attn_fwd_eff": acc.attention_fwd_efficiency,
        "attn_bwd_eff": acc.attention_bwd_efficiency,
        "attn_seq_half": constants().attention_seq_half,
        "tdp_w": float(acc.board_power_w),
        "idle_w": float(acc.idle_w),
        "node_overhead_w": float(acc.node_overhead_w if overhead is None else overhead),
        "price_usd_per_gpu_hour": float(acc.price_usd_per_gpu_hour if price is None else price),
        "runtime_reserved_gib": float(acc.runtime_reserved_gib),
        "comm_buffer_gib_per_group": float(acc.comm_buffer_gib_per_group),
        "step_overhead_s": float(acc.step_overhead_s),
        "host_bytes_s": acc.host_link_gb_s * GIGA,
        "node_host_memory_gib": float(acc.node_host_memory_gib),
        "gemm_mn_half": float(acc.gemm_mn_half or constants().gemm_mn_half),
        "gemm_k_half": float(acc.gemm_k_half or constants().gemm_k_half),
    }


def training_inputs(training: TrainingSpec, model: ModelSpec) -> dict[str, float]:
    """The training spec's fields of :class:`Inputs` (the adapters' sizes need the model)."""
    from planner.catalog import constants_data
    from planner.finetune import finetune_inputs
    from planner.loss_inputs import loss_inputs
    from planner.training_flags import training_flags

    data = constants_data()
    fp32, pure = training.precision == "fp32", training.precision == "bf16-pure"
    sizes = data["precision"][training.precision]
    # Without an FP32 master copy the parameters are the optimizer's copy: its states
    # and step traffic are the fp32 tables' (or their BF16 halves), not mixed precision's.
    suffix = "_fp32" if fp32 else "_bf16-pure" if pure else ""
    return {
        "seq": float(training.seq_len),
        "batch_seqs": float(training.global_batch_seqs),
        "total_tokens": float(training.total_tokens),
        "fp32": _f(fp32),
        "weight_bytes": float(sizes["weight_bytes"]),
        "act_bytes": float(sizes["activation_bytes"]),
        **loss_inputs(training, sizes),
        "optimizer_state_bytes": float(data["optimizer_state_bytes" + suffix][training.optimizer]),
        "optimizer_step_bytes": float(data["optimizer_step_bytes" + suffix][training.optimizer]),
        "flash": _f(training.attention_kernel not in UNFUSED_KERNELS),
        "overlap_grad_reduce": _f(training.overlap_grad_reduce),
        "tp_comm_overlap": _f(training.tp_comm_overlap),
        "ep_comm_overlap": _f(training.ep_comm_overlap),
        "grad_bytes": float(data["grad_bytes"]["bf16" if pure else training.grad_reduce_dtype]),
        "moe_capacity": float(training.moe_capacity_factor or 1.0),
        **training_flags(training),
        **finetune_inputs(training, model, float(sizes["weight_bytes"])),
    }


def layout_inputs(layout: Layout) -> dict[str, float]:
    """The layout's fields of :class:`Inputs`."""
    return {
        "dp": float(layout.dp),
        "tp": float(layout.tp),
        "pp": float(layout.pp),
        "cp": float(layout.cp),
        "sharding": SHARDING_CODES[layout.sharding],
        "hsdp_shard": float(layout.hsdp_shard_size or 1),
        "micro_batch": float(layout.micro_batch),
        "recompute": RECOMPUTE_CODES[layout.recompute],
        "interleave": float(layout.interleave),
        "sp": _f(layout.sequence_parallel),
        "ep": float(layout.ep),
        "etp": float(layout.expert_tp or 0),
        "uneven": _f(layout.uneven_stages),
        "offload": float(layout.activation_offload),
        "gpipe": _f(layout.schedule == "gpipe"),
        "mb_group": float(layout.microbatch_group or 0),
        "keep_outputs": _f(not layout.free_stage_outputs),
        "cp_allgather": _f(layout.cp_impl == "allgather"),
    }


_FIELD_GROUPS = (
    tuple(Inputs._fields[: Inputs._fields.index("peak_flops")]),
    tuple(Inputs._fields[Inputs._fields.index("peak_flops") : Inputs._fields.index("seq")]),
    tuple(Inputs._fields[Inputs._fields.index("seq") : Inputs._fields.index("dp")]),
    tuple(Inputs._fields[Inputs._fields.index("dp") :]),
)

_ATTN_AT = _FIELD_GROUPS[1].index("attn_fwd_eff")
"""Where attn_fwd_eff, attn_bwd_eff, attn_seq_half start in the accelerator group."""

_MEMO: dict[tuple[int, int], tuple[object, object, tuple[float, ...]]] = {}
_MEMO_LIMIT = 4096


def _memo(kind: int, spec: object, other: object, make: Any) -> tuple[float, ...]:
    """``make()`` for this (immutable) spec object, computed once per object.

    Specs are frozen, so their numbers never change; the entry keeps the objects alive,
    so an ``id`` cannot be reused while it is cached.
    """
    key = (kind, id(spec))
    entry = _MEMO.get(key)
    if entry is not None and entry[0] is spec and entry[1] is other:
        return entry[2]
    if len(_MEMO) >= _MEMO_LIMIT:
        _MEMO.clear()
    values: tuple[float, ...] = make()
    _MEMO[key] = (spec, other, values)
    return values


def _ordered(group: int, values: dict[str, float]) -> tuple[float, ...]:
    return tuple(values[name] for name in _FIELD_GROUPS[group])


def build_inputs(
    model: ModelSpec,
    accelerator: AcceleratorSpec,
    cluster: ClusterSpec,
    training: TrainingSpec,
    layout: Layout,
) -> Inputs:
    """All of :class:`Inputs` for one candidate, as Python floats."""
    m = _memo(0, model, None, lambda: _ordered(0, model_inputs(model)))
    a = _memo(
        1,
        cluster,
        accelerator,
        lambda: _ordered(
            1, {**accelerator_inputs(accelerator, cluster), **cluster_inputs(cluster)}
        ),
    )
    t = _memo(2, training, model, lambda: _ordered(2, training_inputs(training, model)))
    measured = measured_attention(
        accelerator.attention_benchmarks,
        training.attention_kernel,
        model.head_dim or model.hidden_size // model.num_attention_heads,
        accelerator.bf16_dense_tflops,
    )
    if measured is not None:
        a = a[:_ATTN_AT] + measured + a[_ATTN_AT + len(measured) :]
    return tuple.__new__(Inputs, m + a + t + layout_values(layout))


def layout_values(layout: Layout) -> tuple[float, ...]:
    """The layout's fields of :class:`Inputs`, in order (memoised per Layout object)."""
    return _memo(3, layout, None, lambda: _ordered(3, layout_inputs(layout)))


def stack_inputs(candidates: list[Inputs]) -> Inputs:
    """Many scalar :class:`Inputs` as one of numpy arrays (for the vectorised path)."""
    import numpy as np

    columns = zip(*candidates, strict=True)
    return Inputs(*(np.asarray(column, dtype=float) for column in columns))


LAYOUT_DEFAULTS = {
    "tp": 1.0,
    "pp": 1.0,
    "cp": 1.0,
    "sharding": 0.0,
    "hsdp_shard": 1.0,
    "micro_batch": 1.0,
    "recompute": 0.0,
    "interleave": 1.0,
    "sp": 0.0,
    "ep": 1.0,
    "etp": 0.0,
    "uneven": 0.0,
    "offload": 0.0,
    "gpipe": 0.0,
    "mb_group": 0.0,
    "keep_outputs": 0.0,
    "cp_allgather": 0.0,
}
"""Values of the layout fields a candidate set leaves out (Layout's defaults, as codes)."""


def candidate_inputs(
    model: ModelSpec,
    accelerator: AcceleratorSpec,
    cluster: ClusterSpec,
    training: TrainingSpec,
    **layout: Any,
) -> Inputs:
    """Inputs for many layouts at once (the vectorised path of the layout search).

    The model, accelerator, cluster and training fields are scalars (they broadcast);
    each layout field (``dp``, ``tp``, ``pp``, ``cp``, ``sharding``, ``hsdp_shard``,
    ``micro_batch``, ``recompute``, ``interleave``, ``sp``, ``ep``) is a numpy array of
    candidates or one value for all. ``sharding`` and ``recompute`` take the strings of
    :class:`~planner.specs.Layout` or their codes. The candidates are not validated:
    filter them first (planner.checks states the rules).
    """
    import numpy as np

    unknown = set(layout) - set(_FIELD_GROUPS[3])
    if unknown:
        raise TypeError(f"unknown layout field(s): {sorted(unknown)}")
    if "dp" not in layout:
        raise TypeError("candidate_inputs needs dp")
    codes = {"sharding": SHARDING_CODES, "recompute": RECOMPUTE_CODES}
    columns = []
    for name in _FIELD_GROUPS[3]:
        value = layout.get(name, LAYOUT_DEFAULTS.get(name))
        array = np.asarray(value)
        if name in codes and array.dtype.kind in "US":
            array = np.vectorize(codes[name].__getitem__, otypes=[float])(array)
        columns.append(array.astype(float))
    layouts = np.broadcast_arrays(*columns)
    static = build_inputs(model, accelerator, cluster, training, Layout(dp=1))
    return Inputs(*static[: len(Inputs._fields) - len(layouts)], *layouts)
