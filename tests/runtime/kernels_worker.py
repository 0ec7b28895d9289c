"""Train the parity model a few steps eager and with ``--compile`` in one process; print JSON.

``python tests/runtime/kernels_worker.py STEPS [EXTRA FLAGS]``: prints one JSON line
``{"eager": [loss, ...], "compiled": [loss, ...], "compiled_blocks": N, "graphs": G,
"compile_s": S}``, where ``graphs`` counts the frames dynamo compiled and ``compile_s``
is the wall time of the compiled run (mostly compilation) as a figure to read, not to
assert on.
"""

from __future__ import annotations

import json
import shlex
import sys
import time

import torch._dynamo.utils
from parity_worker import MODEL

from runtime.train import distributed
from runtime.train.config import parse_config
from runtime.train.loop import Trainer


def main(steps: int, extra: list[str]) -> None:
    result: dict[str, object] = {}
    for name, flags in (("eager", []), ("compiled", ["--compile"])):
        start = time.perf_counter()
        cfg = parse_config([*shlex.split(MODEL), "--steps", str(steps), *extra, *flags])
        trainer = Trainer(cfg)
        trainer.setup()
        result[name] = [trainer.train_step(step).loss for step in range(1, steps + 1)]
        if flags:
            result["compile_s"] = round(time.perf_counter() - start, 1)
            result["compiled_blocks"] = sum(
                type(block).__name__.endswith("OptimizedModule") for block in trainer.model.layers
            )
    result["graphs"] = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    print(json.dumps(result), flush=True)
    distributed.leave(0, trainer.dist)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2:])
