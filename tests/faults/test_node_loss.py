"""Node loss on the local backend: two node agents (``local.nodes: 2``, ``nodes: 1:2``),
one rank each. At step 40 rank 1 kills its whole node (agent, torchrun, rank); the other
node's torchrun re-forms the rendezvous at world size 1 and training goes on; the local
supervisor starts the lost node's agent again (the node returns) and the job grows back
to world size 2 and finishes.

From step 41 every step takes ``SLOW_S`` longer (a ``slow`` fault on every rank): without
that floor a fast machine trains the remaining steps alone before the lost node is back
(``RETURN_S`` and an agent's start later), and the job never grows back."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from agent_harness import REPO, TINY, assert_loss_continuous, events, job_pids, kill_job, summary
from polling import run_to_end

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

STEPS = 400
RETURN_S = 10
SLOW_S = 0.1


def test_one_of_two_nodes_lost_shrinks_then_grows_back(tmp_path: Path) -> None:
    job = tmp_path / "run"
    spec = tmp_path / "job.yaml"
    spec.write_text(
        "name: node-loss\n"
        "entrypoint: {module: runtime.train}\n"
        f"args: {json.dumps(['--steps', str(STEPS), '--ckpt-every', '10', *TINY])}\n"
        "nodes: '1:2'\n"
        "procs_per_node: 1\n"
        "max_restarts: 3\n"
        f"job_dir: {job}\n"
        "local: {nodes: 2}\n"
        "env: {SCALECTL_FAULTS: 'kill@step=40,rank=1,target=node;"
        f"slow@step=41,secs={SLOW_S}', OMP_NUM_THREADS: '1'}}\n"
    )
    env = {
        **os.environ,
        "SCALECTL_HOME": str(tmp_path / "home"),
        "SCALECTL_LOCAL_NODE_RETURN_S": str(RETURN_S),
    }
    env.pop("SCALECTL_JOB_ID", None)
    env.pop("SCALECTL_FAULTS", None)
    launched = run_to_end([sys.executable, "-m", "scalectl", "launch", str(spec), "-f"],
                          watch=job, env=env, cwd=REPO)  # fmt: skip
    job_id = json.loads((job / "job.json").read_text())["job_id"]
    try:
        assert launched.returncode == 0, launched.stdout[-3000:] + launched.stderr[-2000:]
        (finished,) = events(job, "finished")
        assert finished["state"] == "COMPLETED", finished
        assert job_pids(job_id) == []

        (fault,) = [e for e in events(job, "fault_injected") if e["kind"] == "kill"]
        assert fault["target"] == "node"
        (returned,) = events(job, "node_returned")
        lost_node = returned["node"]
        assert returned["lost_exit_code"] == -9
        resized = [(e["node"], e["world_size_then"], e["world_size"], e["cause"])
                   for e in events(job, "resized")]  # fmt: skip
        survivor = resized[0][0]
        assert survivor != lost_node
        # the survivor records both resizes (if its torchrun hosted the rendezvous store it
        # re-formed in place; else the agent restarted it); the returning node sees none
        assert resized == [(survivor, 2, 1, "node_lost"), (survivor, 1, 2, "node_joined")]
        restarts = events(job, "restarted", source="agent", node=survivor)
        assert restarts[0]["cause"] == "node_lost" and restarts[0]["world_size"] == 1, restarts
        worlds = [e["world_size"] for e in events(job, "resumed")]
        assert worlds[:2] == [1, 2], worlds
        assert [e["step"] for e in events(job, "training_complete")] == [STEPS]
        assert_loss_continuous(job, STEPS, same_world=False)
        lost = [f for f in summary(job)["faults"] if f["fault"] == fault["spec"]]
        assert lost and lost[0]["kind"] == "node_lost" and lost[0]["time_to_recover_s"] > 0
    finally:
        kill_job(job_id)
