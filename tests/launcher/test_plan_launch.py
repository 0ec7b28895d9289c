"""The plan is the job: ``scalectl plan search/estimate --out plan.json`` and ``scalectl
launch --plan plan.json`` (local backend), its dry run, and plans or flags it refuses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from launcher_helpers import jobs_json_entry, launch_plan
from tiny_plans import TINY_LLAMA, search_args

from contract.jobdir import read_all_jsonl
from launcher.store import Store

SEARCH = search_args(gpus_per_node=4)


@pytest.fixture
def model_config(tmp_path: Path) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(TINY_LLAMA))
    return path


@pytest.fixture
def plan_path(cli: Any, tmp_path: Path, model_config: Path) -> Path:
    out = tmp_path / "p.json"
    run = cli("plan", "search", "--model", str(model_config), *SEARCH, "--tp", "2",
              "--zero", "3", "--sequence-parallel", "--out", str(out))  # fmt: skip
    assert run.code == 0, run.err
    assert f"plan written to {out}: layout dp2 tp2 pp1 cp1 zero3 mb2" in run.err
    return out


def test_search_out_writes_a_plan_of_this_schema(plan_path: Path) -> None:
    document = json.loads(plan_path.read_text())
    assert document["schema_version"] == 1
    assert {k: document["layout"][k] for k in ("dp", "tp", "pp", "cp", "micro_batch")} == {
        "dp": 2, "tp": 2, "pp": 1, "cp": 1, "micro_batch": 2
    }  # fmt: skip
    assert document["cluster"]["num_gpus"] == 4
    assert document["model"]["hidden_size"] == 64


def test_search_pick_and_estimate_out(cli: Any, tmp_path: Path, model_config: Path) -> None:
    second = tmp_path / "second.json"
    run = cli("plan", "search", "--model", str(model_config), *SEARCH, "--pick", "2",
              "--out", str(second))  # fmt: skip
    assert run.code == 0, run.err
    best = tmp_path / "best.json"
    assert (
        cli("plan", "search", "--model", str(model_config), *SEARCH, "--out", str(best)).code == 0
    )
    assert json.loads(second.read_text())["layout"] != json.loads(best.read_text())["layout"]
    too_far = cli("plan", "search", "--model", str(model_config), *SEARCH, "--pick", "999",
                  "--out", str(tmp_path / "none.json"))  # fmt: skip
    assert too_far.code == 2 and "--pick 999: the search ranked" in too_far.err
    assert not (tmp_path / "none.json").exists()
    estimate = tmp_path / "estimate.json"
    run = cli("plan", "estimate", "--model", str(model_config), *SEARCH, "--tp", "2", "--dp", "2",
              "--out", str(estimate))  # fmt: skip
    assert run.code == 0, run.err
    assert json.loads(estimate.read_text())["layout"]["tp"] == 2


def test_dry_run_prints_the_resolved_layout(cli: Any, plan_path: Path) -> None:
    run = cli("launch", "--plan", str(plan_path), "--dry-run", "--", "--steps", "3")
    assert run.code == 0, run.err
    assert (
        "plan: layout dp2 tp2 pp1 cp1 zero3 mb2 (sequence_parallel=True, recompute=none); "
        "world size 4; tokens per step 256; grad accum 2"
    ) in " ".join(run.out.split())  # broken between words at 80 columns
    assert all(len(line) <= 80 for line in run.out.splitlines() if line.startswith("plan:"))
    assert "plan: 1 node(s) x 4 rank(s) per node" in run.out
    assert "--nproc-per-node=4" in run.out and "SCALECTL_PLAN_FILE=" in run.out
    with Store() as store:
        assert store.list_jobs() == []


def _edited(plan_path: Path, section: str, field: str, value: Any) -> Path:
    document = json.loads(plan_path.read_text())
    if section:
        document[section][field] = value
    else:
        document[field] = value
    out = plan_path.with_name(f"edited-{field}.json")
    out.write_text(json.dumps(document))
    return out


@pytest.mark.parametrize(
    ("section", "field", "value", "message"),
    [
        ("layout", "tp", 3, "plan layout.tp 3: must divide model.num_attention_heads 4"),
        ("layout", "dp", -1, "plan layout.dp -1: must be 1 or more"),
        ("layout", "sharding", "zero4", "plan layout.sharding 'zero4': use one of"),
        ("", "schema_version", 2, "plan schema_version 2: this scalectl reads version 1"),
    ],
)
def test_bad_plans_exit_2_naming_the_field(
    cli: Any, plan_path: Path, section: str, field: str, value: Any, message: str
) -> None:
    run = cli("launch", "--plan", str(_edited(plan_path, section, field, value)), "--dry-run")
    assert run.code == 2 and message in run.err, run.err
    assert len(run.err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("section", "field", "value", "message"),
    [
        ("model", "sliding_window", 8, "plan model.sliding_window 8: the reference trainer"),
        ("layout", "expert_tp", 2, "plan layout.expert_tp 2: the reference trainer's experts"),
        ("training", "loss_chunks", 4, "plan training.loss_chunks 4: the planner counts"),
    ],
)
def test_plans_the_trainer_would_refuse_are_refused_before_a_job_exists(
    cli: Any, plan_path: Path, section: str, field: str, value: Any, message: str
) -> None:
    """The trainer refuses these on every rank at start (contract.plan_trainer); launch
    refuses them first, with the same line, and records no job, dry run or not."""
    edited = _edited(plan_path, section, field, value)
    for dry in (["--dry-run"], []):
        run = cli("launch", "--plan", str(edited), *dry, "--", "--steps", "1")
        assert run.code == 2 and message in run.err, run.err
        assert len(run.err.strip().splitlines()) == 1
    with Store() as store:
        assert store.list_jobs() == []
    # Another program under the plan (not the reference trainer) is not the trainer's to refuse.
    other = cli("launch", "--plan", str(edited), "--module", "my_trainer", "--dry-run")
    assert other.code == 0, other.err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--nproc-per-node", "3"], "--nproc-per-node: 1 node(s) x 3 rank(s) = 3 ranks"),
        (["--nodes", "2", "--nproc-per-node", "4"], "--nproc-per-node: 2 node(s) x 4 rank(s) = 8"),
        (
            ["--nodes", "1:3"],
            "--nodes 1:3: at 3 node(s) x 4 rank(s) the global batch of 8 "
            "sequences does not divide into dp 6 x micro_batch 2; give a node range",
        ),
        (
            ["--nodes", "1:2", "--nproc-per-node", "3"],
            "--nproc-per-node 3: a node must hold whole tensor-parallel groups of tp 2",
        ),
        (["--nodes", "0:2"], "--nodes 0:2: write N or MIN:MAX"),
        (["--nodes", "4"], "--nproc-per-node 1: a node must hold whole tensor-parallel groups"),
    ],
)
def test_flags_that_contradict_the_plan_exit_2(
    cli: Any, plan_path: Path, flags: list[str], message: str
) -> None:
    run = cli("launch", "--plan", str(plan_path), *flags, "--dry-run")
    assert run.code == 2 and message in run.err, run.err


def test_flags_that_keep_the_layout_are_taken(cli: Any, plan_path: Path) -> None:
    run = cli("launch", "--plan", str(plan_path), "--nodes", "2", "--local-nodes", "2",
              "--dry-run")  # fmt: skip
    assert run.code == 0, run.err
    assert "plan: 2 node(s) x 2 rank(s) per node" in run.out


@pytest.mark.slow
def test_plan_search_then_launch_trains_the_planned_layout(cli: Any, plan_path: Path) -> None:
    record, job, applied = launch_plan(cli, plan_path, "--steps", "2", "--eval-every", "0")
    assert json.loads(job.plan_json.read_text()) == json.loads(plan_path.read_text())
    assert {k: applied[k] for k in ("dp_shard", "tp", "sharding", "world_size")} == {
        "dp_shard": 2, "tp": 2, "sharding": "zero3", "world_size": 4
    }  # fmt: skip
    assert (applied["global_batch_tokens"], applied["grad_accum"]) == (8 * 32, 2)
    steps = [r for r in read_all_jsonl(job.progress_file(0)) if "loss" in r]
    assert [r["tokens"] for r in steps] == [256, 512]
    # What ran is what was planned, as `scalectl jobs --json` reports it.
    check = jobs_json_entry(cli, record.id)["plan"]["layout_check"]
    assert check["differs"] == [] and check["applied"]["grad_accum"] == 2
    assert check["planned"]["world_size"] == 4 and check["planned"]["dp_shard"] == 2


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ("{foo: 1}", "plan: plan foo: unknown field"),
        ("{model: {num_attention_heads: 4}, layout: {dp: 1, tp: 3}}",
         "plan layout.tp 3: must divide model.num_attention_heads 4"),
        ("{layout: {dp: 1, sharding: zero9}}", "plan layout.sharding 'zero9': use one of"),
        ("{layout: {dp: 1, tp: 2}}", "procs_per_node: 1 node(s) x 1 rank(s) = 1 ranks"),
    ],
)  # fmt: skip
def test_a_plan_block_in_job_yaml_gets_the_same_checks(
    cli: Any, tmp_path: Path, block: str, message: str
) -> None:
    spec = tmp_path / "job.yaml"
    spec.write_text(f"name: planned\nentrypoint: {{module: runtime.train}}\nplan: {block}\n")
    for extra in (["--dry-run"], []):
        run = cli("launch", str(spec), *extra)
        assert run.code == 2 and message in run.err, run.err
    with Store() as store:
        assert store.list_jobs() == []


def test_a_node_range_makes_dp_elastic_with_tp_kept(cli: Any, plan_path: Path) -> None:
    from contract import env

    run = cli("launch", "--plan", str(plan_path), "--nodes", "1:2", "--dry-run")
    assert run.code == 0, run.err
    assert "plan: 1:2 node(s) x 4 rank(s) per node" in run.out
    assert "plan: elastic: at 1 node(s) dp2 tp2, grad accum 2" in run.out
    assert "plan: elastic: at 2 node(s) dp4 tp2, grad accum 1" in run.out
    # The trainer resizes dp at each rendezvous round; any program reads that it may.
    assert "--nnodes=1:2" in run.out and "--elastic-dp" in run.out
    assert f"{env.LAYOUT_ELASTIC_DP_ENV}=1" in run.out
    fixed = cli("launch", "--plan", str(plan_path), "--dry-run")
    assert "--elastic-dp" not in fixed.out and env.LAYOUT_ELASTIC_DP_ENV not in fixed.out


def test_a_node_range_in_job_yaml_is_checked_at_every_count(
    cli: Any, tmp_path: Path, plan_path: Path
) -> None:
    spec = tmp_path / "job.yaml"
    block = json.dumps(json.loads(plan_path.read_text()))
    spec.write_text(f"entrypoint: {{module: runtime.train}}\nprocs_per_node: 4\n"
                    f"nodes: '1:3'\nplan: {block}\n")  # fmt: skip
    run = cli("launch", str(spec), "--dry-run")
    assert run.code == 2, run.err
    assert run.err.strip() == (
        "error: nodes 1:3: at 3 node(s) x 4 rank(s) the global batch of 8 sequences does "
        "not divide into dp 6 x micro_batch 2; give a node range whose every count runs the "
        "plan's layout, or plan another global batch"
    )
    spec.write_text(spec.read_text().replace("'1:3'", "'1:2'"))
    assert cli("launch", str(spec), "--dry-run").code == 0
    with Store() as store:
        assert store.list_jobs() == []


def test_every_rank_gets_the_layout_as_typed_variables(plan_path: Path, tmp_path: Path) -> None:
    from contract import env
    from launcher.commands import rank_environment
    from launcher.spec import spec_from_mapping

    document = json.loads(plan_path.read_text())
    spec = spec_from_mapping(
        {"name": "mine", "entrypoint": {"script": "train.py"}, "procs_per_node": 4,
         "plan": document}, "test"
    )  # fmt: skip
    variables = rank_environment(spec, "job-1", tmp_path, "node0", node_cpus=4)
    assert variables[env.LAYOUT_TP_ENV] == "2" and variables[env.LAYOUT_GRAD_ACCUM_ENV] == "2"
    layout = env.layout(variables)
    assert layout == env.LayoutEnv(
        dp=2, tp=2, pp=1, cp=1, ep=1, sequence_parallel=True, sharding="zero3",
        hsdp_shard_size=None, recompute="none", micro_batch=2, grad_accum=2,
        global_batch_tokens=256,
    )  # fmt: skip
    assert env.layout({}) is None
    plain = spec_from_mapping({"name": "p", "entrypoint": {"script": "t.py"}}, "test")
    assert env.layout(rank_environment(plain, "job-2", tmp_path, "node0", node_cpus=4)) is None


def test_gpu_check_builds_its_jobs_by_the_plan_path() -> None:
    # scripts/gpu_check.py runs only on a GPU; its jobs are built here, on the CPU.
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
    import gpu_check

    from contract.env import FAULTS_ENV

    for config in gpu_check.CONFIGS:
        plan = gpu_check.plan_for(config, "H100")
        spec = gpu_check.job_spec(config, plan)
        assert spec.entrypoint.module == "runtime.train"
        assert (spec.nodes.min, spec.procs_per_node, spec.gpus_per_node) == (1, 1, 1)
        assert spec.plan is not None and spec.plan["layout"]["dp"] == 1
        assert spec.args[:2] == ["--steps", str(config["steps"])]
        assert (FAULTS_ENV in spec.env) == bool(config.get("faults"))
        assert spec.max_restarts == (3 if config.get("faults") else 0)


@pytest.mark.slow
def test_a_pipeline_plan_estimated_then_launched_trains_its_stages(
    cli: Any, tmp_path: Path
) -> None:
    """Issue 18's hand-off: ``plan estimate --pp 2 --interleave 2 --dp 2 --out`` on a
    4-layer model, then ``launch --plan -f``: the trainer runs the interleaved pipeline the
    plan holds, evaluates through it, and reports the layout the plan says."""
    from tiny_plans import TINY_LLAMA, search_args

    config = tmp_path / "config.json"
    config.write_text(json.dumps({**TINY_LLAMA, "num_hidden_layers": 4}))
    plan = tmp_path / "p.json"
    made = cli("plan", "estimate", "--model", str(config), *search_args(4), "--pp", "2",
               "--interleave", "2", "--dp", "2", "--out", str(plan))  # fmt: skip
    assert made.code == 0, made.err
    record, job, applied = launch_plan(cli, plan, "--steps", "4", "--eval-every", "2")
    assert (applied["pp"], applied["interleave"], applied["schedule"]) == (2, 2, "1f1b")
    assert (applied["dp_shard"], applied["world_size"], applied["grad_accum"]) == (2, 4, 2)
    steps = [r for r in read_all_jsonl(job.progress_file(0)) if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2, 3, 4]
    assert all(r["loss"] > 0 for r in steps)
    assert [r["eval_loss"] for r in steps if "eval_loss" in r]  # evaluated through the stages
    # Each rank measures the share of its schedule it idled: the pipeline bubble.
    assert all(0.0 <= r["bubble_fraction"] < 1.0 for r in steps)
    mine = jobs_json_entry(cli, record.id)
    assert mine["plan"]["layout_check"]["differs"] == []
    planned, measured = mine["plan"]["bubble_fraction"], mine["plan"]["bubble_fraction_measured"]
    assert 0.0 < planned < 1.0 and measured is not None
    # The TUI's detail pane shows the same planned and measured bubble, with the ratio.
    from tui import text
    from tui.data.jobview import JobView

    rows = {row.metric: row for row in JobView(record).poll().compare}
    bubble = rows["pipeline bubble"]
    assert (bubble.predicted, bubble.measured) == (
        text.percent(planned, 1),
        text.percent(measured, 1),
    )
    assert bubble.ratio.startswith("×") or measured == 0.0
    assert mine["plan"]["state_ratio"] > 0 and "params+grads+optim" in rows


def test_a_job_specs_plan_block_the_trainer_would_refuse_is_refused_in_prepare(
    plan_path: Path, tmp_path: Path
) -> None:
    """A job.yaml ``plan:`` block (and the TUI's launch) goes through launcher.api.prepare,
    which checks the embedded plan as ``launch --plan`` does, before anything is written."""
    from launcher.api import prepare
    from launcher.errors import LaunchInputError
    from launcher.spec import spec_from_mapping

    document = json.loads(_edited(plan_path, "model", "sliding_window", 8).read_text())
    job = {"name": "w", "entrypoint": {"module": "runtime.train"}, "nodes": 1,
           "procs_per_node": 4, "plan": document}  # fmt: skip
    with pytest.raises(LaunchInputError, match=r"^plan model\.sliding_window 8: "):
        prepare(spec_from_mapping(job), cwd=tmp_path, environ={})
    document["model"]["sliding_window"] = None
    prepare(spec_from_mapping({**job, "plan": document}), cwd=tmp_path, environ={})
