"""What the trainer reads each micro-step: token ids and their targets, from the byte-level
pre-training corpus (``runtime.train.data``) or from instruction records for fine-tuning
(``runtime.train.sft``, loss only on response tokens).

Both sources give (tokens [B, T], targets [B, T]) int64 arrays, targets ``IGNORE_INDEX``
where a token takes no loss, and both depend only on (seed, step, micro-step, data-parallel
rank, data-parallel size): any world size reads the same global batch in the same order,
and a resumed run reads what the interrupted one would have.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from runtime.train import data

if TYPE_CHECKING:
    from runtime.train.sft import SFTCorpus

IGNORE_INDEX = -100
"""Target of a token that takes no loss (``F.cross_entropy``'s default ``ignore_index``)."""

Batch = tuple[np.ndarray, np.ndarray]
"""(tokens [B, T], targets [B, T]), int64."""


class Batches(Protocol):
    """A source of training and held-out batches."""

    @property
    def fingerprint(self) -> str:
        """Identifies the data (and tokenizer): ranks compare it, checkpoints record it."""
        ...

    def describe(self) -> str:
        """One line for the trainer's start-up log."""
        ...

    def train(self, *, step: int, micro_step: int, rank: int, world_size: int) -> Batch:
        """This data-parallel rank's micro-batch of ``step`` (1-based), ``micro_step``."""
        ...

    def held_out(self, count: int) -> Batch:
        """``count`` held-out rows: the same ones at every evaluation."""
        ...


@dataclass(frozen=True)
class PretrainBatches:
    """Windows of the byte-level corpus; every next token is a target."""

    corpus: data.Corpus
    seed: int
    micro_batch: int
    seq_len: int

    @property
    def fingerprint(self) -> str:
        return self.corpus.fingerprint

    def describe(self) -> str:
        corpus = self.corpus
        return (
            f"corpus {corpus.source} ({len(corpus.train):,} train / "
            f"{len(corpus.val):,} held-out tokens)"
        )

    def train(self, *, step: int, micro_step: int, rank: int, world_size: int) -> Batch:
        windows = data.micro_batch_windows(
            self.corpus.train, seed=self.seed, step=step, micro_step=micro_step, rank=rank,
            world_size=world_size, micro_batch=self.micro_batch, seq_len=self.seq_len,
        )  # fmt: skip
        return _split(windows)

    def held_out(self, count: int) -> Batch:
        return _split(data.eval_windows(self.corpus.val, count, self.seq_len))


@dataclass(frozen=True)
class InstructionBatches:
    """Packed instruction records; only response tokens are targets."""

    corpus: SFTCorpus
    seed: int
    micro_batch: int

    @property
    def fingerprint(self) -> str:
        return self.corpus.fingerprint

    def describe(self) -> str:
        return self.corpus.summary()

    def train(self, *, step: int, micro_step: int, rank: int, world_size: int) -> Batch:
        from runtime.train.sft import sft_micro_batch

        return sft_micro_batch(
            self.corpus, seed=self.seed, step=step, micro_step=micro_step, rank=rank,
            world_size=world_size, micro_batch=self.micro_batch,
        )  # fmt: skip

    def held_out(self, count: int) -> Batch:
        from runtime.train.sft import sft_eval

        return sft_eval(self.corpus, count)


def build_batches(
    source: str, *, seq_len: int, seed: int, micro_batch: int, tokenizer_dir: str = ""
) -> Batches:
    """Instruction records (a ``.jsonl`` file, tokenised with ``tokenizer_dir``'s tokenizer)
    when fine-tuning, else the byte-level corpus."""
    if tokenizer_dir:
        from runtime.train.sft import build_sft

        corpus = build_sft(source, Path(tokenizer_dir), seq_len, seed)
        return InstructionBatches(corpus=corpus, seed=seed, micro_batch=micro_batch)
    built = data.build_corpus(source, seq_len)
    return PretrainBatches(corpus=built, seed=seed, micro_batch=micro_batch, seq_len=seq_len)


def _split(windows: np.ndarray) -> Batch:
    """Inputs and next-token targets of windows [B, T + 1]."""
    return np.ascontiguousarray(windows[:, :-1]), np.ascontiguousarray(windows[:, 1:])


def target_count(targets: np.ndarray) -> int:
    """Tokens of ``targets`` that take a loss."""
    return int((targets != IGNORE_INDEX).sum())
