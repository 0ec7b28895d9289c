"""``plan export --to megatron``: every flag against the names Megatron-LM builds from
megatron-core 0.16.1's config dataclasses, or writes in arguments.py (core_v0.16.1;
tests/data/megatron_fields.json from scripts/megatron_fields.py), the values the plan
means, and the knobs Megatron-LM cannot take (refused, naming the field)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from planner.export_megatron import (
    ARGUMENTS_PY,
    FLAG_SOURCES,
    megatron_arguments,
    megatron_environment,
)
from planner.export_plan import ExportError
from tests.planner.export_fixtures import DATA, export_of, flag_values

FIELDS = json.loads((DATA / "megatron_fields.json").read_text(encoding="utf-8"))


def unknown_flags(words: list[str], fields: dict[str, Any]) -> list[str]:
    """Flags that are not what their recorded source field (or arguments.py) gives."""
    lm = fields["megatron_lm"]
    classes = {**fields["classes"], **lm["classes"]}
    bad = []
    for flag in flag_values(words):
        source = FLAG_SOURCES.get(flag)
        if source == ARGUMENTS_PY:
            ok = flag in lm["flags"]
        elif source is not None:
            cls, _, name = source.partition(".")
            ok = flag in classes.get(cls, {}).get("fields", {}).get(name, [])
            # A field Megatron-LM keeps off its command line has no flag at all.
            ok = ok and name not in lm["transformer_factory_exclude"]
        else:
            ok = False
        if not ok:
            bad.append(flag)
    return bad


MOE = {
    "num_experts": 8,
    "top_k": 2,
    "moe_ffn_hidden_size": 2048,
    "shared_expert_ffn_hidden_size": 4096,
    "router_score": "sigmoid",
}
LAYOUTS: list[dict[str, Any]] = [
    {},
    {"pp": 1, "interleave": 1, "sharding": "zero1", "recompute": "full", "dp": 32},
    {"pp": 4, "interleave": 1, "uneven_stages": True, "dp": 8, "model": {"num_layers": 30}},
    {"interleave": 2, "microbatch_group": 2, "sharding": "none", "cp": 2, "dp": 8},
    {"model": MOE, "ep": 4, "expert_tp": 1, "training": {"moe_capacity_factor": 1.25}},
    {"model": {"head_dim": 128, "tied_embeddings": True}, "training": {"precision": "fp8"}},
    {"sharding": "zero2", "tp": 1, "sequence_parallel": False, "dp": 32},
    {
        "training": {
            "grad_reduce_dtype": "bf16",
            "tp_comm_overlap": True,
            "attention_kernel": "cudnn",
            "optimizer": "sgd_momentum",
            "overlap_grad_reduce": False,
        }
    },
    {"cp": 2, "dp": 8, "cp_impl": "allgather"},
]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_flag_is_megatron_s_own(layout: dict[str, Any]) -> None:
    words = megatron_arguments(export_of(**layout))
    assert unknown_flags(words, FIELDS) == []


def test_flag_sources_follow_megatron_s_naming_rule() -> None:
    # A dataclass-built flag is "--" + field with "-" for "_" unless the field's
    # argparse_meta names it (fp8 -> --fp8-format, add_bias_linear -> --disable-bias-linear).
    renamed = {
        "--fp8-format",
        "--disable-bias-linear",
        "--microbatch-group-size-per-virtual-pipeline-stage",
    }
    for flag, source in FLAG_SOURCES.items():
        if source != ARGUMENTS_PY and flag not in renamed:
            assert flag == "--" + source.split(".", 1)[1].replace("_", "-"), flag


def test_a_renamed_field_fails_the_check() -> None:
    words = megatron_arguments(export_of())
    renamed = copy.deepcopy(FIELDS)
    mpc = renamed["classes"]["ModelParallelConfig"]["fields"]
    mpc["tp_size"] = mpc.pop("tensor_model_parallel_size")
    assert unknown_flags(words, renamed) == ["--tensor-model-parallel-size"]
    renamed["megatron_lm"]["transformer_factory_exclude"].append("num_query_groups")
    assert "--num-query-groups" in unknown_flags(words, renamed)
    renamed["megatron_lm"]["flags"].remove("--seq-length")
    assert "--seq-length" in unknown_flags(words, renamed)


@pytest.mark.parametrize(("cp_impl", "comm"), [("ring", "p2p"), ("allgather", "all_gather")])
def test_the_context_parallel_implementation_is_megatron_s_cp_comm_type(
    cp_impl: str, comm: str
) -> None:
    flags = flag_values(megatron_arguments(export_of(cp=2, dp=8, cp_impl=cp_impl)))
    assert (flags["--context-parallel-size"], flags["--cp-comm-type"]) == ("2", comm)
    assert "--cp-comm-type" not in flag_values(megatron_arguments(export_of()))


def test_values_of_an_interleaved_zero3_plan() -> None:
    flags = flag_values(megatron_arguments(export_of()))
    assert flags["--tensor-model-parallel-size"] == "2"
    assert flags["--pipeline-model-parallel-size"] == "2"
    assert flags["--num-virtual-stages-per-pipeline-rank"] == "2"
    assert "--sequence-parallel" in flags
    assert flags["--context-parallel-size"] == "1"
    assert flags["--recompute-granularity"] == "selective"
    assert "--use-megatron-fsdp" in flags
    assert flags["--data-parallel-sharding-strategy"] == "optim_grads_params"
    assert flags["--ckpt-format"] == "fsdp_dtensor"  # the only one Megatron FSDP writes
    assert flags["--micro-batch-size"] == "2"
    assert flags["--global-batch-size"] == "512"
    assert flags["--seq-length"] == "8192"
    assert flags["--train-iters"] == "1000"
    assert "--bf16" in flags and "--fp8-format" not in flags
    assert flags["--num-layers"] == "32"
    assert flags["--hidden-size"] == "4096"
    assert flags["--ffn-hidden-size"] == "14336"
    assert flags["--num-attention-heads"] == "32"
    assert "--group-query-attention" in flags
    assert flags["--num-query-groups"] == "8"
    assert "--swiglu" in flags
    assert flags["--normalization"] == "RMSNorm"
    assert flags["--position-embedding-type"] == "rope"
    assert "--untie-embeddings-and-output-weights" in flags
    assert "--disable-bias-linear" in flags
    assert flags["--hidden-dropout"] == "0.0"  # Megatron's default is 0.1
    assert "--overlap-grad-reduce" in flags  # the planner's default, not Megatron's
    assert flags["--attention-backend"] == "flash"
    assert flags["--optimizer"] == "adam"
    assert "--grad-reduce-in-bf16" not in flags and "--tp-comm-overlap" not in flags
    knobs = flag_values(megatron_arguments(export_of(**LAYOUTS[7])))
    assert "--grad-reduce-in-bf16" in knobs and "--tp-comm-overlap" in knobs
    assert "--overlap-grad-reduce" not in knobs
    assert (knobs["--attention-backend"], knobs["--optimizer"]) == ("fused", "sgd")


def test_zero1_full_recompute_uneven_moe_and_fp8() -> None:
    flags = flag_values(megatron_arguments(export_of(**LAYOUTS[1])))
    assert "--use-distributed-optimizer" in flags and "--use-megatron-fsdp" not in flags
    assert "--ckpt-format" not in flags
    assert flags["--recompute-granularity"] == "full"
    assert flags["--recompute-method"] == "uniform"
    assert flags["--recompute-num-layers"] == "1"
    assert "--pipeline-model-parallel-size" in flags
    assert "--num-virtual-stages-per-pipeline-rank" not in flags
    uneven = flag_values(megatron_arguments(export_of(**LAYOUTS[2])))
    # 30 layers on 4 stages, first and last one short: 7 8 8 7.
    assert uneven["--decoder-first-pipeline-num-layers"] == "7"
    assert uneven["--decoder-last-pipeline-num-layers"] == "7"
    moe = flag_values(megatron_arguments(export_of(**LAYOUTS[4])))
    assert moe["--num-experts"] == "8"
    assert moe["--moe-router-topk"] == "2"
    assert moe["--expert-model-parallel-size"] == "4"
    assert moe["--expert-tensor-parallel-size"] == "1"
    assert moe["--moe-ffn-hidden-size"] == "2048"
    assert moe["--moe-shared-expert-intermediate-size"] == "4096"
    assert moe["--moe-expert-capacity-factor"] == "1.25"
    assert moe["--moe-router-score-function"] == "sigmoid"
    fp8 = flag_values(megatron_arguments(export_of(**LAYOUTS[5])))
    assert fp8["--fp8-format"] == "hybrid" and "--bf16" in fp8
    assert fp8["--kv-channels"] == "128"
    assert "--untie-embeddings-and-output-weights" not in fp8
    dense = flag_values(megatron_arguments(export_of(**LAYOUTS[6])))
    assert "--sequence-parallel" not in dense and "--expert-model-parallel-size" not in dense
    assert dense["--data-parallel-sharding-strategy"] == "optim_grads"


def test_environment_megatron_asserts() -> None:
    assert megatron_environment(export_of(sharding="zero1")) == {"CUDA_DEVICE_MAX_CONNECTIONS": "1"}
    assert megatron_environment(export_of(sharding="none", tp=1, cp=2)) != {}
    assert megatron_environment(export_of()) == {}  # Megatron FSDP wants CUDA's default
    assert megatron_environment(export_of(sharding="none", tp=1, dp=32)) == {}


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"sharding": "hsdp", "hsdp_shard_size": 8}, "layout.sharding 'hsdp'"),
        ({"schedule": "gpipe", "interleave": 1}, "layout.schedule 'gpipe'"),
        ({"uneven_stages": True, "model": {"num_layers": 30}}, "layout.uneven_stages True"),
        ({"pp": 3, "interleave": 1, "dp": 8}, "layout.pp 3"),
        ({"activation_offload": 0.25}, "layout.activation_offload 0.25"),
        ({"free_stage_outputs": False}, "layout.free_stage_outputs False"),
        ({"model": {"position_embedding": "alibi"}}, "model.position_embedding 'alibi'"),
        ({"training": {"precision": "bf16-pure"}}, "training.precision 'bf16-pure'"),
        ({"training": {"loss_chunks": 8}}, "training.loss_chunks 8"),
    ],
)
def test_refused_arguments_name_the_field(kw: dict[str, Any], field: str) -> None:
    with pytest.raises(ExportError) as info:
        megatron_arguments(export_of(**kw))
    assert str(info.value).startswith(f"plan {field}: Megatron-LM")
