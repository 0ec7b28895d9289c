"""Wire the formulas into one evaluation: memory, step time, FLOPs and run totals.

``evaluate(x, c)`` is the single place where the formulas of :mod:`planner.formulas` are
combined, one term at a time by the functions of :mod:`planner.terms`. ``x`` is an
:class:`~planner.inputs.Inputs` of Python floats (one candidate, used by
``planner.estimate``) or of numpy arrays (many candidates at once, used by the layout
search); the result has the same kind. It assumes the layout is valid
(``planner.checks``): per-replica batch divisible by the micro-batch, and so on.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from planner.formulas.ops import maximum, where
from planner.inputs import Constants, Inputs
from planner.terms import activations, compute, data_parallel, layer_comm, run, schedule, states
from planner.terms.shapes import Shapes, shapes
from planner.units import GIB, SECONDS_PER_DAY, SECONDS_PER_HOUR, TERA

BREAKDOWN_KEYS = (
    "gemm_s",
    "attention_s",
    "memory_bound_s",
    "recompute_s",
    "tp_comm_s",
    "cp_comm_s",
    "ep_comm_s",
    "pp_p2p_s",
    "pipeline_bubble_s",
    "dp_comm_s",
    "optimizer_s",
    "offload_s",
    "dp_contention_s",
)
"""Components of the step time, in seconds per step; they add up to step_time_s."""


class Outputs(NamedTuple):
    """Everything one evaluation produces (floats or arrays); units in the names."""

    params_gib: Any
    grads_gib: Any
    optimizer_gib: Any
    activations_gib: Any
    other_gib: Any
    total_gib: Any
    capacity_gib: Any
    host_offload_gib: Any
    host_capacity_gib: Any
    fits: Any
    step_time_s: Any
    model_tflops_per_gpu: Any
    hardware_tflops_per_gpu: Any
    mfu: Any
    hfu: Any
    tokens_per_s: Any
    bubble_fraction: Any
    exposed_comm_s: Any
    gemm_s: Any
    attention_s: Any
    memory_bound_s: Any
    recompute_s: Any
    tp_comm_s: Any
    cp_comm_s: Any
    ep_comm_s: Any
    pp_p2p_s: Any
    pipeline_bubble_s: Any
    dp_comm_s: Any
    optimizer_s: Any
    offload_s: Any
    dp_contention_s: Any
    train_tokens: Any
    steps: Any
    days: Any
    gpu_hours: Any
    energy_mwh: Any
    energy_mwh_tdp: Any
    cost_usd: Any
    co2_t: Any
    micro_batches: Any
    gpu_power_w: Any
    goodput: Any
    checkpoint_interval_min: Any
    expected_interruptions: Any
    checkpoint_save_s: Any
    job_mtbf_h: Any


def candidate(outputs: Outputs, index: int) -> tuple[float, ...]:
    """One candidate's outputs as Python floats (scalar outputs are shared by all)."""
    import numpy as np

    return tuple(
        float(np.asarray(value).reshape(-1)[index] if np.ndim(value) else value)
        for value in outputs
    )


class Breakdown(NamedTuple):
    """The step time's components (:data:`BREAKDOWN_KEYS`), seconds per step."""

    gemm_s: Any
    attention_s: Any
    memory_bound_s: Any
    recompute_s: Any
    tp_comm_s: Any
    cp_comm_s: Any
    ep_comm_s: Any
    pp_p2p_s: Any
    pipeline_bubble_s: Any
    dp_comm_s: Any
    optimizer_s: Any
    offload_s: Any
    dp_contention_s: Any


def step_breakdown(
    s: Shapes, layer: tuple[Any, ...], head: tuple[Any, Any], mb: schedule.MicroBatch,
    pipe: tuple[Any, Any], dp_comm: tuple[Any, Any], t_optimizer: Any,
    offload: tuple[Any, Any],
) -> Breakdown:  # fmt: skip
    """Each term times the micro-batches and layers it runs for on the slowest stage
    (Narayanan et al. 2021, Sec. 2.2: m micro-batches plus the bubble, then the
    data-parallel reduction and the optimizer step). ``layer``: GEMM forward, attention
    forward and backward, element-wise forward and backward, kernel launches, TP, CP and
    EP forward and backward exposed seconds of one layer; ``offload``: forward and backward
    exposed seconds of a layer's activation offload; ``dp_comm``: the exposed data-parallel
    seconds and the compute seconds its hidden collectives cost
    (:func:`planner.terms.data_parallel.data_parallel_time`). The output layer counts with
    its weight on the critical path (:class:`planner.terms.schedule.MicroBatch`)."""
    gemm_fwd, gemm_bwd, attn_fwd, attn_bwd, ew_fwd, ew_bwd, kernel_fwd, tp, cp, ep = layer
    t_head, loss_ew = head
    bubble, p2p = pipe
    m, layers_stage, hw = s.micro_batches, s.layers_stage, mb.head_weight
    return Breakdown(
        gemm_s=m * (layers_stage * (gemm_fwd + gemm_bwd) + (t_head + mb.head_bwd_gemm) * hw),
        attention_s=m * layers_stage * (attn_fwd + attn_bwd),
        memory_bound_s=m * (layers_stage * (ew_fwd + ew_bwd + 3 * kernel_fwd) + loss_ew * hw),
        recompute_s=m * layers_stage * mb.recompute_layer,
        tp_comm_s=m * (layers_stage * (tp.fwd_exposed_s + tp.bwd_exposed_s) + mb.head_comm * hw),
        cp_comm_s=m * layers_stage * (cp[0] + cp[1]),
        ep_comm_s=m * layers_stage * (ep[0] + ep[1]),
        pp_p2p_s=p2p,
        pipeline_bubble_s=bubble,
        dp_comm_s=dp_comm[0],
        optimizer_s=t_optimizer,
        offload_s=m * layers_stage * (offload[0] + offload[1]),
        dp_contention_s=dp_comm[1],
    )


def evaluate(x: Inputs, c: Constants) -> Outputs:
    """Memory, step time and run totals of the candidate(s) in ``x``."""
    s = shapes(x)
    base_fwd, adapter_fwd = compute.layer_gemm_fwd(x, c, s), compute.adapter_gemm_fwd(x, c, s)
    gemm_fwd, gemm_bwd = base_fwd + adapter_fwd, compute.layer_gemm_bwd(x, base_fwd, adapter_fwd)
    chunk_fwd, chunk_bwd = compute.tp_overlap_chunk_time(x, s)
    gemm_fwd, gemm_bwd = gemm_fwd + chunk_fwd, gemm_bwd + chunk_bwd
    attn = compute.attention_time(x, c, s)
    ew_fwd, ew_core_fwd, ew_bwd = compute.elementwise_time(x, c, s)
    tp = layer_comm.tensor_parallel(x, c, s, gemm_fwd)
    cp = layer_comm.context_parallel(x, c, s, attn[0], attn[1])
    ep = layer_comm.expert_parallel(
        x, c, s, gemm_fwd + gemm_bwd + attn[0] + attn[1] + ew_fwd + ew_bwd
    )
    p = states.stage_params(x, s)
    dequant = compute.dequant_time(x, s, p.layer_dense + p.layer_expert)
    ew_fwd, ew_bwd = ew_fwd + dequant, ew_bwd + dequant + states.grad_accumulation_time(x, s, p)
    layer_fwd, layer_bwd_core, kernel_fwd = schedule.layer_time(
        c, (gemm_fwd, gemm_bwd), attn, (ew_fwd, ew_bwd), tp, cp, ep
    )
    act_layer = activations.layer_activations(x, c, s)
    offload = activations.offload_time(x, c, s, act_layer, layer_fwd, layer_bwd_core)
    layer_fwd, layer_bwd_core = layer_fwd + offload[0], layer_bwd_core + offload[1]
    head = compute.output_layer_time(x, c, s)
    # Selective recomputation repeats the attention core, or under torchtitan's op policy
    # every other matmul and all element-wise ops (the attention output is kept).
    selective_fwd = where(
        x.op_sac > 0, compute.op_recompute_gemm_fwd(x, c, s) + ew_fwd, attn[0] + ew_core_fwd
    )
    mb = schedule.micro_batch_time(
        x, s, (layer_fwd, layer_bwd_core), selective_fwd,
        tp.fwd_exposed_s + cp[0] + ep[0], tp, head,
    )  # fmt: skip
    pp_bw, pp_alpha = schedule.pipeline_link(x, c, s)
    pipe = schedule.pipeline_time(x, s, mb.total, pp_bw, pp_alpha)
    dp_comm_s, dp_contention_s = data_parallel.data_parallel_time(x, c, s, p, mb)
    dp_comm_s = dp_comm_s + data_parallel.tied_embedding_sync_time(x, pp_bw, pp_alpha)
    weights_b, grads_b, optimizer_b, t_optimizer = states.model_states(x, c, s, p)
    b = step_breakdown(
        s, (gemm_fwd, gemm_bwd, attn[0], attn[1], ew_fwd, ew_bwd, kernel_fwd, tp, cp, ep),
        head, mb,
        pipe, (dp_comm_s, dp_contention_s), t_optimizer, offload,
    )  # fmt: skip
    act = activations.stage_activations(x, s, act_layer, data_parallel.layer_params(s, p))
    peak = activations.peak_memory(x, c, s, p, act, weights_b + grads_b + optimizer_b, grads_b)
    peak = with_init_peak(x, peak, states.init_peak_bytes(x, weights_b * peak.scale))
    host_gib = activations.node_host_gib(x, act)
    return _outputs(x, c, s, mb, b, (weights_b, grads_b, optimizer_b), peak, host_gib)


def with_init_peak(x: Inputs, peak: activations.PeakMemory, init_b: Any) -> activations.PeakMemory:
    """The peak with model init's (:func:`planner.terms.states.init_peak_bytes`) where that
    is the larger (only a one-pass NF4 init can be): the excess is a transient, counted in
    "other"."""
    extra = where(x.nf4_init_bytes > 0, maximum(init_b - peak.total, 0.0), 0.0)
    return peak._replace(other=peak.other + extra, total=peak.total + extra)


def _outputs(
    x: Inputs, c: Constants, s: Shapes, mb: schedule.MicroBatch, b: Breakdown,
    states_b: tuple[Any, Any, Any], peak: activations.PeakMemory, host_gib: Any,
) -> Outputs:  # fmt: skip
    """Step time, utilisation and run totals from the terms, as :class:`Outputs`."""
    step_time = (
        b.gemm_s + b.attention_s + b.memory_bound_s + b.recompute_s + b.tp_comm_s
        + b.cp_comm_s + b.ep_comm_s + b.pp_p2p_s + b.pipeline_bubble_s + b.dp_comm_s
        + b.optimizer_s + b.offload_s + b.dp_contention_s
    )  # fmt: skip
    recompute_comm_s = s.micro_batches * s.layers_stage * mb.recompute_comm
    exposed_comm = (
        b.tp_comm_s + b.cp_comm_s + b.ep_comm_s + b.pp_p2p_s + b.dp_comm_s + recompute_comm_s
    )
    busy = (b.gemm_s + b.attention_s + b.memory_bound_s + b.optimizer_s) + (
        b.recompute_s - recompute_comm_s + b.dp_contention_s
    )
    step_tokens, model_flops, hardware_flops = run.step_flops(x, c)
    gpu_seconds = step_time * x.gpus
    t = run.run_totals(x, step_tokens, step_time, busy, exposed_comm, c)
    checkpoint_s, job_mtbf, interval, wall_s = run.reliability_terms(
        x, step_time, t.train_s, t.nodes
    )
    total_gib = peak.total / GIB
    weights_b, _, optimizer_b = states_b
    return Outputs(
        params_gib=weights_b * peak.scale / GIB,
        grads_gib=peak.grads / GIB,
        optimizer_gib=optimizer_b * peak.scale / GIB,
        activations_gib=peak.activations / GIB,
        other_gib=peak.other / GIB,
        total_gib=total_gib,
        capacity_gib=x.hbm_gib + 0.0 * total_gib,
        host_offload_gib=host_gib,
        host_capacity_gib=x.node_host_memory_gib + 0.0 * total_gib,
        fits=(total_gib <= x.hbm_gib) & (host_gib <= x.node_host_memory_gib),
        step_time_s=step_time,
        model_tflops_per_gpu=model_flops / gpu_seconds / TERA,
        hardware_tflops_per_gpu=hardware_flops / gpu_seconds / TERA,
        mfu=model_flops / (gpu_seconds * s.peak_mfu),
        hfu=hardware_flops / (gpu_seconds * s.peak_mfu),
        tokens_per_s=step_tokens / step_time,
        bubble_fraction=b.pipeline_bubble_s / step_time,
        exposed_comm_s=exposed_comm,
        **b._asdict(),
        train_tokens=t.steps * step_tokens,
        steps=t.steps,
        days=t.train_s / SECONDS_PER_DAY,
        gpu_hours=t.gpu_hours,
        energy_mwh=t.energy_mwh,
        energy_mwh_tdp=t.energy_mwh_tdp,
        cost_usd=t.gpu_hours * x.price_usd_per_gpu_hour,
        co2_t=run.co2_t(x, t.energy_mwh, t.energy_mwh_tdp),
        micro_batches=s.micro_batches,
        gpu_power_w=t.power_w,
        goodput=t.train_s / wall_s,
        checkpoint_interval_min=interval / 60.0,
        expected_interruptions=wall_s / job_mtbf,
        checkpoint_save_s=checkpoint_s,
        job_mtbf_h=job_mtbf / SECONDS_PER_HOUR,
    )
