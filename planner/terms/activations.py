"""Activation memory per layer and per pipeline stage, activation offload, and the peak
memory per GPU."""

from __future__ import annotations

from typing import Any, NamedTuple

from planner.formulas import comm, flops, memory
from planner.formulas.ops import maximum, minimum, where
from planner.inputs import Constants, Inputs
from planner.terms.shapes import (
    SHARDS_GRADIENTS,
    SHARDS_OPTIMIZER,
    SHARDS_WEIGHTS,
    UNEVEN_LAYERS,
    Shapes,
)
from planner.terms.states import StageParams, dequant_buffer_bytes, qlora_kept_input_bytes
from planner.units import GIB

OFFLOAD_BUFFERS = 2.0
"""Layers' offloaded shares on the GPU while copying (double buffering: one leaving or
arriving, one being produced or consumed; as torch's save_on_cpu streams do)."""


class LayerActivations(NamedTuple):
    """Bytes one layer saves for backward, per micro-batch (on one GPU)."""

    no_recompute: Any
    """Everything the layer saves without recomputation."""
    core: Any
    """The attention core's share (what selective recomputation drops)."""
    stored: Any
    """What it saves under the layout's recompute mode."""


def layer_activations(x: Inputs, c: Constants, s: Shapes) -> LayerActivations:
    """Per stored tensor (Korthikanti et al. 2022, Sec. 4, eq. 1-2, generalised in
    :func:`planner.formulas.memory.layer_activation_bytes`), under the recompute mode
    (Sec. 5: selective drops the attention core, or keeps what torchtitan's op policy
    saves; full keeps the layer input)."""
    act_none, act_core = memory.layer_activation_bytes(
        s.tokens, x.seq, x.hidden, x.heads, s.q_dim, s.kv_dim, x.ffn, x.gated, s.moe_share,
        x.top_k * x.moe_capacity, x.moe_ffn, x.shared_ffn, x.experts, x.tp, s.sp_share,
        x.flash,
        x.hidden_dropout, x.attention_dropout, s.ab, c.mask_bytes, c.softmax_stat_bytes,
    )  # fmt: skip
    # All-gather context parallelism: the attention saves the whole sequence's K and V,
    # cp - 1 chunks beyond the local ones (Llama 3 paper, Sec. 3.3.2); the core's share,
    # which selective recomputation drops (ring attention keeps the local chunk only).
    gathered_kv = where(x.cp_allgather > 0, s.ab * s.tokens * (x.cp - 1) * 2 * s.kv_dim / x.tp, 0.0)
    act_none, act_core = act_none + gathered_kv, act_core + gathered_kv
    # LoRA: each adapter saves its r-wide intermediate A·x for B's gradient (its input x
    # is the frozen matrix's, already saved: frozen layers still pass input gradients).
    act_none = act_none + s.ab * s.tokens * x.lora_rank * x.lora_matrices
    # Eager PyTorch saves FP32 norm inputs, the silu output and head-expanded K and V.
    # (A `where` on these per-problem flags, not a product: the compiled search then drops
    # the term from problems without it.)
    act_none = act_none + where(x.eager > 0, memory.eager_saved_extra_bytes(
        s.tokens, x.hidden, s.q_dim, s.kv_dim, s.ffn_active, x.gated, x.layernorm,
        1.0 - x.frozen, x.tp, s.sp_share, s.ab,
    ), 0.0)  # fmt: skip
    act_none = act_none + qlora_kept_input_bytes(x, s)
    op_saved = x.op_sac * memory.op_policy_saved_bytes(
        s.tokens, x.hidden, s.q_dim, s.kv_dim, s.ffn_active, x.gated, x.tp, s.sp_share, s.ab,
        where(x.flash > 0, act_core, 0.0),
    )  # fmt: skip
    act_layer = memory.stored_layer_activation_bytes(
        act_none, act_core, s.tokens, x.hidden, s.sp_share, x.recompute, s.ab, op_saved
    )
    return LayerActivations(act_none, act_core, act_layer)


def offload_time(
    x: Inputs, c: Constants, s: Shapes, act: LayerActivations, layer_fwd: Any, layer_bwd: Any
) -> tuple[Any, Any]:
    """(forward, backward) exposed seconds per layer of activation offloading.

    The offloaded bytes go to the host during the layer's forward and come back during its
    backward on the copy engines, hidden under that compute up to its length (Rhu et al.
    2016, vDNN, Sec. 3; Megatron-LM fine-grained activation offloading), unless every
    layer also talks to other nodes over the same PCIe link (:func:`per_layer_inter_node`);
    the copies also read and write HBM once each way, which slows the memory-bound kernels
    beside them.
    """
    moved = x.offload * act.stored
    t_copy = moved / (x.host_bytes_s * c.host_copy_efficiency)
    hbm = moved / s.mem_bw
    window = where(per_layer_inter_node(x, s) > 0, 0.0, 1.0)
    dp_fwd, dp_bwd = data_parallel_link_share(x, s)
    fwd = maximum(t_copy - layer_fwd * window * (1.0 - dp_fwd), 0.0) + hbm
    bwd = maximum(t_copy - layer_bwd * window * (1.0 - dp_bwd), 0.0) + hbm
    return fwd, bwd


def data_parallel_link_share(x: Inputs, s: Shapes) -> tuple[Any, Any]:
    """(forward, backward) share of micro-batches whose layers overlap a data-parallel
    collective that crosses nodes, and so share the GPU's PCIe link (and its NIC) with the
    offload copies (:func:`per_layer_inter_node`): ZeRO-2 reduce-scatters every
    micro-batch's gradients during its backward; DDP and ZeRO-1 reduce during the last
    micro-batch's backward only, and ZeRO-1/2 gather the updated weights under the first
    forward (Rajbhandari et al. 2020, Sec. 5; Li et al. 2020, PyTorch DDP, Sec. 3.2).
    FSDP's per-layer traffic is :func:`per_layer_inter_node`'s. Those layers hide no copy.
    """
    spans = where(
        comm.members_per_node(s.dp_size, x.tp, x.gpus_per_node) < s.dp_size, 1.0, 0.0
    ) * where(x.overlap_grad_reduce > 0, 1.0, 0.0)
    once = 1.0 / maximum(s.micro_batches, 1.0)
    bwd = where(x.sharding > SHARDS_WEIGHTS, 0.0, where(x.sharding > SHARDS_GRADIENTS, 1.0, once))
    fwd = where((x.sharding > SHARDS_OPTIMIZER) & (x.sharding < SHARDS_WEIGHTS), once, 0.0)
    return spans * fwd, spans * bwd


def per_layer_inter_node(x: Inputs, s: Shapes) -> Any:
    """Above 0 when every layer moves data between nodes: TP, CP or EP groups, or the
    ZeRO-3/FSDP shard group, spanning nodes. The NIC sits on the GPU's PCIe link (DGX
    H100: each GPU and its ConnectX-7 behind one PCIe switch, GPUDirect RDMA), so those
    transfers and the offload copies share it; we then hide no copy under compute."""

    def spans(size: Any, stride: Any) -> Any:
        return where(comm.members_per_node(size, stride, x.gpus_per_node) < size, 1.0, 0.0)

    fsdp = where(x.sharding > SHARDS_WEIGHTS, spans(s.shard_group, x.tp), 0.0)
    return fsdp + spans(x.tp, 1.0) + spans(x.cp, x.tp) + spans(x.ep, x.tp * x.cp)


class StageActivations(NamedTuple):
    """Bytes of activations held at the peak of the first, second and last stage."""

    first: Any
    second: Any
    last: Any
    workspace: Any
    """Transient buffers of the backward: the recomputed layer, FSDP's gathered layer, the
    offloaded layer in flight to or from the host, torch's ring attention's gathered K/V
    and FP32 gradient buffers."""
    host: Any
    """Offloaded activations held in host memory at the fullest stage's peak, per GPU."""
    logits: Any
    """The loss's bytes within ``last`` (and ``first`` without pipeline parallelism)."""


def stage_activations(
    x: Inputs, s: Shapes, act: LayerActivations, per_layer_params: Any
) -> StageActivations:
    """Saved activations of the layers of the chunks in flight on a stage (Narayanan et
    al. 2021, Sec. 2.2; :func:`planner.formulas.memory.chunks_in_flight`), plus the logits.

    With uneven stages the first stage's chunk 0 and the last stage's last chunk hold one
    layer fewer: 2p - 1 instances of chunk 0 are in flight on the first stage of an
    interleaved schedule (its warm-up runs p of each chunk, then p - 1 more of chunk 0),
    one of the last chunk on the last stage.
    """
    layers_per_chunk = s.layers_stage / x.interleave
    m = s.micro_batches
    group = where(x.mb_group > 0, x.mb_group, x.pp)
    first_chunks = memory.chunks_in_flight(0.0, x.pp, x.interleave, m, group, x.gpipe)
    second_chunks = memory.chunks_in_flight(1.0, x.pp, x.interleave, m, group, x.gpipe)
    last_chunks = memory.chunks_in_flight(x.pp - 1, x.pp, x.interleave, m, group, x.gpipe)
    chunk0_first = minimum(where(x.interleave > 1, 2 * x.pp - 1, first_chunks), m)
    on_gpu = act.stored * (1.0 - x.offload)
    logits = x.logits_bytes * s.tokens * x.vocab / x.tp
    first_layers = first_chunks * layers_per_chunk - x.uneven * UNEVEN_LAYERS * chunk0_first
    last_layers = last_chunks * layers_per_chunk - x.uneven * UNEVEN_LAYERS
    act_first = first_layers * on_gpu + where(x.pp == 1, logits, 0.0)
    act_last = last_layers * on_gpu + logits
    act_second = second_chunks * layers_per_chunk * on_gpu
    # Kept stage outputs: one hidden state (SP-sharded, as sent) per chunk in flight on
    # every stage but the last, whose last chunk sends nothing.
    sent = x.keep_outputs * where(x.pp > 1, s.act_full * s.sp_share, 0.0)
    act_first = act_first + sent * first_chunks
    act_second = act_second + sent * second_chunks
    act_last = act_last + sent * (last_chunks - 1)
    workspace = where(
        x.recompute >= flops.RECOMPUTE_FULL,
        act.no_recompute,
        where(x.recompute >= flops.RECOMPUTE_SELECTIVE, act.core, 0.0),
    ) + where(
        (x.sharding > SHARDS_WEIGHTS) & (s.shard_group > 1),
        (2 * x.weight_bytes + x.grad_bytes) * per_layer_params,
        0.0,
    )
    q_local = s.q_local
    torch_ring = (x.torch_ring > 0) & (x.cp_allgather <= 0)
    workspace = workspace + where(
        torch_ring, memory.torch_ring_workspace_bytes(q_local, 2 * q_local, x.cp), 0.0
    )
    # Double-buffered: one layer's offloaded share leaving while the next is produced.
    workspace = workspace + OFFLOAD_BUFFERS * x.offload * act.stored
    # Every saved layer in flight leaves its offloaded share on the host until backward.
    in_flight = maximum(first_layers, maximum(last_layers, second_chunks * layers_per_chunk))
    host = x.offload * act.stored * in_flight
    return StageActivations(act_first, act_second, act_last, workspace, host, logits)


def node_host_gib(x: Inputs, act: StageActivations) -> Any:
    """Host memory one node's offloaded activations take, GiB: every GPU of the node
    (those of the job, when it is smaller than a node) holds its share in pinned host
    buffers until backward (torch's save_on_cpu; Megatron-LM's activation offloading)."""
    return act.host * minimum(x.gpus_per_node, x.gpus) / GIB


class PeakMemory(NamedTuple):
    """Memory of the fullest of the first, second and last stage, in bytes."""

    scale: Any
    """Its model states relative to the largest stage's (:class:`StageParams`)."""
    activations: Any
    other: Any
    total: Any
    grads: Any
    """Gradients held at the peak (none when they are made in the backward and the peak is
    at its start)."""


def grads_made_in_backward(x: Inputs, s: Shapes) -> Any:
    """Above 0 when the gradients exist only from the backward on (TrainingSpec.grad_lifetime
    'backward'): one micro-batch per step (accumulation keeps them from the first
    micro-batch's backward), on one GPU or with FSDP's sharded gradients (DDP's buckets
    and ZeRO-1/2's reduce buffers are allocated for the whole run)."""
    alone = maximum(where(s.dp_size <= 1, 1.0, 0.0), where(x.sharding > SHARDS_WEIGHTS, 1.0, 0.0))
    return where(x.grads_freed > 0, where(s.micro_batches <= 1, 1.0, 0.0) * alone, 0.0)


def peak_memory(
    x: Inputs, c: Constants, s: Shapes, p: StageParams, act: StageActivations, states_b: Any,
    grads_b: Any = 0.0,
) -> PeakMemory:  # fmt: skip
    """Model states + activations + runtime, communicator buffers and allocator slack on
    the first, the second and the last stage; the largest is the job's peak (Megatron-LM's
    theoretical_memory_usage.py reports the first stage; the last holds the logits; with
    uneven stages the second, full of layers, can exceed both).

    Gradients made during the backward (:func:`grads_made_in_backward`; ``grads_b`` of
    ``states_b``) are none at its start, when the saved activations and the loss's
    buffers peak, and all at its end, when those are freed: each layer's backward frees
    its activations and makes its gradients, so their sum runs linearly between the two
    ends and the peak is the larger end (torchtune README 1814feb17a "Optimization
    flags": 24.9 GiB
    for Llama 3.2 3B with activation checkpointing, below its BF16 weights, gradients and
    AdamW states' 23.9 GiB plus the 2.0 GiB of BF16 logits its chunked loss keeps)."""
    # One communicator (and its NCCL buffers) per parallel group of more than one rank.
    groups = (
        where(x.tp > 1, 1.0, 0.0) + where(x.cp > 1, 1.0, 0.0)
        + where(s.dp_size > 1, 1.0, 0.0) + where(x.pp > 1, 1.0, 0.0)
        + where(x.ep > 1, 1.0, 0.0)
    )  # fmt: skip
    fixed_other = (x.runtime_reserved_gib + x.comm_buffer_gib_per_group * groups) * GIB
    frag = c.allocator_fragmentation
    workspace = act.workspace + dequant_buffer_bytes(x, p)

    made_in_backward = grads_made_in_backward(x, s)

    def stage(params: Any, activations: Any, logits: Any) -> PeakMemory:
        scale = params / p.dense
        grads = grads_b * scale
        # The backward frees the loss's buffers before it recomputes, gathers or brings
        # back its first layer: the workspace counts beyond the logits only.
        start_ws = maximum(workspace - logits, 0.0)
        later = where(grads + workspace > activations + start_ws, 1.0, 0.0)
        at_end = where(made_in_backward > 0, later, 0.0)
        held_grads = where(made_in_backward > 0, at_end * grads, grads)
        held_act = (1.0 - at_end) * activations
        held_ws = where(at_end > 0, workspace, start_ws)
        other = fixed_other + held_ws + frag * (held_act + held_ws)
        states = where(
            made_in_backward > 0, (states_b - grads_b) * scale + held_grads, states_b * scale
        )
        total = states + held_act + other
        return PeakMemory(scale, held_act, other, total, held_grads)

    first = stage(p.first, act.first, where(x.pp == 1, act.logits, 0.0))
    last = stage(p.last, act.last, act.logits)
    second = stage(p.interior, act.second, 0.0)
    first_worse = first.total >= last.total
    ends = PeakMemory(*(where(first_worse, a, b) for a, b in zip(first, last, strict=True)))
    # The second stage is a third one only with more than two stages.
    second_worse = (x.pp > 2) & (second.total > ends.total)
    return PeakMemory(*(where(second_worse, a, b) for a, b in zip(second, ends, strict=True)))
