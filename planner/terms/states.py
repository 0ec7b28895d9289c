"""Parameters per pipeline stage, their memory (weights, gradients, optimizer states)
and the time of updating them (gradient accumulation, optimizer step)."""

from __future__ import annotations

from typing import Any, NamedTuple

from planner.formulas import kernels, memory, params
from planner.formulas.ops import maximum, where
from planner.inputs import Constants, Inputs
from planner.terms.shapes import SHARDS_GRADIENTS, UNEVEN_LAYERS, Shapes
from planner.units import GIB


class StageParams(NamedTuple):
    """Parameters held by one GPU of a stage, before data-parallel sharding."""

    layer_dense: Any
    """Dense (non-expert) parameters of one layer, TP share plus replicated norms."""
    layer_expert: Any
    """Expert parameters of one layer on one GPU (split by TP x EP)."""
    first: Any
    """Dense parameters of the first stage (embedding; the head too without pp)."""
    last: Any
    """Dense parameters of the last stage (output layer and final norm)."""
    interior: Any
    """Dense parameters of a stage in between (no embedding or output layer)."""
    dense: Any
    """The largest of first, last and interior."""
    expert: Any
    """Expert parameters of a stage."""


def stage_params(x: Inputs, s: Shapes) -> StageParams:
    """Parameters of the first and last stage on one GPU (Narayanan et al. 2021, eq. 2
    per layer; the embedding on the first stage and the output layer on the last, both
    split by TP, Shoeybi et al. 2019, Sec. 3); with uneven stages the first and the last
    hold one layer fewer (Llama 3 paper, Sec. 3.3.2)."""
    moe_layer = params.layer_dense_params(
        x.hidden, x.heads, x.kv_heads, x.head_dim, x.ffn, x.gated, x.experts, x.shared_ffn,
        x.bias,
    ) / x.tp + params.layer_replicated_params(x.hidden, x.experts, x.layernorm)  # fmt: skip
    dense_layer = params.layer_dense_params(
        x.hidden, x.heads, x.kv_heads, x.head_dim, x.ffn, x.gated, 1.0, 0.0, x.bias,
    ) / x.tp + params.layer_replicated_params(x.hidden, 1.0, x.layernorm)  # fmt: skip
    layer_dense = params.mixed(moe_layer, dense_layer, s.moe_share)
    layer_expert = (
        s.moe_share
        * params.layer_expert_params(x.hidden, x.experts, x.moe_ffn, x.gated, x.bias, x.experts)
        / (s.expert_tp * x.ep)
    )
    layers_stage = s.layers_stage
    embed = x.vocab * x.hidden / x.tp + x.learned_pos_rows * x.hidden
    head_params = where((x.tied > 0) & (x.pp == 1), 0.0, x.vocab * x.hidden / x.tp) + (
        params.norm_params(x.hidden, x.layernorm)
    )
    end_layers = layers_stage - x.uneven * UNEVEN_LAYERS
    dense_first = end_layers * layer_dense + embed + where(x.pp == 1, head_params, 0.0)
    dense_last = end_layers * layer_dense + head_params + where(x.pp == 1, embed, 0.0)
    interior = where(x.pp > 2, layers_stage * layer_dense, 0.0)  # stages between the ends
    dense_stage = maximum(maximum(dense_first, dense_last), interior)
    expert_stage = layers_stage * layer_expert
    return StageParams(
        layer_dense, layer_expert, dense_first, dense_last, interior, dense_stage, expert_stage
    )


def grad_accumulation_time(x: Inputs, s: Shapes, p: StageParams) -> Any:
    """Seconds per layer and micro-batch of accumulating weight gradients.

    The weight-gradient GEMM accumulates into the gradient buffer every micro-batch
    (C += A·B in the buffer's dtype: Megatron's gradient_accumulation_fusion, autograd's
    .grad accumulation): read and write of the local gradient per parameter.
    """
    grads_sharded = where(x.sharding > SHARDS_GRADIENTS, 1.0 / s.shard_group, 1.0)
    return kernels.memory_bound_time(
        2 * x.grad_bytes * trainable_layer_params(x, p) * grads_sharded, s.mem_bw
    )


def adapter_layer_params(x: Inputs) -> Any:
    """LoRA adapter parameters of one layer on one GPU: r·Σ(d_in + d_out) over the targeted
    matrices (Hu et al. 2021, Sec. 4), split by TP with the matrix they adapt (0 without
    adapters)."""
    return x.lora_rank * x.lora_width / x.tp


def trainable_layer_params(x: Inputs, p: StageParams) -> Any:
    """Parameters of one layer that take gradients: all of them, or with frozen base
    weights (LoRA/QLoRA) the adapters only."""
    return where(x.frozen > 0, adapter_layer_params(x), p.layer_dense + p.layer_expert)


def model_states(x: Inputs, c: Constants, s: Shapes, p: StageParams) -> tuple[Any, Any, Any, Any]:
    """(weights, gradients, optimizer states) in bytes on one GPU of the larger stage,
    and the optimizer step's seconds (Rajbhandari et al. 2020, ZeRO, Sec. 3.1 and 5;
    the step reads and writes ``optimizer_step_bytes`` per local parameter)."""
    # The expert-data-parallel group: the stage's tp·cp·dp ranks over ep x expert_tp.
    expert_shard = maximum(s.shard_group * x.tp / (x.ep * s.expert_tp), 1.0)
    frozen = x.frozen > 0
    weights_b, grads_b, optimizer_b = memory.model_state_bytes(
        where(frozen, s.layers_stage * adapter_layer_params(x), p.dense),
        where(frozen, 0.0, p.expert), x.sharding, s.shard_group, expert_shard,
        x.weight_bytes, x.fp8 * (1.0 - x.fp8_params) * c.fp8_weight_cache_bytes, x.grad_bytes,
        x.optimizer_state_bytes,
    )  # fmt: skip
    # FP8 parameters (TrainingSpec.fp8_param_gather): the FP8 weight and its transpose take
    # the BF16 weight's two bytes, and there is no separate FP8 cache.
    weights_b = weights_b + where(frozen, frozen_weight_bytes(x, c, s, p, expert_shard), 0.0)
    local_opt_params = optimizer_b / x.optimizer_state_bytes
    t_optimizer = (
        kernels.memory_bound_time(x.optimizer_step_bytes * local_opt_params, s.mem_bw)
        + x.step_overhead_s  # per-step overhead fitted by `plan calibrate` (planner.profile)
    )
    return weights_b, grads_b, optimizer_b, t_optimizer


def frozen_weight_bytes(
    x: Inputs, c: Constants, s: Shapes, p: StageParams, expert_shard: Any
) -> Any:
    """Bytes of the frozen base weights on one GPU (LoRA/QLoRA), sharded as weights are:
    the blocks' weights in ``base_weight_bytes`` (QLoRA's NF4 with its block constants,
    Dettmers et al. 2023, Sec. 3), the embedding, output layer and the rest of the stage
    in the training precision; no gradients or optimizer states. (QLoRA's dequantisation
    buffer is a workspace, not a state: :func:`dequant_buffer_bytes`.)"""
    blocks = s.layers_stage * p.layer_dense
    block_b, _, _ = memory.model_state_bytes(
        blocks, p.expert, x.sharding, s.shard_group, expert_shard, x.base_weight_bytes,
        0.0, 0.0, 0.0,
    )  # fmt: skip
    rest_b, _, _ = memory.model_state_bytes(
        maximum(p.dense - blocks, 0.0), 0.0, x.sharding, s.shard_group, expert_shard,
        x.weight_bytes, x.fp8 * c.fp8_weight_cache_bytes, 0.0, 0.0,
    )  # fmt: skip
    return block_b + rest_b


def dequant_buffer_bytes(x: Inputs, p: StageParams) -> Any:
    """QLoRA: the buffer one layer's frozen weights are dequantised into (the compute
    dtype, this GPU's TP share) before its GEMMs and freed after them (Dettmers et al.
    2023, Sec. 3: "we dequantize the storage data type to the computation data type");
    0 for other runs. Transient, so part of the peak's workspace, not of the weights."""
    return x.dequant * x.act_bytes * (p.layer_dense + p.layer_expert)


def qlora_kept_input_bytes(x: Inputs, s: Shapes) -> Any:
    """Bytes per layer held at the peak by bitsandbytes' 4-bit matmuls before 0.43.2 beyond
    the frozen BF16 path, for ``quant_inputs`` micro-batches
    (TrainingSpec.qlora_input_copies; 0 otherwise).

    ``MatMul4Bit.forward`` keeps ``ctx.tensors = (A, B)`` whenever its input needs a
    gradient, though its backward only uses B (bitsandbytes 0.42.0
    bitsandbytes/autograd/_functions.py; dropped by bitsandbytes#1270 in 0.43.2), while a
    frozen ``F.linear`` keeps no input (autograd saves ``x`` for the weight's gradient only).
    A block's quantised matmuls take four distinct inputs: the attention input (one tensor
    for Q, K and V), the attention output before the output projection, the MLP input (one
    for the gate and up matrices) and the down projection's input, in the compute dtype
    (litgpt's and Hugging Face's Llama blocks; the LoRA branch's own input is the dropout's
    output, another tensor). The output layer's input, one hidden state, is left out."""
    per_token = 2 * x.hidden + (s.q_dim + s.ffn_active) / x.tp
    return where(x.quant_inputs > 0, x.quant_inputs * s.ab * s.tokens * per_token, 0.0)


def init_peak_bytes(x: Inputs, weights_b: Any) -> Any:
    """Bytes on one GPU at the peak of model init: the CUDA context, the model's weights
    and the transient of quantising the largest block matrix in one pass
    (TrainingSpec.nf4_init_unchunked; this GPU's TP share); 0 extra otherwise, so the
    training peak is the larger. NCCL buffers are not counted: PyTorch creates its
    communicators at their first collective, after init."""
    return x.runtime_reserved_gib * GIB + weights_b + x.nf4_init_bytes / x.tp
