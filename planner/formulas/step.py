"""One optimizer step: pipeline schedule, communication overlap, and the energy of a run.

Pipeline (Narayanan et al. 2021, Sec. 2.2): with m micro-batches, p stages and v model
chunks per stage, 1F1B and interleaved 1F1B take (m + (p - 1)/v) · t_mb, where t_mb is the
forward + backward time of one micro-batch on the slowest stage; the bubble is
(p - 1)/v · t_mb. Each micro-batch crosses 2v stage boundaries per stage (activations
forward, gradients backward); with tensor parallelism each rank sends only its 1/t share
(the scatter/gather optimisation, Sec. 4.1) and these sends sit on the critical path.

Overlap of data-parallel communication is computed, not assumed: a gradient reduction
issued bucket by bucket during backward hides under the backward compute that remains
after each bucket is ready, i.e. the last micro-batch's backward on the stage; what
exceeds that window, and at least the last bucket, is exposed (Li et al. 2020, PyTorch
DDP, Sec. 3.2.3). Parameter all-gathers of ZeRO-1/2 hide under the next forward; FSDP's
per-layer all-gather and reduce-scatter hide under that layer's compute when prefetched
(Zhao et al. 2023, PyTorch FSDP, Sec. 3.3), the first gather and last scatter never.
"""

from __future__ import annotations

from planner.formulas.ops import Num, maximum, minimum, where


def pipeline_time(micro_batches: Num, pp: Num, interleave: Num, t_micro_batch: Num) -> Num:
    """Compute time of one step through the pipeline, bubble included."""
    return (micro_batches + (pp - 1) / interleave) * t_micro_batch


def bubble_time(pp: Num, interleave: Num, t_micro_batch: Num) -> Num:
    """Idle time of the pipeline fill and drain: (p - 1)/v · t_mb."""
    return (pp - 1) / interleave * t_micro_batch


def group_idle_time(
    micro_batches: Num, pp: Num, interleave: Num, group: Num, t_micro_batch: Num
) -> Num:
    """Extra idle of an interleaved schedule whose chunks run N < p micro-batches before
    the next chunk: a micro-batch comes back to the stage p chunk-slots after it left, so
    at each of the v - 1 chunk changes of a round the stage waits p - N slots, forward
    and backward; m/N rounds (derived from Narayanan et al. 2021, Sec. 2.2.2, Fig. 4)."""
    rounds = micro_batches / group
    slots = (interleave - 1) / interleave * (pp - group) * t_micro_batch
    return where(group < pp, rounds * slots, 0.0)


def p2p_exposed_time(micro_batches: Num, pp: Num, interleave: Num, t_send: Num) -> Num:
    """Critical-path time of stage-to-stage sends (forward and backward) in one step."""
    return where(pp > 1, 2 * (micro_batches * interleave + pp - 1) * t_send, 0.0)


def overlapped(t_comm: Num, t_min_exposed: Num, window: Num, overlap: Num) -> Num:
    """Exposed part of a communication that can hide under ``window`` seconds of compute."""
    return where(overlap > 0, maximum(t_comm - window, t_min_exposed), t_comm)


def overlap_contention_time(t_hidden: Num, link_bw: Num, intra_bw: Num, per_comm_s: Num) -> Num:
    """Compute seconds lost to an SM-driven NCCL collective that runs ``t_hidden`` seconds
    beside compute on a link of bus bandwidth ``link_bw``.

    While an NCCL kernel runs it holds SMs (one block per channel) and streams its bytes
    through HBM, so the GEMMs and attention kernels beside it run slower; a GEMM sized
    to fill every SM in one wave can take twice as long. Lee et al. 2025,
    "Characterizing Compute-Communication Overlap in GPU-Accelerated Distributed Deep
    Learning" (arXiv 2507.03114, abstract; GPT and LLaMA on 4 A100, H100, MI250, MI210,
    inside one node) measured compute 18.9 % slower beside communication and the
    sequential schedule only 10.2 % slower than the overlapped one: ``per_comm_s``
    compute seconds lost per second of communication at the intra-node rate
    (constants.yaml ``overlap_contention_per_comm_s``). A collective on a slower link
    moves fewer bytes per second through the GPU and runs on fewer channels, so its
    cost scales with ``link_bw / intra_bw`` (the bytes it moves beside compute)."""
    return per_comm_s * t_hidden * minimum(link_bw / intra_bw, 1.0)


def merged_micro_batch_exposed(
    t_comm: Num, t_compute: Num, micro_batches: Num, pp: Num, interleave: Num, overlap: Num
) -> Num:
    """Exposed seconds of a layer's communication ``t_comm`` when each micro-batch's
    forward runs merged with another's backward, so one's communication hides under the
    other's ``t_compute`` (DeepSeek-V3 report, Sec. 3.2.1; Megatron-Core's EP A2A overlap
    merges forward and backward of adjacent micro-batches). The chunks that run alone, the
    first stage's warm-up forwards and cool-down backwards of the schedule (1F1B: p - 1;
    interleaved: 2(p - 1) + (v - 1)p chunks of the m·v, Narayanan et al. 2021, Sec. 2.2;
    without pipelining: the first forward and the last backward), overlap nothing."""
    warm_up = where(interleave > 1, 2 * (pp - 1) + (interleave - 1) * pp, maximum(pp - 1, 1.0))
    alone = minimum(warm_up / (micro_batches * interleave), 1.0)
    merged = maximum(t_comm - t_compute, 0.0)
    return where(overlap > 0, alone * t_comm + (1.0 - alone) * merged, t_comm)


def fsdp_exposed_per_micro_batch(
    layers: Num, t_gather: Num, t_scatter: Num, t_fwd: Num, t_bwd: Num, overlap: Num
) -> Num:
    """Exposed FSDP time of one micro-batch: per layer, gather under forward, gather +
    reduce-scatter under backward; the first gather and the last scatter stay exposed."""
    hidden = layers * (
        maximum(t_gather - t_fwd, 0.0) + maximum(t_gather + t_scatter - t_bwd, 0.0)
    ) + (t_gather + t_scatter)
    return where(overlap > 0, hidden, layers * (2 * t_gather + t_scatter))


def fsdp1_predivide_time(layer_params: Num, grad_bytes: Num, mem_bw: Num) -> Num:
    """Seconds of FSDP1's gradient pre-divide for one layer and micro-batch: before the
    reduce-scatter, FSDP1 divides the whole unsharded gradient (reduce dtype) by a
    predivide factor, reading and writing it once, and divides the sharded result again
    after it (PyTorch 2.1 torch/distributed/fsdp/_runtime_utils.py: ``_reduce_grad``,
    ``_div_if_needed`` with ``_get_gradient_predivide_factor(world_size)`` > 1 for any
    world size of 2 or more). FSDP2 divides once, on the reduced shard (torchtitan PR
    #165, "why is FSDP2 faster: fp32 reduce-scatter only uses one div kernel instead of
    two"). The kernel runs on FSDP1's post-backward stream beside the next layer's
    backward, sharing HBM with it; it is counted in full (an upper bound)."""
    return 2.0 * grad_bytes * layer_params / mem_bw


def fsdp_reduce_cast_time(layer_params: Num, param_bytes: Num, grad_bytes: Num, mem_bw: Num) -> Num:
    """Seconds of FSDP's cast of one layer's unsharded gradient to the reduce dtype, per
    micro-batch: autograd produces it in the parameter dtype, and when the reduce dtype
    differs (a BF16 model reducing in FP32: Composer's ``mixed_precision: DEFAULT``,
    torchtitan's ``mixed_precision_reduce: float32``) FSDP writes a reduce-dtype copy of
    the whole of it before the reduce-scatter, reading the one and writing the other.
    FSDP1 casts in its post-backward hook (PyTorch 2.1
    torch/distributed/fsdp/_runtime_utils.py ``_post_backward_hook``:
    ``flat_param.grad.data = flat_param.grad.to(handle._reduce_dtype)``); FSDP2 casts in
    the copy-in to its reduce-scatter buffer, allocated in the reduce dtype
    (torch/distributed/_composable/fsdp/_fsdp_collectives.py ``foreach_reduce``:
    ``foreach_reduce_scatter_copy_in``). Counted in full, like the pre-divide."""
    cast = where(grad_bytes != param_bytes, 1.0, 0.0)
    return cast * (param_bytes + grad_bytes) * layer_params / mem_bw


def power_capped_clock_fraction(limit_w: float, tdp_w: float, idle_w: float) -> float:
    """Sustained clock under a board power limit, relative to the clock at the TDP.

    Dynamic power is P - P_idle = a·C·V²·f, and across the DVFS range the supply voltage
    rises about linearly with the clock, so P - P_idle grows as f³ (Rabaey et al.,
    Digital Integrated Circuits, 2nd ed., Sec. 5.5 and 11.7; measured on GPUs by Mei,
    Wang and Chu 2017, A Survey and Measurement Study of GPU DVFS on Energy Conservation,
    Sec. 2.2). Dense tensor-core load holds the GPU at its limit (gpus.yaml [clock]), so
    f_limit / f_tdp = ((limit - idle) / (tdp - idle))^(1/3).
    """
    return float(((limit_w - idle_w) / (tdp_w - idle_w)) ** (1.0 / 3.0))


def gpu_power_w(
    idle_w: Num, tdp_w: Num, busy_fraction: Num, comm_fraction: Num, comm_power: Num
) -> Num:
    """Mean GPU power: idle plus (TDP - idle) times how busy the GPU is.

    Compute kernels run at the power limit; exposed communication draws ``comm_power`` of
    the dynamic range; pipeline bubbles and waits draw idle power.
    """
    activity = busy_fraction + comm_power * comm_fraction
    return idle_w + (tdp_w - idle_w) * where(activity < 1.0, activity, 1.0)
