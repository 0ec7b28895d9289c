"""An MoE plan is a job too: ``scalectl plan estimate --ep 2`` of a 4-layer MoE model read
from a config.json (Mixtral's keys, plus a shared expert and a dense first layer), then
``scalectl launch --plan`` trains it on 4 CPU ranks with the experts split over ep 2, and
the trainer's ``layout_applied`` matches the plan."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from launcher_helpers import jobs_json_entry, launch_plan
from tiny_plans import TINY_LLAMA, search_args

from contract.jobdir import read_all_jsonl

TINY_MOE = TINY_LLAMA | {
    "model_type": "mixtral", "num_hidden_layers": 4, "num_local_experts": 4,
    "num_experts_per_tok": 2, "moe_intermediate_size": 64,
    "shared_expert_intermediate_size": 64, "first_k_dense_replace": 1,
}  # fmt: skip
"""4 blocks: block 0 dense, blocks 1-3 with 4 routed experts (top 2) and a shared one."""


@pytest.fixture
def moe_plan(cli: Any, tmp_path: Path) -> Path:
    config = tmp_path / "config.json"
    config.write_text(json.dumps(TINY_MOE))
    out = tmp_path / "p.json"
    run = cli("plan", "estimate", "--model", str(config), *search_args(gpus_per_node=4),
              "--ep", "2", "--dp", "4", "--zero", "3", "--out", str(out))  # fmt: skip
    assert run.code == 0, run.err
    return out


def test_the_plan_carries_the_moe_model(moe_plan: Path) -> None:
    document = json.loads(moe_plan.read_text())
    model = document["model"]
    assert (model["num_experts"], model["top_k"], model["dense_first_layers"]) == (4, 2, 1)
    assert (model["moe_ffn_hidden_size"], model["shared_expert_ffn_hidden_size"]) == (64, 64)
    assert (document["layout"]["ep"], document["layout"]["dp"]) == (2, 4)
    assert document["training"]["moe_capacity_factor"] is None  # dropless


@pytest.mark.slow
def test_an_ep2_plan_launches_and_trains_the_planned_layout(cli: Any, moe_plan: Path) -> None:
    record, job, applied = launch_plan(cli, moe_plan, "--steps", "2", "--eval-every", "0")
    expected = {"dp_shard": 4, "tp": 1, "ep": 2, "experts": 4, "moe_capacity_factor": 0.0,
                "sharding": "zero3", "world_size": 4}  # fmt: skip
    assert {k: applied[k] for k in expected} == expected
    steps = [r for r in read_all_jsonl(job.progress_file(0)) if "loss" in r]
    assert [r["tokens"] for r in steps] == [256, 512]
    # Dropless: every token of the global batch goes to 2 experts in each of 3 MoE blocks.
    for record_ in steps:
        assert sum(record_["moe_tokens_per_expert"]) == 8 * 32 * 2 * 3
        assert record_["moe_dropped_tokens"] == 0 and record_["moe_aux_loss"] > 0
    mine = jobs_json_entry(cli, record.id)
    check = mine["plan"]["layout_check"]
    assert check["differs"] == [] and check["applied"]["ep"] == check["planned"]["ep"] == 2
    # Routing and state memory as `scalectl jobs --json` and the TUI's detail pane show them.
    from tui.data.compare import moe_text
    from tui.data.jobview import JobView

    progress = mine["progress"]
    loads = steps[-1]["moe_tokens_per_expert"]
    assert progress["moe_tokens_per_expert"] == loads and progress["moe_dropped_tokens"] == 0
    assert progress["moe_load_imbalance"] == max(loads) / (sum(loads) / len(loads))
    assert mine["plan"]["state_mib_measured"] > 0 and mine["plan"]["state_ratio"] > 0
    snapshot = JobView(record).poll()
    assert (moe_text(snapshot.progress) or "").startswith("MoE step 2: load max/mean ×")
    assert "params+grads+optim" in {row.metric for row in snapshot.compare}


def test_a_node_range_must_keep_ep_dividing_dp(cli: Any, moe_plan: Path) -> None:
    ok = cli("launch", "--plan", str(moe_plan), "--nodes", "1:2", "--nproc-per-node", "2",
             "--dry-run")  # fmt: skip
    assert ok.code == 0, ok.err
    run = cli("launch", "--plan", str(moe_plan), "--nodes", "1:2", "--nproc-per-node", "1",
              "--dry-run")  # fmt: skip
    assert run.code == 2
    assert "at 1 node(s) x 1 rank(s) dp 1 is not a multiple of ep 2" in run.err
