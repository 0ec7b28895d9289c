"""Peak memory of the trainer's loss, unchunked against chunked, per logit element, beside
what the planner counts (``logits_stored_bytes`` in planner/data/constants.yaml).

The output projection and cross-entropy of one micro-batch (``runtime.train.loss``) run
forward and backward under ``LiveBytes`` (the operators' live tensor storage, the CPU
having no allocator statistics), in fp32 and in bf16 (projection in bf16, cross-entropy
in fp32, as under FSDP's bf16 mixed precision). Memory is counted, not timed: the
figures do not depend on the machine's load.

    .venv/bin/python bench/loss_memory.py [--tokens 2048] [--vocab 32000] [--hidden 256]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch: the cores are shared

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from runtime.train.loss import AUTO_CHUNKS, LiveBytes, chunked_cross_entropy  # noqa: E402


def peak_bytes(tokens: int, vocab: int, hidden: int, chunks: int, dtype: torch.dtype) -> int:
    torch.manual_seed(0)
    output = torch.nn.Linear(hidden, vocab, bias=False).to(dtype)
    states = torch.randn(1, tokens, hidden, dtype=dtype, requires_grad=True)
    targets = torch.randint(0, vocab, (1, tokens))
    with LiveBytes() as meter:
        chunked_cross_entropy(output, states, targets, chunks).backward()
    return meter.peak


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=2048)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--hidden", type=int, default=256)
    args = parser.parse_args(argv)
    constants = yaml.safe_load((REPO / "planner/data/constants.yaml").read_text())
    logits = args.tokens * args.vocab
    print(f"{args.tokens} tokens x {args.vocab} vocabulary, width {args.hidden}: "
          "peak bytes per logit element of projection + cross-entropy, fwd + bwd")  # fmt: skip
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        counted = constants["precision"][name]["logits_stored_bytes"]
        whole = peak_bytes(args.tokens, args.vocab, args.hidden, 1, dtype) / logits
        chunked = peak_bytes(args.tokens, args.vocab, args.hidden, AUTO_CHUNKS, dtype) / logits
        print(f"{name}: unchunked {whole:5.2f}  {AUTO_CHUNKS} chunks {chunked:5.2f}  "
              f"planner counts {counted}  chunked/unchunked {chunked / whole:.2f}  "
              f"chunked/planner {chunked / counted:.2f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
