"""Instruction data for fine-tuning: packed windows, a held-out split, deterministic batches.

``build_sft(path, tokenizer_dir, seq_len, seed)`` reads a JSONL file of instruction
records (shapes and rendering: ``runtime.train.sft_format``), tokenises every record with
the checkpoint's own tokenizer (``runtime.train.sft_tokenizer``) and packs the examples
into windows of ``seq_len + 1`` tokens. A window gives ``tokens = w[:-1]`` and
``targets = labels[1:]``, where a label is the token itself when that token is part of a
response (or the EOS after it) and ``IGNORE_INDEX = -100`` otherwise — the prompt, the
chat template's headers, BOS and the padding — which ``F.cross_entropy(...,
ignore_index=-100)`` skips.

Packing. Examples go into windows whole and in order (greedy, as torchtune's
``PackedDataset``, torchtune/datasets/_packed.py, with its default
``split_across_pack=False``): an example that does not fit in what is left of a window
starts the next one and the rest is padded with EOS (no loss), so no response is ever
separated from its prompt. An example of n tokens makes n - 1 predictions, so one longer
than ``seq_len + 1`` tokens is cut to that length (counted in ``truncated``; what remains
of the response keeps its loss; one whose prompt fills the window is left out, counted in
``skipped``, so every window has a target). ``packing_efficiency`` is the share of window positions
holding example tokens. Attention crosses packed examples: there is no document masking,
because the reference model's attention is plain causal (``runtime.train.model``), and
position ids continue across the examples of a window (torchtune restarts them and
masks block-causally; our model cannot). A later example therefore sees earlier,
unrelated ones — a known trade-off of packing we accept for the throughput (no padding of
every example to the longest); the packed examples carry no loss on each other's text.

Split. A record is held out when the sha256 of its canonical JSON is 0 modulo
``VAL_MODULUS`` (about 5 %), at least one record each way, so the split never depends on
the file's order and a duplicated record never lands on both sides.

Batches. The same scheme as ``runtime.train.data``: for step ``s`` window ``j`` of the
global batch is ``window_starts(seed, s, ...)[j]`` taken modulo the number of training
windows, and rank ``r`` reads windows ``(micro_step * world_size + r) * micro_batch`` ...
``+ micro_batch``. What a rank reads depends only on (seed, step, micro_step, rank,
world_size), so every world size reads the global batch of a one-process run, in its
order, and a resumed run reads what the interrupted one would have.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from runtime.train.data import DataError, window_starts
from runtime.train.sft_format import Record, Renderer, read_records
from runtime.train.sft_tokenizer import Tokenizer, load_tokenizer

__all__ = [
    "IGNORE_INDEX",
    "SFTCorpus",
    "Tokenizer",
    "build_sft",
    "load_tokenizer",
    "sft_eval",
    "sft_micro_batch",
]

IGNORE_INDEX = -100
"""Target of a position without loss; the default ``ignore_index`` of ``F.cross_entropy``."""
VAL_MODULUS = 20
"""One record in ``VAL_MODULUS`` (by hash) is held out: about 5 %."""


@dataclass(frozen=True)
class SFTCorpus:
    """Packed windows of both splits and what building them counted."""

    train_tokens: np.ndarray
    """[windows, seq_len + 1] int32 token ids of the training split."""
    train_labels: np.ndarray
    """[windows, seq_len + 1] int32: the token where it is in the loss, else IGNORE_INDEX."""
    val_tokens: np.ndarray
    """[windows, seq_len + 1] int32 token ids of the held-out split."""
    val_labels: np.ndarray
    """[windows, seq_len + 1] int32 labels of the held-out split."""
    seq_len: int
    """Positions per window that are predicted (a window holds seq_len + 1 tokens)."""
    examples: tuple[int, int]
    """Records in the (training, held-out) split."""
    tokens: int
    """Example tokens in both splits after truncation, padding excluded."""
    response_tokens: int
    """Of those, the tokens in the loss (responses and their EOS)."""
    truncated: int
    """Examples cut to seq_len + 1 tokens."""
    skipped: int
    """Of those, examples left out because their prompt filled the whole window."""
    packing_efficiency: float
    """Share of all window positions holding example tokens (the rest is padding)."""
    fingerprint: str
    """sha256 (hex, 16 chars) of the windows and the tokenizer: ranks and resumes compare it."""
    source: str
    """The data file."""
    vocab_size: int
    """The tokenizer's vocabulary (the model's embedding must have at least as many rows)."""

    def summary(self) -> str:
        """One line for the trainer's log."""
        return (
            f"sft data {self.source}: {self.examples[0]} train + {self.examples[1]} held-out "
            f"records, {self.tokens} tokens ({self.response_tokens} in the loss), "
            f"{self.truncated} truncated to {self.seq_len + 1} tokens "
            f"({self.skipped} of them left out: no response left), "
            f"{len(self.train_tokens)} + {len(self.val_tokens)} windows, "
            f"packing efficiency {self.packing_efficiency:.2f}"
        )


def held_out(key: str) -> bool:
    """Whether the record with canonical JSON ``key`` belongs to the held-out split."""
    return _hash64(key) % VAL_MODULUS == 0


def _hash64(key: str) -> int:
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "little")


def split_records(records: list[Record], where: str) -> tuple[list[Record], list[Record]]:
    """(train, held-out) by hash; at least one record each way."""
    if len(records) < 2:
        raise DataError(
            f"{where}: {len(records)} record(s); fine-tuning holds at least one out for "
            "validation, so write at least 2 (a few hundred to learn anything)"
        )
    val = [r for r in records if held_out(r.key)]
    train = [r for r in records if not held_out(r.key)]
    if not val:  # a small file where no hash fell in the bucket: hold out the smallest
        smallest = min(records, key=lambda r: _hash64(r.key))
        val = [r for r in records if r.key == smallest.key]
        train = [r for r in records if r.key != smallest.key]
    if not train:  # every record is the same or hashed into the bucket: keep the largest
        largest = max(records, key=lambda r: _hash64(r.key))
        train = [r for r in records if r.key == largest.key]
        val = [r for r in records if r.key != largest.key]
        if not val:
            raise DataError(f"{where}: every record is the same line; write different records")
    return train, val


class Packed(NamedTuple):
    """Windows of one split and what packing them counted."""

    tokens: np.ndarray
    """[windows, seq_len + 1] int32 token ids, padded with the pad id."""
    labels: np.ndarray
    """[windows, seq_len + 1] int32: the token where it is in the loss, else IGNORE_INDEX."""
    truncated: int
    """Examples cut to seq_len + 1 tokens."""
    skipped: int
    """Of those, examples left out because no response token remained after the cut."""
    filled: int
    """Window positions holding example tokens."""


def pack(examples: list[tuple[list[int], list[bool]]], seq_len: int, pad_id: int) -> Packed:
    """``examples`` (ids, loss mask) packed whole, greedily and in order, into windows of
    ``seq_len + 1`` tokens. Every window has a target: an example whose response was cut
    away is left out, and an example's own first token is never in its loss."""
    width = seq_len + 1
    windows: list[tuple[list[int], list[int]]] = []
    tokens: list[int] = []
    labels: list[int] = []
    truncated = skipped = filled = 0
    for ids, mask in examples:
        if len(ids) > width:
            ids, mask = ids[:width], mask[:width]
            truncated += 1
            if not any(mask[1:]):
                skipped += 1
                continue
        if len(tokens) + len(ids) > width:
            windows.append((tokens, labels))
            tokens, labels = [], []
        tokens.extend(ids)
        labels.extend(t if m else IGNORE_INDEX for t, m in zip(ids, mask, strict=True))
        filled += len(ids)
    if tokens:
        windows.append((tokens, labels))
    out_tokens = np.full((len(windows), width), pad_id, dtype=np.int32)
    out_labels = np.full((len(windows), width), IGNORE_INDEX, dtype=np.int32)
    for row, (toks, labs) in enumerate(windows):
        out_tokens[row, : len(toks)] = toks
        out_labels[row, : len(labs)] = labs
    return Packed(out_tokens, out_labels, truncated, skipped, filled)


def build_sft(path: str, tokenizer_dir: Path, seq_len: int, seed: int) -> SFTCorpus:
    """Read, check, tokenise, split and pack the instruction file ``path``.

    Every bad record is a ``DataError`` here, before training starts. ``seed`` orders the
    training records before packing, so windows mix neighbouring records of a sorted file.
    """
    if seq_len < 2:
        raise DataError(f"--seq-len {seq_len}: fine-tuning needs at least 2 positions a window")
    tokenizer = load_tokenizer(Path(tokenizer_dir))
    source = Path(path)
    records = read_records(source)
    train_records, val_records = split_records(records, f"--data {path}")
    renderer = Renderer(tokenizer)
    order = np.random.default_rng(seed).permutation(len(train_records))
    ordered = [train_records[i] for i in order]
    train_examples = renderer.tokens_many(ordered, [f"{path}:{r.line}" for r in ordered])
    val_examples = renderer.tokens_many(val_records, [f"{path}:{r.line}" for r in val_records])
    train = pack(train_examples, seq_len, tokenizer.eos_id)
    val = pack(val_examples, seq_len, tokenizer.eos_id)
    for name, split in (("training", train), ("held-out", val)):
        if len(split.tokens) == 0:
            raise DataError(
                f"--data {path}: no response token of the {name} split fits in --seq-len "
                f"{seq_len} after its prompt; raise --seq-len or shorten the prompts"
            )
    digest = hashlib.sha256(f"{tokenizer.digest} {seq_len}".encode())
    for array in (train.tokens, train.labels, val.tokens, val.labels):
        digest.update(array.tobytes())
    positions = (len(train.tokens) + len(val.tokens)) * (seq_len + 1)
    # Column 0 is never a target (targets are labels[1:]), so it is not counted.
    response = int(
        (train.labels[:, 1:] != IGNORE_INDEX).sum() + (val.labels[:, 1:] != IGNORE_INDEX).sum()
    )
    return SFTCorpus(
        train_tokens=train.tokens,
        train_labels=train.labels,
        val_tokens=val.tokens,
        val_labels=val.labels,
        seq_len=seq_len,
        examples=(len(train_records), len(val_records)),
        tokens=train.filled + val.filled,
        response_tokens=response,
        truncated=train.truncated + val.truncated,
        skipped=train.skipped + val.skipped,
        packing_efficiency=(train.filled + val.filled) / positions,
        fingerprint=digest.hexdigest()[:16],
        source=str(path),
        vocab_size=tokenizer.vocab_size,
    )


def _shift(tokens: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return tokens[:, :-1].astype(np.int64), labels[:, 1:].astype(np.int64)


def sft_micro_batch(
    corpus: SFTCorpus,
    *,
    seed: int,
    step: int,
    micro_step: int,
    rank: int,
    world_size: int,
    micro_batch: int,
) -> tuple[np.ndarray, np.ndarray]:
    """(tokens, targets) [micro_batch, seq_len] int64 that ``rank`` reads at (step, micro_step)."""
    first = (micro_step * world_size + rank) * micro_batch
    rows = window_starts(seed, step, first + micro_batch, len(corpus.train_tokens))[first:]
    return _shift(corpus.train_tokens[rows], corpus.train_labels[rows])


def sft_eval(corpus: SFTCorpus, count: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` held-out windows spread evenly over the split: the same set at every eval
    (repeated when the split has fewer windows)."""
    rows = np.linspace(0, len(corpus.val_tokens) - 1, num=count).round().astype(np.int64)
    return _shift(corpus.val_tokens[rows], corpus.val_labels[rows])
