"""Fine-tuning (TrainingSpec.finetune, issue 19 item 1): each term against hand-computed
numbers, the three evaluation paths on LoRA/QLoRA candidates, and the CLI's bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import planner
from planner.core import Outputs, evaluate
from planner.errors import PlanInputError
from planner.estimator import compiled_for
from planner.finetune import BASE_FORMAT_BYTES, adapter_width, resolve_targets
from planner.formulas import flops
from planner.inputs import build_inputs, constants, stack_inputs
from planner.terms import run as run_terms
from planner.units import GIB
from tests.planner.test_planner_cli import run as run_cli

LLAMA2_7B = planner.get_model("llama2-7b")
# Llama 2 7B: h 4096, 32 heads of 128 (MHA), SwiGLU ffn 11008, 32 layers, vocab 32000.
ALL_WIDTH = 4 * (4096 + 4096) + 3 * (4096 + 11008)
"""Σ(d_in + d_out) of q, k, v, o (4096 x 4096 each) and gate, up, down (4096 x 11008)."""


def _training(**kw: object) -> planner.TrainingSpec:
    return planner.TrainingSpec(seq_len=512, global_batch_seqs=8, total_tokens=1e9, **kw)


def _one_gpu(training: planner.TrainingSpec, **layout: object) -> planner.Estimate:
    cluster = planner.ClusterSpec(gpu="H100", num_gpus=1)
    return planner.estimate(
        LLAMA2_7B, cluster, training, planner.Layout(dp=1, micro_batch=1, **layout)
    )


def test_base_format_bytes_follow_the_qlora_paper() -> None:
    # Dettmers et al. 2023, Sec. 3: 4 bits + 32/64 bits of FP32 absmax per block of 64;
    # double quantisation: 8/64 + 32/(64·256) = 0.127 bit of constants per parameter.
    assert BASE_FORMAT_BYTES["nf4"] == pytest.approx((4 + 0.5) / 8)
    dq_bits = BASE_FORMAT_BYTES["nf4-dq"] * 8 - 4
    assert dq_bits == pytest.approx(0.127, abs=5e-4)
    assert BASE_FORMAT_BYTES["bf16"] == 2.0 and BASE_FORMAT_BYTES["int8"] == 1.0


def test_targets_and_adapter_width() -> None:
    assert resolve_targets("attn") == ("q", "k", "v", "o")
    assert resolve_targets("q,v,q") == ("q", "v")
    assert resolve_targets(None) == ("q", "k", "v", "o", "gate", "up", "down")
    assert adapter_width(LLAMA2_7B, resolve_targets("all")) == (float(ALL_WIDTH), 7.0)
    # PEFT's LoRA r=8 on every linear layer of Llama 2 7B: 19,988,480 trainable parameters.
    assert 8 * ALL_WIDTH * 32 == 19_988_480
    kv = planner.get_model("llama3-8b")  # GQA: K and V are 8 x 128 = 1024 wide
    assert adapter_width(kv, ("k",)) == (4096.0 + 1024.0, 1.0)


def test_lora_model_states_by_hand() -> None:
    est = _one_gpu(_training(finetune="lora", lora_rank=8))
    adapters = 8 * ALL_WIDTH * 32
    # Adapters: FP32 gradients (4 bytes) and AdamW's FP32 master + two states (12 bytes).
    assert est.memory_gib.grads == pytest.approx(4 * adapters / GIB, rel=1e-9)
    assert est.memory_gib.optimizer == pytest.approx(12 * adapters / GIB, rel=1e-9)
    # Frozen BF16 weights (all 6.74B parameters) plus the BF16 adapters.
    total_params = LLAMA2_7B.num_params
    assert est.memory_gib.params == pytest.approx(2 * (total_params + adapters) / GIB, rel=1e-9)


def test_qlora_weights_by_hand() -> None:
    est = _one_gpu(_training(finetune="qlora", lora_rank=64, base_format="nf4"))
    adapters = 64 * ALL_WIDTH * 32
    h, v, layers = 4096, 32000, 32
    layer = 4 * h * h + 3 * h * 11008 + 2 * h  # matrices plus the two RMSNorm weights
    rest = LLAMA2_7B.num_params - layers * layer  # embedding, output layer, final norm
    expected = 0.5625 * layers * layer + 2 * rest + 2 * adapters
    assert rest == 2 * v * h + h
    assert est.memory_gib.params == pytest.approx(expected / GIB, rel=1e-9)
    assert est.memory_gib.grads == pytest.approx(4 * adapters / GIB, rel=1e-9)
    # One layer's weights dequantised to BF16: a transient workspace, counted in "other".
    lora = _one_gpu(_training(finetune="lora", lora_rank=64))
    grown = (est.memory_gib.other - lora.memory_gib.other) * GIB
    # ... beyond the loss's buffers (6 bytes per logit), which the backward frees before
    # the first layer's backward dequantises its weights again.
    assert grown >= 2 * layer - 6 * 512 * 32000


def test_lora_under_zero3_shards_frozen_weights_and_adapters() -> None:
    cluster = planner.ClusterSpec(gpu="H100", num_gpus=8)
    tr = _training(finetune="lora", lora_rank=8)
    one = _one_gpu(tr)
    eight = planner.estimate(LLAMA2_7B, cluster, tr, planner.Layout(dp=8, sharding="zero3"))
    for part in ("params", "grads", "optimizer"):
        assert getattr(eight.memory_gib, part) == pytest.approx(
            getattr(one.memory_gib, part) / 8, rel=1e-9
        )


def test_adapter_activations_add_the_rank_wide_intermediates() -> None:
    base = _one_gpu(_training(), recompute="none")
    lora = _one_gpu(_training(finetune="lora", lora_rank=16, lora_targets="q,v"), recompute="none")
    extra = 2 * 512 * 16 * 2 * 32  # BF16 x tokens x r x 2 matrices x 32 layers
    assert (lora.memory_gib.activations - base.memory_gib.activations) * GIB == pytest.approx(
        extra, rel=1e-9
    )


def test_finetune_flops_by_hand() -> None:
    # 6N pre-training minus the frozen weight gradients (2N) plus 6·r·W per layer.
    n_fwd, layers, rank, width = 2.0e9, 32.0, 8.0, 100.0
    assert flops.finetune_flops_per_token(0.0, n_fwd, layers, rank, width) == 0.0
    assert flops.finetune_flops_per_token(1.0, n_fwd, layers, rank, width) == pytest.approx(
        6 * 32 * 8 * 100 - 2.0e9
    )
    # Full recompute reruns the adapters' forward: 8·r·W per layer of hardware FLOPs.
    assert flops.finetune_flops_per_token(1.0, n_fwd, layers, rank, width, 2.0) == pytest.approx(
        8 * 32 * 8 * 100 - 2.0e9
    )


def test_model_flops_count_what_lora_executes() -> None:
    cluster = planner.ClusterSpec(gpu="H100", num_gpus=1)
    layout = planner.Layout(dp=1)
    x_pre = build_inputs(LLAMA2_7B, cluster.accelerator(), cluster, _training(), layout)
    tr = _training(finetune="lora", lora_rank=8)
    x_lora = build_inputs(LLAMA2_7B, cluster.accelerator(), cluster, tr, layout)
    tokens, pre, _ = run_terms.step_flops(x_pre, constants())
    _, lora, _ = run_terms.step_flops(x_lora, constants())
    mm_fwd = 2 * (LLAMA2_7B.num_params - 32000 * 4096 - 4096 - 32 * 2 * 4096)
    assert (lora - pre) / tokens == pytest.approx(6 * 32 * 8 * ALL_WIDTH - mm_fwd, rel=1e-9)


def test_full_finetune_is_pretraining_and_lora_is_faster() -> None:
    pre = _one_gpu(_training(), recompute="full")
    full = _one_gpu(_training(finetune="full"), recompute="full")
    assert full.step.time_s == pre.step.time_s and full.memory_gib.total == pre.memory_gib.total
    lora = _one_gpu(_training(finetune="lora"), recompute="full")
    assert lora.step.breakdown["gemm_s"] < pre.step.breakdown["gemm_s"]
    assert lora.step.breakdown["optimizer_s"] < pre.step.breakdown["optimizer_s"] / 100
    qlora = _one_gpu(_training(finetune="qlora"), recompute="full")
    # Dequantisation is memory-bound time the BF16 LoRA run does not have.
    assert qlora.step.breakdown["memory_bound_s"] > lora.step.breakdown["memory_bound_s"]


def _finetune_candidates() -> list[tuple]:  # type: ignore[type-arg]
    out = []
    cluster = planner.ClusterSpec(gpu="H100", num_gpus=16)
    for name in ("llama3-8b", "llama2-70b", "mixtral-8x7b"):
        model = planner.get_model(name)
        for ft, targets, fmt, run in (
            ("lora", "attn", None, {}),
            ("qlora", "attn", "nf4-dq", {}),
            ("qlora", "q,v", "int8", {}),
            # a published run's QLoRA implementation (tests/planner/test_qlora_runs.py)
            ("qlora", "attn", "nf4", {"qlora_input_copies": 2, "nf4_init_unchunked": True}),
        ):
            tr = _training(finetune=ft, lora_rank=16, lora_targets=targets, base_format=fmt, **run)
            for sharding, recompute, tp, pp in (
                ("zero3", "full", 1, 1), ("zero1", "selective", 4, 2), ("hsdp", "none", 2, 1),
            ):  # fmt: skip
                ep = 2 if model.is_moe else 1
                lo = planner.Layout(
                    dp=16 // (tp * pp), tp=tp, pp=pp, sharding=sharding, recompute=recompute,
                    hsdp_shard_size=4 if sharding == "hsdp" else None, ep=ep,
                    sequence_parallel=tp > 1,
                )  # fmt: skip
                if not planner.layout_problems(model, cluster, tr, lo):
                    out.append((model, cluster, tr, lo))
    return out


def test_three_paths_agree_on_finetune_candidates() -> None:
    cases = _finetune_candidates()
    assert len(cases) > 15
    xs = [build_inputs(m, cl.accelerator(), cl, tr, lo) for m, cl, tr, lo in cases]
    with np.errstate(all="raise"):
        arrays = evaluate(stack_inputs(xs), constants())
    for i, x in enumerate(xs):
        plain = evaluate(x, constants())
        fast = compiled_for(x)(x)
        for name, a, b, column in zip(Outputs._fields, plain, fast, arrays, strict=True):
            assert float(a) == pytest.approx(float(b), rel=1e-12, abs=1e-12), (name, cases[i][3])
            assert float(np.asarray(column)[i]) == pytest.approx(float(b), rel=1e-12, abs=1e-12)


def test_search_plans_a_lora_request() -> None:
    cluster = planner.ClusterSpec(gpu="H100", num_gpus=8)
    tr = _training(finetune="qlora", lora_rank=64)
    result = planner.search(planner.get_model("llama2-70b"), cluster, tr)
    best = result.plan().estimate
    assert best.fits and best.memory_gib.grads < 1.0


BASE = ["plan", "estimate", "--model", "llama2-7b", "--gpu", "H100", "--gpus", "8",
        "--seq-len", "2k", "--global-batch", "64", "--tokens", "1e9"]  # fmt: skip


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--lora-rank", "8"], "--lora-rank needs --finetune lora or qlora"),
        (["--finetune", "full", "--lora-targets", "attn"], "--lora-targets needs --finetune"),
        (["--finetune", "lora", "--base-format", "nf4"], "--base-format needs --finetune qlora"),
        (["--finetune", "lora", "--lora-targets", "q,ffn"], "unknown target 'ffn'"),
        (["--finetune", "qlora", "--lora-rank", "5000"], "use --lora-rank 4096 or less"),
    ],
)
def test_bad_finetune_flags_exit_2_with_one_line(
    flags: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli([*BASE, *flags], capsys)
    assert code == 2
    assert needle in err and len(err.strip().splitlines()) == 1, err


def test_estimate_lora_with_a_config_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "config.json"
    cfg.write_text(
        json.dumps(
            {
                "hidden_size": 512,
                "num_hidden_layers": 4,
                "num_attention_heads": 8,
                "intermediate_size": 1376,
                "vocab_size": 1000,
                "model_type": "llama",
            }
        )
    )
    argv = ["plan", "estimate", "--model", str(cfg), "--gpu", "H100", "--gpus", "1",
            "--seq-len", "512", "--global-batch", "8", "--tokens", "1e6", "--finetune",
            "lora", "--lora-rank", "8", "--lora-alpha", "16", "--json"]  # fmt: skip
    code, out, err = run_cli(argv, capsys)
    assert code == 0, err
    est = json.loads(out)
    adapters = 8 * (4 * (512 + 512) + 3 * (512 + 1376)) * 4
    assert est["memory_gib"]["grads"] == pytest.approx(4 * adapters / GIB, rel=1e-9)
    # The table says what the plan trains, in the trainer's count (its start-up line).
    code, out, err = run_cli([a for a in argv if a != "--json"], capsys)
    assert code == 0, err
    assert f"lora fine-tuning, rank 8 on q,k,v,o,gate,up,down: {adapters:,} of" in out


def test_rank_check_names_the_smallest_dimension() -> None:
    with pytest.raises(PlanInputError, match="smallest targeted matrix dimension 1024"):
        cluster = planner.ClusterSpec(gpu="H100", num_gpus=1)
        tr = _training(finetune="lora", lora_rank=2048, lora_targets="k")
        planner.estimate(planner.get_model("llama3-8b"), cluster, tr, planner.Layout(dp=1))


def test_lora_estimates_carry_the_finetune_memory_band() -> None:
    from planner.catalog import read_data
    from planner.error_band import error_band

    data = read_data("error_bands.yaml")
    layout = planner.Layout(dp=1)
    pre = error_band(LLAMA2_7B, _training(), layout)
    lora = error_band(LLAMA2_7B, _training(finetune="qlora"), layout)
    assert pre.memory_rel == data["memory"]["rms_rel"]
    assert lora.memory_rel == data["memory_finetune"]["rms_rel"]
    assert lora.memory_runs == data["memory_finetune"]["runs"] > 0
