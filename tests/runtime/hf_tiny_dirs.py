"""Tiny Hugging Face checkpoints for the fine-tuning tests, built once per test process
with ``examples/make_tiny_hf.py`` (transformers' own classes and ``save_pretrained``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from runtime.train.hf_checkpoint import hf_model_config, load_hf_weights
from runtime.train.model import Transformer

_BUILT: dict[str, Path] = {}

TinyHF = Callable[..., Path]


@pytest.fixture(scope="session")
def tiny_hf(tmp_path_factory: pytest.TempPathFactory) -> TinyHF:
    """``tiny_hf(family, **make_tiny_hf keywords)`` -> a checkpoint directory, shared by
    the tests that ask for the same one: copy it before changing it."""
    pytest.importorskip("transformers")
    from examples.make_tiny_hf import make_tiny_hf

    def build(family: str = "llama", **kwargs: Any) -> Path:
        key = f"{family} {sorted(kwargs.items())!r}"
        if key not in _BUILT:
            _BUILT[key] = make_tiny_hf(tmp_path_factory.mktemp(family), family, **kwargs)
        return _BUILT[key]

    return build


def tokens(vocab: int, seq: int, batch: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, vocab, (batch, seq), generator=torch.Generator().manual_seed(seed))


def ours_from(directory: Path, seq_len: int) -> Transformer:
    """Our model read from ``directory``, fp32, eval mode."""
    model = Transformer(hf_model_config(directory, seq_len))
    load_hf_weights(directory, model)
    return model.eval()


def transformers_from(directory: Path) -> Any:
    """transformers' own ``*ForCausalLM`` of ``directory``, fp32, eval mode."""
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32)
    return model.eval()


def logits_gap(directory: Path, seq_len: int, ours: Transformer | None = None) -> float:
    """Largest |difference| between our logits and transformers' on the same tokens."""
    ours = ours or ours_from(directory, seq_len)
    batch = tokens(ours.cfg.vocab, seq_len)
    with torch.no_grad():
        return float((ours(batch) - transformers_from(directory)(batch).logits).abs().max())
