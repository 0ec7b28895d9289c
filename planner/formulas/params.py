"""Parameter counts of a decoder-only transformer, dense or MoE (scalar or array inputs).

Per layer: attention Q, K, V and output projections (GQA: K and V have kv_heads·head_dim
columns), an MLP of two matrices (GELU) or three (SwiGLU: gate, up, down; Shazeer 2020),
two norms; an MoE layer replaces the MLP by num_experts expert MLPs, a router (h x E)
and optionally a shared expert. Plus the input embedding, a learned position table, the
final norm, and the output layer unless tied. For the Megatron GPT configurations this
reproduces Narayanan et al. 2021, eq. 2: P = 12lh²(1 + 13/12h + (V + s)/12lh).
"""

from __future__ import annotations

from planner.formulas.ops import Num, where


def attention_weights(hidden: Num, heads: Num, kv_heads: Num, head_dim: Num) -> Num:
    """Q, K, V and output projection weights of one layer: h(q + 2kv) + q·h."""
    q = heads * head_dim
    kv = kv_heads * head_dim
    return hidden * (q + 2 * kv) + q * hidden


def attention_biases(hidden: Num, heads: Num, kv_heads: Num, head_dim: Num, bias: Num) -> Num:
    """Biases of the four attention projections (0 without biases)."""
    return bias * (heads * head_dim + 2 * kv_heads * head_dim + hidden)


def mlp_weights(hidden: Num, ffn: Num, gated: Num) -> Num:
    """One MLP: (1 + gated) input matrices h x f and one output matrix f x h."""
    return (2 + gated) * hidden * ffn


def mlp_biases(hidden: Num, ffn: Num, gated: Num, bias: Num) -> Num:
    """Biases of one MLP (0 without biases, and for an absent MLP of width 0)."""
    return bias * where(ffn > 0, (1 + gated) * ffn + hidden, 0.0)


def norm_params(hidden: Num, layernorm: Num) -> Num:
    """One norm: weight (RMSNorm) or weight and bias (LayerNorm)."""
    return hidden * (1 + layernorm)


def layer_dense_params(
    hidden: Num,
    heads: Num,
    kv_heads: Num,
    head_dim: Num,
    ffn: Num,
    gated: Num,
    experts: Num,
    shared_ffn: Num,
    bias: Num,
) -> Num:
    """Weights of one layer that tensor parallelism splits, excluding routed experts."""
    moe = experts > 1
    mlp = where(
        moe,
        mlp_weights(hidden, shared_ffn, gated) + mlp_biases(hidden, shared_ffn, gated, bias),
        mlp_weights(hidden, ffn, gated) + mlp_biases(hidden, ffn, gated, bias),
    )
    attn = attention_weights(hidden, heads, kv_heads, head_dim)
    return attn + attention_biases(hidden, heads, kv_heads, head_dim, bias) + mlp


def layer_replicated_params(hidden: Num, experts: Num, layernorm: Num) -> Num:
    """Weights every tensor-parallel rank holds in full: the two norms and the router."""
    return 2 * norm_params(hidden, layernorm) + where(experts > 1, hidden * experts, 0.0)


def layer_expert_params(
    hidden: Num, experts: Num, moe_ffn: Num, gated: Num, bias: Num, routed: Num
) -> Num:
    """Weights of ``routed`` expert MLPs of one layer (0 for a dense model)."""
    one = mlp_weights(hidden, moe_ffn, gated) + mlp_biases(hidden, moe_ffn, gated, bias)
    return where(experts > 1, routed * one, 0.0)


def layer_matmul_params_active(
    hidden: Num,
    heads: Num,
    kv_heads: Num,
    head_dim: Num,
    ffn: Num,
    gated: Num,
    experts: Num,
    top_k: Num,
    moe_ffn: Num,
    shared_ffn: Num,
) -> Num:
    """Matrix weights one token multiplies through in one layer (2 FLOPs each, forward)."""
    mlp = where(
        experts > 1,
        top_k * mlp_weights(hidden, moe_ffn, gated)
        + mlp_weights(hidden, shared_ffn, gated)
        + hidden * experts,
        mlp_weights(hidden, ffn, gated),
    )
    return attention_weights(hidden, heads, kv_heads, head_dim) + mlp


def op_recompute_matmul_params(hidden: Num, kv_dim: Num, q_dim: Num, ffn: Num) -> Num:
    """Matmul parameters per layer torchtitan's op-level selective checkpointing repeats
    in backward: K, the output projection and one h x ffn MLP matrix, the even matmuls of a
    block (planner.terms.compute.op_recompute_gemm_fwd has the source)."""
    return hidden * kv_dim + q_dim * hidden + hidden * ffn


def moe_layer_share(layers: Num, dense_layers: Num, experts: Num) -> Num:
    """Share of the layers that are MoE layers: 0 for a dense model, 1 - d/L with ``d``
    dense leading layers (DeepSeek-V3 report, Sec. 4.2: the first three)."""
    return where(experts > 1, 1.0 - dense_layers / layers, 0.0)


def mixed(moe_value: Num, dense_value: Num, moe_share: Num) -> Num:
    """A per-layer quantity averaged over MoE and dense layers."""
    return moe_share * moe_value + (1.0 - moe_share) * dense_value


def embedding_params(vocab: Num, hidden: Num, learned_pos_rows: Num) -> Num:
    """Input token embedding plus the learned position table (0 rows for RoPE)."""
    return vocab * hidden + learned_pos_rows * hidden


def _total(
    routed: Num,
    layers: Num,
    hidden: Num,
    heads: Num,
    kv_heads: Num,
    head_dim: Num,
    ffn: Num,
    gated: Num,
    vocab: Num,
    tied: Num,
    experts: Num,
    top_k: Num,
    moe_ffn: Num,
    shared_ffn: Num,
    layernorm: Num,
    bias: Num,
    learned_pos_rows: Num,
    dense_layers: Num = 0.0,
) -> Num:
    """Parameters with ``routed`` experts of each MoE layer counted (all, or the top_k
    one token uses); ``dense_layers`` leading layers of an MoE model have a dense MLP."""
    per_layer = (
        layer_dense_params(hidden, heads, kv_heads, head_dim, ffn, gated, experts, shared_ffn, bias)
        + layer_replicated_params(hidden, experts, layernorm)
        + layer_expert_params(hidden, experts, moe_ffn, gated, bias, routed)
    )
    dense_layer = layer_dense_params(
        hidden, heads, kv_heads, head_dim, ffn, gated, 1.0, 0.0, bias
    ) + layer_replicated_params(hidden, 1.0, layernorm)
    return (
        (layers - dense_layers) * per_layer
        + dense_layers * dense_layer
        + embedding_params(vocab, hidden, learned_pos_rows)
        + (1 - tied) * vocab * hidden
        + norm_params(hidden, layernorm)
    )


# Positions of ``experts`` and ``top_k`` among :func:`_total`'s arguments.
_EXPERTS, _TOP_K = 9, 10


def total_params(*shape: Num) -> Num:
    """All parameters (every expert), embeddings and output layer included; ``shape`` is
    :func:`_total`'s arguments after ``routed``."""
    return _total(shape[_EXPERTS], *shape)


def active_params(*shape: Num) -> Num:
    """Parameters one token uses (top_k routed experts), embeddings included; ``shape`` as
    in :func:`total_params`."""
    return _total(shape[_TOP_K], *shape)
