"""A fine-tuning plan is a job too (issue 19's Done-when): ``scalectl plan estimate --model
./tiny-hf --finetune lora --lora-rank 8 --gpus 2 --out p.json`` plans a LoRA fine-tune of a
Hugging Face checkpoint directory, ``scalectl launch --plan p.json -f -- --from ./tiny-hf
--data sft.jsonl`` runs it on 2 CPU ranks, the loss on the response tokens falls, and the
merged model the run exports reloads in ``transformers`` with the logits of the trained
adapter model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from launcher_helpers import jobs_json_entry, launch_plan

from contract.jobdir import JobDir, read_all_jsonl

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SFT = REPO / "examples" / "sft" / "tiny.jsonl"


@pytest.fixture(scope="module")
def tiny_hf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from examples.make_tiny_hf import make_tiny_hf

    return make_tiny_hf(tmp_path_factory.mktemp("checkpoint") / "tiny-hf")


@pytest.fixture
def lora_plan(cli: Any, tmp_path: Path, tiny_hf: Path) -> Path:
    out = tmp_path / "p.json"
    run = cli("plan", "estimate", "--model", str(tiny_hf), "--finetune", "lora",
              "--lora-rank", "8", "--gpus", "2", "--out", str(out))  # fmt: skip
    assert run.code == 0, run.err
    return out


def test_the_plan_carries_the_finetune(lora_plan: Path) -> None:
    document = json.loads(lora_plan.read_text())
    training = document["training"]
    assert (training["finetune"], training["lora_rank"]) == ("lora", 8)
    assert document["cluster"]["num_gpus"] == 2


def test_a_lora_plan_fine_tunes_and_exports_a_model_transformers_loads(
    cli: Any, lora_plan: Path, tiny_hf: Path
) -> None:
    record, job, applied = launch_plan(
        cli, lora_plan, "--from", str(tiny_hf), "--data", str(SFT), "--steps", "30",
        "--eval-every", "15", "--lr", "3e-3",
    )  # fmt: skip
    records = read_all_jsonl(job.events)
    assert applied["world_size"] == 2
    losses = [r["loss"] for r in read_all_jsonl(job.progress_file(0)) if "loss" in r]
    assert len(losses) == 30
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    print(f"lora fine-tune: loss {first:.3f} -> {last:.3f}")
    assert last < 0.8 * first
    # The plan is the job: its sequence length, batch and layout, nothing differs.
    mine = jobs_json_entry(cli, record.id)["plan"]
    assert mine["layout_check"]["differs"] == [], mine["layout_check"]
    assert mine["finetune"]["trained_params"] == 65_536
    (done,) = [e for e in records if e.get("event") == "training_complete"]
    export = Path(done["export"])
    _assert_same_logits(export / "merged", export / "adapter", tiny_hf, job)
    again = cli("export", record.id, "--out", str(job.root / "again"))
    assert again.code == 0, again.err
    assert (job.root / "again" / "adapter" / "adapter_model.safetensors").is_file()


def _assert_same_logits(merged: Path, adapter: Path, base: Path, job: JobDir) -> None:
    """transformers' model of the merged directory, and PEFT's adapter directory on
    transformers' model of the base checkpoint, against ours with the trained adapters
    (loaded from the final checkpoint), fp32, on random tokens."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from runtime.train import finetune
    from runtime.train.export import _load_trained, run_config

    _, final = job.complete_checkpoints()[-1]
    cfg = run_config(final)
    ours = finetune.make_model(cfg, torch.device("cpu"))
    _load_trained(final, ours, adapters_only=True)
    theirs = AutoModelForCausalLM.from_pretrained(str(merged), dtype=torch.float32)
    peft = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32), str(adapter)
    )
    tokens = torch.randint(0, cfg.vocab, (2, 48), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = ours(tokens).float()
        merged_diff = (theirs(tokens).logits.float() - want).abs().max().item()
        peft_diff = (peft(tokens).logits.float() - want).abs().max().item()
    print(f"max |logit difference| vs the adapter model: merged {merged_diff:.2e}, "
          f"PEFT adapter {peft_diff:.2e}")  # fmt: skip
    assert merged_diff < 1e-4 and peft_diff < 1e-4
