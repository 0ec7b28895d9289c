"""``plan export --to torchtitan``: every key against torchtitan's own field names (0.3.0
overrides, 0.2.2 TOML; tests/data/torchtitan_fields.json from scripts/torchtitan_fields.py),
the values the plan means, and the knobs torchtitan has none for (refused, naming the field)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import tomllib

from planner.export_plan import ExportError
from planner.export_torchtitan import AC_SUBCOMMAND, torchtitan_overrides, torchtitan_toml
from tests.planner.export_fixtures import DATA, export_of, flag_values

FIELDS = json.loads((DATA / "torchtitan_fields.json").read_text(encoding="utf-8"))
NEW, OLD = FIELDS["0.3.0"], FIELDS["0.2.2"]


def unknown_overrides(words: list[str], fields: dict[str, Any]) -> list[str]:
    """The words of an override list that torchtitan 0.3's recorded fields do not have."""
    bad = []
    for word in words:
        if word.startswith(f"{AC_SUBCOMMAND}:"):
            if word.split(":", 1)[1] not in fields["activation_checkpoint_subcommands"]:
                bad.append(word)
        elif word.startswith("--"):
            section, _, name = word[2:].partition(".")
            # tyro takes either delimiter, and a bool's False as --section.no-name.
            name = name.replace("-", "_").removeprefix("no_")
            if name not in fields["sections"].get(section, []):
                bad.append(word)
    return bad


def unknown_toml_keys(text: str, fields: dict[str, Any]) -> list[str]:
    """The TOML keys (and model converters) torchtitan 0.2's JobConfig does not have."""
    bad = []
    for section, values in tomllib.loads(text).items():
        for name, value in values.items():
            if name not in fields["sections"].get(section, []):
                bad.append(f"{section}.{name}")
            if (section, name) == ("model", "converters"):
                bad += [c for c in value if c not in fields["model_converters"]]
    return bad


LAYOUTS: list[dict[str, Any]] = [
    {},
    {"pp": 1, "interleave": 1, "sharding": "none", "recompute": "full"},
    {
        "pp": 4,
        "interleave": 1,
        "schedule": "gpipe",
        "uneven_stages": True,
        "tp": 1,
        "dp": 16,
        "model": {"num_layers": 30},
    },
    {"sharding": "hsdp", "hsdp_shard_size": 8, "pp": 1, "interleave": 1, "cp": 2, "dp": 8},
    {"sharding": "zero2", "pp": 1, "interleave": 1, "recompute": "none"},
    {"training": {"tp_comm_overlap": True}},
]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_exported_key_is_a_torchtitan_field(layout: dict[str, Any]) -> None:
    export = export_of(**layout)
    words = torchtitan_overrides(export, compile_model=True)
    assert unknown_overrides(words, NEW) == []
    assert unknown_toml_keys(torchtitan_toml(export, compile_model=False), OLD) == []
    training = {**layout.get("training", {}), "precision": "fp8"}
    fp8 = export_of(**{**layout, "training": training})
    assert unknown_toml_keys(torchtitan_toml(fp8), OLD) == []


def test_a_renamed_field_fails_the_check() -> None:
    words = torchtitan_overrides(export_of())
    renamed = copy.deepcopy(NEW)
    renamed["sections"]["parallelism"].remove("pipeline_parallel_layers_per_stage")
    renamed["sections"]["parallelism"].append("pipeline_parallel_layers_per_stage_v2")
    assert unknown_overrides(words, renamed) == ["--parallelism.pipeline_parallel_layers_per_stage"]
    renamed = copy.deepcopy(OLD)
    renamed["sections"]["training"].remove("local_batch_size")
    assert unknown_toml_keys(torchtitan_toml(export_of()), renamed) == ["training.local_batch_size"]
    renamed["model_converters"] = []
    fp8 = torchtitan_toml(export_of(training={"precision": "fp8"}))
    assert "quantize.linear.float8" in unknown_toml_keys(fp8, renamed)


def test_values_of_an_interleaved_zero3_plan() -> None:
    # dp16 tp2 pp2 vpp2 mb2, 512 sequences: 16 micro-batches per rank per step.
    words = torchtitan_overrides(export_of())
    flags = flag_values(words)
    assert flags["--parallelism.data_parallel_replicate_degree"] == "1"
    assert flags["--parallelism.data_parallel_shard_degree"] == "16"
    assert flags["--parallelism.fsdp_reshard_after_forward"] == "always"
    assert flags["--parallelism.tensor_parallel_degree"] == "2"
    assert flags["--parallelism.pipeline_parallel_degree"] == "2"
    assert flags["--parallelism.pipeline_parallel_schedule"] == "Interleaved1F1B"
    assert flags["--parallelism.pipeline_parallel_layers_per_stage"] == "8"  # 32 / (2 x 2)
    assert flags["--parallelism.pipeline_parallel_first_stage_less_layers"] == "0"
    assert flags["--parallelism.pipeline_parallel_microbatch_size"] == "2"
    assert flags["--training.local_batch_size"] == "32"
    assert flags["--training.global_batch_size"] == "512"
    assert flags["--training.seq_len"] == "8192"
    assert flags["--training.steps"] == "1000"
    assert flags["--training.mixed_precision_param"] == "bfloat16"
    assert "--parallelism.enable-sequence-parallel" in flags
    assert "--training.disable_cuda_graphs" in flags  # Trainer.Config: none with pp > 1
    assert words[-1] == "activation-checkpoint:selective"
    dense = torchtitan_overrides(export_of(pp=1, interleave=1, dp=32))
    assert "--training.disable_cuda_graphs" not in dense


def test_uneven_stages_take_a_layer_from_the_first_and_last() -> None:
    # 30 layers on 4 stages, first and last one short: 7 8 8 7 = (30 + 2) / 4 per stage.
    flags = flag_values(
        torchtitan_overrides(
            export_of(model={"num_layers": 30}, pp=4, interleave=1, uneven_stages=True, dp=8)
        )
    )
    assert flags["--parallelism.pipeline_parallel_layers_per_stage"] == "8"
    assert flags["--parallelism.pipeline_parallel_first_stage_less_layers"] == "1"
    assert flags["--parallelism.pipeline_parallel_last_stage_less_layers"] == "1"
    assert flags["--parallelism.pipeline_parallel_schedule"] == "1F1B"


def test_ddp_hsdp_and_zero2_degrees() -> None:
    ddp = flag_values(torchtitan_overrides(export_of(sharding="none", dp=32, pp=1, interleave=1)))
    assert ddp["--parallelism.data_parallel_replicate_degree"] == "32"
    assert ddp["--parallelism.data_parallel_shard_degree"] == "1"
    assert ddp["--training.local_batch_size"] == "2"  # accumulation: 512 / (32 x 2) = 8 steps
    hsdp = flag_values(
        torchtitan_overrides(
            export_of(sharding="hsdp", hsdp_shard_size=8, dp=32, pp=1, interleave=1)
        )
    )
    assert hsdp["--parallelism.data_parallel_replicate_degree"] == "4"
    assert hsdp["--parallelism.data_parallel_shard_degree"] == "8"
    zero2 = flag_values(torchtitan_overrides(export_of(sharding="zero2")))
    assert zero2["--parallelism.fsdp_reshard_after_forward"] == "never"


def test_tensor_parallel_overlap_is_async_tensor_parallelism() -> None:
    overlap = export_of(training={"tp_comm_overlap": True})
    assert "--compile.enable-async-tensor-parallel" in torchtitan_overrides(overlap)
    assert "--compile.enable-async-tensor-parallel" not in torchtitan_overrides(export_of())
    toml = tomllib.loads(torchtitan_toml(overlap))
    assert toml["parallelism"]["enable_async_tensor_parallel"] is True
    # Experts over the sharded ranks: dp_shard 16 x tp 2 = 32 ranks hold ep 4 groups.
    moe = export_of(model={"num_experts": 8}, ep=4, expert_tp=1)
    assert flag_values(torchtitan_overrides(moe))["--parallelism.expert_parallel_degree"] == "4"


def test_toml_sections() -> None:
    toml = tomllib.loads(torchtitan_toml(export_of(training={"precision": "fp8"})))
    assert toml["parallelism"]["pipeline_parallel_layers_per_stage"] == 8
    assert toml["activation_checkpoint"] == {"mode": "selective", "selective_ac_option": "op"}
    assert toml["model"]["converters"] == ["quantize.linear.float8"]
    assert toml["training"]["mixed_precision_param"] == "bfloat16"
    moe = export_of(model={"num_experts": 8, "top_k": 2}, ep=4, pp=1, interleave=1)
    assert tomllib.loads(torchtitan_toml(moe))["parallelism"]["expert_tensor_parallel_degree"] == 2


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"sharding": "zero1"}, "layout.sharding 'zero1'"),
        ({"training": {"precision": "fp8"}}, "training.precision 'fp8'"),
        ({"microbatch_group": 1}, "layout.microbatch_group 1"),
        ({"activation_offload": 0.5}, "layout.activation_offload 0.5"),
        ({"free_stage_outputs": False}, "layout.free_stage_outputs False"),
        ({"pp": 3, "interleave": 1}, "layout.pp 3"),
        ({"model": {"num_experts": 8}, "ep": 4, "pp": 1, "interleave": 1}, "layout.expert_tp"),
        ({"training": {"moe_capacity_factor": 1.25}}, "training.moe_capacity_factor 1.25"),
        ({"training": {"grad_reduce_dtype": "bf16"}}, "training.grad_reduce_dtype 'bf16'"),
        ({"training": {"overlap_grad_reduce": False}}, "training.overlap_grad_reduce False"),
        ({"training": {"fsdp_version": 1}}, "training.fsdp_version 1"),
        ({"training": {"precision": "bf16-pure"}}, "training.precision 'bf16-pure'"),
        ({"training": {"loss_chunks": 8}}, "training.loss_chunks 8"),
        (
            {"model": {"num_experts": 8}, "ep": 4, "expert_tp": 1, "sharding": "none"},
            "layout.ep 4",
        ),
    ],
)
def test_refused_overrides_name_the_field(kw: dict[str, Any], field: str) -> None:
    if "pp" in kw and kw["pp"] == 3:
        kw["dp"] = 8  # 8 x 2 x 3 = 48 GPUs: only the 32 layers do not split in 3
    with pytest.raises(ExportError) as info:
        torchtitan_overrides(export_of(**kw))
    assert str(info.value).startswith(f"plan {field}")
    assert "torchtitan 0.3" in str(info.value)


def test_refused_toml_names_the_field() -> None:
    with pytest.raises(ExportError, match=r"^plan layout.sequence_parallel False: torchtitan 0.2"):
        torchtitan_toml(export_of(sequence_parallel=False))
    with pytest.raises(ExportError, match=r"^plan layout.expert_tp 4"):
        torchtitan_toml(
            export_of(model={"num_experts": 8}, ep=2, tp=8, expert_tp=4, dp=4, pp=1, interleave=1)
        )
    flags = flag_values(torchtitan_overrides(export_of(sequence_parallel=False)))
    assert "--parallelism.no-enable-sequence-parallel" in flags
