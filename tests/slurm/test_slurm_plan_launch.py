"""``scalectl launch --plan`` on the real local 2-node Slurm cluster: a dp2 x tp2 plan of a
tiny model on 2 nodes x 2 ranks trains the planned layout.

The path under test is the Slurm one end to end: ``plan.json`` in the job directory on
the shared filesystem, ``job.json`` read by every node's agent
(``scalectl agent --policy=slurm``, ``launcher.backends.slurm_node``), which puts the
``SCALECTL_LAYOUT_*`` variables into the environment srun's tasks pass to torchrun and
the ranks. The cluster has no GPUs, so the launch asks for none (``--gpus-per-node 0``;
a plan's job otherwise asks Slurm for one GPU per rank).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polling
import pytest
from tiny_plans import dp2_tp2_plan

from contract import env
from contract.jobdir import JobDir, read_all_jsonl
from launcher import api
from launcher.states import JobState
from launcher.store import JobRecord, Store

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def _record(job_id: str) -> JobRecord:
    with Store() as store:
        record = store.get(job_id)
        assert record is not None
        return api.refresh(store, record)


def _layout_environment_of_ranks(job: JobDir) -> dict[str, str]:
    """The ``SCALECTL_LAYOUT_*`` lines a rank printed (the script below prints them)."""
    found: dict[str, str] = {}
    for path in job.root.glob("logs/node*.[0-9].log"):
        for line in path.read_text().splitlines():
            name, _, value = line.partition("=")
            if name.startswith(env.PREFIX + "LAYOUT_"):
                found[name] = value
    return found


def test_a_dp2_tp2_plan_trains_its_layout_on_two_slurm_nodes(cli: Any, tmp_path: Path) -> None:
    plan = dp2_tp2_plan(cli, tmp_path, gpus_per_node=2)
    run = cli("launch", "--plan", str(plan), "--backend", "slurm", "--gpus-per-node", "0",
              "--cpus-per-node", "1", "--", "--steps", "3", "--eval-every", "0")  # fmt: skip
    assert run.code == 0, run.err
    job_id = next(ln for ln in run.out.splitlines() if ln.startswith("launched job ")).split()[2]
    record = _record(job_id)
    assert record.backend == "slurm" and record.backend_job_id
    job = JobDir(record.job_dir)
    polling.wait_for(
        lambda: _record(job_id).state.is_terminal,
        poll_s=0.3,
        progress=lambda: polling.job_activity(job.root),
    )
    record = _record(job_id)
    assert record.state is JobState.COMPLETED, record.reason

    # plan.json reached the job directory on the shared filesystem, as written.
    assert json.loads(job.plan_json.read_text()) == json.loads(plan.read_text())
    # Both nodes ran ranks of the one job.
    nodes = {p.name.split(".")[0] for p in job.root.glob("logs/node*.[0-9].log")}
    assert nodes == {"node1", "node2"}
    # Every rank's layout_applied is the plan's layout (one per rank-0 start: one here).
    (applied,) = [e for e in read_all_jsonl(job.events) if e.get("event") == "layout_applied"]
    assert {k: applied[k] for k in ("dp_shard", "tp", "sharding", "world_size")} == {
        "dp_shard": 2, "tp": 2, "sharding": "zero3", "world_size": 4
    }  # fmt: skip
    assert applied["sequence_parallel"] is True
    assert (applied["global_batch_tokens"], applied["grad_accum"]) == (8 * 32, 2)
    steps = [r for r in read_all_jsonl(job.progress_file(0)) if "loss" in r]
    assert [r["tokens"] for r in steps] == [256, 512, 768]
    shown = cli("jobs", "--json")
    assert shown.code == 0, shown.err
    (mine,) = [j for j in json.loads(shown.out) if j["id"] == job_id]
    assert mine["plan"]["layout_check"]["differs"] == []


def test_the_layout_variables_reach_srun_tasks_on_every_node(cli: Any, tmp_path: Path) -> None:
    """A user's own program launched from a plan reads the layout from its environment."""
    plan = dp2_tp2_plan(cli, tmp_path, gpus_per_node=2)
    script = tmp_path / "show_layout.py"
    script.write_text(
        "import os\n"
        "for name in sorted(os.environ):\n"
        f"    if name.startswith({env.PREFIX!r} + 'LAYOUT_') or name == {env.PLAN_FILE_ENV!r}:\n"
        "        print(f'{name}={os.environ[name]}')\n"
    )
    run = cli("launch", "--plan", str(plan), "--backend", "slurm", "--gpus-per-node", "0",
              "--cpus-per-node", "1", "--script", str(script))  # fmt: skip
    assert run.code == 0, run.err
    job_id = next(ln for ln in run.out.splitlines() if ln.startswith("launched job ")).split()[2]
    job = JobDir(_record(job_id).job_dir)
    polling.wait_for(lambda: _record(job_id).state.is_terminal, poll_s=0.3)
    record = _record(job_id)
    assert record.state is JobState.COMPLETED, record.reason
    logs = sorted(job.root.glob("logs/node*.[0-9].log"))
    assert {p.name.split(".")[0] for p in logs} == {"node1", "node2"} and len(logs) == 4
    layout = env.layout(_layout_environment_of_ranks(job))
    assert layout is not None
    assert (layout.dp, layout.tp, layout.micro_batch, layout.grad_accum) == (2, 2, 2, 2)
    assert layout.global_batch_tokens == 256 and layout.sharding == "zero3"
    for path in logs:
        assert f"{env.PLAN_FILE_ENV}={job.plan_json}" in path.read_text()
        assert f"{env.LAYOUT_TP_ENV}=2" in path.read_text()


def test_a_planned_node_range_loses_a_node_and_keeps_tp(cli: Any, tmp_path: Path) -> None:
    """Elastic resizing on Slurm: the dp2 x tp2 plan on ``--nodes 1:2`` loses node2 and
    goes on as dp1 x tp2 on node1, accumulation doubled, tokens per step as planned."""
    from runtime import processes

    plan = dp2_tp2_plan(cli, tmp_path, gpus_per_node=2)
    # Every step at least 0.2 s, so node2 is killed well before the job could end.
    slow = f"{env.FAULTS_ENV}=slow@step=1,secs=0.2"
    run = cli("launch", "--plan", str(plan), "--backend", "slurm", "--gpus-per-node", "0",
              "--cpus-per-node", "1", "--nodes", "1:2", "--max-restarts", "2", "--env", slow,
              "--", "--steps", "40", "--ckpt-every", "5", "--eval-every", "0")  # fmt: skip
    assert run.code == 0, run.err
    job_id = next(ln for ln in run.out.splitlines() if ln.startswith("launched job ")).split()[2]
    job = JobDir(_record(job_id).job_dir)

    def trained() -> int:
        if not job.progress_file(0).exists():
            return 0
        return len([r for r in read_all_jsonl(job.progress_file(0)) if "loss" in r])

    polling.wait_for(lambda: trained() >= 8, poll_s=0.3, progress=trained)
    victims = processes.job_pids(job_id, "node2")
    assert len(victims) >= 2  # node2's torchrun and its ranks
    for pid in victims:
        processes.kill(pid)
    polling.wait_for(
        lambda: _record(job_id).state.is_terminal,
        poll_s=0.3,
        progress=lambda: polling.job_activity(job.root),
    )
    record = _record(job_id)
    assert record.state is JobState.COMPLETED, record.reason
    rounds = [e for e in read_all_jsonl(job.events) if e.get("event") == "layout_applied"]
    keys = ("world_size", "dp_shard", "tp", "grad_accum")
    assert [rounds[0][k] for k in keys] == [4, 2, 2, 2]
    assert [rounds[-1][k] for k in keys] == [2, 1, 2, 4]
    assert {e["global_batch_tokens"] for e in rounds} == {256}
    steps = {r["step"]: r for r in read_all_jsonl(job.progress_file(0)) if "loss" in r}
    assert sorted(steps) == list(range(1, 41)) and steps[40]["tokens"] == 40 * 256
    shown = cli("jobs", "--json")
    (mine,) = [j for j in json.loads(shown.out) if j["id"] == job_id]
    check = mine["plan"]["layout_check"]
    assert check["differs"] == [] and "world_size" in check["resized"]
