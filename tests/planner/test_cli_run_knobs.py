"""`plan estimate` / `plan search` flags that describe how the run is implemented
(--grad-lifetime, --loss-kernels, --fp8-scaling, --ring-attention): each reaches the
TrainingSpec and moves the figure its docstring says; a bad value is one line naming the
field, exit 2."""

from __future__ import annotations

import json

import pytest

from tests.planner.test_planner_cli import run

# One micro-batch per step under FSDP: the only case where --grad-lifetime matters.
BASE = ["plan", "estimate", "--model", "llama3-8b", "--gpu", "H100", "--gpus", "8",
        "--seq-len", "4k", "--global-batch", "8", "--tokens", "1e9", "--dp", "8",
        "--zero", "3", "--micro-batch", "1", "--recompute", "none", "--json"]  # fmt: skip


def _estimate(flags: list[str], capsys: pytest.CaptureFixture[str]) -> dict:  # type: ignore[type-arg]
    code, out, err = run(BASE + flags, capsys)
    assert code == 0, err
    return json.loads(out)  # type: ignore[no-any-return]


def test_grad_lifetime_backward_frees_the_gradients_at_the_activation_peak(
    capsys: pytest.CaptureFixture[str],
) -> None:
    step = _estimate([], capsys)["memory_gib"]
    backward = _estimate(["--grad-lifetime", "backward"], capsys)["memory_gib"]
    assert step["grads"] > 3.0
    assert backward["grads"] == 0.0
    assert backward["total"] == pytest.approx(step["total"] - step["grads"], rel=1e-6)


def test_grad_lifetime_needs_one_micro_batch_per_step(capsys: pytest.CaptureFixture[str]) -> None:
    accumulate = ["--global-batch", "64"]
    step = _estimate(accumulate, capsys)["memory_gib"]
    backward = _estimate([*accumulate, "--grad-lifetime", "backward"], capsys)["memory_gib"]
    assert backward == step


def test_eager_loss_holds_more_than_the_fused_one(capsys: pytest.CaptureFixture[str]) -> None:
    fused = _estimate([], capsys)
    eager = _estimate(["--loss-kernels", "eager"], capsys)
    assert eager["memory_gib"]["activations"] > fused["memory_gib"]["activations"] + 1.0
    assert eager["step"]["time_s"] > fused["step"]["time_s"]


def test_dynamic_fp8_scaling_costs_time_only_under_fp8(capsys: pytest.CaptureFixture[str]) -> None:
    fp8 = ["--precision", "fp8"]
    delayed = _estimate(fp8, capsys)["step"]["time_s"]
    dynamic = _estimate([*fp8, "--fp8-scaling", "dynamic"], capsys)["step"]["time_s"]
    assert dynamic > delayed
    bf16 = _estimate([], capsys)["step"]["time_s"]
    assert _estimate(["--fp8-scaling", "dynamic"], capsys)["step"]["time_s"] == bf16


def test_search_takes_the_same_flags(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["plan", "search", "--model", "llama3-8b", "--gpu", "H100", "--gpus", "8",
            "--seq-len", "4k", "--global-batch", "8", "--tokens", "1e9", "--top", "1",
            "--grad-lifetime", "backward", "--loss-kernels", "fused", "--fp8-scaling",
            "dynamic", "--ring-attention", "te", "--json"]  # fmt: skip
    code, out, err = run(argv, capsys)
    assert code == 0, err
    assert json.loads(out)[0]["fits"]


def test_ring_attention_prices_torchs_ring_or_transformer_engines(
    capsys: pytest.CaptureFixture[str],
) -> None:
    cp = ["--seq-len", "64k", "--dp", "4", "--cp", "2", "--recompute", "full"]
    torch = _estimate(cp, capsys)["step"]
    te = _estimate([*cp, "--ring-attention", "te"], capsys)["step"]
    assert torch["breakdown"]["cp_comm_s"] > te["breakdown"]["cp_comm_s"] > 0.0
    assert _estimate(["--ring-attention", "te"], capsys)["step"] == _estimate([], capsys)["step"]


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--grad-lifetime", "sometimes"], "grad_lifetime: Input should be 'step' or 'backward'"),
        (["--loss-kernels", "triton"], "loss_kernels: Input should be 'fused' or 'eager'"),
        (["--ring-attention", "nccl"], "ring_attention: Input should be 'torch' or 'te'"),
        (
            ["--fp8-scaling", "rowwise"],
            "fp8_scaling: Input should be 'delayed', 'dynamic' or 'current'",
        ),
    ],
)
def test_bad_values_name_the_field(
    flags: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(BASE + flags, capsys)
    assert code == 2
    assert needle in err
    assert len(err.strip().splitlines()) == 1
    assert out == ""


@pytest.mark.parametrize("ring", ["torch", "te"])
def test_the_estimate_says_whose_ring_it_priced(
    ring: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [w for w in BASE if w != "--json"]
    argv += ["--seq-len", "64k", "--dp", "4", "--cp", "2", "--recompute", "full"]
    code, out, err = run([*argv, "--ring-attention", ring], capsys)
    assert code == 0, err
    assert f"ring={ring}" in " ".join(out.split())
    code, out, err = run([*argv, "--cp-impl", "allgather"], capsys)
    assert code == 0, err
    assert "ring=" not in out and "cp_impl=allgather" in " ".join(out.split())
