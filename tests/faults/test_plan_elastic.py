"""Elastic resizing of a planned job keeps tp and changes only dp (issue 16 item 6).

A dp2 x tp2 plan of a tiny model launched with ``--nodes 1:2`` on two simulated local
nodes of 2 ranks each. At step ``KILL_STEP`` rank 2 kills its whole node (agent,
torchrun, ranks); the lost node does not return before the job ends
(``SCALECTL_LOCAL_NODE_RETURN_S``), so the survivor's torchrun re-forms the rendezvous at
world size 2 and the trainer goes on as dp1 x tp2: gradient accumulation doubled so
tokens per step stay the plan's, the DCP checkpoint resharded to the new dp, and a second
``layout_applied`` event for the round. ``scalectl jobs --json`` shows the dp change as
the resize the node range allowed, not as a difference from the plan.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from agent_harness import REPO, assert_loss_continuous, events, job_pids, kill_job
from polling import run_to_end
from tiny_plans import dp2_tp2_plan

from contract import env as env_names
from contract.jobdir import JobDir, read_all_jsonl

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

STEPS = 20
KILL_STEP = 8


def test_a_tp2_plan_loses_a_node_and_goes_on_as_dp1_tp2(
    cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(env_names.HOME_ENV, str(tmp_path / "home"))
    for name in (env_names.JOB_ID_ENV, env_names.FAULTS_ENV, env_names.JOBS_ROOT_ENV):
        monkeypatch.delenv(name, raising=False)
    plan = dp2_tp2_plan(cli, tmp_path, gpus_per_node=2)
    job = tmp_path / "run"
    environ = {**os.environ, env_names.LOCAL_NODE_RETURN_S_ENV: "600"}
    fault = f"{env_names.FAULTS_ENV}=kill@step={KILL_STEP},rank=2,target=node"
    argv = [sys.executable, "-m", "scalectl", "launch", "--plan", str(plan),
            "--nodes", "1:2", "--local-nodes", "2", "--max-restarts", "2",
            "--job-dir", str(job), "--env", fault, "--env", "OMP_NUM_THREADS=1", "-f",
            "--", "--steps", str(STEPS), "--ckpt-every", "4", "--eval-every", "0",
            "--log-every", "1"]  # fmt: skip
    launched = run_to_end(argv, watch=job, env=environ, cwd=REPO)
    job_id = json.loads((job / "job.json").read_text())["job_id"]
    try:
        assert launched.returncode == 0, launched.stdout[-3000:] + launched.stderr[-2000:]
        (finished,) = events(job, "finished")
        assert finished["state"] == "COMPLETED", finished
        assert [e["kind"] for e in events(job, "fault_injected")] == ["kill"]

        # One layout_applied per round: dp2 x tp2, then dp1 x tp2 with accumulation
        # doubled; tp, the micro-batch and tokens per step as planned in both.
        rounds = events(job, "layout_applied")
        first, last = rounds[0], rounds[-1]
        keys = ("world_size", "dp_shard", "tp", "micro_batch", "grad_accum")
        assert [first[k] for k in keys] == [4, 2, 2, 2, 2]
        assert [last[k] for k in keys] == [2, 1, 2, 2, 4]
        assert {e["global_batch_tokens"] for e in rounds} == {8 * 32}
        assert all(e["elastic_dp"] is True and e["sequence_parallel"] is True for e in rounds)
        resumed = events(job, "resumed")
        assert resumed and resumed[-1]["world_size"] == 2

        # Every step ran once and was kept, 256 tokens each, and the loss went on from
        # the checkpoint without a jump.
        assert_loss_continuous(job, STEPS, same_world=False)
        steps = {r["step"]: r for r in read_all_jsonl(JobDir(job).progress_file(0)) if "loss" in r}
        assert steps[STEPS]["tokens"] == STEPS * 256
        assert {r["world_size"] for r in steps.values()} == {4, 2}

        # What `scalectl jobs --json` says: the dp change is the resize the range allowed.
        shown = cli("jobs", "--json")
        assert shown.code == 0, shown.err
        (mine,) = [j for j in json.loads(shown.out) if j["id"] == job_id]
        check = mine["plan"]["layout_check"]
        assert check["differs"] == []
        assert check["resized"] == ["dp_shard", "world_size", "grad_accum"]
        assert job_pids(job_id) == []
    finally:
        kill_job(job_id)
