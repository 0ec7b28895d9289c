"""FLOPs and utilisation of a step, and the totals of a run: energy, cost, checkpoints
and failures."""

from __future__ import annotations

from typing import Any, NamedTuple

from planner.formulas import flops, params, reliability, step
from planner.formulas.ops import ceil, maximum, minimum, where
from planner.inputs import Constants, Inputs
from planner.units import SECONDS_PER_HOUR, W_PER_MW


def step_flops(x: Inputs, c: Constants) -> tuple[Any, Any, Any]:
    """(tokens, model FLOPs, hardware FLOPs) of one step: 6N + attention per token
    (Narayanan et al. 2021, eq. 3; Chowdhery et al. 2022, App. B for MFU), hardware FLOPs
    adding recomputation and the key blocks fused attention executes. LoRA/QLoRA count what
    they execute: no weight gradients of frozen matrices, the adapters' 6·r·(d_in + d_out)
    (:func:`planner.formulas.flops.finetune_flops_per_token`)."""
    moe_layer_mm = params.layer_matmul_params_active(
        x.hidden, x.heads, x.kv_heads, x.head_dim, x.ffn, x.gated, x.experts, x.top_k,
        x.moe_ffn, x.shared_ffn,
    )  # fmt: skip
    dense_layer_mm = params.layer_matmul_params_active(
        x.hidden, x.heads, x.kv_heads, x.head_dim, x.ffn, x.gated, 1.0, 1.0, x.ffn, 0.0
    )
    layer_mm = params.mixed(
        moe_layer_mm, dense_layer_mm, params.moe_layer_share(x.layers, x.dense_layers, x.experts)
    )
    step_tokens = x.batch_seqs * x.seq
    mm_fwd = flops.matmul_flops_fwd_per_token(x.layers, layer_mm, x.vocab, x.hidden)
    lora = (x.frozen, mm_fwd, x.layers, x.lora_rank, x.lora_width)
    model_flops = step_tokens * (
        flops.model_flops_per_token(
            x.layers,
            layer_mm,
            x.vocab,
            x.hidden,
            x.heads,
            x.head_dim,
            x.seq,
            x.window,
            x.windowed_share,
        )
        + flops.finetune_flops_per_token(*lora)
    )
    hardware_flops = step_tokens * flops.hardware_flops_per_token(
        x.layers, layer_mm, x.vocab, x.hidden, x.heads, x.head_dim, x.seq, x.flash,
        x.recompute, c.flash_causal_block, c.flash_bwd_flops_ratio,
        x.op_sac * params.op_recompute_matmul_params(x.hidden, x.kv_heads * x.head_dim,
                                                     x.heads * x.head_dim, x.ffn),
        x.window, x.windowed_share,
    ) + step_tokens * flops.finetune_flops_per_token(*lora, x.recompute)  # fmt: skip
    return step_tokens, model_flops, hardware_flops


class RunTotals(NamedTuple):
    """Totals of a training run (units in the names)."""

    steps: Any
    train_s: Any
    gpu_hours: Any
    power_w: Any
    energy_mwh: Any
    energy_mwh_tdp: Any
    nodes: Any


def run_totals(
    x: Inputs, step_tokens: Any, step_time: Any, busy_s: Any, exposed_comm_s: Any,
    c: Constants,
) -> RunTotals:  # fmt: skip
    """Steps, GPU-hours and energy of the run: GPU power from how busy the step keeps
    the GPU (:func:`planner.formulas.step.gpu_power_w`), node overhead and PUE on top."""
    steps = ceil(x.total_tokens / step_tokens)
    train_s = steps * step_time
    gpu_hours = x.gpus * train_s / SECONDS_PER_HOUR
    power = step.gpu_power_w(
        x.idle_w, x.tdp_w, busy_s / step_time, exposed_comm_s / step_time, c.comm_power_fraction
    )
    nodes = ceil(x.gpus / x.gpus_per_node)
    site_w = (x.gpus * power + nodes * x.node_overhead_w) * x.pue
    energy_mwh = site_w * train_s / SECONDS_PER_HOUR / W_PER_MW
    energy_mwh_tdp = gpu_hours * x.tdp_w / W_PER_MW
    return RunTotals(steps, train_s, gpu_hours, power, energy_mwh, energy_mwh_tdp, nodes)


def reliability_terms(
    x: Inputs, step_time: Any, train_s: Any, nodes: Any
) -> tuple[Any, Any, Any, Any]:
    """(checkpoint seconds, job MTBF s, checkpoint interval s, wall seconds) under failures
    (:mod:`planner.formulas.reliability`: Young 1974, Daly 2006)."""
    # A checkpoint holds the weights and the optimizer states (FP32 master included).
    checkpoint_bytes = params.total_params(
        x.layers, x.hidden, x.heads, x.kv_heads, x.head_dim, x.ffn, x.gated, x.vocab, x.tied,
        x.experts, x.top_k, x.moe_ffn, x.shared_ffn, x.layernorm, x.bias, x.learned_pos_rows,
        x.dense_layers,
    ) * (x.weight_bytes + x.optimizer_state_bytes)  # fmt: skip
    storage_bw = minimum(nodes * x.ckpt_node_bytes_s, x.ckpt_max_bytes_s)
    checkpoint_s = checkpoint_bytes / storage_bw
    job_mtbf = reliability.job_mtbf_s(x.mtbf_gpu_s, x.gpus)
    # Checkpoints are taken between steps: at least one step apart.
    interval = maximum(reliability.young_interval_s(checkpoint_s, job_mtbf), step_time)
    wall_s = reliability.daly_wall_time_s(
        train_s, interval, checkpoint_s, x.restart_s + checkpoint_s, job_mtbf
    )
    return checkpoint_s, job_mtbf, interval, wall_s


def co2_t(x: Inputs, energy_mwh: Any, energy_mwh_tdp: Any) -> Any:
    """Tonnes of CO2: energy (measured-power or TDP basis, as the cluster says) times the
    grid's intensity."""
    return where(x.co2_tdp_basis > 0, energy_mwh_tdp, energy_mwh) * x.grid_kg_per_kwh
