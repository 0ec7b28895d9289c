"""MoE parts in one process: the layer against a token-by-token computation, capacity
and its drops, the load-balancing loss, routing counts, the dense first layers, the plan's
MoE fields, and the MoE layouts the trainer refuses (exit 2, one line, nothing created).
Expert parallelism itself is proven by the parity runs in test_train_layouts.py."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from trainer_harness import assert_refused, describe, events, losses_by_step, progress, run_trainer

from runtime.train import moe
from runtime.train.config import ConfigError, parse_config
from runtime.train.model import ModelConfig, SwiGLU, Transformer

HIDDEN = 16


def _layer(**kwargs: Any) -> moe.MoE:
    torch.manual_seed(0)
    options: dict[str, Any] = {"experts": 4, "top_k": 2, "width": 8, "shared_width": 8,
                               "score": "softmax", "capacity_factor": 0.0,
                               "aux_loss_coef": 0.01} | kwargs  # fmt: skip
    layer = moe.MoE(HIDDEN, **options)
    for param in layer.parameters():
        torch.nn.init.normal_(param, std=0.3)
    return layer


def _by_token(layer: moe.MoE, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
    """The layer's output computed one token at a time, from its definition."""
    rows = []
    for index, token in enumerate(x.reshape(-1, HIDDEN)):
        scores = layer.router(token)
        scores = scores.softmax(-1) if layer.score == "softmax" else scores.sigmoid()
        top, chosen = scores.topk(layer.top_k)
        if layer.score == "sigmoid":
            top = top / top.sum()
        out = layer.shared(token) if layer.shared is not None else torch.zeros(HIDDEN)
        for slot, (gate, expert) in enumerate(zip(top, chosen.tolist(), strict=True)):
            if keep is None or keep[index, slot]:
                out = out + gate * layer.experts[str(expert)](token)
        rows.append(out)
    return torch.stack(rows).reshape(x.shape)


@pytest.mark.parametrize("score", ["softmax", "sigmoid"])
def test_dropless_layer_is_the_token_by_token_sum(score: str) -> None:
    layer = _layer(score=score)
    x = torch.randn(2, 5, HIDDEN)
    torch.testing.assert_close(layer(x), _by_token(layer, x), rtol=1e-5, atol=1e-6)
    stats = moe.step_stats(layer, torch.device("cpu"))
    assert sum(stats["moe_tokens_per_expert"]) == 2 * 5 * 2
    assert stats["moe_dropped_tokens"] == 0


def test_capacity_keeps_first_choices_first_then_token_order() -> None:
    # Tokens 0..3 all pick expert 0 first; tokens 0 and 1 pick expert 1 second.
    chosen = torch.tensor([[0, 1], [0, 1], [0, 2], [0, 3]])
    keep = moe.within_capacity(chosen, experts=4, capacity=2)
    assert keep.tolist() == [[True, True], [True, True], [False, True], [False, True]]


def test_dropped_assignments_leave_the_residual_and_are_counted() -> None:
    layer = _layer(capacity_factor=1.0, shared_width=0)
    x = torch.randn(1, 12, HIDDEN)
    _, chosen = layer.router(x.reshape(-1, HIDDEN)).softmax(-1).topk(2)
    capacity = math.ceil(1.0 * 12 * 2 / 4)
    keep = moe.within_capacity(chosen, 4, capacity)
    assert not keep.all(), "the test needs an overfull expert"
    torch.testing.assert_close(layer(x), _by_token(layer, x, keep), rtol=1e-5, atol=1e-6)
    stats = moe.step_stats(layer, torch.device("cpu"))
    assert stats["moe_dropped_tokens"] == int((~keep).sum())
    assert max(stats["moe_tokens_per_expert"]) <= capacity
    # A token whose every assignment was dropped passes through as zero (the residual).
    layer.capacity_factor = 1e-9  # capacity 1: one assignment per expert
    assert int((layer(x).abs().sum(-1) == 0).sum()) >= 12 - 4


def test_switch_loss_is_one_when_balanced_and_grows_when_not() -> None:
    even = torch.full((8, 4), 0.25)
    assert moe.switch_aux_loss(even, torch.tensor([2, 2, 2, 2]), 8).item() == pytest.approx(1.0)
    skewed = torch.tensor([[0.7, 0.1, 0.1, 0.1]] * 8)
    assert moe.switch_aux_loss(skewed, torch.tensor([8, 0, 0, 0]), 8).item() == pytest.approx(2.8)


def test_aux_loss_reaches_the_router_with_the_accumulation_scale() -> None:
    layer = _layer(aux_loss_coef=1.0)
    x = torch.randn(1, 6, HIDDEN)
    moe.AuxLossScaler.scale = 0.5
    try:
        layer(x).sum().backward()
        with_aux = layer.router.weight.grad.clone()  # type: ignore[union-attr]
        layer.zero_grad()
        layer.aux_loss_coef = 0.0
        layer(x).sum().backward()
    finally:
        moe.AuxLossScaler.scale = 1.0
    assert not torch.allclose(with_aux, layer.router.weight.grad)  # type: ignore[arg-type]


def test_dense_first_layers_and_expert_names() -> None:
    cfg = ModelConfig(layers=3, hidden=32, heads=4, kv_heads=2, ffn_hidden=64, vocab=257,
                      seq_len=8, tied=False, experts=4, top_k=2, moe_ffn_hidden=16,
                      shared_ffn_hidden=32, dense_first_layers=1)  # fmt: skip
    model = Transformer(cfg)
    ffns = [block.ffn for block in model.layers]  # type: ignore[union-attr]
    assert isinstance(ffns[0], SwiGLU) and all(isinstance(f, moe.MoE) for f in ffns[1:])
    names = {n for n, _ in model.named_parameters()}
    assert "layers.2.ffn.experts.3.w2.weight" in names and "layers.1.ffn.router.weight" in names
    loss = model(torch.randint(0, 257, (2, 8)), torch.randint(0, 257, (2, 8)))
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def _moe_plan(tmp_path: Path, **changes: Any) -> Path:
    plan: dict[str, Any] = {
        "model": {"num_layers": 3, "hidden_size": 32, "num_attention_heads": 4,
                  "num_kv_heads": 2, "num_experts": 4, "top_k": 2, "moe_ffn_hidden_size": 16,
                  "shared_expert_ffn_hidden_size": 32, "dense_first_layers": 1,
                  "router_score": "sigmoid"},
        "training": {"seq_len": 16, "global_batch_seqs": 8, "moe_capacity_factor": 1.25},
        "layout": {"dp": 4, "ep": 2, "tp": 1, "micro_batch": 2, "sharding": "zero3"},
    }  # fmt: skip
    for key, value in changes.items():
        section, field = key.split("__")
        plan[section][field] = value
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))
    return path


def test_the_plans_moe_fields_reach_the_trainer(tmp_path: Path) -> None:
    cfg = parse_config(["--plan", str(_moe_plan(tmp_path))])
    got = (cfg.experts, cfg.top_k, cfg.moe_ffn_hidden, cfg.shared_ffn_hidden,
           cfg.dense_first_layers, cfg.router_score, cfg.moe_capacity_factor, cfg.ep)  # fmt: skip
    assert got == (4, 2, 16, 32, 1, "sigmoid", 1.25, 2)
    dropless = json.loads(_moe_plan(tmp_path).read_text())
    dropless["training"]["moe_capacity_factor"] = None
    (tmp_path / "dropless.json").write_text(json.dumps(dropless))
    assert parse_config(["--plan", str(tmp_path / "dropless.json")]).moe_capacity_factor == 0.0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"layout__ep": 3}, "plan layout.ep 3: must divide the 4 experts"),
        ({"layout__expert_tp": 2}, "plan layout.expert_tp 2: the reference trainer's experts"),
        ({"layout__tp": 2}, "plan layout.tp 2: with 4 experts: the trainer's MoE layers run"),
        ({"layout__cp": 2}, "plan layout.cp 2: with 4 experts: the expert mesh does not span"),
        ({"model__top_k": 5}, "plan model.top_k 5: must be 1 to the 4 experts"),
        ({"model__router_score": "relu"}, "plan model.router_score relu: use softmax or"),
        ({"model__dense_first_layers": 3}, "plan model.dense_first_layers 3: must be fewer"),
        ({"training__moe_capacity_factor": 0.5}, "plan training.moe_capacity_factor 0.5: must"),
    ],
)
def test_moe_plans_the_trainer_cannot_run_name_the_field(
    tmp_path: Path, changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(["--plan", str(_moe_plan(tmp_path, **changes))])
    assert message in str(info.value) and "\n" not in str(info.value)


TINY_MOE = ["--layers", "2", "--hidden", "32", "--heads", "4", "--kv-heads", "2",
            "--seq-len", "16", "--experts", "4", "--top-k", "2"]  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--ep", "2"], "--ep 2: experts are split over the 1 data-parallel ranks that shard"),
        (["--ep", "3"], "--ep 3: must divide the 4 experts"),
        (["--experts", "1", "--ep", "2"], "--ep 2: the model has no experts (experts 1)"),
        (["--recompute", "full"], "--recompute full: with 4 experts: an MoE block is not"),
        (["--compile"], "--compile True: with 4 experts: the MoE layers' token exchange"),
        (["--pp", "2"], "--pp 2: with 4 experts: the trainer's MoE layers run without"),
    ],
)
def test_moe_layouts_this_job_cannot_run_exit_2_before_any_file(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    message: str,
) -> None:
    assert_refused([*TINY_MOE, *argv], message, tmp_path / "job", capsys, monkeypatch)


@pytest.mark.slow
def test_an_ep2_checkpoint_resumes_at_other_ep(tmp_path: Path) -> None:
    """Written under ep2 x dp4 (each rank saves its experts under their whole-model
    names), resumed under ep1 and then ep4: the losses continue as an ep2 run that was
    never interrupted. Warm-up outlasts the run, so a step's learning rate does not
    depend on ``--steps``."""
    common = [*TINY_MOE, "--micro-batch", "2", "--warmup-steps", "50", "--ckpt-every", "0",
              "--eval-every", "0", "--shared-ffn-hidden", "32",
              "--dense-first-layers", "1"]  # fmt: skip
    job, straight = tmp_path / "job", tmp_path / "straight"
    for args in (["--ep", "2", "--steps", "2"], ["--steps", "4"], ["--ep", "4", "--steps", "6"]):
        run = run_trainer(job, 4, [*common, *args])
        assert run.returncode == 0, describe(run)
    run = run_trainer(straight, 4, [*common, "--ep", "2", "--steps", "6"])
    assert run.returncode == 0, describe(run)
    assert [e["ep"] for e in events(job, "layout_applied")] == [2, 1, 4]
    got, want = losses_by_step(progress(job)), losses_by_step(progress(straight))
    assert sorted(got) == sorted(want) == list(range(1, 7))
    rel = max(abs(got[s] - want[s]) / want[s] for s in want)
    assert rel <= 1e-4, f"{got} against an uninterrupted ep2 run {want}"
