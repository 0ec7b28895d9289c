"""Training text, byte tokens, a held-out split by document, and deterministic batches.

Corpus. The default source ``pydoc`` is the Python Language Reference prose that ships
with every CPython in ``pydoc_data.topics`` (about 80 documents, ~460 KB of English text
with code), so no download is needed. ``--data PATH`` takes instead a directory of
``*.txt`` files (one document each) or one UTF-8 text file (cut into ~16 KiB documents at
paragraph breaks). Every document is encoded as UTF-8 bytes (token id = byte value)
followed by the end-of-document token ``EOD = 256``, so the vocabulary is 257.

Held-out split. Documents are sorted by name; every ``VAL_EVERY``-th one (starting at
index ``VAL_OFFSET``) is held out, so no held-out text is ever trained on.

Batches. For step ``s`` (1-based) the global batch is ``world_size * grad_accum *
micro_batch`` windows of ``seq_len + 1`` tokens. Window ``j`` starts at
``splitmix64(seed, s, j) mod (len(train) - seq_len)``; rank ``r`` takes, for micro-step
``a``, windows ``(a * world_size + r) * micro_batch ...`` ``+ micro_batch``. So what a rank
reads depends only on (seed, step, rank, world size): a resumed run reads exactly what the
interrupted one would have, and there is no loader state to checkpoint. SplitMix64 is
Steele, Lea & Flood 2014, "Fast splittable pseudorandom number generators" (the
finaliser constants are those of ``java.util.SplittableRandom``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

EOD = 256
"""End-of-document token, after the 256 byte values."""
MIN_VOCAB = EOD + 1
"""Smallest vocabulary that holds every token this corpus produces."""
VAL_EVERY = 10
"""One document in ``VAL_EVERY`` (by sorted name) is held out."""
VAL_OFFSET = 3
"""Index of the first held-out document (keeps the first, short topics in training)."""


class DataError(ValueError):
    """The corpus source cannot be used; the message names it and the fix."""

    user_error = True


@dataclass(frozen=True)
class Corpus:
    """Token arrays of the two splits and a fingerprint of their content."""

    train: np.ndarray
    """Training tokens (uint16)."""
    val: np.ndarray
    """Held-out tokens (uint16)."""
    fingerprint: str
    """sha256 (hex, 16 chars) of both splits: checkpoints record it to detect a changed corpus."""
    source: str
    """Where the text came from (``pydoc`` or a path)."""
    documents: tuple[int, int]
    """Number of (train, held-out) documents."""


def load_documents(source: str) -> list[tuple[str, str]]:
    """(name, text) of every document of ``source``, sorted by name."""
    if source == "pydoc":
        try:
            from pydoc_data.topics import topics
        except ImportError as exc:  # a stripped Python without pydoc_data
            raise DataError(
                "--data pydoc: this Python has no pydoc_data module; pass --data PATH (a text file)"
            ) from exc
        return sorted(topics.items())
    path = Path(source)
    if path.is_dir():
        docs = [
            (p.name, p.read_text(encoding="utf-8", errors="replace")) for p in path.glob("*.txt")
        ]
        if not docs:
            raise DataError(f"--data {source}: the directory has no *.txt files")
        return sorted(docs)
    if path.is_file():
        text = path.read_text(encoding="utf-8", errors="replace")
        # One file: split into documents of ~16 KiB at paragraph breaks, named by index.
        return [(f"{i:06d}", chunk) for i, chunk in enumerate(_paragraph_chunks(text, 16 * 1024))]
    raise DataError(f"--data {source!r}: no such file or directory; use 'pydoc' or a text path")


def _paragraph_chunks(text: str, target_chars: int) -> list[str]:
    chunks: list[str] = []
    current: list[str] = []
    size = 0
    for para in text.split("\n\n"):
        current.append(para)
        size += len(para) + 2
        if size >= target_chars:
            chunks.append("\n\n".join(current))
            current, size = [], 0
    if current:
        chunks.append("\n\n".join(current))
    return chunks


def encode(text: str) -> np.ndarray:
    """Byte tokens of ``text`` followed by EOD."""
    data = np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.uint16)
    return np.concatenate([data, np.array([EOD], dtype=np.uint16)])


def build_corpus(source: str, seq_len: int) -> Corpus:
    """Tokenise ``source`` and split it by document; both splits must hold a window."""
    docs = load_documents(source)
    train_parts: list[np.ndarray] = []
    val_parts: list[np.ndarray] = []
    for index, (_, text) in enumerate(docs):
        held_out = len(docs) > 1 and index % VAL_EVERY == VAL_OFFSET % min(VAL_EVERY, len(docs))
        (val_parts if held_out else train_parts).append(encode(text))
    empty = np.zeros(0, dtype=np.uint16)
    train = np.concatenate(train_parts) if train_parts else empty
    val = np.concatenate(val_parts) if val_parts else empty
    for name, split in (("training", train), ("held-out", val)):
        if len(split) < seq_len + 2:
            raise DataError(
                f"--data {source}: the {name} split has {len(split)} tokens, fewer than "
                f"--seq-len {seq_len} + 2; use more text (at least {VAL_EVERY} documents) "
                "or a shorter --seq-len"
            )
    digest = hashlib.sha256(train.tobytes())
    digest.update(val.tobytes())
    return Corpus(
        train=train,
        val=val,
        fingerprint=digest.hexdigest()[:16],
        source=source,
        documents=(len(train_parts), len(val_parts)),
    )


_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def splitmix64(values: np.ndarray) -> np.ndarray:
    """The SplitMix64 finaliser applied elementwise to uint64 ``values`` (wrapping arithmetic)."""
    z = values + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return (z ^ (z >> np.uint64(31))) & _MASK64


def window_starts(seed: int, step: int, count: int, limit: int) -> np.ndarray:
    """Start offsets in ``[0, limit)`` of the first ``count`` windows of global batch ``step``."""
    with np.errstate(over="ignore"):
        key = splitmix64(np.array([seed], dtype=np.uint64))[0] ^ np.uint64(step)
        key = splitmix64(np.array([key], dtype=np.uint64))[0]
        mixed = splitmix64(key + np.arange(count, dtype=np.uint64))
    return (mixed % np.uint64(limit)).astype(np.int64)


def micro_batch_windows(
    tokens: np.ndarray,
    *,
    seed: int,
    step: int,
    micro_step: int,
    rank: int,
    world_size: int,
    micro_batch: int,
    seq_len: int,
) -> np.ndarray:
    """[micro_batch, seq_len + 1] int64 windows rank ``rank`` reads at (step, micro_step)."""
    first = (micro_step * world_size + rank) * micro_batch
    starts = window_starts(seed, step, first + micro_batch, len(tokens) - seq_len)[first:]
    index = starts[:, None] + np.arange(seq_len + 1)[None, :]
    return tokens[index].astype(np.int64)


def eval_windows(tokens: np.ndarray, count: int, seq_len: int) -> np.ndarray:
    """``count`` windows spread evenly over the held-out text: the same set at every eval."""
    last = len(tokens) - seq_len - 1
    starts = np.linspace(0, last, num=count).round().astype(np.int64)
    index = starts[:, None] + np.arange(seq_len + 1)[None, :]
    return tokens[index].astype(np.int64)
