"""Slurm backend overhead: ``scalectl launch --backend slurm`` against a plain ``sbatch`` of
the same command, same cluster, same run (issue 6 target: ratio <= 1.2).

Both run the reference trainer (the tests' tiny model, 5 steps) on 2 nodes, one task per
node, torchrun elastic c10d rendezvous on the first node's address. The plain job is the
script a user would write by hand: ``srun python -m torch.distributed.run ... -m
runtime.train``. scalectl's adds its CLI (typer, pydantic, SQLite registry, job
directory), the sbatch submission, the node agent (``scalectl agent --policy=slurm``,
``srun``'s task, its command completed from job.json by ``launcher.backends.slurm_node``)
in front of torchrun, and ``runtime.rank_exec`` per rank. Measured from the moment the
command is started:

* RUNNING: ``squeue`` first reports the job RUNNING (polled every ~20 ms);
* first step: the first line of rank 0's ``progress/0.jsonl`` (both write it: the plain
  job gets ``SCALECTL_JOB_DIR`` so the trainer reports progress the same way).

Runs alternate (sbatch, scalectl, ...) and each waits for the previous job to leave the
queue and both nodes to be idle, so both see an idle cluster and the same machine noise
(the cluster is shared with other users' test jobs: a round that found a node busy waits
for it).

    .venv/bin/python bench/slurm_submit.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PY = sys.executable
TINY = [
    "--layers", "2", "--hidden", "64", "--heads", "4", "--kv-heads", "2", "--seq-len", "64",
    "--micro-batch", "4", "--warmup-steps", "2", "--log-every", "5", "--eval-every", "0",
    "--steps", "5", "--ckpt-every", "0",
]  # fmt: skip
REPO = Path(__file__).resolve().parent.parent
SETTLE_S = 5.0
"""Pause between a job's end and the next submission (see wait_gone)."""


def plain_script(job_dir: Path) -> str:
    trainer = shlex.join(["-m", "runtime.train", *TINY])
    return f"""#!/bin/bash
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --cpus-per-task=1
#SBATCH --job-name=plain
#SBATCH --chdir={shlex.quote(str(REPO))}
#SBATCH --output={shlex.quote(str(job_dir / "slurm.out"))}
export SCALECTL_JOB_DIR={shlex.quote(str(job_dir))}
head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
addr=$(scontrol show node "$head" | sed -n 's/^ *NodeAddr=\\([^ ]*\\).*/\\1/p')
srun --cpus-per-task=1 {shlex.quote(PY)} -m torch.distributed.run --nnodes=2 \\
  --nproc-per-node=1 --rdzv-backend=c10d --rdzv-id="$SLURM_JOB_ID" \\
  --rdzv-endpoint="$addr:$((20000 + SLURM_JOB_ID % 10000))" {trainer}
"""


def squeue_state(job: str) -> str:
    out = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True)
    return out.stdout.strip()


def wait_running(job: str, start: float, limit_s: float = 120.0) -> float:
    while time.monotonic() - start < limit_s:
        if squeue_state(job) in ("RUNNING", "COMPLETING"):
            return time.monotonic() - start
        time.sleep(0.02)
    raise RuntimeError(f"job {job} not RUNNING after {limit_s} s")


def wait_first_step(job_dir: Path, start: float, limit_s: float = 180.0) -> float:
    path = job_dir / "progress" / "0.jsonl"
    while time.monotonic() - start < limit_s:
        try:
            if path.stat().st_size > 0 and b"\n" in path.read_bytes():
                return time.monotonic() - start
        except FileNotFoundError:
            pass
        time.sleep(0.02)
    raise RuntimeError(f"no step in {path} after {limit_s} s")


def wait_gone(job: str, limit_s: float = 180.0) -> None:
    """Until the job left the queue and both nodes are idle again (a job's last processes
    may still be exiting when squeue forgets it, and would delay the next job's start)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        nodes = subprocess.run(["sinfo", "-h", "-N", "-o", "%t"], capture_output=True, text=True)
        if not squeue_state(job) and set(nodes.stdout.split()) == {"idle"}:
            # A job's end triggers a scheduling pass; let it pass, so that the next
            # submission meets a quiet scheduler whichever tool sends it.
            time.sleep(SETTLE_S)
            return
        time.sleep(0.2)


def run_plain(work: Path, index: int) -> tuple[float, float]:
    job_dir = work / f"plain-{index}"
    (job_dir / "progress").mkdir(parents=True)
    script = job_dir / "job.sh"
    script.write_text(plain_script(job_dir))
    start = time.monotonic()
    out = subprocess.run(
        ["sbatch", "--parsable", str(script)], capture_output=True, text=True, check=True
    )
    job = out.stdout.strip().split(";")[0]
    running = wait_running(job, start)
    first = wait_first_step(job_dir, start)
    wait_gone(job)
    return running, first


def run_scalectl(work: Path, index: int, env: dict[str, str]) -> tuple[float, float, float]:
    jobs_root = work / f"scalectl-{index}"
    argv = [
        PY, "-m", "scalectl", "launch", "--backend", "slurm", "--nodes", "2",
        "--cpus-per-node", "1", "--jobs-root", str(jobs_root), "--workdir", str(REPO),
        "--module", "runtime.train", "--", *TINY,
    ]  # fmt: skip
    start = time.monotonic()
    out = subprocess.run(argv, capture_output=True, text=True, env=env, check=True)
    cli_s = time.monotonic() - start
    job_dir = next(p for p in jobs_root.iterdir() if p.is_dir() and p.name != "sweeps")
    from contract.jobdir import JobDir, read_all_jsonl

    submitted = [e for e in read_all_jsonl(JobDir(job_dir).events) if "slurm_job_id" in e]
    job = str(submitted[0]["slurm_job_id"])
    running = wait_running(job, start)
    first = wait_first_step(job_dir, start)
    wait_gone(job)
    assert "launched job" in out.stdout
    return running, first, cli_s


def verdict(ratio: float) -> str:
    return "met" if ratio <= 1.2 else "missed"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    plain: list[tuple[float, float]] = []
    ours: list[tuple[float, float, float]] = []
    with tempfile.TemporaryDirectory(prefix="slurm-bench-", dir=os.path.expanduser("~")) as tmp:
        work = Path(tmp)
        env["SCALECTL_HOME"] = str(work / "home")
        for index in range(args.repeat):
            plain.append(run_plain(work, index))
            ours.append(run_scalectl(work, index, env))
            print(
                f"round {index}: sbatch running {plain[-1][0]:.2f}s first step "
                f"{plain[-1][1]:.2f}s | scalectl running {ours[-1][0]:.2f}s first step "
                f"{ours[-1][1]:.2f}s (CLI {ours[-1][2]:.2f}s)",
                flush=True,
            )
    med = statistics.median
    p_run, p_step = med(r for r, _ in plain), med(s for _, s in plain)
    o_run, o_step = med(r for r, _, _ in ours), med(s for _, s, _ in ours)
    o_cli = med(c for _, _, c in ours)
    print(f"{args.repeat} rounds, 2 nodes x 1 rank, medians:")
    print(f"to RUNNING:    sbatch {p_run:.2f}s  scalectl {o_run:.2f}s  ratio {o_run / p_run:.2f}")
    print(
        f"to first step: sbatch {p_step:.2f}s  scalectl {o_step:.2f}s  "
        f"ratio {o_step / p_step:.2f} (target <= 1.2: {verdict(o_step / p_step)})"
    )
    print(f"scalectl launch CLI (process start to exit): {o_cli:.2f}s")


if __name__ == "__main__":
    main()
