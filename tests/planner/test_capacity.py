"""Capacity answers against hand-computed values: scaling-law optima, the Young/Daly
checkpoint interval and goodput, the smallest cluster for a deadline, FP32 plans."""

from __future__ import annotations

import json
import math

import pytest

import planner
from planner import scaling
from planner.capacity import cluster_sizes, smallest_cluster
from tests.planner.test_planner_cli import run


def test_chinchilla_optimum_for_a_budget() -> None:
    """Hoffmann et al. 2022, eq. (10) constants and App. D.2, worked by hand for 1e23."""
    n, d = scaling.chinchilla_optimal(1e23)
    # G = (0.34·406.4 / (0.28·410.7))^(1/0.62) = 1.34471; N = G·(1e23/6)^(0.28/0.62)
    assert n == pytest.approx(1.45983e10, rel=1e-4)
    assert d == pytest.approx(1.14168e12, rel=1e-4)
    assert 6 * n * d == pytest.approx(1e23, rel=1e-9)
    assert scaling.chinchilla_loss(n, d) == pytest.approx(2.00501, rel=1e-5)
    # the optimum is the minimum of the loss along the iso-FLOP curve
    for factor in (0.5, 0.8, 0.95, 1.05, 1.25, 2.0):
        other = n * factor
        assert scaling.chinchilla_loss(other, 1e23 / (6 * other)) > scaling.chinchilla_loss(n, d)


def test_twenty_tokens_per_parameter_and_kaplan() -> None:
    n, d = scaling.tokens_per_param_optimal(1.2e21)
    assert n == pytest.approx(math.sqrt(1e19)) and d == pytest.approx(20 * math.sqrt(1e19))
    # Kaplan et al. 2020, Sec. 6.1: 1.3e9 x (1,000 PF-days)^0.73 = 2.0135e11 parameters
    n, d = scaling.kaplan_optimal(1000 * 8.64e19)
    assert n == pytest.approx(2.01346e11, rel=1e-4) and d == pytest.approx(7.15186e10, rel=1e-4)
    # eq. (1.5) at N = N_c, D = D_c: (1 + 1)^0.095
    assert scaling.kaplan_loss(8.8e13, 5.4e13) == pytest.approx(2**0.095)
    rows = scaling.compute_optimal(1e23)
    assert [r.law.split()[0] for r in rows] == ["chinchilla", "20", "Kaplan"]


def test_dollars_become_flops_at_the_stated_mfu() -> None:
    # $2M at $2.99/GPU-h on 989 TFLOP/s at 40 %: 668,896 GPU-h x 3600 s x 395.6 TFLOP/s
    flops = scaling.flops_for_budget(2e6, 2.99, 989e12, 0.4)
    assert flops == pytest.approx(2e6 / 2.99 * 3600 * 989e12 * 0.4)
    with pytest.raises(planner.PlanInputError, match="price is 0"):
        scaling.flops_for_budget(1.0, 0.0, 1e12, 0.4)


def _cluster(**kw: float) -> planner.ClusterSpec:
    return planner.ClusterSpec(gpu="H100", num_gpus=64, **kw)  # type: ignore[arg-type]


def test_young_interval_and_daly_goodput_by_hand() -> None:
    model = planner.get_model("llama3-8b")
    cluster = _cluster(mtbf_gpu_hours=1000.0, checkpoint_gb_s_per_node=1.0,
                       checkpoint_gb_s_max=1000.0, restart_min=10.0)  # fmt: skip
    training = planner.TrainingSpec(seq_len=4096, global_batch_seqs=256, total_tokens=1e12)
    est = planner.estimate(model, cluster, training, planner.Layout(dp=64, sharding="zero1"))
    mtbf = 1000.0 * 3600 / 64  # job MTBF: 56,250 s
    save = model.num_params * (2 + 12) / (8 * 1e9)  # weights + Adam states over 8 nodes x 1 GB/s
    interval = math.sqrt(2 * save * mtbf)  # Young 1974
    assert est.train.checkpoint_interval_min == pytest.approx(interval / 60, rel=1e-9)
    assert interval / 60 == pytest.approx(20.95, abs=0.05)
    work = est.train.days * 86400
    restart = 600 + save
    wall = mtbf * math.exp(restart / mtbf) * math.expm1((interval + save) / mtbf) * work / interval
    assert est.train.goodput == pytest.approx(work / wall, rel=1e-9)
    assert est.train.expected_interruptions == pytest.approx(wall / mtbf, rel=1e-9)


def test_goodput_falls_with_more_failures() -> None:
    model = planner.get_model("llama3-8b")
    training = planner.TrainingSpec(seq_len=4096, global_batch_seqs=256, total_tokens=1e12)
    layout = planner.Layout(dp=64, sharding="zero1")
    goodputs = [
        planner.estimate(model, _cluster(mtbf_gpu_hours=h), training, layout).train.goodput
        for h in (1e9, 1e5, 1e4, 1e3)
    ]
    assert goodputs[0] > 0.9999 and goodputs == sorted(goodputs, reverse=True)
    slow_restart = _cluster(mtbf_gpu_hours=1e4, restart_min=60.0)
    assert planner.estimate(model, slow_restart, training, layout).train.goodput < goodputs[2]
    default = planner.estimate(model, _cluster(), training, layout).train
    # Llama 3's rate, 54 d x 24 h x 16,384 / 419 GPU-hours per failure, over 64 GPUs
    hours = default.days * 24 / default.goodput
    assert default.expected_interruptions == pytest.approx(hours / (54 * 24 * 16384 / 419 / 64))


def test_smallest_cluster_meets_the_deadline_and_nothing_smaller_does() -> None:
    model = planner.get_model("llama3-8b")
    cluster = planner.ClusterSpec(gpu="H100", num_gpus=8)
    training = planner.TrainingSpec(seq_len=8192, global_batch_seqs=512, total_tokens=15e12)
    answer = smallest_cluster(model, cluster, training, 30.0, max_gpus=4096, top_k=3)
    assert answer.gpus is not None and answer.gpus in cluster_sizes(4096, 8)
    best = answer.result.ranked[0]
    assert best.layout.num_gpus == answer.gpus and answer.nodes == answer.gpus // 8
    assert best.train.days / best.train.goodput <= 30.0
    probed = dict(answer.probes)
    smaller = [g for g in cluster_sizes(4096, 8) if answer.lower_bound_gpus <= g < answer.gpus]
    for gpus in smaller:
        if gpus in probed:  # counts without any valid layout are not probed
            assert probed[gpus] is None or probed[gpus] > 30.0
    # the FLOPs bound: 6 N D over 30 days at 989 TFLOP/s x 0.803 (the best efficiency)
    bound = 6 * model.num_active_params * 15e12 / (30 * 86400 * 989e12 * 0.803)
    assert answer.lower_bound_gpus == math.floor(bound)
    assert cluster_sizes(160, 8)[:12] == [1, 2, 4, 8, 16, 24, 32, 40, 48, 56, 64, 80]


def test_fp32_plans_fp32_sizes_at_the_fp32_rate() -> None:
    model = planner.get_model("llama3-8b")
    cluster = planner.ClusterSpec(gpu="H100", num_gpus=8)
    layout = planner.Layout(dp=8)
    mixed, full = (
        planner.estimate(
            model, cluster,
            planner.TrainingSpec(seq_len=2048, global_batch_seqs=8, total_tokens=1e9,
                                 precision=p),
            layout,
        )
        for p in ("bf16", "fp32")
    )  # fmt: skip
    params = model.num_params / 2**30
    assert mixed.memory_gib.params == pytest.approx(2 * params)
    assert full.memory_gib.params == pytest.approx(4 * params)  # FP32 weights
    assert full.memory_gib.optimizer == pytest.approx(8 * params)  # Adam m, v: no master copy
    assert mixed.memory_gib.optimizer == pytest.approx(12 * params)
    assert full.memory_gib.grads == pytest.approx(mixed.memory_gib.grads)
    assert full.memory_gib.activations > 1.9 * mixed.memory_gib.activations
    # MFU is on the FP32 peak (67 TFLOP/s on an H100 SXM), and it is much slower
    assert full.step.model_tflops_per_gpu / full.step.mfu == pytest.approx(67.0)
    assert full.step.time_s > 5 * mixed.step.time_s
    spec = cluster.accelerator().model_copy(update={"fp32_dense_tflops": None, "name": "X"})
    bare = planner.ClusterSpec(gpu=spec, num_gpus=8)
    tr = planner.TrainingSpec(seq_len=2048, global_batch_seqs=8, total_tokens=1e9,
                              precision="fp32")  # fmt: skip
    with pytest.raises(planner.PlanInputError, match="precision fp32 needs the FP32 rate"):
        planner.estimate(model, bare, tr, layout)


CAPACITY = ["plan", "capacity", "--model", "llama3-8b", "--gpu", "H100", "--seq-len", "8k",
            "--global-batch", "512", "--tokens", "15T"]  # fmt: skip


def test_capacity_cli_answers_and_refuses(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    code, out, err = run([*CAPACITY, "--days", "30d", "--max-gpus", "4k", "--json"], capsys)
    assert code == 0, err
    data = json.loads(out)
    assert data["gpus"] and data["ranked"][0]["layout"]
    assert data["reliability"]["job_mtbf_h"] > 0
    code, out, err = run([*CAPACITY, "--days", "30", "--max-gpus", "4k"], capsys)
    assert code == 0 and "Cluster sizes searched" in out and "with failures" in out
    code, out, err = run([*CAPACITY, "--days", "2d", "--max-gpus", "256"], capsys)
    assert code == 2 and err.startswith("error: no cluster of up to 256 GPUs") and "fastest" in err
    code, out, err = run(["plan", "capacity", "--flops", "1e23", "--json"], capsys)
    assert code == 0
    sizing = json.loads(out)["sizings"][0]
    assert sizing["params"] == pytest.approx(1.45983e10, rel=1e-4)
    code, out, err = run(["plan", "capacity", "--budget", "2M$", "--gpu", "H100"], capsys)
    assert code == 0 and "Compute-optimal sizing" in out and "40% MFU" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--days", "30", "--flops", "1e23"], "not both"),
        (["--days", "soon"], "--days: 'soon' is not a duration"),
        (["--days", "30", "--max-gpus", "0"], "--max-gpus"),
    ],
)
def test_capacity_bad_inputs_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run([*CAPACITY, *argv], capsys)
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--flops", "lots"], "--flops"),
        (["--budget", "1M$"], "--gpu: required"),
        (["--budget", "1M$", "--gpu", "H100", "--mfu", "2"], "--mfu"),
        ([], "give --days D"),
    ],
)
def test_sizing_bad_inputs_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(["plan", "capacity", *argv], capsys)
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err
