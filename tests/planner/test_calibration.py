"""planner.calibration and planner.profile: the fit recovers known constants from
synthetic "measured" step times, bounds hold, and bad input is one clear error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import planner
from planner.calibration import (
    MIN_STEADY_STEPS,
    WARMUP_STEPS,
    MeasuredJob,
    bounded_lstsq,
    fit_profile,
    scaled_accelerator,
    steady_step_time_s,
)
from planner.errors import PlanInputError
from planner.profile import dump_profile, load_profile, profiled_accelerator

CPU = planner.AcceleratorSpec(
    name="test-cpu",
    bf16_dense_tflops=0.2,
    fp32_dense_tflops=0.2,
    hbm_gib=8,
    hbm_tb_s=0.02,
    intra_node_gb_s=2.0,
    inter_node_gb_s_per_gpu=2.0,
    tdp_w=1.0,
    idle_w=0.0,
    price_usd_per_gpu_hour=0.0,
    gemm_efficiency=1.0,
    attention_fwd_efficiency=0.2,
    attention_bwd_efficiency=0.1,
    hbm_efficiency=1.0,
    intra_node_efficiency=1.0,
)
TRUE_FACTORS = {"gemm": 1.6, "attention": 1.3, "memory": 1.2, "intra_network": 1.0}
TRUE_OVERHEAD_S = 0.03


def plan_for(
    hidden: int,
    micro_batch: int,
    acc: planner.AcceleratorSpec = CPU,
    kernel: str = "flash",
    precision: str = "fp32",
) -> planner.Plan:
    model = planner.ModelSpec(
        name=f"tiny-h{hidden}", num_layers=4, hidden_size=hidden, num_attention_heads=4,
        num_kv_heads=2, ffn_hidden_size=hidden * 8 // 3, vocab_size=257,
    )  # fmt: skip
    cluster = planner.ClusterSpec(gpu=acc, num_gpus=2, num_nodes=1, gpus_per_node=2)
    training = planner.TrainingSpec(
        seq_len=128, global_batch_seqs=16, total_tokens=16 * 128 * 30, precision=precision,
        attention_kernel=kernel,
    )  # fmt: skip
    layout = planner.Layout(dp=2, sharding="zero3", micro_batch=micro_batch)
    return planner.make_plan(model, cluster, training, layout)


def measured(hidden: int, micro_batch: int) -> MeasuredJob:
    """A job planned on CPU whose 'measured' time is the planner's on the true machine."""
    truth = scaled_accelerator(CPU, TRUE_FACTORS, TRUE_OVERHEAD_S)
    true_s = plan_for(hidden, micro_batch, truth).estimate.step.time_s
    return MeasuredJob(
        job=f"h{hidden}-mb{micro_batch}",
        plan=plan_for(hidden, micro_batch),
        step_time_s=true_s,
        steps_used=20,
    )


def test_fit_recovers_known_constants_and_predicts_a_held_out_layout() -> None:
    jobs = [measured(h, mb) for h, mb in ((64, 8), (128, 8), (192, 4), (256, 8), (96, 2))]
    profile = fit_profile(jobs)
    for job in profile.jobs:
        assert job.ratio_before > 1.2  # the plan was far off
        assert job.ratio_after == pytest.approx(1.0, abs=0.02)
    assert profile.step_overhead_s == pytest.approx(TRUE_OVERHEAD_S, rel=0.15)
    held_out = measured(160, 4)
    p = held_out.plan
    after = planner.estimate(
        p.model, p.cluster.model_copy(update={"gpu": profile.accelerator}), p.training, p.layout
    ).step.time_s
    assert after == pytest.approx(held_out.step_time_s, rel=0.03)
    assert held_out.plan.estimate.step.time_s < 0.8 * held_out.step_time_s


def test_one_job_still_fits_itself_and_unexercised_groups_keep_their_constants() -> None:
    profile = fit_profile([measured(128, 8)])
    assert profile.jobs[0].ratio_after == pytest.approx(1.0, abs=0.02)
    assert "inter_network" not in profile.time_factors  # a one-node job has no inter-node term
    assert profile.accelerator.inter_node_efficiency == CPU.inter_node_efficiency
    assert profile.accelerator.inter_node_gb_s_per_gpu == CPU.inter_node_gb_s_per_gpu


def test_jobs_on_different_accelerators_are_refused() -> None:
    other = CPU.model_copy(update={"name": "other-cpu"})
    jobs = [measured(64, 8), MeasuredJob("x", plan_for(64, 8, other), 0.1, 10)]
    with pytest.raises(PlanInputError, match="different accelerators"):
        fit_profile(jobs)


def test_measured_attention_tables_are_kept_and_the_rest_fitted() -> None:
    """On H100 with fa3 (measured kernel tables) attention is not scaled; GEMMs still are."""
    h100 = planner.get_gpu("H100")
    truth = scaled_accelerator(h100, {"gemm": 1.25, "memory": 1.1}, 0.02)

    def job(hidden: int, micro_batch: int, kernel: str = "fa3") -> MeasuredJob:
        real = plan_for(hidden, micro_batch, truth, kernel, "bf16").estimate.step.time_s
        plan = plan_for(hidden, micro_batch, h100, kernel, "bf16")
        return MeasuredJob(f"h{hidden}", plan, real, 20)

    profile = fit_profile([job(1024, 1), job(2048, 2), job(4096, 1)])
    assert "attention" not in profile.time_factors
    assert "attention" in fit_profile([job(1024, 1, "flash")]).time_factors
    assert profile.accelerator.attention_benchmarks == h100.attention_benchmarks
    for fitted in profile.jobs:
        assert fitted.ratio_after == pytest.approx(1.0, abs=0.03)


def test_bounded_lstsq_is_plain_lstsq_inside_and_respects_bounds() -> None:
    rng = np.random.default_rng(0)
    a = rng.uniform(0.5, 1.5, (6, 3))
    x_true = np.array([1.0, 2.0, 0.5])
    b = a @ x_true
    np.testing.assert_allclose(bounded_lstsq(a, b, np.zeros(3)), x_true, rtol=1e-9)
    x = bounded_lstsq(a, a @ np.array([1.0, -2.0, 0.5]), np.zeros(3))
    assert x[1] == 0.0 and np.all(x >= 0)


def test_scaled_accelerator_raises_a_measured_peak_instead_of_efficiency_above_one() -> None:
    faster = scaled_accelerator(CPU, {"gemm": 0.5, "attention": 1.0, "memory": 0.8}, 0.01)
    assert faster.gemm_efficiency == pytest.approx(1.0)
    assert faster.bf16_dense_tflops == pytest.approx(0.4)
    # attention keeps its achieved rate on the raised peak
    assert faster.attention_fwd_efficiency * faster.bf16_dense_tflops == pytest.approx(0.2 * 0.2)
    assert faster.hbm_efficiency == 1.0 and faster.hbm_tb_s == pytest.approx(0.025)
    assert faster.step_overhead_s == 0.01


def test_steady_step_time_skips_warm_up_and_takes_the_slowest_rank() -> None:
    def records(times: list[float]) -> list[dict[str, object]]:
        return [{"step": i + 1, "step_time_s": t} for i, t in enumerate(times)]

    warm = [5.0] * WARMUP_STEPS
    ranks = {"0": records([*warm, 0.1, 0.2, 0.3, 0.2, 0.2]), "1": records(warm + [0.3] * 6)}
    assert steady_step_time_s("j", ranks) == (0.3, 6)
    too_few = {"0": records(warm + [0.1] * (MIN_STEADY_STEPS - 1))}
    with pytest.raises(PlanInputError, match=r"j: fewer than 5 steps"):
        steady_step_time_s("j", too_few)


def test_profile_round_trips_and_bad_files_name_the_fix(tmp_path: Path) -> None:
    profile = fit_profile([measured(64, 8)])
    path = tmp_path / "cluster.yaml"
    path.write_text(dump_profile(profile))
    assert load_profile(str(path)) == profile
    with pytest.raises(PlanInputError, match="no such file"):
        load_profile(str(tmp_path / "missing.yaml"))
    path.write_text(dump_profile(profile).replace("schema_version: 1", "schema_version: 7"))
    with pytest.raises(PlanInputError, match="schema_version 7"):
        load_profile(str(path))
    path.write_text(dump_profile(profile) + "surprise: 1\n")
    with pytest.raises(PlanInputError, match="field surprise"):
        load_profile(str(path))
    assert profiled_accelerator(profile, CPU) is profile.accelerator
    with pytest.raises(PlanInputError, match="fitted for 'test-cpu', not 'H100-SXM-80GB'"):
        profiled_accelerator(profile, planner.get_gpu("H100"))
