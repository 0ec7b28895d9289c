"""Run ``scalectl agent`` around a real elastic torchrun of the reference trainer (CPU,
gloo, tiny model) and read what it left in the job directory."""

from __future__ import annotations

import contextlib
import math
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from polling import job_activity, wait_for

from contract.jobdir import JobDir, read_all_jsonl, read_json
from launcher.backends.local import free_port
from runtime import processes

REPO = Path(__file__).resolve().parents[2]
PY = sys.executable
TINY = [
    *("--layers", "1", "--hidden", "32", "--heads", "2", "--kv-heads", "1"),
    *("--seq-len", "32", "--micro-batch", "2", "--eval-every", "0", "--log-every", "5"),
    *("--warmup-steps", "3"),
]
"""A model whose step takes tens of milliseconds on one shared core."""
FAST_AGENT = [
    *("--hang-timeout-floor-s", "3", "--hang-startup-s", "60", "--poll-s", "0.2"),
    *("--backoff-s", "0.5", "--stop-grace-s", "30"),
]


def job_env(job_id: str, faults: str | None) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("SCALECTL_JOB_DIR", "SCALECTL_FAULTS", "RANK", "WORLD_SIZE", "LOCAL_RANK",
                 "SCALECTL_NODE", "SCALECTL_AGENT_PID"):  # fmt: skip
        env.pop(name, None)
    env.update({"OMP_NUM_THREADS": "1", "SCALECTL_JOB_ID": job_id, "PYTHONUNBUFFERED": "1"})
    if faults:
        env["SCALECTL_FAULTS"] = faults
    return env


def agent_cmd(
    job_dir: Path,
    nproc: int,
    train_args: list[str],
    agent_args: list[str] = (),  # type: ignore[assignment]
    *,
    node: str = "n0",
    restarts: int = 3,
    nnodes: str = "1:1",
    port: int | None = None,
) -> list[str]:
    return [
        PY, "-m", "scalectl", "agent", "--job-dir", str(job_dir), "--node", node,
        "--restarts", str(restarts), *FAST_AGENT, *agent_args, "--",
        f"--nnodes={nnodes}", f"--nproc-per-node={nproc}", "--rdzv-backend=c10d",
        f"--rdzv-endpoint=127.0.0.1:{port or free_port()}", "--monitor-interval=0.1",
        "-m", "runtime.rank_exec", "--", PY, "-m", "runtime.train", *TINY, *train_args,
    ]  # fmt: skip


def new_job_id() -> str:
    return f"faulttest-{uuid.uuid4().hex[:10]}"


def start_agent(
    job_dir: Path,
    nproc: int,
    train_args: list[str],
    *,
    faults: str | None = None,
    job_id: str,
    agent_args: list[str] = (),  # type: ignore[assignment]
) -> subprocess.Popen[str]:
    log = open(job_dir.parent / f"{job_dir.name}.agent.out", "a")  # noqa: SIM115
    return subprocess.Popen(
        agent_cmd(job_dir, nproc, train_args, agent_args),
        env=job_env(job_id, faults),
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )


def run_agent(
    job_dir: Path,
    nproc: int,
    train_args: list[str],
    *,
    faults: str | None = None,
    job_id: str,
    agent_args: list[str] = (),  # type: ignore[assignment]
) -> int:
    """Run an agent to its end: minutes on a loaded machine, not a minute without
    progress (its output or the job's events and progress growing)."""
    proc = start_agent(
        job_dir, nproc, train_args, faults=faults, job_id=job_id, agent_args=agent_args
    )
    output = job_dir.parent / f"{job_dir.name}.agent.out"
    try:
        wait_for(
            lambda: proc.poll() is not None,
            progress=lambda: (output.stat().st_size, job_activity(job_dir)),
        )
        return proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def agent_output(job_dir: Path) -> str:
    path = job_dir.parent / f"{job_dir.name}.agent.out"
    return path.read_text() if path.exists() else ""


def job_pids(job_id: str) -> list[int]:
    """Live processes carrying ``SCALECTL_JOB_ID=job_id`` (the no-orphan check)."""
    return processes.job_pids(job_id)


def kill_job(job_id: str) -> None:
    for pid in job_pids(job_id):
        with contextlib.suppress(OSError):
            os.kill(pid, 9)


def events(job_dir: Path, name: str | None = None, **match: Any) -> list[dict[str, Any]]:
    records = read_all_jsonl(JobDir(job_dir).events)
    return [
        r
        for r in records
        if (name is None or r.get("event") == name) and all(r.get(k) == v for k, v in match.items())
    ]


def summary(job_dir: Path) -> dict[str, Any]:
    value: dict[str, Any] = read_json(JobDir(job_dir).summary_json)
    return value


def rank0(job_dir: Path) -> list[dict[str, Any]]:
    return read_all_jsonl(JobDir(job_dir).progress_file(0))


def assert_loss_continuous(job_dir: Path, steps: int, *, same_world: bool = True) -> None:
    """Every step 1..steps ran and was kept once, and the curve does not jump at a resume.

    At the same world size a re-run step reproduces the first run's loss exactly (same
    data, same restored state): the curve continues where the checkpoint left it. After
    a resize the global batch differs, so instead the mean loss of the 5 steps after each
    resume must not exceed the 5 before it by more than 0.3 (early in training it still
    falls fast; a restart from scratch would jump back up to ~5.5, the loss of an
    untrained model).
    """
    records = rank0(job_dir)
    final: dict[int, float] = {}
    first: dict[int, float] = {}
    resumes: list[int] = []
    previous = 0
    for record in records:
        step = record["step"]
        if step <= previous:
            resumes.append(step)
        previous = step
        first.setdefault(step, record["loss"])
        final[step] = record["loss"]
    assert sorted(final) == list(range(1, steps + 1)), sorted(final)
    assert all(math.isfinite(v) for v in final.values())
    if same_world:
        for step, loss in final.items():
            assert math.isclose(loss, first[step], rel_tol=1e-3), (step, loss, first[step])
    for step in resumes:
        before = [final[s] for s in range(max(1, step - 5), step) if s in final]
        after = [final[s] for s in range(step, min(steps, step + 4) + 1)]
        if before and after:
            rise = sum(after) / len(after) - sum(before) / len(before)
            assert rise < 0.3, (step, before, after)
