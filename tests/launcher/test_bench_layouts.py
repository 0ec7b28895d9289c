"""bench/layouts.py (plan against measured, per layout) cannot rot unseen: its layout
table, measurement and report are checked here without the 3-minute run.

* every layout of the table is one the planner plans and the reference trainer runs as
  planned (the Plan, read back by the trainer's own config parser, gives the layout, the
  model style and the global batch of the parity tests);
* the step time is the median after the warm-up of the slowest rank, the memory the
  largest peak of any rank; the report's ratios are measured / predicted;
* bad flags exit 2 with one line, before anything runs;
* one smoke run (marked slow): one layout planned and launched through ``scalectl.launch``
  for 2 steps and measured by the bench's own functions. It checks the path (plan ->
  local job -> progress records -> report line), not the figures: 2 steps on a shared
  2-core machine say nothing about speed.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import planner
from launcher.plan_launch import plan_job
from runtime.train.config import parse_config

REPO = Path(__file__).resolve().parents[2]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_layouts", REPO / "bench" / "layouts.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


bench = _load()

CPU_LIKE = planner.AcceleratorSpec(
    name="test cpu", vendor="test", bf16_dense_tflops=0.1, fp32_dense_tflops=0.1,
    gemm_efficiency=1.0, attention_fwd_efficiency=0.3, attention_bwd_efficiency=0.3,
    hbm_gib=4.0, hbm_tb_s=0.01, intra_node_gb_s=2.0, inter_node_gb_s_per_gpu=2.0,
    tdp_w=1.0, idle_w=0.0, price_usd_per_gpu_hour=0.0,
)  # fmt: skip
"""A calibrated CPU's order of magnitude (scripts/cpu_calibration.py measures ~0.1-0.2
TFLOP/s per thread here); the figures do not matter, the plan's layout does."""

EXPECTED: dict[str, dict[str, Any]] = {
    # name: the trainer's configuration the plan must give (grad_accum: 8 / (dp x 2))
    "dp4 zero3": {"dp": 4, "tp": 1, "sharding": "zero3", "grad_accum": 1},
    "dp2 tp2 sp": {"dp": 2, "tp": 2, "sequence_parallel": True, "grad_accum": 2},
    "dp2 tp2 no sp": {"dp": 2, "tp": 2, "sequence_parallel": False, "grad_accum": 2},
    "hsdp 2x2": {"dp": 4, "sharding": "hsdp", "hsdp_shard_size": 2, "grad_accum": 1},
    "dp4 zero1": {"dp": 4, "sharding": "zero1", "grad_accum": 1},
    "dp4 recompute full": {"dp": 4, "recompute": "full", "grad_accum": 1},
    "gpt dp2 tp2 sp": {"tp": 2, "sequence_parallel": True, "activation": "gelu",
                       "norm": "layernorm", "bias": True, "tied_embeddings": True,
                       "ffn_hidden": 512},
    "1 process": {"dp": 1, "sharding": "none", "grad_accum": 4, "activation": "swiglu"},
    "pp2 gpipe dp2": {"dp": 2, "pp": 2, "schedule": "gpipe", "interleave": 1, "grad_accum": 2},
    "pp2 1f1b dp2": {"dp": 2, "pp": 2, "schedule": "1f1b", "interleave": 1, "grad_accum": 2},
    "pp2 interleave2 dp2": {"dp": 2, "pp": 2, "interleave": 2, "grad_accum": 2},
    "cp2 dp2": {"dp": 2, "cp": 2, "cp_impl": "allgather", "grad_accum": 2},
    "moe ep2 dp4": {"dp": 4, "ep": 2, "experts": 4, "top_k": 2, "grad_accum": 1},
}  # fmt: skip


@pytest.mark.parametrize("case", [*bench.CASES, bench.BASELINE], ids=lambda c: c.name)
def test_every_layout_is_planned_and_read_back_by_the_trainer_as_planned(
    case: Any, tmp_path: Path
) -> None:
    plan = bench.plan_case(case, CPU_LIKE, steps=15)
    job = plan_job(plan, words=list(bench.TRAINER_ARGS))
    assert job.resolved.world_size == case.ranks
    assert job.spec.procs_per_node == case.ranks
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(job.spec.plan))
    cfg = parse_config(["--plan", str(path)])
    want = EXPECTED[case.name]
    assert {key: getattr(cfg, key) for key in want} == want
    assert cfg.steps == 15
    assert cfg.micro_batch * cfg.dp * cfg.grad_accum == bench.GLOBAL_BATCH_SEQS
    assert cfg.seq_len == bench.SEQ_LEN and cfg.precision == "fp32"
    assert plan.estimate.step.time_s > 0 and bench.state_mib(plan) > 0


def test_the_table_covers_the_parity_layouts_and_fits_on_two_of_them() -> None:
    names = [case.name for case in bench.CASES]
    assert sorted(names) == sorted(n for n in EXPECTED if n != "1 process")
    assert set(bench.FIT_LAYOUTS) <= set(names) and len(bench.FIT_LAYOUTS) == 2
    order = [c.name for c in bench.selected("dp4 zero1", raw=False, have_profile=False)]
    assert order == [*bench.FIT_LAYOUTS, "dp4 zero1"]
    assert [c.name for c in bench.selected("hsdp 2x2", raw=True, have_profile=False)] == [
        "hsdp 2x2"
    ]
    assert len(bench.selected(None, raw=False, have_profile=True)) == len(names)
    with pytest.raises(ValueError, match=r"--only 'dp8': use one of 'dp4 zero3'"):
        bench.selected("dp8", raw=True, have_profile=False)


def test_step_time_is_the_slowest_ranks_median_after_warm_up() -> None:
    def records(times: list[float], forward: list[float], rss: float) -> list[dict[str, Any]]:
        return [
            {"step": i + 1, "step_time_s": t, "compute_s": f, "max_rss_mib": rss}
            for i, (t, f) in enumerate(zip(times, forward, strict=True))
        ]

    ranks = {
        "0": records([9.0, 9.0, 0.10, 0.30, 0.20], [5.0, 5.0, 0.07, 0.06, 0.08], 300.0),
        "1": records([9.0, 9.0, 0.40, 0.50, 0.45], [5.0, 5.0, 0.05, 0.03, 0.04], 310.0),
    }
    ranks["1"].append({"step": 6, "loss": 1.0})  # a record without a step time
    measured = bench.steady_step(ranks, skip=2)
    assert measured == bench.Measured(
        step_time_s=0.45, steps_used=3, peak_rss_mib=310.0, forward_s=0.07
    )
    with pytest.raises(ValueError, match="first 5"):
        bench.steady_step(ranks, skip=5)


def test_report_line_shows_measured_over_predicted() -> None:
    row = bench.Row(
        name="dp2 tp2 sp",
        predicted_s=0.100,
        measured=bench.Measured(
            step_time_s=0.250, steps_used=10, peak_rss_mib=370.0, forward_s=0.0301
        ),
        predicted_mib=10.0,
        floor_mib=270.0,
        baseline_s=0.125,
        raw_s=0.050,
        notes=["fit (in-sample)"],
        breakdown={"gemm_s": 0.040, "tp_comm_s": 0.060, "cp_comm_s": 0.0},
        raw_breakdown={"gemm_s": 0.050},
    )
    line, terms, raw_terms = bench.format_row(row).split("\n")
    fields = line.split()
    # step: 100 ms planned, 250 ms measured, 2.5x, 2x the one-process run
    assert fields[3:7] == ["100.0ms", "250.0ms", "2.50", "2.00"]
    # memory: 10 MiB planned, 370 - 270 = 100 MiB above the floor measured, 10x
    assert fields[7:10] == ["10.0Mi", "100.0Mi", "10.00"]
    assert "uncalibrated 50.0 ms (5.00); fit (in-sample); fwd 30.1 ms; rss 370 MiB" in line
    assert terms.strip() == "plan terms (ms): gemm 40.0 + tp_comm 60.0"
    assert raw_terms.strip() == "uncalibrated plan terms (ms): gemm 50.0"
    baseline = bench.format_row(bench.Row("1 process", 0.2, row.measured, 10.0, 270.0))
    assert baseline.split()[4:6] == ["1.25", "-"]
    assert bench.HEADER.split()[0] == "layout"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--steps", "8"], "--steps 8: fitting the profile needs at least 10"),
        (["--steps", "5", "--raw"], "--steps 5: must exceed --skip 5"),
        (["--only", "dp3", "--raw"], "--only 'dp3': use one of"),
        (["--profile", "/nonexistent/p.yaml"], "--profile: no such file '/nonexistent/p.yaml'"),
    ],
)
def test_bad_flags_exit_2_with_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert bench.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {message}") and "\n" not in err


@pytest.mark.slow
def test_smoke_one_layout_two_steps_through_scalectl_launch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The path only (see the module docstring): plan, launch, measure, one report line."""
    from contract.env import HOME_ENV

    monkeypatch.setenv(HOME_ENV, str(tmp_path))  # a registry of its own
    case = next(c for c in bench.CASES if c.name == "dp4 zero3")
    plan = bench.plan_case(case, CPU_LIKE, steps=2)
    job_dir, measured = bench.run_job(case, plan, skip=0)
    assert measured.steps_used == 2 and measured.step_time_s > 0
    assert measured.peak_rss_mib > 100  # a rank with torch loaded
    assert (job_dir / "plan.json").is_file()
    line = bench.format_row(bench.Row(case.name, 0.1, measured, bench.state_mib(plan), 0.0))
    assert line.startswith("dp4 zero3") and f"rss {measured.peak_rss_mib:,.0f} MiB" in line
    assert measured.forward_s > 0  # the trainer's per-block forward timing reached the record


def test_a_pipeline_rows_bubble_is_measured_and_shown_beside_the_plan() -> None:
    records = {
        "0": [{"step": s, "step_time_s": 0.1, "bubble_fraction": 0.4} for s in range(1, 9)],
        "1": [{"step": s, "step_time_s": 0.1, "bubble_fraction": 0.2} for s in range(1, 9)],
    }
    measured = bench.steady_step(records, skip=2)
    assert measured.bubble_fraction == pytest.approx(0.3)
    assert bench.bubble_text(0.25, 0.3) == "bubble plan 0.25 meas 0.30 (1.20)"
    dense = {"0": [{"step": s, "step_time_s": 0.1} for s in range(1, 9)]}
    assert bench.steady_step(dense, skip=2).bubble_fraction is None
