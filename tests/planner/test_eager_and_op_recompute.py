"""Eager PyTorch element-wise kernels (TrainingSpec.kernels) and torchtitan's op-level
selective checkpointing (TrainingSpec.selective_recompute): the byte counts of their op
decompositions, and how they move an estimate."""

from __future__ import annotations

import pytest

import planner
from planner.formulas import kernels, memory
from tests.planner.planner_fixtures import cluster, layout, training


def test_eager_extra_bytes_follow_the_op_decomposition() -> None:
    t, h, q, kv, ffn = 1000.0, 4096.0, 4096.0, 1024.0, 14336.0
    args = dict(tokens=t, hidden=h, q_dim=q, kv_dim=kv, ffn_active=ffn, tp=1.0, sp_share=1.0)
    llama = kernels.eager_extra_bytes_fwd(**args, gated=1.0, rope=1.0, layernorm=0.0, act_bytes=2.0)
    # Per token, BF16: two RMSNorms of 36 bytes per element against the fused 4, rotary
    # 20 against 4 on Q and K, the SwiGLU product re-reading silu's output (2 x 2 bytes),
    # and repeat_kv reading kv and writing q wide for K and V.
    per_token = 2 * 32 * h + 16 * (q + kv) + 4 * ffn + 4 * (q + kv)
    assert llama == pytest.approx(t * per_token)
    # GPT: LayerNorm is one native kernel, GELU one kernel, no rotary, no GQA: nothing.
    gpt = kernels.eager_extra_bytes_fwd(
        **{**args, "kv_dim": q}, gated=0.0, rope=0.0, layernorm=1.0, act_bytes=2.0
    )
    assert gpt == 0.0
    # FP32 activations need no casts: RMSNorm's extra is pow, mean and the FP32 multiply.
    fp32 = kernels.eager_extra_bytes_fwd(
        **{**args, "kv_dim": q}, gated=0.0, rope=0.0, layernorm=0.0, act_bytes=4.0
    )
    assert fp32 == pytest.approx(t * 2 * (8 + 4 + 8 + 8 - 8) * h)
    assert kernels.eager_loss_extra_bytes(2.0) == 24.0
    assert kernels.eager_loss_extra_bytes(4.0) == 12.0


def _step(model: str, **train: object) -> planner.StepEstimate:
    est = planner.estimate(
        planner.get_model(model),
        cluster(8),
        training(seq=8192, batch=16, **train),
        layout(8, sharding="zero3", micro_batch=2, recompute="selective"),
    )
    return est.step


def test_eager_kernels_slow_only_the_memory_bound_terms() -> None:
    fused, eager = _step("llama3-8b"), _step("llama3-8b", kernels="eager")
    assert eager.time_s > fused.time_s
    assert eager.breakdown["gemm_s"] == fused.breakdown["gemm_s"]
    assert eager.breakdown["attention_s"] == fused.breakdown["attention_s"]
    assert eager.breakdown["memory_bound_s"] > 2 * fused.breakdown["memory_bound_s"]


def test_op_policy_recomputes_between_attention_core_and_full() -> None:
    model, lay = planner.get_model("llama3-8b"), layout(8, sharding="zero3", micro_batch=2)

    def est(recompute: str, policy: str = "attention") -> planner.Estimate:
        tr = training(seq=8192, batch=16, selective_recompute=policy)
        return planner.estimate(
            model, cluster(8), tr, lay.model_copy(update={"recompute": recompute})
        )

    attention, op, full = est("selective"), est("selective", "op"), est("full")
    none = est("none")
    recompute = [e.step.breakdown["recompute_s"] for e in (attention, op, full)]
    assert recompute == sorted(recompute) and len(set(recompute)) == 3
    acts = [e.memory_gib.activations for e in (full, op, attention, none)]
    assert acts == sorted(acts) and len(set(acts)) == 4
    # The policy names what 'selective' means; with recompute none or full it changes nothing.
    assert est("none", "op").step.time_s == none.step.time_s
    assert est("full", "op").step.time_s == full.step.time_s
    # Hardware FLOPs count the repeated matmuls, not a repeated attention core.
    assert op.step.hardware_tflops_per_gpu != attention.step.hardware_tflops_per_gpu


def test_op_policy_saves_the_odd_matmuls_and_the_attention_output() -> None:
    t, h, q, kv, ffn = 10.0, 4096.0, 4096.0, 1024.0, 14336.0
    saved = memory.op_policy_saved_bytes(t, h, q, kv, ffn, 1.0, 1.0, 1.0, 2.0, 0.0)
    # block input, Q, V, attention output, the gate (w1) and the down projection (w2)
    assert saved == pytest.approx(2.0 * t * (h + q + kv + q + ffn + h))
