"""The reference trainer fine-tunes a Hugging Face checkpoint (``--finetune full|lora|qlora
--from DIR --data FILE.jsonl``): bad input exits 2 naming the field and leaves nothing
behind; LoRA under dp2 equals one process; adapter runs checkpoint only the adapters; full
fine-tuning resumes after a crash exactly as an uninterrupted run; QLoRA trains on CPU
ranks; the run ends with the merged model and the adapter exported."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch.distributed.checkpoint as dcp
from trainer_harness import (
    REPO,
    assert_refused,
    describe,
    events,
    losses_by_step,
    progress,
    run_trainer,
)

from contract.events import read_events
from contract.jobdir import JobDir
from contract.run_facts import TrainerEvents, finetune_run

pytestmark = pytest.mark.slow

SFT = REPO / "examples" / "sft" / "tiny.jsonl"
BATCH = ["--seq-len", "64", "--micro-batch", "4", "--warmup-steps", "2", "--log-every", "5",
         "--eval-every", "0", "--lr", "2e-3"]  # fmt: skip
"""Batch flags of every run here (the model comes from --from)."""


@pytest.fixture(scope="module")
def tiny_hf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from examples.make_tiny_hf import make_tiny_hf

    return make_tiny_hf(tmp_path_factory.mktemp("checkpoint") / "tiny-hf")


def finetune(kind: str, source: Path, *extra: str) -> list[str]:
    return ["--finetune", kind, "--from", str(source), "--data", str(SFT), *extra]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--finetune", "lora"], "--finetune lora: needs --from DIR"),
        (["--finetune", "sideways", "--data", str(SFT)], "--finetune sideways: use full, lora"),
        (["--finetune", "lora", "--from", "/nonexistent/ckpt", "--data", str(SFT)],
         "/nonexistent/ckpt"),
        (["--finetune", "lora", "--from", "{ckpt}"], "--data pydoc: fine-tuning reads"),
        (["--finetune", "lora", "--from", "{ckpt}", "--data", str(SFT), "--lora-targets", "qkv"],
         "--lora-targets: unknown target 'qkv'"),
        (["--finetune", "lora", "--from", "{ckpt}", "--data", str(SFT), "--lora-rank", "4096"],
         "--lora-rank 4096: exceeds"),
        (["--finetune", "lora", "--from", "{ckpt}", "--data", str(SFT), "--hidden", "999"],
         "--hidden 999: the checkpoint --from"),
        (["--finetune", "qlora", "--from", "{ckpt}", "--data", str(SFT), "--base-format", "int8"],
         "int8"),
    ],
)  # fmt: skip
def test_bad_finetune_input_exits_2_naming_it(
    tmp_path: Path, tiny_hf: Path, args: list[str], fragment: str, capsys: Any, monkeypatch: Any
) -> None:
    argv = [*BATCH, *(a.replace("{ckpt}", str(tiny_hf)) for a in args)]
    assert_refused(argv, fragment, tmp_path / "job", capsys, monkeypatch)


def test_weights_that_do_not_match_config_json_are_refused_before_anything_is_written(
    tmp_path: Path, tiny_hf: Path, capsys: Any, monkeypatch: Any
) -> None:
    other = tmp_path / "other-hf"
    shutil.copytree(tiny_hf, other)
    config = json.loads((other / "config.json").read_text())
    config["intermediate_size"] = 384
    (other / "config.json").write_text(json.dumps(config))
    argv = [*BATCH, "--finetune", "lora", "--from", str(other), "--data", str(SFT)]
    assert_refused(argv, "has shape", tmp_path / "job", capsys, monkeypatch)


def test_a_bad_instruction_record_names_its_line(
    tmp_path: Path, tiny_hf: Path, capsys: Any, monkeypatch: Any
) -> None:
    bad = tmp_path / "bad.jsonl"
    lines = SFT.read_text().splitlines()[:20]
    lines[6] = '{"prompt": "no response here"}'
    bad.write_text("\n".join(lines) + "\n")
    argv = [*BATCH, "--finetune", "lora", "--from", str(tiny_hf), "--data", str(bad)]
    assert_refused(argv, f"{bad}:7", tmp_path / "job", capsys, monkeypatch)


def test_lora_on_two_ranks_equals_one_process_and_exports(tmp_path: Path, tiny_hf: Path) -> None:
    """dp2 (FSDP2, zero3) against one process reading the same global batch of 8."""
    args = finetune("lora", tiny_hf, "--steps", "6", "--sharding", "zero3")
    one = run_trainer(tmp_path / "one", 1, [*args, "--grad-accum", "2"], shape=BATCH)
    assert one.returncode == 0, describe(one)
    two = run_trainer(tmp_path / "two", 2, args, shape=BATCH)
    assert two.returncode == 0, describe(two)
    want, got = (
        losses_by_step(progress(tmp_path / "one")),
        losses_by_step(progress(tmp_path / "two")),
    )
    assert sorted(want) == sorted(got) == list(range(1, 7))
    worst = max(abs(got[s] - want[s]) / abs(want[s]) for s in want)
    print(f"lora dp2 vs one process: max relative loss difference {worst:.2e}")
    assert worst < 1e-4
    job = JobDir(tmp_path / "two")
    _, final = job.complete_checkpoints()[-1]
    saved = set(dcp.FileSystemReader(str(final)).read_metadata().state_dict_metadata)
    model_keys = {k for k in saved if k.startswith("model.")}
    assert model_keys and all(k.endswith((".lora_a", ".lora_b")) for k in model_keys), model_keys
    (done,) = events(tmp_path / "two", "training_complete")
    export = Path(done["export"])
    assert (export / "merged" / "config.json").is_file()
    adapter = json.loads((export / "adapter" / "adapter_config.json").read_text())
    assert adapter["r"] == 8 and adapter["peft_type"] == "LORA"


@pytest.mark.parametrize(
    ("name", "layout", "accum", "ranks"),
    [
        ("pp2", ["--pp", "2", "--dp", "1", "--grad-accum", "2"], "2", 2),
        ("cp2 allgather", ["--cp", "2", "--cp-impl", "allgather", "--dp", "1"], "1", 2),
        ("hsdp 2x2", ["--sharding", "hsdp", "--hsdp-shard-size", "2"], "4", 4),
    ],
)
def test_lora_under_pipeline_context_parallelism_and_hsdp_equals_one_process(
    tmp_path: Path, tiny_hf: Path, name: str, layout: list[str], accum: str, ranks: int
) -> None:
    """The layouts of the other issues apply to adapters: two pipeline stages (one block
    each, the schedule's micro-batches), each sequence split over two context-parallel
    ranks, or two HSDP replicas; the same global batch as one process."""
    args = finetune("lora", tiny_hf, "--steps", "4")
    one = run_trainer(tmp_path / "one", 1, [*args, "--grad-accum", accum], shape=BATCH)
    assert one.returncode == 0, describe(one)
    two = run_trainer(tmp_path / "two", ranks, [*args, *layout], shape=BATCH)
    assert two.returncode == 0, describe(two)
    want = losses_by_step(progress(tmp_path / "one"))
    got = losses_by_step(progress(tmp_path / "two"))
    worst = max(abs(got[s] - want[s]) / abs(want[s]) for s in want)
    print(f"lora {name} vs one process: max relative loss difference {worst:.2e}")
    assert worst < 1e-4


def test_full_finetune_resumes_after_a_crash_as_if_uninterrupted(
    tmp_path: Path, tiny_hf: Path
) -> None:
    args = finetune("full", tiny_hf, "--steps", "8", "--ckpt-every", "4")
    straight = run_trainer(tmp_path / "straight", 1, args, shape=BATCH)
    assert straight.returncode == 0, describe(straight)
    crashed = run_trainer(tmp_path / "resumed", 1, args, shape=BATCH, faults="crash@step=6")
    assert crashed.returncode != 0
    again = run_trainer(tmp_path / "resumed", 1, args, shape=BATCH)
    assert again.returncode == 0, describe(again)
    (resumed,) = events(tmp_path / "resumed", "resumed")
    assert resumed["step"] == 4
    want = losses_by_step(progress(tmp_path / "straight"))
    got = losses_by_step(progress(tmp_path / "resumed"))
    worst = max(abs(got[s] - want[s]) / abs(want[s]) for s in range(5, 9))
    assert worst < 1e-5, (want, got)


def test_qlora_trains_on_two_cpu_ranks(tmp_path: Path, tiny_hf: Path) -> None:
    args = finetune("qlora", tiny_hf, "--steps", "4", "--sharding", "zero3")
    run = run_trainer(tmp_path / "q", 2, args, shape=BATCH)
    assert run.returncode == 0, describe(run)
    assert "trained)" in run.stdout  # the start line gives the trained share
    (done,) = events(tmp_path / "q", "training_complete")
    assert (Path(done["export"]) / "merged" / "model.safetensors").is_file()
    # The started event carries the trained share too, for the TUI and `scalectl jobs`.
    (started,) = [e for e in events(tmp_path / "q", "started") if e["source"] == "trainer"]
    assert started["finetune"] == "qlora" and started["base_format"] == "nf4-dq"
    assert (started["lora_rank"], started["lora_targets"]) == (8, "all")  # the defaults
    assert 0 < started["trained_params"] < started["params"]
    seen = TrainerEvents().fold(read_events(JobDir(tmp_path / "q")))
    ran = finetune_run(None, seen)
    assert ran is not None and ran.mode == "qlora" and ran.export == done["export"]
    assert ran.trained_params == started["trained_params"] and ran.lora_rank == 8
