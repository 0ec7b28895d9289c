"""Pipeline memory techniques as layout knobs (uneven stages, activation offload) and the
405B Llama 3 layout they make fit without recomputation (issue 17, Done-when)."""

from __future__ import annotations

import pytest

import planner
from planner.formulas.memory import chunks_in_flight
from planner.layout_search import search

H100 = "H100-SXM-80GB"
LLAMA3_405B_PINS = {"tp": 8, "pp": 16, "cp": 1, "interleave": 4}
"""Llama 3 paper (Dubey et al. 2024), Table 4: TP 8, CP 1, PP 16, 8K sequences, 16M
tokens per batch, interleaved schedule (Sec. 3.3.2)."""


def _llama3(gpus: int) -> tuple[planner.ModelSpec, planner.ClusterSpec, planner.TrainingSpec]:
    model = planner.get_model("llama3-405b")
    cluster = planner.ClusterSpec(gpu=H100, num_gpus=gpus)
    training = planner.TrainingSpec(seq_len=8192, global_batch_seqs=2048, total_tokens=15.6e12)
    return model, cluster, training


@pytest.mark.parametrize(
    ("gpus", "published_mfu"),
    [(8192, 0.43), (16384, 0.41)],  # Llama 3 paper, Table 4 (BF16 MFU: 430 and 400 TFLOP/s)
)
def test_llama3_405b_fits_without_recompute_at_the_published_mfu(
    gpus: int, published_mfu: float
) -> None:
    model, cluster, training = _llama3(gpus)
    result = search(model, cluster, training, pinned=LLAMA3_405B_PINS, top_k=5)
    best = result.ranked[0]
    assert best.fits and best.layout.recompute == "none", best.layout
    assert best.layout.dp == gpus // 128 and best.layout.interleave == 4
    # It needs the memory techniques: the same layout without them does not fit.
    assert best.layout.uneven_stages or best.layout.activation_offload > 0
    bare = best.layout.model_copy(update={"uneven_stages": False, "activation_offload": 0.0})
    assert not planner.estimate(model, cluster, training, bare).fits
    assert best.step.mfu == pytest.approx(published_mfu, rel=0.10)
    # The search's numbers are the scalar estimate's.
    again = planner.estimate(model, cluster, training, best.layout)
    assert again.step.time_s == pytest.approx(best.step.time_s, rel=1e-9)
    assert again.memory_gib.total == pytest.approx(best.memory_gib.total, rel=1e-9)


def test_chunks_in_flight_follow_megatron_warmup() -> None:
    """Megatron-LM schedules.py: warm-up 2(p - r - 1) + (v - 1)·p micro-batch chunks, one
    more in the steady state; 1F1B (v = 1) holds p - r (Narayanan et al. 2021)."""
    assert chunks_in_flight(0, 16, 4, 32) == 2 * 15 + 3 * 16 + 1
    assert chunks_in_flight(15, 16, 4, 32) == 3 * 16 + 1
    assert chunks_in_flight(0, 8, 1, 64) == 8 and chunks_in_flight(7, 8, 1, 64) == 1
    assert chunks_in_flight(0, 16, 4, 16) == 64  # m = p: every chunk of every micro-batch


def test_uneven_stages_move_memory_off_the_first_stage() -> None:
    model, cluster, training = _llama3(8192)
    even = planner.Layout(dp=64, tp=8, pp=16, interleave=4, sharding="zero1",
                          sequence_parallel=True)  # fmt: skip
    uneven = even.model_copy(update={"uneven_stages": True})
    a = planner.estimate(model, cluster, training, even)
    b = planner.estimate(model, cluster, training, uneven)
    # 126 layers on 16 x 4 chunks: even 8 layers a stage (128 slots); uneven 8 on the
    # inner stages, 7 on the first and last. The peak moves to the second stage, which
    # holds 2 chunks in flight fewer than the first (154 layers of activations, not 158).
    assert b.memory_gib.activations == pytest.approx(a.memory_gib.activations * 154 / 158)
    assert b.step.time_s < a.step.time_s  # the output layer replaces a layer: balanced
    with pytest.raises(ValueError, match="uneven_stages needs pipeline"):
        planner.Layout(dp=8, uneven_stages=True)


def test_offload_trades_host_link_time_for_memory() -> None:
    model, cluster, training = _llama3(8192)
    lo = planner.Layout(dp=64, tp=8, pp=16, interleave=4, sharding="zero1",
                        sequence_parallel=True)  # fmt: skip
    base = planner.estimate(model, cluster, training, lo)
    half = planner.estimate(model, cluster, training, lo.model_copy(
        update={"activation_offload": 0.5}))  # fmt: skip
    assert half.memory_gib.activations == pytest.approx(base.memory_gib.activations / 2)
    # Hidden under compute on PCIe Gen5: only the HBM traffic of the copies shows.
    assert 0 < half.step.breakdown["offload_s"] < 0.01 * half.step.time_s
    slow_gpu = cluster.accelerator().model_copy(update={"host_link_gb_s": 1.0, "name": "slow"})
    slow = cluster.model_copy(update={"gpu": slow_gpu})
    hidden = planner.estimate(model, slow, training, lo)
    exposed = planner.estimate(model, slow, training, lo.model_copy(
        update={"activation_offload": 0.5}))  # fmt: skip
    assert exposed.step.time_s > 2 * hidden.step.time_s  # 1 GB/s cannot keep up
    with pytest.raises(planner.PlanInputError, match="activation_offload"):
        search(model, cluster, training, pinned={"activation_offload": 1.5})


def _rows(**over: float) -> dict[str, float]:
    from planner.formulas.memory import activation_rows

    s, h = 8192, 16384
    args = dict(tokens=s, keys=s, hidden=h, heads=128, q_dim=h, kv_dim=8 * 128,
                ffn=53248, gated=1.0, moe=0.0, top_k=1.0, moe_ffn=53248, shared_ffn=0.0,
                experts=1.0, tp=8.0, sp_share=1 / 8, flash=1.0, hidden_dropout=0.0,
                attention_dropout=0.0, act_bytes=2.0, mask_bytes=1.0, stat_bytes=4.0)  # fmt: skip
    return activation_rows(**{**args, **over})


def test_activation_rows_of_a_llama_block() -> None:
    """Llama 3 405B layer, TP 8 with SP, flash attention, no dropout: GQA's 8 KV heads,
    SwiGLU's three ffn-wide tensors of its own width, no masks, no s x s scores."""
    from planner.formulas.memory import ACTIVATION_ROWS

    s, h, t = 8192, 16384, 8
    rows = _rows()
    assert list(rows) == [name for name, _, _ in ACTIVATION_ROWS]
    assert rows["norms"] == 4 * 2 * s * h / t
    assert rows["qkv"] == 2 * s * (h + 2 * 1024) / t
    assert rows["context"] == 2 * s * h / t
    assert rows["dropout_masks"] == 0
    assert rows["attention_core"] == 4 * s * 128 / t  # log-sum-exp only
    assert rows["mlp"] == 2 * s * 3 * 53248 / t
    # With dropout the masks appear; unfused attention stores a·s² per micro-batch.
    assert _rows(hidden_dropout=1.0)["dropout_masks"] == 2 * s * h / t
    assert _rows(flash=0.0)["attention_core"] == 2 * s * s * 128 / t


def test_megatron_theoretical_memory_formula_with_its_own_ffn() -> None:
    """Megatron-LM theoretical_memory_usage.py: s·b·h·(18 + 4·ffn/h)/t per layer with SP
    and selective recompute, GELU, MHA, dropout; here with ffn = 3h, not 4h."""
    s, h, t = 4096, 8192, 8
    rows = _rows(tokens=s, keys=s, hidden=h, heads=64, q_dim=h, kv_dim=h, ffn=3 * h,
                 gated=0.0, hidden_dropout=1.0, attention_dropout=1.0, flash=0.0)  # fmt: skip
    stored = sum(v for k, v in rows.items() if k != "attention_core")
    assert stored == pytest.approx(s * h * (18 + 4 * 3) / t)


def test_offload_is_not_hidden_when_every_layer_talks_across_nodes() -> None:
    """FSDP over 64 GPUs gathers every layer over the NIC, which shares the GPU's PCIe
    link with the offload copies: the copies are then exposed in full."""
    model = planner.get_model("llama3-70b")
    cluster = planner.ClusterSpec(gpu=H100, num_gpus=64)
    training = planner.TrainingSpec(seq_len=8192, global_batch_seqs=64, total_tokens=1e12)
    fsdp = planner.Layout(dp=64, sharding="zero3", activation_offload=0.5)
    est = planner.estimate(model, cluster, training, fsdp)
    assert est.step.breakdown["offload_s"] > 0.05 * est.step.time_s


def test_gpipe_holds_every_micro_batch_and_groups_trade_memory_for_idle() -> None:
    model, cluster, training = _llama3(8192)
    one_f_one_b = planner.Layout(dp=64, tp=8, pp=16, sharding="zero1", sequence_parallel=True,
                                 recompute="full")  # fmt: skip
    gpipe = one_f_one_b.model_copy(update={"schedule": "gpipe"})
    a = planner.estimate(model, cluster, training, one_f_one_b)
    b = planner.estimate(model, cluster, training, gpipe)
    # 32 micro-batches in flight instead of 16 (first stage): the last stage, which also
    # holds them all now, peaks with its logits (6 bytes x 8192 tokens x 128256 / 8).
    logits_gib = 6 * 8192 * 128256 / 8 / 2**30
    assert b.memory_gib.activations == pytest.approx(a.memory_gib.activations * 2 + logits_gib)
    assert b.step.time_s == pytest.approx(a.step.time_s)
    # Megatron's micro-batch groups: N = 8 < p = 16 on an interleaved schedule.
    assert chunks_in_flight(0, 16, 4, 32, 8) == 2 * 15 + 3 * 8 + 1
    inter = planner.Layout(dp=64, tp=8, pp=16, interleave=4, uneven_stages=True,
                           sharding="zero1", sequence_parallel=True)  # fmt: skip
    grouped = inter.model_copy(update={"microbatch_group": 8})
    c = planner.estimate(model, cluster, training, inter)
    d = planner.estimate(model, cluster, training, grouped)
    assert d.memory_gib.total < c.memory_gib.total
    # m/N = 4 rounds, each idling (v - 1)/v x (p - N) = 6 micro-batch times more.
    t_mb = c.step.breakdown["pipeline_bubble_s"] / (15 / 4)
    assert d.step.breakdown["pipeline_bubble_s"] - c.step.breakdown[
        "pipeline_bubble_s"
    ] == pytest.approx(4 * 6 * t_mb, rel=1e-6)
    with pytest.raises(ValueError, match="microbatch_group needs an interleaved"):
        planner.Layout(dp=8, pp=2, microbatch_group=1)
    with pytest.raises(ValueError, match="gpipe"):
        planner.Layout(dp=8, pp=2, interleave=2, schedule="gpipe")
    result = search(model, cluster, training, top_k=1,
                    pinned={"tp": 8, "pp": 16, "cp": 1, "schedule": "gpipe"})  # fmt: skip
    assert all(e.layout.schedule == "gpipe" for e in result.ranked)


def test_kept_stage_outputs_cost_one_hidden_state_per_chunk_in_flight() -> None:
    """Without Megatron's deallocate_pipeline_outputs every chunk in flight keeps the
    hidden state it sent: 2 bytes x 8192 tokens x 16384 / 8 (SP) per chunk."""
    model, cluster, training = _llama3(8192)
    freed = planner.Layout(dp=64, tp=8, pp=16, sharding="zero1", sequence_parallel=True,
                           recompute="full")  # fmt: skip
    kept = freed.model_copy(update={"free_stage_outputs": False})
    a = planner.estimate(model, cluster, training, freed)
    b = planner.estimate(model, cluster, training, kept)
    per_chunk_gib = 2 * 8192 * 16384 / 8 / 2**30
    assert b.memory_gib.activations - a.memory_gib.activations == pytest.approx(
        16 * per_chunk_gib  # 1F1B: 16 chunks in flight on the first stage
    )
    result = search(model, cluster, training, top_k=1,
                    pinned={"tp": 8, "pp": 16, "free_stage_outputs": False})  # fmt: skip
    assert not result.ranked[0].layout.free_stage_outputs


def test_moe_capacity_factor_pads_expert_work_and_all_to_all() -> None:
    """Switch Transformer (Fedus et al. 2021, Sec. 2.2): experts compute and exchange
    capacity_factor x their even share of routed tokens; dropless (default) is 1."""
    model = planner.get_model("mixtral-8x7b")
    cluster = planner.ClusterSpec(gpu=H100, num_gpus=64)
    lo = planner.Layout(dp=32, tp=2, ep=8, sharding="zero1", sequence_parallel=True)

    def run(cf: float | None) -> planner.Estimate:
        training = planner.TrainingSpec(seq_len=4096, global_batch_seqs=256,
                                        total_tokens=1e12, moe_capacity_factor=cf)  # fmt: skip
        return planner.estimate(model, cluster, training, lo)

    dropless, one, padded = run(None), run(1.0), run(1.25)
    assert one.step.time_s == dropless.step.time_s
    ep_dropless, ep_padded = (
        dropless.step.breakdown["ep_comm_s"],
        padded.step.breakdown["ep_comm_s"],
    )
    assert 1.2 * ep_dropless < ep_padded <= 1.25 * ep_dropless  # bytes x 1.25, latency not
    assert padded.step.breakdown["gemm_s"] > dropless.step.breakdown["gemm_s"]
    assert padded.memory_gib.activations > dropless.memory_gib.activations
    with pytest.raises(ValueError, match="moe_capacity_factor"):
        planner.TrainingSpec(
            seq_len=8, global_batch_seqs=1, total_tokens=1, moe_capacity_factor=0.5
        )


def test_expert_tp_shards_experts_apart_from_tp() -> None:
    """MoE parallel folding: experts split over ep x expert_tp, not tp; expert GEMMs are
    1/expert_tp wide with tp/expert_tp times the tokens; the expert-data-parallel group
    is tp·cp·dp / (ep·expert_tp)."""
    model = planner.get_model("mixtral-8x7b")
    cluster = planner.ClusterSpec(gpu=H100, num_gpus=64)
    training = planner.TrainingSpec(seq_len=4096, global_batch_seqs=256, total_tokens=1e12)
    folded = planner.Layout(dp=32, tp=2, ep=8, sharding="none", sequence_parallel=True)
    a = planner.estimate(model, cluster, training, folded)
    same = planner.estimate(model, cluster, training, folded.model_copy(update={"expert_tp": 2}))
    assert same.step.time_s == a.step.time_s and same.memory_gib == a.memory_gib
    b = planner.estimate(model, cluster, training, folded.model_copy(update={"expert_tp": 1}))
    # One expert a GPU (ep 8) is ~78 % of its weights at tp 2: unsplit by TP they double.
    assert 1.7 < b.memory_gib.params / a.memory_gib.params < 1.9
    assert b.step.model_tflops_per_gpu == pytest.approx(
        a.step.model_tflops_per_gpu * a.step.time_s / b.step.time_s
    )
    dense = planner.get_model("llama3-8b")
    lo = planner.Layout(dp=32, tp=2, expert_tp=1, sequence_parallel=True)
    with pytest.raises(planner.PlanInputError, match="expert_tp=1 needs a mixture-of-experts"):
        planner.estimate(dense, cluster, training, lo)
    result = search(model, cluster, training, top_k=3, pinned={"tp": 2, "expert_tp": 1})
    assert result.ranked and all(e.layout.expert_tp == 1 for e in result.ranked)
