"""examples/make_tiny_hf.py: the tiny checkpoint the fine-tuning tests use."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import hf_tiny_dirs
import pytest
from hf_tiny_dirs import TinyHF

from runtime.train.hf_checkpoint import hf_model_config

pytest.importorskip("transformers")
tiny_hf = hf_tiny_dirs.tiny_hf  # the shared fixture
REPO = Path(__file__).resolve().parents[2]
NF4_NUMEL = 64 * 256
"""torchao's to_nf4: blocks of 64 values, their scales quantised again in blocks of 256."""


@pytest.mark.parametrize("family", ["llama", "mistral", "qwen2"])
def test_shapes_suit_gqa_and_nf4(tiny_hf: TinyHF, family: str) -> None:
    from safetensors.torch import load_file

    directory = tiny_hf(family)
    cfg = hf_model_config(directory, 64)
    assert cfg.kv_heads < cfg.heads and cfg.layers == 2
    tensors = load_file(directory / "model.safetensors")
    block_linears = [t for n, t in tensors.items() if "proj.weight" in n]
    assert len(block_linears) == 7 * cfg.layers
    assert all(t.numel() % NF4_NUMEL == 0 for t in block_linears)
    nf4 = pytest.importorskip("torchao.quantization.quantize_.workflows.nf4.nf4_tensor")
    for tensor in block_linears:
        nf4.to_nf4(tensor)  # raises on a shape it cannot quantise


def test_tokenizer_and_special_ids(tiny_hf: TinyHF) -> None:
    from tokenizers import Tokenizer

    directory = tiny_hf("llama")
    tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
    config = json.loads((directory / "config.json").read_text())
    bos, eos = tokenizer.token_to_id("<|begin_of_text|>"), tokenizer.token_to_id("<|end_of_text|>")
    assert (config["bos_token_id"], config["eos_token_id"]) == (bos, eos)
    assert config["vocab_size"] == tokenizer.get_vocab_size() > 512
    generation = json.loads((directory / "generation_config.json").read_text())
    assert (generation["bos_token_id"], generation["eos_token_id"]) == (bos, eos)
    tok_config = json.loads((directory / "tokenizer_config.json").read_text())
    assert (tok_config["bos_token"], tok_config["eos_token"]) == (
        "<|begin_of_text|>",
        "<|end_of_text|>",
    )
    text = "def f(x):\n    return x ** 2  # ünïcode"
    ids = tokenizer.encode(text).ids
    assert ids[0] == bos and len(ids) < len(text.encode())  # merges learned from pydoc
    assert tokenizer.decode(ids, skip_special_tokens=True) == text


def test_same_seed_same_weights(tiny_hf: TinyHF, tmp_path: Path) -> None:
    from examples.make_tiny_hf import make_tiny_hf

    again = make_tiny_hf(tmp_path / "again", "llama", seed=0)
    other = make_tiny_hf(tmp_path / "other", "llama", seed=1)
    first = (tiny_hf("llama") / "model.safetensors").read_bytes()
    assert (again / "model.safetensors").read_bytes() == first
    assert (other / "model.safetensors").read_bytes() != first


def test_without_transformers_it_exits_2(tmp_path: Path) -> None:
    script = (
        "import sys; sys.modules['transformers'] = None\n"
        "from examples.make_tiny_hf import main\n"
        f"sys.exit(main([{str(tmp_path / 'out')!r}]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "pip install transformers" in lines[0]
    assert not (tmp_path / "out").exists()
