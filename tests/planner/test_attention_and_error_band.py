"""Measured attention kernels (planner.attention_rates), the error band on every estimate
(planner.error_band, data/error_bands.yaml) and `scalectl plan validate`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import planner
from planner.attention_rates import measured_attention
from planner.catalog import constants_data
from planner.error_band import error_band, regime_key
from planner.formulas.kernels import backward_rates, saturating_fit

ROOT = Path(__file__).resolve().parents[2]


def test_saturating_fit_recovers_exact_parameters() -> None:
    seq = [512.0, 1024.0, 4096.0, 16384.0]
    rates = [600 * s / (s + 300) for s in seq]
    rate_max, s_half = saturating_fit(seq, rates)
    assert rate_max == pytest.approx(600) and s_half == pytest.approx(300)


def test_backward_rate_from_forward_and_combined() -> None:
    # forward 1 unit at rate 100 (0.01 s), backward 2.5 units at rate 50 (0.05 s)
    combined = 3.5 / (0.01 + 0.05)
    assert backward_rates([100.0], [combined], 2.5) == [pytest.approx(50.0)]


@pytest.mark.parametrize("kernel", ["fa2", "fa3", "cudnn"])
def test_fit_reproduces_the_measured_forward_points(kernel: str) -> None:
    table = constants_data()["attention_kernels"]["hopper"]
    fwd_eff, _, s_half = measured_attention("hopper", kernel, 128, 989.0) or (0, 0, 0)
    for s, measured in zip(table["seq_len"], table["fwd"][kernel][128], strict=True):
        executed = measured * (s + 128) / s  # the benchmark counts half the causal matrix
        fitted = 989.0 * fwd_eff * s / (s + s_half)
        assert fitted == pytest.approx(executed, rel=0.12), (kernel, s)


def test_kernels_rank_as_measured_and_unknown_cases_fall_back() -> None:
    rates = {k: measured_attention("hopper", k, 128, 989.0) for k in ("fa2", "cudnn", "fa3")}
    assert rates["fa2"][0] < rates["cudnn"][0] < rates["fa3"][0]  # type: ignore[index]
    assert measured_attention(None, "fa3", 128, 989.0) is None
    assert measured_attention("hopper", "flash", 128, 989.0) is None
    mid = measured_attention("hopper", "fa3", 96, 989.0)
    lo, hi = measured_attention("hopper", "fa3", 64, 989.0), rates["fa3"]
    assert min(lo[0], hi[0]) <= mid[0] <= max(lo[0], hi[0])  # type: ignore[index]


def test_cudnn_8_9_is_cudnn_9_over_its_release_note_speedup() -> None:
    speedup = float(constants_data()["cudnn9_flash_speedup_over_8_9_hopper"])
    new = measured_attention("hopper", "cudnn", 128, 989.0)
    old = measured_attention("hopper", "cudnn8.9", 128, 989.0)
    assert new is not None and old is not None and speedup > 1
    assert old[0] == pytest.approx(new[0] / speedup) and old[1] == pytest.approx(new[1] / speedup)
    assert old[2] == new[2]  # same saturation length: one kernel design, slower
    assert measured_attention(None, "cudnn8.9", 128, 989.0) is None


def test_triton_is_fa2_over_fa2s_speedup_per_pass() -> None:
    speedup = constants_data()["fa2_speedup_over_triton"]
    fa2 = measured_attention("hopper", "fa2", 128, 989.0)
    triton = measured_attention("hopper", "triton", 128, 989.0)
    assert fa2 is not None and triton is not None
    assert speedup["bwd"] > speedup["fwd"] > 1  # Dao 2023, Sec. 4.1: 1.3-1.5x fwd, 2x bwd
    assert triton[0] == pytest.approx(fa2[0] / speedup["fwd"])
    assert triton[1] == pytest.approx(fa2[1] / speedup["bwd"])
    assert triton[2] == fa2[2]


def _estimate(kernel: str, seq: int = 32768) -> planner.Estimate:
    return planner.estimate(
        planner.get_model("llama3-8b"),
        planner.ClusterSpec(gpu="H100-SXM-80GB", num_gpus=8),
        planner.TrainingSpec(seq_len=seq, global_batch_seqs=8, total_tokens=1e11,
                             attention_kernel=kernel),  # type: ignore[arg-type]
        planner.Layout(dp=8, sharding="zero3", recompute="full"),
    )  # fmt: skip


def test_long_sequence_time_follows_the_kernel() -> None:
    kernels = ("triton", "cudnn8.9", "fa2", "cudnn", "fa3")
    times = {k: _estimate(k).step.breakdown["attention_s"] for k in kernels}
    assert times["cudnn8.9"] > times["cudnn"] and times["fa2"] > times["cudnn"] > times["fa3"]
    assert times["triton"] > times["fa2"]
    # sdpa_math materialises the scores like unfused attention
    assert _estimate("sdpa_math", 4096).memory_gib.activations == pytest.approx(
        _estimate("unfused", 4096).memory_gib.activations
    )


def test_error_band_by_regime_with_fallback() -> None:
    model = planner.get_model("llama3-8b")
    training = planner.TrainingSpec(seq_len=4096, global_batch_seqs=64, total_tokens=1e11)
    band = error_band(model, training, planner.Layout(dp=2, pp=4, tp=1))
    assert band.regime == regime_key(False, True, 4096) == band.basis
    assert 0 < band.step_time_rel < 1 and band.step_time_runs > 0 and band.memory_runs > 0
    moe = planner.get_model("mixtral-8x7b")
    long = planner.TrainingSpec(seq_len=65536, global_batch_seqs=8, total_tokens=1e11)
    fallback = error_band(moe, long, planner.Layout(dp=8))
    assert fallback.regime == "moe, no pp, seq>16k" and fallback.basis == "moe"


def test_fine_tuning_memory_band_comes_from_its_own_rows() -> None:
    from planner.catalog import read_data

    data = read_data("error_bands.yaml")
    model = planner.get_model("llama3-8b")
    layout = planner.Layout(dp=1, recompute="full")

    def band(**finetune: object) -> float:
        training = planner.TrainingSpec(
            seq_len=2048, global_batch_seqs=2, total_tokens=1e9, **finetune
        )
        return error_band(model, training, layout).memory_rel

    assert band() == data["memory"]["rms_rel"]
    assert band(finetune="lora") == band(finetune="qlora") == data["memory_finetune"]["rms_rel"]
    assert band(finetune="full") == data["memory_finetune_full"]["rms_rel"]
    assert len({band(), band(finetune="lora"), band(finetune="full")}) == 3


def test_error_bands_file_is_generated_from_the_current_table() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "error_bands.py"), "--check"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def _scalectl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scalectl", "plan", *args],
        capture_output=True, text=True, check=False, cwd=ROOT,
    )  # fmt: skip


def test_plan_validate_json_has_every_row_and_the_summary() -> None:
    done = _scalectl("validate", "--json")
    assert done.returncode == 0, done.stderr
    table = json.loads(done.stdout)
    gaps = [r for r in table["rows"] if r["known_gap"]]
    assert len(gaps) == table["known_gaps"] >= 2
    assert table["rows_counted"] + table["known_gaps"] == len(table["rows"])
    errors = sorted(abs(r["error"]) for r in table["rows"] if not r["known_gap"])
    assert table["worst_abs_error"] == pytest.approx(errors[-1])
    assert 0 < table["median_abs_error"] <= table["worst_abs_error"]
    # published runs ran: the memory model's misses are flagged, not hidden
    fits = {r["case"]: r["planner_fits"] for r in table["rows"]}
    assert fits["megatron-readme-gpt-462b"] is True and fits["energy-llama2-7b-gpu_hours"] is None


def test_plan_validate_table_and_bad_cases_dir(tmp_path: Path) -> None:
    done = _scalectl("validate")
    assert done.returncode == 0 and "median |error|" in done.stdout and "known gap" in done.stdout
    bad = _scalectl("validate", "--cases", str(tmp_path))
    assert bad.returncode == 2 and "--cases" in bad.stderr and bad.stdout == ""


def test_estimate_json_and_text_carry_the_band() -> None:
    args = ("estimate", "-m", "llama3-8b", "--gpu", "H100", "--gpus", "8", "--seq-len", "8k",
            "--global-batch", "8")  # fmt: skip
    data = json.loads(_scalectl(*args, "--json").stdout)
    assert data["error_band"]["regime"] == "dense, no pp, seq 4k-16k"
    assert "expected error (dense, no pp, seq 4k-16k)" in _scalectl(*args).stdout.replace("\n", " ")
