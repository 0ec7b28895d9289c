"""LoRA and QLoRA adapters on one process: the layer, which modules are adapted and frozen,
the errors, NF4 storage, and merged weights against the adapted model's logits.

Tolerances: merged and adapted models run the same fp32 GEMMs in another order (W x + s
B (A x) against (W + s B A) x), a few ulps of the logits: ``LOGIT_TOL`` 1e-5 absolute on
logits of magnitude ~1 (observed 1e-6). For QLoRA the merged weight is torchao's
dequantised NF4 weight plus s·B·A, the same values the NF4 layer dequantises for its
GEMM, so the same tolerance holds.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from dataclasses import replace

import pytest
import torch
from torch import nn
from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel

from planner import finetune
from runtime.train import lora, lora_nf4, lora_tp
from runtime.train.lora import LoRAError, LoRALinear
from runtime.train.model import ModelConfig, Transformer

CFG = ModelConfig(
    layers=2, hidden=128, heads=4, kv_heads=2, ffn_hidden=256, vocab=257, seq_len=16, tied=False
)
QCFG = replace(CFG, kv_heads=4)  # every block weight a multiple of 16384 elements
GPT = replace(CFG, activation="gelu", norm="layernorm", bias=True, tied=True)
LOGIT_TOL = 1e-5


def _model(cfg: ModelConfig = CFG) -> Transformer:
    torch.manual_seed(0)
    return Transformer(cfg)


def _randomise_b(model: nn.Module) -> None:
    """B is zero at the start; a non-zero B makes the adapters change the output."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("lora_b"):
                param.normal_(0.0, 0.05)


def test_target_names_are_the_planners() -> None:
    assert lora.TARGET_GROUPS == finetune.TARGET_GROUPS
    assert set(lora.SWIGLU_MODULES) == set(finetune.TARGET_GROUPS["all"])
    assert tuple(lora.BASE_FORMATS) == tuple(finetune.BASE_FORMAT_BYTES)


def test_apply_lora_adapts_the_targets_and_freezes_the_rest() -> None:
    model = _model()
    weight = model.layers[0].attn.wq.weight
    count = lora.apply_lora(model, ("q", "v", "down"), rank=4, alpha=8.0)
    # r (d_in + d_out) per matrix (Hu et al. 2021, Sec. 4): q 128x128, v 128->64, down 256->128
    assert count == CFG.layers * 4 * ((128 + 128) + (128 + 64) + (256 + 128))
    wq = model.layers[0].attn.wq
    assert isinstance(wq, LoRALinear) and wq.weight is weight  # the same tensor, no copy
    assert wq.scale == 2.0 and not wq.weight.requires_grad
    assert type(model.layers[0].attn.wk) is nn.Linear
    assert isinstance(model.layers[1].ffn.w2, LoRALinear)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {
        f"layers.{i}.{m}.lora_{ab}"
        for i in range(2)
        for m in ("attn.wq", "attn.wv", "ffn.w2")
        for ab in "ab"
    }
    keys = set(model.state_dict())
    assert {"layers.0.attn.wq.weight", "layers.0.attn.wq.lora_a", "layers.0.attn.wq.lora_b"} <= keys
    assert model.layers[0].attn.wq.lora_a.shape == (4, 128)
    assert model.layers[0].attn.wq.lora_b.shape == (128, 4)
    assert lora.trainable_parameters(model)[0].requires_grad


def test_adapted_model_starts_as_the_base_model() -> None:
    """B = 0 (Hu et al. 2021, Sec. 4.1): the adapted model computes the base model."""
    tokens = torch.randint(0, CFG.vocab, (2, CFG.seq_len))
    base = _model()
    with torch.no_grad():
        want = base(tokens)
    lora.apply_lora(base, ("all",), rank=8, alpha=16.0)
    with torch.no_grad():
        assert torch.equal(base(tokens), want)


def test_gelu_groups_skip_the_missing_gate() -> None:
    model = _model(GPT)
    lora.apply_lora(model, ("all",), rank=4, alpha=4.0)
    assert isinstance(model.layers[0].ffn.w1, LoRALinear)  # up of a GELU MLP
    assert model.layers[0].ffn.w1.bias is not None and not model.layers[0].ffn.w1.bias.requires_grad


@pytest.mark.parametrize(
    ("cfg", "targets", "rank", "needle"),
    [
        (GPT, ("gate",), 4, "--lora-targets: this model has a GELU MLP without a 'gate'"),
        (CFG, ("qkv",), 4, "--lora-targets: unknown target 'qkv'"),
        (CFG, (), 4, "--lora-targets: names no projection"),
        (CFG, ("q",), 0, "--lora-rank 0: must be 1 or more"),
        (CFG, ("k",), 65, "--lora-rank 65 exceeds the smallest targeted matrix dimension 64"),
        (replace(CFG, experts=4, top_k=2), ("attn",), 4, "MoE models (4 experts) are not"),
    ],
)
def test_bad_requests_name_the_flag(
    cfg: ModelConfig, targets: tuple[str, ...], rank: int, needle: str
) -> None:
    model = _model(cfg)
    with pytest.raises(LoRAError, match=None) as info:
        lora.apply_lora(model, targets, rank=rank, alpha=8.0)
    message = str(info.value)
    assert needle in message and "\n" not in message
    assert info.value.user_error  # type: ignore[attr-defined]
    assert all(p.requires_grad for p in model.parameters())  # nothing half-done


def test_check_base_format() -> None:
    lora.check_base_format("bf16")
    lora.check_base_format("nf4-dq")
    with pytest.raises(LoRAError, match="--base-format nf4: torchao's NF4 always double"):
        lora.check_base_format("nf4")
    with pytest.raises(LoRAError, match=r"--base-format int8: .* plan --base-format nf4-dq"):
        lora.check_base_format("int8")
    with pytest.raises(LoRAError, match="--base-format 'fp4': use one of"):
        lora.check_base_format("fp4")


def test_merged_weights_give_the_lora_models_logits() -> None:
    model = _model(GPT)
    lora.apply_lora(model, ("all",), rank=8, alpha=16.0)
    _randomise_b(model)
    tokens = torch.randint(0, CFG.vocab, (2, CFG.seq_len))
    state = model.state_dict()
    merged = lora.merged_state_dict(state, 16.0 / 8)
    assert not any(k.endswith(("lora_a", "lora_b")) for k in merged)
    plain = _model(GPT)
    plain.load_state_dict(merged)  # strict: exactly the base model's keys
    with torch.no_grad():
        got, want = plain(tokens), model(tokens)
        assert (got - want).abs().max() <= LOGIT_TOL
        assert (plain(tokens) - _model(GPT)(tokens)).abs().max() > 100 * LOGIT_TOL
    adapters = lora.adapter_state_dict(state)
    assert set(adapters) == {k for k in state if k.endswith(("lora_a", "lora_b"))}
    assert len(adapters) == GPT.layers * 6 * 2  # q, k, v, o, up, down; A and B


def test_qlora_stores_the_blocks_linear_weights_as_nf4() -> None:
    model = _model(QCFG)
    lora.apply_lora(model, ("attn",), rank=8, alpha=16.0)
    dense = model.layers[0].ffn.w1.weight.detach().clone()
    lora.quantize_base_nf4(model)
    nf4 = {n for n, p in model.named_parameters() if lora_nf4.is_nf4(p)}
    assert nf4 == {
        f"layers.{i}.{m}.weight"
        for i in range(2)
        for m in ("attn.wq", "attn.wk", "attn.wv", "attn.wo", "ffn.w1", "ffn.w2", "ffn.w3")
    }  # embeddings, norms and the output layer keep their dtype (planner/finetune.py)
    weight = model.layers[0].ffn.w1.weight
    assert not weight.requires_grad and (weight.block_size, weight.scaler_block_size) == (64, 256)
    # 4-bit NormalFloat: about 1/10 of the weights' spread (QLoRA Sec. 3)
    error = (lora_nf4.dequantize(weight) - dense).abs().max()
    assert 0 < error < 0.2 * dense.abs().max()


def test_qlora_merged_weights_give_the_qlora_models_logits() -> None:
    model = _model(QCFG)
    lora.apply_lora(model, ("all",), rank=8, alpha=16.0)
    lora.quantize_base_nf4(model)
    _randomise_b(model)
    tokens = torch.randint(0, QCFG.vocab, (2, QCFG.seq_len))
    loss = model(tokens, tokens)
    loss.backward()  # linear_nf4's backward reaches the adapters, the base takes none
    assert model.layers[0].attn.wq.lora_a.grad is not None
    assert model.layers[0].attn.wq.weight.grad is None
    merged = lora.merged_state_dict(model.state_dict(), 2.0)
    assert not any(lora_nf4.is_nf4(v) for v in merged.values())
    plain = _model(QCFG)
    plain.load_state_dict(merged)
    with torch.no_grad():
        assert (plain(tokens) - model(tokens)).abs().max() <= LOGIT_TOL


def test_nf4_refuses_shapes_and_layouts_it_cannot_split() -> None:
    model = _model(CFG)  # k and v: 128 -> 64, 8192 elements
    with pytest.raises(LoRAError, match=r"layers.0.attn.wk.weight of shape \[64, 128\]"):
        lora.quantize_base_nf4(model)
    model = _model(QCFG)
    lora.apply_lora(model, ("all",), rank=8, alpha=16.0)
    lora.quantize_base_nf4(model)
    lora_nf4.check_nf4_layout(model, tp=1, dp_shard=1)
    with pytest.raises(LoRAError, match=r"--tp 2: QLoRA's NF4 base weights .* plan tp 1"):
        lora_nf4.check_nf4_layout(model, tp=2, dp_shard=1)
    # 128 x 128 = one block of 16384: two FSDP shards would cut it
    with pytest.raises(LoRAError, match=r"--dp 2: layers.0.attn.wq.weight of shape \[128, 128\]"):
        lora_nf4.check_nf4_layout(model, tp=1, dp_shard=2)
    assert len(lora_nf4.unsharded_nf4(model, 1)) == 14 and not lora_nf4.unsharded_nf4(model, 2)
    plan = {"attn.wq": ColwiseParallel(), "attn.wo": RowwiseParallel()}
    with pytest.raises(LoRAError, match="--tp 2: QLoRA's NF4"):
        lora_tp.lora_styles(model.layers[0], plan, 2)


def test_tp_plan_changes_only_for_lora_layers() -> None:
    model = _model()
    plan = {"attn.wq": ColwiseParallel(), "attn.wo": RowwiseParallel(), "ffn.w1": ColwiseParallel()}
    assert lora_tp.lora_styles(model.layers[0], plan, 2) == plan  # no adapters: unchanged
    lora.apply_lora(model, ("q", "o"), rank=4, alpha=4.0)
    adapted = lora_tp.lora_styles(model.layers[0], plan, 2)
    assert isinstance(adapted["attn.wq"], lora_tp.LoRAColwiseParallel)
    assert isinstance(adapted["attn.wo"], lora_tp.LoRARowwiseParallel)
    assert adapted["ffn.w1"] is plan["ffn.w1"]


def test_missing_torchao_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_torchao(name: str) -> None:
        raise ModuleNotFoundError(f"No module named {name!r}", name="torchao")

    monkeypatch.setattr(lora_nf4, "_nf4", None)
    monkeypatch.setattr(lora_nf4.importlib, "import_module", no_torchao)
    with pytest.raises(LoRAError, match=r"--finetune qlora: .*pip install 'scalectl\[qlora\]'"):
        lora.quantize_base_nf4(_model(QCFG))


def test_torchaos_cpu_import_noise_is_dropped_and_nothing_else() -> None:
    code = "from runtime.train import lora_nf4; lora_nf4.nf4_module(); print('ok')"
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
    assert "Failed to load" not in proc.stderr and "Enum subclass" not in proc.stderr
    noise = lora_nf4._ImportNoise()

    def record(message: str) -> logging.LogRecord:
        return logging.LogRecord("torchao", logging.WARNING, __file__, 1, message, None, None)

    cuda_only = "Failed to load /x/torchao/_C_cutlass_90a.abi3.so: Could not load this library"
    assert noise.filter(record(cuda_only)) == torch.cuda.is_available()
    assert noise.filter(record("Failed to load /x/torchao/_C.so: undefined symbol: foo"))
    assert noise.filter(record("Skipping import of cpp extensions due to incompatible torch"))
