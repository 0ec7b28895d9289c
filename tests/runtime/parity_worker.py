"""Run the reference trainer in several layouts in one process group and record losses.

``python -m torch.distributed.run --nproc-per-node N tests/runtime/parity_worker.py OUT
STEPS LAYOUT...``: each LAYOUT is one string of trainer flags (``"--tp 2
--sequence-parallel"``); every layout starts from the same seed and trains STEPS steps
without a job directory. Rank 0 writes ``{layout: [loss, ...]}`` to OUT as JSON. One
torchrun start serves all the layouts of a world size (starting one costs seconds on a
loaded machine).
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

from runtime.train import distributed
from runtime.train.config import parse_config
from runtime.train.loop import Trainer

MODEL = (
    "--layers 2 --hidden 64 --heads 4 --kv-heads 2 --seq-len 32 --micro-batch 2 "
    "--warmup-steps 2 --eval-every 0 --log-every 100 --device cpu --lr 3e-3"
)
"""The parity model: 2 blocks, width 64, 4 heads over 2 key/value heads, 32 tokens."""


def main(out: str, steps: int, layouts: list[str]) -> None:
    losses: dict[str, list[float]] = {}
    for layout in layouts:
        cfg = parse_config([*shlex.split(MODEL), "--steps", str(steps), *shlex.split(layout)])
        trainer = Trainer(cfg)
        trainer.setup()
        losses[layout] = [trainer.train_step(step).loss for step in range(1, steps + 1)]
    if trainer.rank == 0:
        Path(out).write_text(json.dumps(losses), encoding="utf-8")
    distributed.leave(0, trainer.dist)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3:])
