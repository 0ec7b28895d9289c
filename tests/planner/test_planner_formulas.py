"""Formulas against the papers they cite."""

from __future__ import annotations

import pytest

import planner
from planner.formulas import comm, flops, memory
from planner.inputs import build_inputs
from tests.planner.planner_fixtures import layout, training


def _megatron(name: str) -> planner.ModelSpec:
    return planner.get_model(name)


@pytest.mark.parametrize("name", ["megatron-1.7b", "megatron-145.6b", "megatron-1t"])
def test_hardware_flops_equal_narayanan_eq3(name: str) -> None:
    """Full recompute, unfused attention: 96·B·s·l·h²(1 + s/6h + V/16lh) per step."""
    m = _megatron(name)
    s, layers, h, v = 2048, m.num_layers, m.hidden_size, m.vocab_size
    from planner.formulas import params

    layer_mm = params.layer_matmul_params_active(
        h,
        m.num_attention_heads,
        m.num_kv_heads,
        m.head_dim_eff,
        m.ffn_hidden_size,
        0.0,
        1.0,
        1.0,
        m.ffn_hidden_size,
        0.0,
    )
    ours = flops.hardware_flops_per_token(
        layers, layer_mm, v, h, m.num_attention_heads, m.head_dim_eff, s, 0.0, 2.0, 128.0, 2.5
    )
    eq3_per_token = 96 * layers * h**2 * (1 + s / (6 * h) + v / (16 * layers * h))
    assert ours == pytest.approx(eq3_per_token, rel=1e-9)


def test_model_flops_are_6n_plus_causal_attention() -> None:
    m = planner.get_model("llama3-8b")
    est = planner.estimate(
        m, planner.ClusterSpec(gpu="H100", num_gpus=8), training(seq=8192, batch=64), layout(dp=8)
    )
    nonembedding = m.num_params - m.vocab_size * m.hidden_size  # input embedding is a lookup
    attention = 12 * m.num_layers * m.hidden_size * 8192 * (8192 + 1) / (2 * 8192)
    per_token = 6 * nonembedding + attention
    gpu_seconds = est.step.time_s * 8
    assert est.step.model_tflops_per_gpu * 1e12 * gpu_seconds == pytest.approx(
        per_token * 64 * 8192, rel=1e-3
    )


def test_korthikanti_activations_per_layer() -> None:
    """sbh(34 + 5as/h) without parallelism; 10sbh + 24sbh/t + 5as²b/t with TP;
    34sbh/t with SP and selective recompute (Korthikanti et al. 2022, Sec. 4)."""
    s, b, h, a, t = 2048, 4, 6144, 64, 8.0
    sbh = s * b * h
    args = dict(
        tokens=s * b,
        keys=s,
        hidden=h,
        heads=a,
        q_dim=h,
        kv_dim=h,
        ffn=4 * h,
        gated=0.0,
        moe=0.0,
        top_k=1.0,
        moe_ffn=4 * h,
        shared_ffn=0.0,
        experts=1.0,
        flash=0.0,
        hidden_dropout=1.0,
        attention_dropout=1.0,
        act_bytes=2.0,
        mask_bytes=1.0,
        stat_bytes=4.0,
    )
    none, _ = memory.layer_activation_bytes(tp=1.0, sp_share=1.0, **args)
    assert none == pytest.approx(sbh * (34 + 5 * a * s / h))
    tp_only, _ = memory.layer_activation_bytes(tp=t, sp_share=1.0, **args)
    assert tp_only == pytest.approx(sbh * (10 + 24 / t + 5 * a * s / (h * t)))
    sp, core_sp = memory.layer_activation_bytes(tp=t, sp_share=1 / t, **args)
    selective = memory.stored_layer_activation_bytes(sp, core_sp, s * b, h, 1 / t, 1.0, 2.0)
    assert selective == pytest.approx(sbh * 34 / t)
    full = memory.stored_layer_activation_bytes(sp, core_sp, s * b, h, 1 / t, 2.0, 2.0)
    assert full == pytest.approx(2 * sbh / t)


def test_interleaved_first_stage_holds_korthikanti_factor() -> None:
    """First stage: L(1 + (p-1)/(p·v)) layers of activations (Korthikanti Sec. 4.2.3)."""
    p, v, layers = 8.0, 3.0, 96.0
    chunks = memory.chunks_in_flight(0.0, p, v, micro_batches=64.0)
    assert chunks * layers / (p * v) == pytest.approx(layers * (1 + (p - 1) / (p * v)))
    assert memory.chunks_in_flight(0.0, p, 1.0, 64.0) == p  # plain 1F1B: p micro-batches
    assert memory.chunks_in_flight(p - 1, p, 1.0, 64.0) == 1.0
    assert memory.chunks_in_flight(0.0, p, 1.0, 3.0) == 3.0  # fewer micro-batches than stages


def test_collectives_alpha_beta() -> None:
    gb = 1e9
    assert comm.all_reduce_time(gb, 1.0, 100e9, 1e-5) == 0.0
    assert comm.all_reduce_time(gb, 8.0, 100e9, 0.0) == pytest.approx(2 * 7 / 8 * 0.01)
    assert comm.all_gather_time(gb, 8.0, 100e9, 0.0) == pytest.approx(7 / 8 * 0.01)
    # latency: tree (log2) beats ring at scale
    assert comm.all_reduce_time(0.0, 1024.0, 1e9, 1e-5) == pytest.approx(2 * 10 * 1e-5)
    # a TP group inside a node uses NVLink; a DP group with one member per node one NIC each
    bw, _ = comm.group_link(8.0, 1.0, 8.0, 240e9, 22.5e9, 2e-6, 8e-6)
    assert bw == 240e9
    bw, alpha = comm.group_link(64.0, 8.0, 8.0, 240e9, 22.5e9, 2e-6, 8e-6)
    assert (bw, alpha) == (22.5e9, 8e-6)
    bw, _ = comm.group_link(64.0, 1.0, 8.0, 240e9, 22.5e9, 2e-6, 8e-6)
    assert bw == 8 * 22.5e9  # eight members per node drive eight NICs


def test_breakdown_adds_up_and_bubble_matches_schedule() -> None:
    m = planner.get_model("megatron-175b")
    cl = planner.ClusterSpec(gpu="A100", num_gpus=64)
    tr = training(seq=2048, batch=64, attention_kernel="unfused")
    est = planner.estimate(m, cl, tr, layout(dp=1, tp=8, pp=8, interleave=3, recompute="full"))
    assert sum(est.step.breakdown.values()) == pytest.approx(est.step.time_s, rel=1e-9)
    # bubble = (p-1)/v micro-batch times of (m + (p-1)/v) in the pipeline part
    pipeline = est.step.time_s - sum(
        est.step.breakdown[k] for k in ("pp_p2p_s", "dp_comm_s", "optimizer_s")
    )
    assert est.step.breakdown["pipeline_bubble_s"] == pytest.approx(
        pipeline * (7 / 3) / (64 + 7 / 3), rel=1e-9
    )


def test_inputs_are_memoised_per_spec_object() -> None:
    m, cl, tr = (
        planner.get_model("llama3-8b"),
        planner.ClusterSpec(gpu="H100", num_gpus=8),
        training(),
    )
    lo = layout(dp=8)
    first = build_inputs(m, cl.accelerator(), cl, tr, lo)
    assert build_inputs(m, cl.accelerator(), cl, tr, lo) == first
    other = build_inputs(m, cl.accelerator(), cl, tr, layout(dp=4, tp=2))
    assert other.tp == 2.0 and other.layers == first.layers


def test_merged_micro_batches_hide_communication_outside_warm_up() -> None:
    from planner.formulas.step import merged_micro_batch_exposed

    # not overlapped: all of it; overlapped without pipelining: 1 of 8 runs alone
    assert merged_micro_batch_exposed(4.0, 3.0, 8, 1, 1, 0.0) == 4.0
    assert merged_micro_batch_exposed(4.0, 3.0, 8, 1, 1, 1.0) == pytest.approx(
        4.0 / 8 + 7 / 8 * 1.0
    )
    # interleaved p = 8, v = 4, m = 128: 2·7 + 3·8 = 38 of 512 chunks alone
    alone = 38 / 512
    got = merged_micro_batch_exposed(4.0, 5.0, 128, 8, 4, 1.0)
    assert got == pytest.approx(alone * 4.0)
    # a warm-up longer than the step leaves nothing merged
    assert merged_micro_batch_exposed(4.0, 5.0, 2, 8, 1, 1.0) == 4.0


def test_expert_all_to_all_overlap_lowers_exposed_time_only() -> None:
    model = planner.get_model("mixtral-8x7b")
    cluster = planner.ClusterSpec(gpu="H100", num_gpus=64)
    lay = planner.Layout(dp=8, tp=2, pp=4, ep=8, interleave=2, sharding="zero1")
    kw = dict(seq_len=4096, global_batch_seqs=256, total_tokens=1e11)
    off = planner.estimate(model, cluster, planner.TrainingSpec(**kw), lay)
    on = planner.estimate(model, cluster, planner.TrainingSpec(ep_comm_overlap=True, **kw), lay)
    assert 0 < on.step.breakdown["ep_comm_s"] < off.step.breakdown["ep_comm_s"]
    for key in ("gemm_s", "attention_s", "memory_bound_s"):
        assert on.step.breakdown[key] == off.step.breakdown[key]


def test_unfused_cross_entropy_streams_the_logits_28_more_bytes() -> None:
    model = planner.get_model("llama3-8b")
    cluster = planner.ClusterSpec(gpu="H100", num_gpus=8)
    lay = planner.Layout(dp=8, sharding="zero1")
    kw = dict(seq_len=4096, global_batch_seqs=64, total_tokens=1e11)
    fused = planner.estimate(model, cluster, planner.TrainingSpec(**kw), lay)
    unfused = planner.estimate(
        model, cluster, planner.TrainingSpec(cross_entropy_fusion=False, **kw), lay
    )
    gpu = planner.get_gpu("H100")
    extra_s = 8 * (52 - 24) * 4096 * model.vocab_size / (gpu.hbm_tb_s * 1e12 * gpu.hbm_efficiency)
    delta = unfused.step.breakdown["memory_bound_s"] - fused.step.breakdown["memory_bound_s"]
    assert delta == pytest.approx(extra_s, rel=1e-9)
