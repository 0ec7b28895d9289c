"""Writing Hugging Face checkpoints and PEFT adapters: transformers loads what we write
and computes our logits; a failed write leaves nothing behind."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import hf_tiny_dirs
import pytest
import torch
from hf_tiny_dirs import TinyHF, ours_from, tokens, transformers_from

from runtime.train import hf_export
from runtime.train.hf_checkpoint import CheckpointError
from runtime.train.hf_export import (
    export_hf,
    export_peft_adapter,
    parameter_shapes,
    shard_groups,
)

pytest.importorskip("transformers")
tiny_hf = hf_tiny_dirs.tiny_hf  # the shared fixture

PARITY_ATOL = 2e-5
"""As in test_hf_checkpoint: fp32 logits of magnitude ~4 differ by ~4e-6."""


def _their_logits(directory: Path, batch: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return transformers_from(directory)(batch).logits


def _tensors(directory: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    out: dict[str, torch.Tensor] = {}
    for file in sorted(directory.glob("*.safetensors")):
        out.update(load_file(file))
    return out


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_round_trip_through_transformers(tiny_hf: TinyHF, tmp_path: Path, family: str) -> None:
    source = tiny_hf(family)
    ours = ours_from(source, 64)
    out = tmp_path / "export"
    export_hf(out, ours.state_dict(), ours.cfg, source, torch.float32)
    batch = tokens(ours.cfg.vocab, 64)
    with torch.no_grad():
        expected = ours(batch)
    assert (_their_logits(out, batch) - expected).abs().max() < PARITY_ATOL
    # The same tensors under the same names as the source: the row reordering undone.
    source_tensors, written = _tensors(source), _tensors(out)
    assert source_tensors.keys() == written.keys()
    for name, tensor in source_tensors.items():
        assert torch.equal(written[name], tensor), name
    for name in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        assert (out / name).read_bytes() == (source / name).read_bytes()
    assert json.loads((out / "config.json").read_text())["dtype"] == "float32"
    assert not [p for p in tmp_path.iterdir() if p.name != "export"]  # no staging left


def test_shards_dtype_and_metadata(tiny_hf: TinyHF, tmp_path: Path) -> None:
    source = tiny_hf("llama")
    ours = ours_from(source, 64)
    out = tmp_path / "bf16"
    limit = 300_000
    export_hf(out, ours.state_dict(), ours.cfg, source, torch.bfloat16, max_shard_bytes=limit)
    index = json.loads((out / "model.safetensors.index.json").read_text())
    files = sorted(set(index["weight_map"].values()))
    assert len(files) > 2 and files[0] == f"model-00001-of-{len(files):05d}.safetensors"
    assert sorted(p.name for p in out.glob("*.safetensors")) == files
    assert index["metadata"]["total_size"] == 2 * sum(p.numel() for p in ours.parameters())
    from safetensors import safe_open

    for file in files:
        with safe_open(str(out / file), framework="pt") as handle:
            assert handle.metadata() == {"format": "pt"}
            sizes = [handle.get_tensor(k).nbytes for k in handle.keys()]  # noqa: SIM118
            assert len(sizes) == 1 or sum(sizes) <= limit
            assert all(handle.get_tensor(k).dtype == torch.bfloat16 for k in handle.keys())  # noqa: SIM118
    config = json.loads((out / "config.json").read_text())
    assert config["dtype"] == "bfloat16" and config["model_type"] == "llama"
    batch = tokens(ours.cfg.vocab, 64)
    with torch.no_grad():
        bf16 = ours.to(torch.bfloat16)(batch).float()
    # transformers computes in fp32 from the bf16 weights; ours in bf16: the bf16 rounding.
    assert (_their_logits(out, batch) - bf16).abs().max() < 0.1


def test_shard_groups_cut_as_huggingface_hub() -> None:
    sizes = [("a", 4), ("b", 4), ("c", 9), ("d", 1), ("e", 3)]
    assert shard_groups(sizes, 8) == [["a", "b"], ["c"], ["d", "e"]]
    assert shard_groups(sizes, 100) == [["a", "b", "c", "d", "e"]]


def test_a_failed_write_leaves_nothing(
    tiny_hf: TinyHF, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tiny_hf("llama")
    ours = ours_from(source, 64)
    state = ours.state_dict()
    calls: list[Path] = []
    real_save = hf_export._save

    def failing_save(tensors: dict[str, torch.Tensor], path: Path) -> None:
        calls.append(path)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real_save(tensors, path)

    monkeypatch.setattr(hf_export, "_save", failing_save)
    out = tmp_path / "export"
    with pytest.raises(OSError, match="No space"):
        export_hf(out, state, ours.cfg, source, torch.float32, max_shard_bytes=300_000)
    assert calls[0].is_relative_to(tmp_path) and not calls[0].exists()
    assert list(tmp_path.iterdir()) == []
    # An existing export is kept whole when the new one fails.
    monkeypatch.setattr(hf_export, "_save", real_save)
    export_hf(out, state, ours.cfg, source, torch.float32)
    before = sorted(p.name for p in out.iterdir())
    monkeypatch.setattr(hf_export, "_save", failing_save)
    calls.clear()
    with pytest.raises(OSError):
        export_hf(
            out, state, ours.cfg, source, torch.bfloat16, max_shard_bytes=300_000, overwrite=True
        )
    assert sorted(p.name for p in out.iterdir()) == before
    assert [p.name for p in tmp_path.iterdir()] == ["export"]


def test_destination_and_state_checks(tiny_hf: TinyHF, tmp_path: Path) -> None:
    source = tiny_hf("qwen2")
    ours = ours_from(source, 64)
    state = ours.state_dict()
    with pytest.raises(CheckpointError, match="is the source checkpoint"):
        export_hf(source, state, ours.cfg, source, torch.float32)
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    with pytest.raises(CheckpointError, match=r"taken: exists and is not empty; remove it"):
        export_hf(taken, state, ours.cfg, source, torch.float32)
    export_hf(taken, state, ours.cfg, source, torch.float32, overwrite=True)
    assert not (taken / "notes.txt").exists() and (taken / "model.safetensors").is_file()
    fresh = tmp_path / "fresh"
    adapters = {**state, "layers.0.attn.wq.lora_a": torch.zeros(4, 256)}
    with pytest.raises(ValueError, match=r"layers.0.attn.wq.lora_a.*merge the adapters first"):
        export_hf(fresh, adapters, ours.cfg, source, torch.float32)
    partial = {k: v for k, v in state.items() if k != "norm.weight"}
    with pytest.raises(ValueError, match=r"state has no norm\.weight"):
        export_hf(fresh, partial, ours.cfg, source, torch.float32)
    with pytest.raises(ValueError, match="describes another model"):
        export_hf(
            fresh,
            state,
            replace(ours.cfg, tied=False),
            source,
            torch.float32,
        )
    assert not fresh.exists()


def _random_adapters(
    shapes: dict[str, torch.Size], modules: list[str], rank: int
) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(7)
    adapters = {}
    for name in shapes:
        module = name.removesuffix(".weight")
        if name.endswith(".weight") and module.split(".", 2)[-1] in modules:
            out_features, in_features = shapes[name]
            adapters[f"{module}.lora_a"] = torch.randn(rank, in_features, generator=generator) * 0.1
            adapters[f"{module}.lora_b"] = (
                torch.randn(out_features, rank, generator=generator) * 0.1
            )
    return adapters


def test_peft_adapter_applied_by_hand_gives_our_merged_logits(
    tiny_hf: TinyHF, tmp_path: Path
) -> None:
    source = tiny_hf("qwen2")
    ours = ours_from(source, 64)
    rank, alpha = 4, 8.0
    targets = ("q", "k", "v", "o", "gate", "up", "down")
    modules = [hf_export.OUR_MODULES[t] for t in targets]
    adapters = _random_adapters(parameter_shapes(ours.cfg), modules, rank)
    out = tmp_path / "adapter"
    export_peft_adapter(
        out, adapters, ours.cfg, rank=rank, alpha=alpha, targets=targets, source_dir=source
    )
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["task_type"] == "CAUSAL_LM"
    assert (config["r"], config["lora_alpha"], config["lora_dropout"], config["bias"]) == (
        4,
        8,
        0.0,
        "none",
    )
    assert config["target_modules"] == sorted(
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    assert config["base_model_name_or_path"] == str(source.resolve())
    written = _tensors(out)
    a = written["base_model.model.model.layers.1.self_attn.k_proj.lora_A.weight"]
    b = written["base_model.model.model.layers.1.self_attn.k_proj.lora_B.weight"]
    assert (a.shape, b.shape) == ((rank, 256), (128, rank))
    assert len(written) == 2 * len(targets) * ours.cfg.layers
    # Ours: W + (alpha / r) B A in our layout. Theirs: the same from PEFT's files, as
    # peft's LoraLayer.merge does, on transformers' own model.
    scale = alpha / rank
    state = ours.state_dict()
    with torch.no_grad():
        for name in adapters:
            if name.endswith("lora_a"):
                module = name.removesuffix(".lora_a")
                state[f"{module}.weight"] += scale * adapters[f"{module}.lora_b"] @ adapters[name]
    ours.load_state_dict(state)
    theirs = transformers_from(source)
    params = dict(theirs.named_parameters())
    with torch.no_grad():
        for key, lora_a in written.items():
            if ".lora_A." in key:
                base = key.removeprefix("base_model.model.").replace(".lora_A.weight", ".weight")
                lora_b = written[key.replace("lora_A", "lora_B")]
                params[base] += scale * lora_b @ lora_a
        batch = tokens(ours.cfg.vocab, 64)
        gap = (theirs(batch).logits - ours(batch)).abs().max()
    assert gap < PARITY_ATOL
    with pytest.raises(ValueError, match="adapters do not match targets"):
        export_peft_adapter(
            tmp_path / "x",
            adapters,
            ours.cfg,
            rank=rank,
            alpha=alpha,
            targets=("q",),
            source_dir=source,
        )
