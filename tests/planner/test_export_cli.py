"""``scalectl plan export``: a plan the planner wrote, as torchtitan overrides or TOML and
as Megatron-LM arguments; refusals are one line, exit code 2, and no file written."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import tomllib

from tests.planner.export_fixtures import plan_document, write_plan

ESTIMATE = ["plan", "estimate", "--model", "llama3-8b", "--gpu", "H100-SXM-80GB", "--gpus", "64",
            "--seq-len", "8192", "--global-batch", "512", "--tp", "2", "--pp", "2",
            "--interleave", "2", "--zero", "3", "--recompute", "selective"]  # fmt: skip


def test_a_planned_layout_exports_to_both(cli: Any, tmp_path: Path) -> None:
    plan = tmp_path / "p.json"
    run = cli(*ESTIMATE, "--out", str(plan))
    assert run.code == 0, run.err
    titan = cli("plan", "export", str(plan), "--to", "torchtitan")
    assert titan.code == 0, titan.err
    words = shlex.split(titan.out)
    assert words[words.index("--parallelism.pipeline_parallel_degree") + 1] == "2"
    assert words[-1] == "activation-checkpoint:selective"
    toml = cli("plan", "export", str(plan), "--to", "torchtitan", "--toml", "--compile")
    assert toml.code == 0, toml.err
    sections = tomllib.loads(toml.out)
    assert sections["parallelism"]["tensor_parallel_degree"] == 2
    assert sections["compile"] == {"enable": True}
    out = tmp_path / "megatron.args"
    mega = cli("plan", "export", str(plan), "--to", "megatron", "-o", str(out))
    assert mega.code == 0, mega.err
    args = shlex.split(out.read_text())
    assert args[:4] == ["--tensor-model-parallel-size", "2", "--pipeline-model-parallel-size", "2"]
    assert "--num-virtual-stages-per-pipeline-rank" in args
    assert "CUDA_DEVICE_MAX_CONNECTIONS" not in mega.err  # Megatron FSDP: CUDA's default
    zero1 = write_plan(tmp_path / "zero1.json", sharding="zero1")
    note = cli("plan", "export", str(zero1), "--to", "megatron")
    assert note.code == 0, note.err
    assert "note: megatron needs CUDA_DEVICE_MAX_CONNECTIONS=1" in note.err


def test_refusals_are_one_line_exit_2_and_write_nothing(cli: Any, tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    zero1 = write_plan(tmp_path / "zero1.json", sharding="zero1")
    run = cli("plan", "export", str(zero1), "--to", "torchtitan", "-o", str(out))
    assert run.code == 2
    assert run.err.count("\n") == 1 and "plan layout.sharding 'zero1': torchtitan 0.3" in run.err
    assert not out.exists()
    newer = tmp_path / "v2.json"
    newer.write_text(json.dumps({**plan_document(), "schema_version": 2}))
    run = cli("plan", "export", str(newer), "--to", "megatron", "-o", str(out))
    assert run.code == 2 and "plan schema_version 2" in run.err
    assert not out.exists()
    good = write_plan(tmp_path / "good.json")
    for flags, message in (
        (["--to", "jax"], "--to 'jax': use one of torchtitan, megatron"),
        (["--to", "megatron", "--toml"], "--toml: only torchtitan reads a TOML file"),
        (["--to", "megatron", "--compile"], "--compile: Megatron-LM has no torch.compile"),
    ):
        run = cli("plan", "export", str(good), *flags, "-o", str(out))
        assert run.code == 2 and message in run.err, run.err
        assert not out.exists()
    missing = cli("plan", "export", str(tmp_path / "none.json"), "--to", "megatron")
    assert missing.code == 2 and "no such file" in missing.err
    bad_layout = write_plan(tmp_path / "tp3.json", tp=3)
    run = cli("plan", "export", str(bad_layout), "--to", "megatron")
    assert run.code == 2 and "plan layout.tp 3: must divide model.num_attention_heads" in run.err
