"""Properties that must hold for any model and layout (hypothesis)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import planner
from planner import ClusterSpec, Layout, ModelSpec, TrainingSpec

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
GPUS = ["A100-SXM-80GB", "H100-SXM-80GB", "B200", "MI300X", "L40S"]


@st.composite
def models(draw: Any) -> ModelSpec:
    heads = draw(st.sampled_from([8, 16, 32, 64]))
    head_dim = draw(st.sampled_from([64, 128]))
    kv = draw(st.sampled_from([h for h in (1, 2, 4, 8, heads) if heads % h == 0]))
    experts = draw(st.sampled_from([1, 1, 8]))
    return ModelSpec(
        name="hypothesis",
        num_layers=draw(st.sampled_from([8, 16, 32, 48, 64])),
        hidden_size=heads * head_dim,
        num_attention_heads=heads,
        num_kv_heads=kv,
        ffn_hidden_size=draw(st.sampled_from([2, 3, 4])) * heads * head_dim,
        activation=draw(st.sampled_from(["swiglu", "gelu"])),
        vocab_size=draw(st.sampled_from([32000, 128256])),
        num_experts=experts,
        top_k=2 if experts > 1 else 1,
    )


def _estimate(
    model: ModelSpec, gpu: str, seq: int, per_replica: int, overlap: bool = True, **layout: Any
) -> Any:
    lo = Layout(**layout)
    cluster = ClusterSpec(gpu=gpu, num_gpus=lo.num_gpus)
    training = TrainingSpec(
        seq_len=seq,
        global_batch_seqs=lo.dp * per_replica,
        total_tokens=1e11,
        overlap_grad_reduce=overlap,
    )
    problems = planner.layout_problems(model, cluster, training, lo, cluster.accelerator())
    assume(not problems)
    return planner.estimate(model, cluster, training, lo)


common = dict(
    model=models(),
    gpu=st.sampled_from(GPUS),
    seq=st.sampled_from([1024, 4096, 8192]),
    micro_batch=st.sampled_from([1, 2]),
    recompute=st.sampled_from(["none", "selective", "full"]),
)


@SETTINGS
@given(
    **common,
    tp=st.sampled_from([2, 4]),
    sharding=st.sampled_from(["none", "zero1", "zero3"]),
    sp=st.booleans(),
)
def test_memory_falls_as_tp_grows(
    model: ModelSpec,
    gpu: str,
    seq: int,
    micro_batch: int,
    recompute: str,
    tp: int,
    sharding: str,
    sp: bool,
) -> None:
    kw = dict(
        dp=4, micro_batch=micro_batch, recompute=recompute, sharding=sharding, sequence_parallel=sp
    )
    small = _estimate(model, gpu, seq, 8, tp=tp, **kw)
    big = _estimate(model, gpu, seq, 8, tp=2 * tp, **kw)
    assert big.memory_gib.total <= small.memory_gib.total * (1 + 1e-9)


@SETTINGS
@given(**common, pp=st.sampled_from([2, 4]))
def test_memory_falls_as_pp_grows(
    model: ModelSpec, gpu: str, seq: int, micro_batch: int, recompute: str, pp: int
) -> None:
    kw = dict(dp=2, tp=1, micro_batch=micro_batch, recompute=recompute)
    small = _estimate(model, gpu, seq, 32, pp=pp, **kw)
    big = _estimate(model, gpu, seq, 32, pp=2 * pp, **kw)
    assert big.memory_gib.total <= small.memory_gib.total * (1 + 1e-9)


@SETTINGS
@given(**common, dp=st.sampled_from([8, 64]))
def test_memory_falls_as_zero_stage_grows(
    model: ModelSpec, gpu: str, seq: int, micro_batch: int, recompute: str, dp: int
) -> None:
    totals = [
        _estimate(
            model, gpu, seq, 4, dp=dp, micro_batch=micro_batch, recompute=recompute, sharding=stage
        ).memory_gib.total
        for stage in ("none", "zero1", "zero2", "zero3")
    ]
    # (At dp = 2 ZeRO-3's gather buffers can outweigh what it saves on a small model.)
    assert all(b <= a * (1 + 1e-9) for a, b in itertools.pairwise(totals)), totals


@SETTINGS
@given(
    **common,
    tp=st.sampled_from([1, 2, 8]),
    pp=st.sampled_from([1, 2, 4]),
    cp=st.sampled_from([1, 2]),
    dp=st.sampled_from([1, 4, 32]),
    sharding=st.sampled_from(["none", "zero1", "zero2", "zero3"]),
    interleave=st.sampled_from([1, 2]),
    kernel=st.sampled_from(
        ["flash", "unfused", "fa2", "fa3", "cudnn", "cudnn8.9", "triton", "sdpa_math"]
    ),
)
def test_time_positive_and_utilisation_at_most_one(
    model: ModelSpec,
    gpu: str,
    seq: int,
    micro_batch: int,
    recompute: str,
    tp: int,
    pp: int,
    cp: int,
    dp: int,
    sharding: str,
    interleave: int,
    kernel: str,
) -> None:
    assume(pp > 1 or interleave == 1)
    lo = Layout(
        dp=dp,
        tp=tp,
        pp=pp,
        cp=cp,
        micro_batch=micro_batch,
        recompute=recompute,
        sharding=sharding,
        interleave=interleave,
        sequence_parallel=tp > 1,
    )
    cluster = ClusterSpec(gpu=gpu, num_gpus=lo.num_gpus)
    training = TrainingSpec(
        seq_len=seq,
        global_batch_seqs=dp * micro_batch * 8,
        total_tokens=1e11,
        attention_kernel=kernel,
    )
    assume(not planner.layout_problems(model, cluster, training, lo))
    est = planner.estimate(model, cluster, training, lo)
    assert est.step.time_s > 0
    assert all(v >= 0 for v in est.step.breakdown.values()), est.step.breakdown
    assert sum(est.step.breakdown.values()) == pytest.approx(est.step.time_s, rel=1e-9)
    assert 0 < est.step.mfu <= est.step.hfu <= 1
    assert 0 <= est.step.bubble_fraction < 1
    assert est.train.days > 0 and est.train.energy_mwh > 0 and est.train.co2_t >= 0
    mem = est.memory_gib
    assert mem.total == pytest.approx(
        mem.params + mem.grads + mem.optimizer + mem.activations + mem.other, rel=1e-9
    )


@SETTINGS
@given(
    model=models(),
    gpu=st.sampled_from(GPUS),
    dp=st.sampled_from([1, 2, 4, 8, 16, 64]),
    tp=st.sampled_from([1, 8]),
    overlap=st.booleans(),
)
def test_tokens_per_second_sublinear_in_dp(
    model: ModelSpec, gpu: str, dp: int, tp: int, overlap: bool
) -> None:
    """Weak scaling with plain data parallelism: each replica's work is fixed, so doubling
    dp at most doubles tokens/s, and less once communication is exposed. (ZeRO may scale
    super-linearly: it also splits the optimizer step, cf. Narayanan 2021, Sec. 5.1.)"""
    kw = dict(tp=tp, sharding="none", recompute="full", micro_batch=1)
    one = _estimate(model, gpu, 2048, 4, overlap, dp=dp, **kw)
    two = _estimate(model, gpu, 2048, 4, overlap, dp=2 * dp, **kw)
    ratio = two.step.tokens_per_s / one.step.tokens_per_s
    assert ratio <= 2 * (1 + 1e-9)
    if two.step.exposed_comm_s > one.step.exposed_comm_s * (1 + 1e-6) + 1e-9:
        assert ratio < 2
