"""Overhead of ``runtime.progress`` reporting on the reference trainer's tokens/s.

One process, one run: the trainer (one-rank gloo group, CPU) runs its steps with
reporting switched on and off step by step, in the pattern on, off, off, on, ... (so a
slow drift or a periodic disturbance hits both modes alike), timing every step including
its ``progress.report`` call. Tokens/s of each mode comes from its median step time
(medians resist the bursts of other work on a shared machine); the ratio on/off is the
figure, the target an overhead under 1%. As a noise floor it also prints the same ratio
between two halves of the "off" steps, which differ in nothing. Finally it times the
reporting call alone, against the open-append-close of ``contract.jobdir.append_jsonl``,
and relates that cost to the step time.

    .venv/bin/python bench/trainer_overhead.py [--steps 600] [trainer flags]

Trainer flags (``python -m runtime.train`` ones) set the model; the default is the tiny
model of the tests, whose short steps make reporting look as expensive as it can.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch: the cores are shared

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from contract.jobdir import append_jsonl  # noqa: E402
from runtime import progress  # noqa: E402

DEFAULT_MODEL = [
    "--layers", "2", "--hidden", "64", "--heads", "4", "--kv-heads", "2",
    "--seq-len", "64", "--micro-batch", "8", "--eval-every", "0", "--log-every", "1000000",
]  # fmt: skip


def time_report_calls(job_dir: Path, calls: int) -> tuple[float, float]:
    """Microseconds per record: kept-open fd (progress.report) and open/append/close."""
    progress.configure(job_dir, rank=0, world_size=1)
    fields = {"loss": 2.5, "tokens": 123456, "step_time_s": 0.05}
    extra = {"lr": 1e-3, "grad_norm": 0.5, "tokens_per_s": 1e4}
    start = time.perf_counter()
    for step in range(calls):
        progress.report(step=step, **fields, **extra)  # type: ignore[arg-type]
    kept_open_us = (time.perf_counter() - start) / calls * 1e6
    path = job_dir / "progress" / "open_close.jsonl"
    start = time.perf_counter()
    for step in range(calls):
        append_jsonl(path, {"ts": time.time(), "rank": 0, "step": step, **fields, **extra})
    open_close_us = (time.perf_counter() - start) / calls * 1e6
    progress.close()
    return kept_open_us, open_close_us


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600, help="timed steps (both modes)")
    parser.add_argument("--warmup", type=int, default=10, help="steps before timing")
    ours, trainer_flags = parser.parse_known_args()

    from runtime.train.config import parse_config
    from runtime.train.loop import Trainer

    with tempfile.TemporaryDirectory() as tmp:
        job_dir = Path(tmp) / "job"
        total = ours.warmup + ours.steps
        cfg = parse_config(
            [*DEFAULT_MODEL, *trainer_flags, "--steps", str(total + 1), "--job-dir", str(job_dir)]
        )
        trainer = Trainer(cfg)
        trainer.setup()
        trainer.resume()
        for _ in range(ours.warmup):
            trainer.advance()
        times: dict[bool, list[float]] = {True: [], False: []}
        for index in range(ours.steps):
            reporting = (index % 2 == 0) == ((index // 2) % 2 == 0)  # on off off on on off ...
            progress.set_enabled(reporting)
            start = time.perf_counter()
            trainer.advance()
            times[reporting].append(time.perf_counter() - start)
        progress.set_enabled(True)
        records = len((job_dir / "progress" / "0.jsonl").read_text().splitlines())
        kept_open_us, open_close_us = time_report_calls(Path(tmp) / "micro", 20_000)

    per_step = trainer.tokens_per_step
    on = per_step / statistics.median(times[True])
    off = per_step / statistics.median(times[False])
    off_a = per_step / statistics.median(times[False][0::2])
    off_b = per_step / statistics.median(times[False][1::2])
    step_s = statistics.median(times[False])
    print(
        f"model: {trainer.n_params:,} params, {per_step} tokens/step, "
        f"median step {step_s * 1000:.1f} ms, {ours.steps} timed steps alternating on/off"
    )
    print(f"tokens/s reporting off: {off:,.0f}")
    print(f"tokens/s reporting on:  {on:,.0f}  ({records} progress records written)")
    print(f"ratio on/off: {on / off:.4f}  overhead {100 * (1 - on / off):+.2f}% (target < 1%)")
    print(f"noise floor, off/off between two halves: {off_a / off_b:.4f}")
    print(
        f"report() per record: {kept_open_us:.1f} us kept-open fd, "
        f"{open_close_us:.1f} us open/append/close "
        f"= {100 * kept_open_us * 1e-6 / step_s:.3f}% of a median step"
    )


if __name__ == "__main__":
    main()
