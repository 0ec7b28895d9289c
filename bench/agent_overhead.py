"""What the node agent costs: its own CPU and memory, and the training throughput it takes.

Runs the reference trainer (CPU gloo, 2 ranks, the bench model of trainer_overhead.py)
alternately under plain torchrun and under ``scalectl agent`` (telemetry sampling at 1 s,
hang and straggler checks every 0.5 s), ``--rounds`` times each, in the order plain,
agent, agent, plain, ... so drift on the shared machine hits both alike. Per run:

* tokens/s: the median of rank 0's ``tokens_per_s`` over the steps after the first 20
  (start-up and warm-up excluded); the figure is the ratio of the medians of the runs;
* agent CPU: the agent process's own user+system CPU seconds (not its children's)
  between its first and last progress record, over that wall time: % of one core;
* agent memory: its peak RSS, sampled every 0.25 s.

As a noise floor it prints the same tokens/s ratio between the plain runs of odd and
even rounds, which differ in nothing. Targets (issue 7): < 1 % slowdown, < 2 % of a core.

    .venv/bin/python bench/agent_overhead.py [--rounds 3] [--steps 400]

On a GPU machine, one rank and a GPU-sized model (the trainer picks CUDA by itself)::

    python bench/agent_overhead.py --nproc 1 --trainer-args "--layers 12 --hidden 768 ..."
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from launcher.backends.local import free_port

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
MODEL = [
    "--layers", "2", "--hidden", "64", "--heads", "4", "--kv-heads", "2",
    "--seq-len", "64", "--micro-batch", "8", "--eval-every", "0", "--log-every", "1000000",
]  # fmt: skip
SKIP_STEPS = 20


AGENT_ARGS: list[str] = []
"""Extra ``scalectl agent`` flags (``--agent-args``), e.g. ``--telemetry-interval 0``."""


def command(with_agent: bool, job: Path, steps: int, nproc: int, model: list[str]) -> list[str]:
    args = [
        "--nnodes=1:1", f"--nproc-per-node={nproc}", "--rdzv-backend=c10d",
        f"--rdzv-endpoint=127.0.0.1:{free_port()}", "--monitor-interval=0.1",
        "-m", "runtime.rank_exec", "--", PY, "-m", "runtime.train", *model,
        "--steps", str(steps), "--ckpt-every", str(steps),
    ]  # fmt: skip
    if with_agent:
        return [PY, "-m", "scalectl", "agent", "--job-dir", str(job), "--node", "n0",
                "--telemetry-interval", "1", *AGENT_ARGS, "--", *args]  # fmt: skip
    return [PY, "-m", "torch.distributed.run", "--max-restarts=0", *args]


def run(with_agent: bool, job: Path, steps: int, nproc: int, model: list[str]) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCALECTL_")}
    env.update({"OMP_NUM_THREADS": "1", "SCALECTL_JOB_DIR": str(job)})
    env["SCALECTL_JOB_ID"] = f"bench-overhead-{job.name}"
    progress = job / "progress" / "0.jsonl"
    with open(job.parent / f"{job.name}.out", "w") as out:
        proc = subprocess.Popen(command(with_agent, job, steps, nproc, model), env=env, cwd=REPO,
                                stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
        me = psutil.Process(proc.pid)
        samples: list[tuple[float, float, int]] = []  # (time, cpu s, rss)
        while proc.poll() is None:
            try:
                times = me.cpu_times()
                samples.append((time.time(), times.user + times.system, me.memory_info().rss))
            except psutil.Error:
                pass
            time.sleep(0.25)
    assert proc.returncode == 0, (job, proc.returncode)
    records = [json.loads(line) for line in progress.read_text().splitlines()]
    steady = [r for r in records if r["step"] > SKIP_STEPS]
    start_ts, end_ts = steady[0]["ts"], steady[-1]["ts"]
    window = [s for s in samples if start_ts <= s[0] <= end_ts]
    result: dict[str, Any] = {
        "tokens_per_s": statistics.median(r["tokens_per_s"] for r in steady),
    }
    if with_agent and len(window) >= 2:
        cpu_s = window[-1][1] - window[0][1]
        result["agent_cpu_pct"] = 100.0 * cpu_s / (window[-1][0] - window[0][0])
        result["agent_rss_mib"] = max(s[2] for s in samples) / 2**20
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--nproc", type=int, default=2, help="Ranks (processes) per run.")
    parser.add_argument(
        "--trainer-args", default=shlex.join(MODEL), help="The trainer's model flags, quoted."
    )
    parser.add_argument("--agent-args", default="", help="Extra agent flags, quoted.")
    args = parser.parse_args()
    model = shlex.split(args.trainer_args)
    AGENT_ARGS[:] = shlex.split(args.agent_args)
    plain: list[dict[str, Any]] = []
    agent: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="scalectl-agent-overhead-") as tmp:
        for index in range(args.rounds):
            order = (False, True) if index % 2 == 0 else (True, False)
            for with_agent in order:
                job = Path(tmp) / f"{'agent' if with_agent else 'plain'}-{index}"
                result = run(with_agent, job, args.steps, args.nproc, model)
                (agent if with_agent else plain).append(result)
                figures = ", ".join(f"{k} {v:,.2f}" for k, v in result.items())
                label = "agent" if with_agent else "plain"
                print(f"round {index} {label:5}: {figures}", flush=True)
    p = statistics.median(r["tokens_per_s"] for r in plain)
    a = statistics.median(r["tokens_per_s"] for r in agent)
    odd = statistics.median(r["tokens_per_s"] for r in plain[1::2]) if len(plain) > 1 else p
    even = statistics.median(r["tokens_per_s"] for r in plain[0::2])
    cpu = statistics.median(r["agent_cpu_pct"] for r in agent)
    rss = max(r["agent_rss_mib"] for r in agent)
    print(f"tokens/s plain torchrun {p:,.0f}, under the agent {a:,.0f}: "
          f"slowdown {100 * (1 - a / p):+.2f}% (target < 1%)")  # fmt: skip
    print(f"noise floor (plain even vs odd rounds): {100 * (1 - odd / even):+.2f}%")
    print(f"agent CPU {cpu:.2f}% of one core (target < 2%), peak RSS {rss:.1f} MiB")


if __name__ == "__main__":
    main()
