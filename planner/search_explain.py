"""Layouts in words: a short name for a layout, and why a layout ranks below the best."""

from __future__ import annotations

from planner.result import Estimate
from planner.specs import Layout


def describe_layout(layout: Layout) -> str:
    """``tp8 pp4 cp1 dp32 zero1 mb2 v4 sp sel-rc``: a layout in a few words."""
    lo = layout
    parts = [f"tp{lo.tp}", f"pp{lo.pp}", f"cp{lo.cp}", f"dp{lo.dp}"]
    if lo.ep > 1:
        parts.append(f"ep{lo.ep}")
    if lo.expert_tp is not None:
        parts.append(f"etp{lo.expert_tp}")
    parts.append(lo.sharding + (f"/{lo.hsdp_shard_size}" if lo.hsdp_shard_size else ""))
    parts.append(f"mb{lo.micro_batch}")
    if lo.interleave > 1:
        parts.append(f"v{lo.interleave}")
    if lo.sequence_parallel:
        parts.append("sp")
    if lo.schedule == "gpipe":
        parts.append("gpipe")
    if lo.microbatch_group is not None:
        parts.append(f"N{lo.microbatch_group}")
    if lo.uneven_stages:
        parts.append("uneven")
    if not lo.free_stage_outputs:
        parts.append("keep-outputs")
    if lo.recompute != "none":
        parts.append({"selective": "sel-rc", "full": "full-rc"}[lo.recompute])
    if lo.activation_offload > 0:
        parts.append(f"offload{lo.activation_offload:.0%}")
    return " ".join(parts)


_WHY = {
    "gemm_s": "GEMM time",
    "attention_s": "attention",
    "memory_bound_s": "memory-bound kernels",
    "recompute_s": "recompute",
    "tp_comm_s": "TP comm",
    "cp_comm_s": "CP comm",
    "ep_comm_s": "EP all-to-all",
    "pp_p2p_s": "pipeline p2p",
    "pipeline_bubble_s": "pipeline bubble",
    "dp_comm_s": "exposed DP comm",
    "optimizer_s": "optimizer step",
    "offload_s": "activation offload",
    "dp_contention_s": "compute slowed by DP comm",
}


def why_it_loses(est: Estimate, best: Estimate, objective: str) -> str:
    """Why ``est`` ranks below ``best``: the step-time components that grow the most (per
    GPU-second when the GPU counts differ, as a share of the best step), the objective's
    own difference, and the memory it needs."""
    scale = est.layout.num_gpus / best.layout.num_gpus
    base = best.step.time_s
    deltas = sorted(
        ((est.step.breakdown[key] * scale - best.step.breakdown[key], key)
         for key in est.step.breakdown),
        reverse=True,
    )  # fmt: skip
    total = est.step.time_s * scale - base
    parts = [
        f"{_WHY.get(key, key)} +{delta / base:.1%}"
        for delta, key in deltas[:2]
        if delta > 0.05 * max(total, 0.0) and delta > 5e-4 * base
    ]
    if scale != 1:
        parts.insert(0, f"{est.layout.num_gpus} GPUs")
    if objective == "energy":
        parts.insert(0, f"energy {est.train.energy_mwh / best.train.energy_mwh - 1:+.1%}")
    elif objective == "cost":
        parts.insert(0, f"cost {est.train.cost_usd / best.train.cost_usd - 1:+.1%}")
    elif objective == "mfu":
        parts.insert(0, f"MFU {est.step.mfu - best.step.mfu:+.1%}")
    if not parts:
        slower = est.step.time_s * scale / base - 1
        parts.append(
            f"step {slower:+.2%}" if abs(slower) > 1e-6 else "same step time (equivalent layout)"
        )
    mem = est.memory_gib
    more = mem.total - best.memory_gib.total
    parts.append(
        f"{mem.total:.0f}/{mem.capacity:.0f} GiB" + (f" (+{more:.1f})" if more > 0.05 else "")
    )
    return ", ".join(parts)
