"""``scalectl launch --plan p.json --framework torchtitan|megatron -- <entrypoint>``: the
launched command is the user's entrypoint and arguments followed by the exported plan,
with nodes and ranks from the plan; shown by --dry-run, and run for real on the local
backend by a fake entrypoint that records its argv in the job directory."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from launcher_helpers import job_id_from

from contract import env
from contract.jobdir import JobDir
from launcher.store import Store
from planner.export_frameworks import framework_arguments
from planner.export_plan import export_plan
from tests.planner.export_fixtures import plan_document

SMALL = {"dp": 2, "tp": 1, "pp": 1, "interleave": 1, "sharding": "zero3", "micro_batch": 1}
"""Two ranks on one node: a job this machine starts in a few seconds."""

RECORDER = """
    import json, os, sys
    from pathlib import Path
    rank = os.environ["RANK"]
    Path(os.environ["JOB_DIR_ENV"], f"argv.{rank}.json").write_text(json.dumps(sys.argv[1:]))
"""


def small_plan(tmp_path: Path, **layout: Any) -> Path:
    document = plan_document(training={"global_batch_seqs": 8}, **{**SMALL, **layout})
    document["cluster"] = {
        "gpu": "H100-SXM-80GB",
        "num_gpus": 2,
        "num_nodes": 1,
        "gpus_per_node": 2,
    }
    path = tmp_path / "p.json"
    path.write_text(json.dumps(document))
    return path


def _unwrapped(text: str) -> str:
    """A dry run's command lines as one line each: the CLI breaks them between words
    at 80 columns with shell continuations."""
    return re.sub(r" *\\\n +", " ", text)


def test_dry_run_shows_the_entrypoint_then_the_exported_plan(cli: Any, tmp_path: Path) -> None:
    plan = small_plan(tmp_path)
    exported = framework_arguments(export_plan(json.loads(plan.read_text())), "torchtitan")
    entry = ["python", "-m", "torchtitan.train", "--module", "llama3", "--config", "x"]
    run = cli("launch", "--plan", str(plan), "--framework", "torchtitan", "--dry-run", "--", *entry)
    assert run.code == 0, run.err
    assert "plan: 1 node(s) x 2 rank(s) per node" in run.out
    assert "--nproc-per-node=2" in run.out
    tail = " ".join(["-m", "torchtitan.train", "--module", "llama3", "--config", "x", *exported])
    assert tail in _unwrapped(run.out)
    assert "runtime.train" not in run.out.split("runtime.rank_exec", 1)[1]
    pretrain = tmp_path / "pretrain_gpt.py"
    pretrain.write_text("")
    mega = cli("launch", "--plan", str(plan), "--framework", "megatron", "--dry-run", "--",
               str(pretrain), "--data-path", "d")  # fmt: skip
    assert mega.code == 0, mega.err
    assert f"{pretrain} --data-path d --tensor-model-parallel-size 1" in _unwrapped(mega.out)


def test_megatron_gets_the_environment_it_asserts(cli: Any, tmp_path: Path) -> None:
    # tp 2 without Megatron FSDP: validate_args asserts CUDA_DEVICE_MAX_CONNECTIONS=1.
    plan = small_plan(tmp_path, dp=1, tp=2, sharding="none")
    pretrain = tmp_path / "pretrain_gpt.py"
    pretrain.write_text("")
    run = cli("launch", "--plan", str(plan), "--framework", "megatron", "--dry-run", "--",
              str(pretrain))  # fmt: skip
    assert run.code == 0, run.err
    assert "CUDA_DEVICE_MAX_CONNECTIONS=1 " in run.out
    mine = cli("launch", "--plan", str(plan), "--framework", "megatron", "--dry-run",
               "--env", "CUDA_DEVICE_MAX_CONNECTIONS=2", "--", str(pretrain))  # fmt: skip
    assert mine.code == 0, mine.err
    assert "CUDA_DEVICE_MAX_CONNECTIONS=2 " in mine.out and "MAX_CONNECTIONS=1 " not in mine.out
    titan = cli("launch", "--plan", str(plan), "--framework", "torchtitan", "--dry-run", "--",
                str(pretrain))  # fmt: skip
    assert titan.code == 0, titan.err
    assert "CUDA_DEVICE_MAX_CONNECTIONS" not in titan.out


def test_framework_refusals(cli: Any, tmp_path: Path) -> None:
    plan = small_plan(tmp_path)
    run = cli("launch", "--framework", "megatron", "--dry-run", "--", "pretrain_gpt.py")
    assert run.code == 2 and "--framework megatron: needs --plan plan.json" in run.err
    run = cli("launch", "--plan", str(plan), "--framework", "megatron", "--dry-run")
    assert run.code == 2 and "--framework megatron: name its entrypoint after --" in run.err
    run = cli("launch", "--plan", str(plan), "--framework", "jax", "--dry-run", "--", "x.py")
    assert run.code == 2 and "--framework jax: use one of torchtitan, megatron" in run.err
    zero1 = small_plan(tmp_path, sharding="zero1")
    run = cli("launch", "--plan", str(zero1), "--framework", "torchtitan", "--", "t.py")
    assert run.code == 2
    assert "--framework torchtitan: plan layout.sharding 'zero1': torchtitan 0.3" in run.err
    assert not (Path(str(tmp_path)) / "scalectl-home" / "jobs").exists()


def test_a_launched_entrypoint_receives_the_exported_plan(
    cli: Any, tmp_path: Path, script: Any
) -> None:
    plan = small_plan(tmp_path)
    recorder = script("recorder.py", RECORDER.replace("JOB_DIR_ENV", env.JOB_DIR_ENV))
    run = cli("launch", "--plan", str(plan), "--framework", "megatron", "-f", "--",
              str(recorder), "--data-path", "d")  # fmt: skip
    assert run.code == 0, run.out + run.err
    with Store() as store:
        record = store.get(job_id_from(run.out))
    assert record is not None
    job = JobDir(record.job_dir)
    exported = framework_arguments(export_plan(json.loads(plan.read_text())), "megatron")
    for rank in (0, 1):
        argv = json.loads((job.root / f"argv.{rank}.json").read_text())
        assert argv == ["--data-path", "d", *exported]
    assert json.loads(job.plan_json.read_text()) == json.loads(plan.read_text())


def test_the_python_api_takes_the_framework(tmp_path: Path, script: Any) -> None:
    from scalectl import launch

    plan = small_plan(tmp_path)
    recorder = script("recorder.py", RECORDER.replace("JOB_DIR_ENV", env.JOB_DIR_ENV))
    job = launch(plan, framework="torchtitan", args=[str(recorder), "--module", "llama3"])
    assert job.wait(timeout=60).value == "COMPLETED"
    exported = framework_arguments(export_plan(json.loads(plan.read_text())), "torchtitan")
    argv = json.loads((job.job_dir / "argv.0.json").read_text())
    assert argv == ["--module", "llama3", *exported]
