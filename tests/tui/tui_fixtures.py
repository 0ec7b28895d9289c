"""Deterministic job registries and job directories for the TUI's tests and benchmark.

Everything has fixed timestamps (``NOW``) and values that are pure functions of the
sample number, so screenshots are identical on every run. Telemetry records come from
``runtime.telemetry.build_record`` (the real writer's schema), progress records follow
``runtime.progress``, events and logs follow the job-directory contract.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contract.jobdir import JobDir, append_jsonl, write_json_atomic
from launcher.states import JobState
from launcher.store import NewJob, Store
from runtime.telemetry import GpuSample, HostSample, build_record

NOW = 1_750_000_000.0
"""2025-06-15 15:06:40 UTC: the clock every test app runs on."""
GPU_NAME = "NVIDIA H100 80GB HBM3"
GPU_MEMORY_MIB = 81559.0
STEP_TIME_S = 13.6
"""Measured step time of the main job: about 10 % slower than its plan (12.4 s)."""


def gpu_sample(index: int, seq: int, *, node_index: int = 0) -> GpuSample:
    phase = seq / 4.0 + index * 0.7 + node_index * 0.3
    util = 82 + 15 * math.sin(phase)
    return GpuSample(
        index=index,
        uuid=f"GPU-{node_index:02d}{index:02d}-0000",
        name=GPU_NAME,
        bus_id=f"00000000:{0x18 + index:02X}:00.0",
        utilization_gpu_percent=round(util),
        utilization_memory_percent=round(util / 2),
        memory_used_mib=round(60000 + 8000 * math.sin(phase / 3), 1),
        memory_free_mib=round(GPU_MEMORY_MIB - 60000, 1),
        memory_total_mib=GPU_MEMORY_MIB,
        power_w=round(450 + 200 * math.sin(phase), 1),
        power_limit_w=700.0,
        # The integral of power_w below, so counters and samples agree.
        energy_j=round(1e6 + 450 * seq - 800 * math.cos(phase), 3),
        temperature_c=round(60 + 10 * math.sin(phase / 2)),
        sm_clock_mhz=1980,
        memory_clock_mhz=2619,
        clock_event_reasons=(),
        clock_event_reasons_mask=0,
        ecc_volatile_corrected=0,
        ecc_volatile_uncorrected=0,
        xid_events=(),
        last_xid=None,
        xid_total=0,
        pcie_tx_kb_per_s=1024.0,
        pcie_rx_kb_per_s=2048.0,
        nvlink_tx_kb_per_s=None,
        nvlink_rx_kb_per_s=None,
        errors=None,
        error=None,
    )


def host_sample(seq: int) -> HostSample:
    return HostSample(
        cpu_percent=round(40 + 20 * math.sin(seq / 6), 1),
        cpu_count=64,
        cpu_per_core_percent=None,
        load_avg_1m=3.1,
        load_avg_5m=2.9,
        load_avg_15m=2.5,
        memory_total_mib=515000.0,
        memory_used_mib=round(120000 + 5000 * math.sin(seq / 9), 1),
        memory_available_mib=390000.0,
        swap_total_mib=0.0,
        swap_used_mib=0.0,
        net_sent_bytes_per_s=1.2e9,
        net_recv_bytes_per_s=1.1e9,
        net_interfaces={"ib0": (1.2e9, 1.1e9)},
        disk_read_bytes_per_s=0.0,
        disk_write_bytes_per_s=5.2e6,
        process_count=812,
    )


def telemetry_record(node: str, seq: int, gpus: int, *, t0: float, node_index: int = 0) -> dict:
    return build_record(
        ts=t0 + seq,
        node=node,
        seq=seq,
        interval_s=1.0,
        host=host_sample(seq),
        gpus=[gpu_sample(i, seq, node_index=node_index) for i in range(gpus)],
        nvml=gpus > 0,
        driver_version="550.54.15" if gpus else None,
        sample_cpu_s=0.0012,
    )


def write_telemetry(
    jobdir: JobDir, nodes: int, gpus: int, samples: int, *, t0: float, start: int = 0
) -> None:
    jobdir.telemetry_dir.mkdir(parents=True, exist_ok=True)
    for n in range(nodes):
        node = f"node{n}"
        lines = [
            json.dumps(telemetry_record(node, s, gpus, t0=t0, node_index=n), separators=(",", ":"))
            for s in range(start, start + samples)
        ]
        with open(jobdir.telemetry_file(node), "a", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")


def progress_record(step: int, *, t0: float, rank: int = 0, world: int = 16) -> dict:
    tokens_per_step = 256 * 8192  # the plan's global batch
    step_time = STEP_TIME_S + 0.3 * math.sin(step / 3)
    return {
        "ts": t0 + step * STEP_TIME_S,
        "rank": rank,
        "step": step,
        "loss": round(2.0 + 8.0 / math.sqrt(step + 1), 4),
        "tokens": step * tokens_per_step,
        "step_time_s": round(step_time, 4),
        "world_size": world,
        "lr": 3e-4,
        "tokens_per_s": round(tokens_per_step / step_time, 1),
        "max_rss_mib": 2048.0 + rank,
        **({"eval_loss": round(2.2 + 8.0 / math.sqrt(step + 1), 4)} if step % 10 == 0 else {}),
    }


def write_progress(
    jobdir: JobDir, steps: range, *, t0: float, ranks: int = 1, world: int = 16
) -> None:
    jobdir.progress_dir.mkdir(parents=True, exist_ok=True)
    for rank in range(ranks):
        with open(jobdir.progress_file(rank), "a", encoding="utf-8") as handle:
            for step in steps:
                record = progress_record(step, t0=t0, rank=rank, world=world)
                handle.write(json.dumps(record) + "\n")


def event(jobdir: JobDir, ts: float, kind: str, source: str = "launcher", **fields: Any) -> None:
    append_jsonl(jobdir.events, {"ts": ts, "event": kind, "source": source, **fields})


def header(ts_text: str, rank: int, attempt: int) -> str:
    return (
        f"==== scalectl {ts_text} job=x node=node0 rank={rank} local_rank={rank} "
        f"world_size=16 attempt={attempt} pid=4242 cmd=python -m runtime.train ====\n"
    )


def plan_document(num_gpus: int = 16) -> dict[str, Any]:
    """A planner Plan in JSON form (the shape ``planner.make_plan`` writes)."""
    import planner

    model = planner.get_model("llama3-8b")
    cluster = planner.ClusterSpec(gpu="H100", num_gpus=num_gpus, gpus_per_node=8)
    training = planner.TrainingSpec(seq_len=8192, global_batch_seqs=256, total_tokens=2e11)
    layout = planner.Layout(dp=num_gpus, sharding="zero3", micro_batch=1, recompute="selective")
    plan = planner.make_plan(model, cluster, training, layout)
    document: dict[str, Any] = plan.model_dump(mode="json")
    return document


@dataclass(frozen=True)
class Job:
    id: str
    name: str
    backend: str
    state: JobState
    reason: str = ""
    nodes: tuple[int, int] = (1, 1)
    procs: int = 1
    gpus: int = 0
    created: float = NOW - 3600


def add_job(store: Store, root: Path, job: Job) -> JobDir:
    jobdir = JobDir(root / job.id)
    jobdir.create()
    spec = {
        "name": job.name,
        "backend": job.backend,
        "entrypoint": {"module": "runtime.train", "script": None, "command": None, "python": None},
        "args": ["--steps", "400"],
        "nodes": {"min": job.nodes[0], "max": job.nodes[1]},
        "procs_per_node": job.procs,
        "gpus_per_node": job.gpus,
        "max_restarts": 3,
        "checkpoint": {"every_steps": 50, "keep_last": 3},
    }
    store.add(
        NewJob(
            id=job.id,
            name=job.name,
            backend=job.backend,
            job_dir=jobdir.root,
            nodes_min=job.nodes[0],
            nodes_max=job.nodes[1],
            procs_per_node=job.procs,
            gpus_per_node=job.gpus,
            spec_json=json.dumps(spec),
        ),
        now_s=job.created,
    )
    if job.state is not JobState.PENDING:
        if job.state is not JobState.RUNNING and job.state.is_terminal:
            store.transition(job.id, JobState.RUNNING, now_s=job.created + 60)
        store.transition(job.id, job.state, job.reason, now_s=job.created + 120)
    elif job.reason:
        store.transition(job.id, JobState.PENDING, job.reason, now_s=job.created + 5)
    event(jobdir, job.created, "submitted", job_id=job.id, backend=job.backend, name=job.name)
    return jobdir


MAIN_ID = "20250615-140000-a1b2"
"""The running 16-GPU job with a plan, telemetry, progress, events and logs."""
CPU_ID = "20250615-120000-c3d4"
FAILED_ID = "20250615-110000-e5f6"
GONE_ID = "20250615-100000-0a0b"
PENDING_ID = "20250615-150000-9f9f"
PREEMPTED_ID = "20250614-230000-7777"
CANCELLED_ID = "20250614-220000-8888"


def build_home(home: Path, *, telemetry_samples: int = 40, progress_steps: int = 120) -> Store:
    """A registry under ``home`` with seven jobs in every interesting condition."""
    home.mkdir(parents=True, exist_ok=True)
    root = home / "jobs"
    store = Store(home / "registry.sqlite3")
    main = add_job(
        store,
        root,
        Job(MAIN_ID, "llama3-8b-pretrain", "slurm", JobState.RUNNING, "", (2, 2), 8, 8),
    )
    store.set_backend_job_id(MAIN_ID, "4242")
    write_json_atomic(main.plan_json, plan_document(16))
    t0 = NOW - 3600
    write_progress(main, range(1, progress_steps + 1), t0=t0, ranks=2)
    write_telemetry(main, 2, 8, telemetry_samples, t0=NOW - telemetry_samples)
    event(main, t0 + 30, "started", world_size=16, supervisor_pid=1)
    event(main, t0 + 40, "started", source="trainer", step=0, world_size=16, params=8.0e9)
    for step in (50, 100):
        event(main, t0 + step * 2, "checkpoint_saved", source="trainer", step=step, seconds=4.2)
    event(main, t0 + 210, "rank_failed", rank=5, node="node0", exit_code=1, cause="CUDA error")
    event(main, t0 + 215, "restarted", attempt=1, world_size=16)
    event(main, t0 + 230, "resumed", source="trainer", step=100, world_size=16)
    main.logs_dir.mkdir(parents=True, exist_ok=True)
    for rank in (0, 1):
        with open(main.log_file("node0", rank), "w", encoding="utf-8") as handle:
            handle.write(header("2025-06-15T14:00:30", rank, 0))
            for step in range(10, 101, 10):
                loss = 2 + 8 / math.sqrt(step + 1)
                handle.write(f"step {step}/400 loss {loss:.4f} rank {rank}\n")
            handle.write(header("2025-06-15T14:03:35", rank, 1))
            handle.write("resumed from checkpoints/step_100 at step 100\n")
    with open(main.log_file("node0", "torchrun"), "w", encoding="utf-8") as handle:
        handle.write("torchrun: starting 8 workers\n")

    cpu = add_job(
        store,
        root,
        Job(CPU_ID, "tiny-cpu", "local", JobState.COMPLETED, "", (1, 1), 2, 0, NOW - 3 * 3600),
    )
    write_progress(cpu, range(1, 31), t0=NOW - 3 * 3600, ranks=2, world=2)
    write_json_atomic(cpu.summary_json, {"steps": 30, "final_loss": 3.4512, "restarts": 0})
    with open(cpu.log_file("host", 0), "w", encoding="utf-8") as handle:
        handle.write(header("2025-06-15T12:00:10", 0, 0))
        handle.write("training complete at step 30\n")

    failed = add_job(
        store,
        root,
        Job(
            FAILED_ID,
            "bad-run",
            "slurm",
            JobState.FAILED,
            "exit code 1",
            (1, 1),
            8,
            8,
            NOW - 4 * 3600,
        ),
    )
    write_telemetry(failed, 1, 2, 5, t0=NOW - 4 * 3600)
    with open(failed.telemetry_file("node0"), "a", encoding="utf-8") as handle:
        handle.write("{this is not json}\n")
        handle.write('{"v": 1, "ts": 1.0, "node": "node0", "host": {"cpu_per')  # torn
    with open(failed.events, "a", encoding="utf-8") as handle:
        handle.write("garbage line\n")
    with open(failed.plan_json, "w", encoding="utf-8") as handle:
        handle.write("{not a plan")

    add_job(
        store,
        root,
        Job(GONE_ID, "vanished", "local", JobState.RUNNING, "", (1, 1), 1, 0, NOW - 5 * 3600),
    )
    import shutil

    shutil.rmtree(root / GONE_ID)
    add_job(
        store,
        root,
        Job(
            PENDING_ID,
            "mixtral-sft",
            "kubernetes",
            JobState.PENDING,
            "Unschedulable",
            (4, 4),
            8,
            8,
            NOW - 600,
        ),
    )
    add_job(
        store,
        root,
        Job(
            PREEMPTED_ID,
            "ablation-lr",
            "slurm",
            JobState.PREEMPTED,
            "preempted (priority)",
            (1, 2),
            8,
            8,
            NOW - 16 * 3600,
        ),
    )
    add_job(
        store,
        root,
        Job(
            CANCELLED_ID,
            "eval-sweep",
            "local",
            JobState.CANCELLED,
            "cancelled by user",
            (1, 1),
            1,
            0,
            NOW - 17 * 3600,
        ),
    )
    return store


def append_log(jobdir: JobDir, node: str, rank: int, lines: list[str]) -> None:
    with open(jobdir.log_file(node, rank), "a", encoding="utf-8") as handle:
        handle.write("".join(line + "\n" for line in lines))
