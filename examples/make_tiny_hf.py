"""Write a tiny random-weight Hugging Face checkpoint to fine-tune, offline.

    python examples/make_tiny_hf.py OUT_DIR [--family llama|mistral|qwen2] [--seed N]

The model is transformers' own (``LlamaConfig``/``MistralConfig``/``Qwen2Config`` +
``save_pretrained``: config.json, generation_config.json, model.safetensors), 2 blocks
of width 256 with grouped-query attention (4 query heads, 2 key/value heads of 64), and
every parameter drawn at random from ``--seed`` (norm gains around 1, Qwen2's biases
non-zero), so a wrong name, reordering or transposition changes the logits. The
tokenizer is a byte-level BPE (``tokenizers``) trained on the project's own corpus
(``runtime.train.data.load_documents("pydoc")``, the Python Language Reference), with
``<|begin_of_text|>`` / ``<|end_of_text|>`` as bos/eos (Llama 3's names; the
post-processor prepends bos, as Llama 3's tokenizer.json does) and the model's vocabulary
its size.

Why these widths: QLoRA stores the blocks' linear weights as torchao NF4
(``to_nf4``: blocks of 64 values, and double quantisation of the per-block scales in
groups of 256, so each weight's numel must divide by 64 * 256 = 16384). With width 256,
key/value projections are 128 x 256 = 32768, query/output 256 x 256 and the MLP
(intermediate 512) 512 x 256: all multiples of 16384. Width 128 with GQA cannot be: k/v
would be 64 x 128 = 8192.

transformers is a development dependency only: without it this exits 2 and says to
``pip install transformers``. Tests import ``make_tiny_hf`` from the repository root.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

FAMILIES = ("llama", "mistral", "qwen2")
BOS, EOS = "<|begin_of_text|>", "<|end_of_text|>"
VOCAB = 768
"""BPE vocabulary asked of the trainer (256 bytes, 2 special tokens, the rest merges)."""
SHAPE = {
    "hidden_size": 256,
    "intermediate_size": 512,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 256,
    "rms_norm_eps": 1e-6,
}
"""256 positions: a fine-tuning plan of it packs 256-token sequences (the planner caps its
default sequence length there), a step of the demo's global batch of 16 is a fraction of
a second on two CPU ranks. The instruction records of examples/sft are far shorter."""
ROPE_THETA = 500_000.0
"""Llama 3's rotary base, not the config classes' default 10000, so reading it is tested."""
MISSING = "make_tiny_hf needs transformers: pip install transformers"


def train_tokenizer(vocab: int = VOCAB, special_tokens: tuple[str, ...] = (BOS, EOS)) -> Any:
    """A byte-level BPE over the Python Language Reference, bos prepended on encode
    (``special_tokens`` start with BOS; tests/runtime/tiny_bpe.py adds Llama 3's chat ones)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    from runtime.train.data import load_documents

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator((text for _, text in load_documents("pydoc")), trainer)
    bos = tokenizer.token_to_id(BOS)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos)]
    )
    return tokenizer


def _config(family: str, vocab: int, bos: int, eos: int, overrides: dict[str, Any]) -> Any:
    import transformers

    cls = {
        "llama": transformers.LlamaConfig,
        "mistral": transformers.MistralConfig,
        "qwen2": transformers.Qwen2Config,
    }[family]
    rope: dict[str, Any] = (
        {"rope_parameters": {"rope_type": "default", "rope_theta": ROPE_THETA}}
        if int(transformers.__version__.split(".")[0]) >= 5
        else {"rope_theta": ROPE_THETA}
    )
    # Qwen2's small models tie the output to the embedding: cover both layouts.
    kwargs = {**SHAPE, **rope, "tie_word_embeddings": family == "qwen2"}
    return cls(vocab_size=vocab, bos_token_id=bos, eos_token_id=eos, **{**kwargs, **overrides})


def _randomise(model: Any, seed: int) -> None:
    """Every parameter from ``seed``: norm gains N(1, 0.1), the rest N(0, 0.05)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            mean = 1.0 if name.endswith("norm.weight") else 0.0
            noise = torch.randn(param.shape, generator=generator, dtype=torch.float32)
            param.copy_(mean + noise * (0.1 if mean else 0.05))


def make_tiny_hf(
    out_dir: Path | str,
    family: str = "llama",
    seed: int = 0,
    *,
    overrides: dict[str, Any] | None = None,
    max_shard_size: int | str | None = None,
) -> Path:
    """Write the tiny ``family`` checkpoint and its tokenizer to ``out_dir``; return it.
    ``overrides``: config keys to change (``rope_parameters``, ``attention_bias``...);
    ``max_shard_size``: save sharded with an index, as transformers does above it."""
    if family not in FAMILIES:
        raise ValueError(f"family {family!r}: use one of {', '.join(FAMILIES)}")
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise ImportError(MISSING) from exc

    out = Path(out_dir)
    tokenizer = train_tokenizer()
    bos, eos = tokenizer.token_to_id(BOS), tokenizer.token_to_id(EOS)
    config = _config(family, tokenizer.get_vocab_size(), bos, eos, overrides or {})
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    _randomise(model, seed)
    model.generation_config = transformers.GenerationConfig(bos_token_id=bos, eos_token_id=eos)
    saved = {"max_shard_size": max_shard_size} if max_shard_size is not None else {}
    model.save_pretrained(out, **saved)
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=BOS,
        eos_token=EOS,
        model_max_length=SHAPE["max_position_embeddings"],
    )
    fast.save_pretrained(out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path, help="directory to write (created)")
    parser.add_argument("--family", choices=FAMILIES, default="llama")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    args = parser.parse_args(argv)
    try:
        path = make_tiny_hf(args.out_dir, args.family, args.seed)
    except ImportError as exc:
        print(f"error: {MISSING} ({exc.__cause__ or exc})", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
