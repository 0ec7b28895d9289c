"""Recovery from injected faults: the node agent (both restart modes) against plain torchrun.

For each fault, injected deterministically at a step by ``SCALECTL_FAULTS``, and each
supervisor, one run of the reference trainer (2 ranks, CPU gloo, tiny model, checkpoint
every 5 steps) prints the time from the fault (its ``fault_injected`` event) to the next
completed step (rank 0's next progress record) and the steps lost (last step completed
before the fault minus the step training resumed from).

Supervisors:

* ``agent``: ``scalectl agent`` (restart mode ``torchrun``: torchrun restarts the workers
  in place, the agent detects hangs and classifies),
* ``agent/full``: ``scalectl agent --restart-mode agent`` (torchrun runs with
  ``--max-restarts=0``; the agent restarts the whole torchrun),
* ``torchrun``: plain ``torchrun --max-restarts=3`` with ``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1``
  (its best case: without it torch 2.13's in-place restart of gloo ranks fails, see the
  ``torchrun/as-is`` row),
* ``torchrun/as-is``: plain ``torchrun --max-restarts=3`` (run for the SIGKILL fault only).

A run that makes no step within ``--give-up-s`` of the fault is killed and reported as not
recovered. Preemption: SIGTERM at step 8 to the agent / to torchrun, then the same command
again at once (what a requeue does); the time includes the relaunch.

    .venv/bin/python bench/recovery.py [--only kill,hang] [--give-up-s 45]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from launcher.backends.local import free_port  # noqa: E402
from runtime import processes  # noqa: E402

PY = sys.executable
TINY = [
    *("--layers", "1", "--hidden", "32", "--heads", "2", "--kv-heads", "1"),
    *("--seq-len", "32", "--micro-batch", "2", "--eval-every", "0", "--log-every", "5"),
    *("--warmup-steps", "3", "--steps", "16", "--ckpt-every", "5"),
]
FAULTS = {
    "kill": ("SIGKILL of one rank", "kill@step=8,rank=1"),
    "hang": ("SIGSTOP of one rank (hang)", "signal@step=8,rank=1,sig=STOP"),
    "crash": ("exception at a step", "crash@step=8,rank=1"),
    "ckpt": ("killed mid-checkpoint", "crash_in_checkpoint@step=10,rank=1"),
    "preempt": ("SIGTERM to the supervisor", None),
}
SUPERVISORS = ("agent", "agent/full", "torchrun", "torchrun/as-is")


def command(supervisor: str, job: Path) -> list[str]:
    rdzv = [
        "--nnodes=1:1", "--nproc-per-node=2", "--rdzv-backend=c10d",
        f"--rdzv-endpoint=127.0.0.1:{free_port()}", "--monitor-interval=0.1",
        "-m", "runtime.rank_exec", "--", PY, "-m", "runtime.train", *TINY,
    ]  # fmt: skip
    if supervisor.startswith("agent"):
        mode = "agent" if supervisor == "agent/full" else "torchrun"
        return [
            PY, "-m", "scalectl", "agent", "--job-dir", str(job), "--node", "n0",
            "--restarts", "3", "--restart-mode", mode, "--hang-timeout-floor-s", "3",
            "--poll-s", "0.2", "--telemetry-interval", "1", "--", *rdzv,
        ]  # fmt: skip
    return [PY, "-m", "torch.distributed.run", "--max-restarts=3", *rdzv]


def environment(supervisor: str, job: Path, faults: str | None, job_id: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SCALECTL_", "PET_"))}
    env.update({"OMP_NUM_THREADS": "1", "SCALECTL_JOB_ID": job_id, "PYTHONUNBUFFERED": "1"})
    env["SCALECTL_JOB_DIR"] = str(job)  # rank_exec's logs, the trainer's job dir
    if faults:
        env["SCALECTL_FAULTS"] = faults
    if supervisor == "torchrun":
        env["TORCH_DISABLE_SHARE_RDZV_TCP_STORE"] = "1"
    return env


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            out.append(json.loads(line))
    return out


def kill_job(job_id: str) -> None:
    for pid in processes.job_pids(job_id):
        processes.kill(pid, signal.SIGKILL)


def run_one(supervisor: str, fault: str, give_up_s: float, root: Path) -> dict[str, Any]:
    root.mkdir(parents=True, exist_ok=True)
    job = root / f"{supervisor.replace('/', '-')}-{fault}"
    job_id = f"bench-{job.name}-{root.name}-{os.getpid()}"
    spec = FAULTS[fault][1]
    out = open(root / f"{job.name}.out", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        command(supervisor, job), env=environment(supervisor, job, spec, job_id),
        cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
    )  # fmt: skip
    fault_ts: float | None = None
    try:
        if fault == "preempt":
            while proc.poll() is None and not any(r["step"] >= 8 for r in progress(job)):
                time.sleep(0.02)
            fault_ts = time.time()
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=120)
            stop_code = proc.returncode
            proc = subprocess.Popen(
                command(supervisor, job), env=environment(supervisor, job, None, job_id),
                cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        while proc.poll() is None:
            if fault_ts is None:
                injected = [e for e in read_jsonl(job / "events.jsonl")
                            if e.get("event") == "fault_injected"]  # fmt: skip
                fault_ts = injected[0]["ts"] if injected else None
            late = fault_ts is not None and time.time() - fault_ts > give_up_s
            if late and not restarted_steps(job, fault_ts or 0.0):
                break
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            proc.kill()
        kill_job(job_id)
        proc.wait()
        out.close()
    records = progress(job)
    result: dict[str, Any] = {"supervisor": supervisor, "fault": fault, "exit": proc.returncode}
    if fault == "preempt":
        result["stop_exit"] = stop_code
    if fault_ts is None:
        result["note"] = "fault never fired"
        return result
    restart_ts = trainer_restart_ts(job, fault_ts)
    before = [r["step"] for r in records if r["ts"] <= restart_ts]
    after = restarted_steps(job, fault_ts)
    if not after:
        result["recover_s"] = None
        result["note"] = f"no step within {give_up_s:g} s of the fault; killed"
        return result
    result["recover_s"] = round(after[0]["ts"] - fault_ts, 2)
    result["steps_lost"] = max(0, (max(before) if before else 0) - (after[0]["step"] - 1))
    result["completed"] = max(r["step"] for r in records) == 16
    return result


def trainer_restart_ts(job: Path, fault_ts: float) -> float:
    """When the trainer started again after the fault (its resumed/started event)."""
    starts = [
        e["ts"]
        for e in read_jsonl(job / "events.jsonl")
        if e.get("event") in ("resumed", "started") and e.get("source") == "trainer"
        and e["ts"] > fault_ts
    ]  # fmt: skip
    return starts[0] if starts else float("inf")


def restarted_steps(job: Path, fault_ts: float) -> list[dict[str, Any]]:
    """Steps completed after the trainer started again (records a surviving rank wrote a
    few milliseconds after the fault fired are pre-fault steps, not a recovery)."""
    restart_ts = trainer_restart_ts(job, fault_ts)
    return [r for r in progress(job) if r["ts"] > restart_ts]


def progress(job: Path) -> list[dict[str, Any]]:
    return [r for r in read_jsonl(job / "progress" / "0.jsonl") if "step" in r and "ts" in r]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(FAULTS), help="faults to run")
    parser.add_argument("--supervisors", default=",".join(SUPERVISORS))
    parser.add_argument("--give-up-s", type=float, default=45.0)
    parser.add_argument("--repeat", type=int, default=2, help="runs per cell (median)")
    args = parser.parse_args()
    print(f"{'fault':28} {'supervisor':15} {'recover_s':>9} {'lost':>4}  note")
    with tempfile.TemporaryDirectory(prefix="scalectl-recovery-") as tmp:
        for fault in args.only.split(","):
            for supervisor in args.supervisors.split(","):
                if supervisor == "torchrun/as-is" and fault != "kill":
                    continue
                reps = 1 if fault in ("hang", "ckpt", "preempt") else args.repeat
                runs = [
                    run_one(supervisor, fault, args.give_up_s, Path(tmp) / str(i))
                    for i in range(reps)
                ]
                r = runs[0]
                times = [x["recover_s"] for x in runs if x.get("recover_s") is not None]
                if times:
                    r = {**r, "recover_s": round(statistics.median(times), 2)}
                    r["steps_lost"] = max(x.get("steps_lost", 0) for x in runs)
                    r["completed"] = all(x.get("completed") for x in runs)
                    if len(runs) > 1:
                        r["note"] = f"median of {len(times)}: {times}"
                recover = r.get("recover_s")
                note = r.get("note", "")
                if recover is not None and not r.get("completed"):
                    note = f"recovered but did not finish (exit {r['exit']}) {note}".strip()
                if fault == "preempt":
                    note = f"stop exit {r.get('stop_exit')}; relaunched {note}".strip()
                print(
                    f"{FAULTS[fault][0]:28} {supervisor:15} "
                    f"{recover if recover is not None else '-':>9} "
                    f"{r.get('steps_lost', '-'):>4}  {note}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
