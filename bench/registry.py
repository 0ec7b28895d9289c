"""Job registry speed at the TUI's scale: 2,000 jobs (issue 8 wants a filter under 50 ms).

Times, on a fresh registry in a temporary directory: registering jobs (one write
transaction each, as ``scalectl launch`` does), listing them all, a text filter, a state
filter, a count, resolving an id suffix, and a state transition while 4 reader
processes list in a loop (WAL: readers must not slow the writer down much). Each read
figure is the median of 20 calls.

    .venv/bin/python bench/registry.py [--jobs 2000]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from launcher.ids import new_job_id
from launcher.states import JobState
from launcher.store import NewJob, Store


def median_ms(fn: Callable[[], Any], repeat: int = 20) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def _reader(path: str, stop_at: float) -> None:
    with Store(Path(path)) as store:
        while time.time() < stop_at:
            store.list_jobs(limit=200)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "registry.sqlite3"
        store = Store(path)
        spec = json.dumps({"name": "bench", "entrypoint": {"module": "runtime.train"}})
        ids = []
        start = time.perf_counter()
        for i in range(args.jobs):
            job_id = new_job_id(1.7e9 + i)
            ids.append(job_id)
            store.add(
                NewJob(job_id, f"sweep-{i % 37}", ("local", "slurm")[i % 2],
                       Path(tmp) / job_id, 1, 2, 8, 8, spec)
            )  # fmt: skip
            if i % 3 == 0:
                store.transition(job_id, JobState.COMPLETED)
        add_ms = (time.perf_counter() - start) / args.jobs * 1000
        print(f"register: {add_ms:.2f} ms per job ({args.jobs} jobs, 1/3 also transitioned)")
        print(f"list all {args.jobs}: {median_ms(lambda: store.list_jobs()):.1f} ms")
        print(f"list newest 50: {median_ms(lambda: store.list_jobs(limit=50)):.2f} ms")
        text_ms = median_ms(lambda: store.list_jobs(text="sweep-3"))
        print(f"text filter 'sweep-3' (all matches): {text_ms:.1f} ms")
        active_ms = median_ms(lambda: store.list_jobs(active_only=True, backends=["slurm"]))
        print(f"active slurm jobs: {active_ms:.1f} ms")
        print(f"count active: {median_ms(lambda: store.count_jobs(active_only=True)):.2f} ms")
        print(f"resolve by suffix: {median_ms(lambda: store.resolve(ids[777][-4:])):.2f} ms")

        alone = median_ms(lambda: store.transition(ids[1], JobState.RUNNING), repeat=50)
        ctx = multiprocessing.get_context("fork")
        readers = [ctx.Process(target=_reader, args=(str(path), time.time() + 6)) for _ in range(4)]
        for proc in readers:
            proc.start()
        time.sleep(0.5)
        busy = median_ms(lambda: store.transition(ids[1], JobState.RUNNING), repeat=50)
        for proc in readers:
            proc.join()
        print(
            f"state transition: {alone:.2f} ms alone, {busy:.2f} ms with 4 processes "
            f"listing in a loop (ratio {busy / alone:.1f})"
        )
        store.close()


if __name__ == "__main__":
    main()
