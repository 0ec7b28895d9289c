"""Activation memory of the first and last pipeline stage, and the peak memory per GPU."""

from __future__ import annotations

from typing import Any, NamedTuple

from planner.formulas import flops, memory
from planner.formulas.ops import where
from planner.inputs import Constants, Inputs
from planner.terms.shapes import SHARDS_WEIGHTS, Shapes
from planner.terms.states import StageParams
from planner.units import GIB


class StageActivations(NamedTuple):
    """Bytes of activations held at the peak of the first and last stage."""

    first: Any
    last: Any
    workspace: Any
    """Transient buffers of the backward: the recomputed layer, FSDP's gathered layer."""


def stage_activations(
    x: Inputs, c: Constants, s: Shapes, per_layer_params: Any
) -> StageActivations:
    """Activations stored per layer (Korthikanti et al. 2022, Sec. 4, eq. 1-2, per stored
    tensor in :func:`planner.formulas.memory.layer_activation_bytes`) times the layers of
    the chunks in flight on a stage (Narayanan et al. 2021, Sec. 2.2), plus the logits."""
    act_none, act_core = memory.layer_activation_bytes(
        s.tokens, x.seq, x.hidden, x.heads, s.q_dim, s.kv_dim, x.ffn, x.gated, s.moe,
        x.top_k, x.moe_ffn, x.shared_ffn, x.experts, x.tp, s.sp_share, x.flash,
        x.hidden_dropout, x.attention_dropout, s.ab, c.mask_bytes, c.softmax_stat_bytes,
    )  # fmt: skip
    act_layer = memory.stored_layer_activation_bytes(
        act_none, act_core, s.tokens, x.hidden, s.sp_share, x.recompute, s.ab
    )
    layers_per_chunk = s.layers_stage / x.interleave
    first_chunks = memory.chunks_in_flight(0.0, x.pp, x.interleave, s.micro_batches)
    last_chunks = memory.chunks_in_flight(x.pp - 1, x.pp, x.interleave, s.micro_batches)
    logits = x.logits_bytes * s.tokens * x.vocab / x.tp
    act_first = first_chunks * layers_per_chunk * act_layer + where(x.pp == 1, logits, 0.0)
    act_last = last_chunks * layers_per_chunk * act_layer + logits
    workspace = where(
        x.recompute >= flops.RECOMPUTE_FULL,
        act_none,
        where(x.recompute >= flops.RECOMPUTE_SELECTIVE, act_core, 0.0),
    ) + where(
        (x.sharding > SHARDS_WEIGHTS) & (s.shard_group > 1),
        (2 * x.weight_bytes + x.grad_bytes) * per_layer_params,
        0.0,
    )
    return StageActivations(act_first, act_last, workspace)


class PeakMemory(NamedTuple):
    """Memory of the worse of the first and last stage, in bytes."""

    scale: Any
    """Its model states relative to the larger stage's (:class:`StageParams`)."""
    activations: Any
    other: Any
    total: Any


def peak_memory(
    x: Inputs, c: Constants, s: Shapes, p: StageParams, act: StageActivations, states_b: Any
) -> PeakMemory:
    """Model states + activations + runtime, communicator buffers and allocator slack on
    the first and the last stage; the larger one is the job's peak (Megatron-LM's
    theoretical_memory_usage.py reports the first stage; the last holds the logits)."""
    # One communicator (and its NCCL buffers) per parallel group of more than one rank.
    groups = (
        where(x.tp > 1, 1.0, 0.0) + where(x.cp > 1, 1.0, 0.0)
        + where(s.dp_size > 1, 1.0, 0.0) + where(x.pp > 1, 1.0, 0.0)
        + where(x.ep > 1, 1.0, 0.0)
    )  # fmt: skip
    fixed_other = (x.runtime_reserved_gib + x.comm_buffer_gib_per_group * groups) * GIB
    frag = c.allocator_fragmentation
    workspace = act.workspace
    # Model states on the first and last stage differ by embedding vs output layer.
    scale_first = p.first / p.dense
    scale_last = p.last / p.dense
    other_first = fixed_other + workspace + frag * (act.first + workspace)
    other_last = fixed_other + workspace + frag * (act.last + workspace)
    total_first = states_b * scale_first + act.first + other_first
    total_last = states_b * scale_last + act.last + other_last
    first_worse = total_first >= total_last
    return PeakMemory(
        where(first_worse, scale_first, scale_last),
        where(first_worse, act.first, act.last),
        where(first_worse, other_first, other_last),
        where(first_worse, total_first, total_last),
    )
