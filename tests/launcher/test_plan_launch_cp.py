"""A context-parallel plan is the job: ``scalectl plan estimate --cp 2 --dp 2 --cp-impl
allgather --out`` then ``scalectl launch --plan p.json -f`` trains a 4-block model with
the sequence split over 2 ranks (the all-gather variant, which runs on this machine's
CPUs; the planner's default, ring, needs CUDA) and reports the planned layout (issue 18)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from launcher_helpers import jobs_json_entry, launch_plan
from tiny_plans import TINY_LLAMA, search_args

from contract.jobdir import read_all_jsonl


@pytest.fixture
def cp_plan(cli: Any, tmp_path: Path) -> Path:
    config = tmp_path / "config.json"
    config.write_text(json.dumps(TINY_LLAMA | {"num_hidden_layers": 4}))
    out = tmp_path / "p.json"
    run = cli("plan", "estimate", "--model", str(config), *search_args(gpus_per_node=4),
              "--cp", "2", "--dp", "2", "--zero", "3", "--cp-impl", "allgather",
              "--out", str(out))  # fmt: skip
    assert run.code == 0, run.err
    return out


@pytest.mark.slow
def test_a_cp2_dp2_plan_launches_and_trains_its_layout(cli: Any, cp_plan: Path) -> None:
    record, job, applied = launch_plan(cli, cp_plan, "--steps", "2", "--eval-every", "0")
    keys = ("cp", "cp_impl", "dp_shard", "tp", "pp", "sharding", "world_size")
    assert {k: applied[k] for k in keys} == {
        "cp": 2, "cp_impl": "allgather", "dp_shard": 2, "tp": 1, "pp": 1,
        "sharding": "zero3", "world_size": 4,
    }  # fmt: skip
    # The plan's global batch (8 sequences of 32 tokens), not world size x micro-batch.
    assert (applied["global_batch_tokens"], applied["grad_accum"]) == (8 * 32, 2)
    steps = [r for r in read_all_jsonl(job.progress_file(0)) if "loss" in r]
    assert [r["tokens"] for r in steps] == [256, 512]
    check = jobs_json_entry(cli, record.id)["plan"]["layout_check"]
    assert check["differs"] == [] and check["planned"]["cp_impl"] == "allgather"
    assert json.loads(cp_plan.read_text())["layout"]["cp_impl"] == "allgather"


def test_a_plan_whose_cp_does_not_split_the_sequence_is_refused(
    cli: Any, cp_plan: Path, tmp_path: Path
) -> None:
    document = json.loads(cp_plan.read_text())
    document["training"]["seq_len"] = 30
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(document))
    run = cli("launch", "--plan", str(bad), "-f")
    assert run.code == 2
    assert "plan layout.cp 2: 2 x cp must divide training.seq_len 30" in run.err
    assert "\n" not in run.err.strip()
