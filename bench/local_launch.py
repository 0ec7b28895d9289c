"""Local backend overhead: `scalectl launch` against plain torchrun, same script, same run.

Both start 2 ranks of a script that records when it started and exits. Measured from the
moment the command is started:

* first rank up: the earliest start time a rank wrote (what a user waits for to see
  training begin);
* job ended: plain torchrun exiting, against the registry saying COMPLETED.

scalectl adds the CLI (typer, pydantic, SQLite), the detached supervisor and
``runtime.rank_exec`` in front of every rank. Runs alternate (torchrun, scalectl, ...)
so machine noise hits both. No target of its own: it shows what the local backend costs
(the Slurm backend's target, issue 6, is a ratio <= 1.2 against plain sbatch).

    .venv/bin/python bench/local_launch.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
SCRIPT = """
import os, sys, time
with open(os.path.join(sys.argv[1], f"start.{os.environ['RANK']}"), "w") as f:
    f.write(repr(time.time()))
"""


def first_start(marks: Path, ranks: int, deadline_s: float = 120.0) -> float:
    stop = time.time() + deadline_s
    while time.time() < stop:
        files = list(marks.glob("start.*"))
        if len(files) == ranks:
            try:
                return min(float(p.read_text()) for p in files)
            except ValueError:  # a file being written
                pass
        time.sleep(0.01)
    raise TimeoutError("the ranks never started")


def plain_torchrun(script: Path, marks: Path) -> tuple[float, float]:
    t0 = time.time()
    subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
         str(script), str(marks)],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    ended = time.time() - t0
    return first_start(marks, 2) - t0, ended


def scalectl_launch(script: Path, marks: Path, home: Path) -> tuple[float, float]:
    from launcher.store import Store

    env = {**os.environ, "SCALECTL_HOME": str(home)}
    t0 = time.time()
    out = subprocess.run(
        [str(BIN / "scalectl"), "launch", "--nproc-per-node", "2", "--",
         "python", str(script), str(marks)],
        check=True, capture_output=True, text=True, env=env,
    ).stdout  # fmt: skip
    job_id = out.split()[2]
    up = first_start(marks, 2) - t0
    with Store(home / "registry.sqlite3") as store:
        while True:
            record = store.get(job_id)
            if record is not None and record.state.is_terminal:
                assert record.state.value == "COMPLETED", record.reason
                return up, (record.ended_ts or time.time()) - t0
            time.sleep(0.01)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        script = root / "mark.py"
        script.write_text(SCRIPT)
        plain: list[tuple[float, float]] = []
        ours: list[tuple[float, float]] = []
        for i in range(args.repeat):
            for name, results in (("torchrun", plain), ("scalectl", ours)):
                marks = root / f"{name}-{i}"
                marks.mkdir()
                if name == "torchrun":
                    results.append(plain_torchrun(script, marks))
                else:
                    results.append(scalectl_launch(script, marks, root / "home"))
    for label, index in (("first rank up", 0), ("job ended", 1)):
        base = statistics.median(r[index] for r in plain)
        mine = statistics.median(r[index] for r in ours)
        print(
            f"{label}: torchrun median {base:.2f} s | scalectl launch median {mine:.2f} s | "
            f"ratio {mine / base:.2f} ({args.repeat} runs each, alternating)"
        )


if __name__ == "__main__":
    main()
