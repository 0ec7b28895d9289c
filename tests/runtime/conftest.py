"""Fixtures of the runtime tests: a tiny byte-level BPE tokenizer (tests/runtime/tiny_bpe.py)
written as a checkpoint's tokenizer files."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tiny_bpe import PLAIN_CONFIG, train_bpe


@pytest.fixture(scope="session")
def bpe_tokenizer() -> Any:
    """The tiny BPE, trained once per session (about a second)."""
    return train_bpe()


@pytest.fixture
def tokenizer_dir(bpe_tokenizer: Any, tmp_path: Path) -> Callable[..., Path]:
    """``make(name, tokenizer_config=..., config=...)``: a directory with tokenizer.json,
    tokenizer_config.json (None: none written) and config.json (None: none written)."""

    def make(
        name: str = "tok",
        tokenizer_config: dict[str, Any] | None = PLAIN_CONFIG,
        config: dict[str, Any] | None = None,
    ) -> Path:
        directory = tmp_path / name
        directory.mkdir()
        bpe_tokenizer.save(str(directory / "tokenizer.json"))
        if tokenizer_config is not None:
            (directory / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
        if config is not None:
            (directory / "config.json").write_text(json.dumps(config))
        return directory

    return make
