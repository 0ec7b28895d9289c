"""The planned layout in the reference trainer: numerics parity with one process (the way
torchtitan proves its parallelisms), the ``layout_applied`` event, and bad layouts.

Parity: 4 CPU ranks (gloo, fp32, seed 0) train 10 steps in each layout of ``LAYOUTS``
from the same initial weights and data; each loss must equal a one-process run of the
same global batch (8 sequences: micro-batch 2 times dp times gradient accumulation)
within ``REL_TOL``. The layouts change only the order of floating-point sums (sharded
matmuls, reduce-scatter against all-reduce), so the losses agree to a few 1e-7
relative; ``REL_TOL`` leaves room for that drift to grow over 10 AdamW steps. A wrong
sharding (tp ranks reading different samples, say) moves the loss by 1e-2 within two
steps. ``GPT`` layouts run a GPT-style model (GELU, LayerNorm, biases, tied embeddings).

MoE layouts (``MOE``: 4 experts, top-2, a shared expert, the first block dense) split the
experts over ep ranks of dp4 and exchange tokens all-to-all. What a token's MoE output is
does not depend on where its expert runs, but two things depend on which tokens are
routed together: the Switch load-balancing loss (a product of two means over the group)
and, with a capacity factor, which assignments are dropped. Both are computed over one
forward call's tokens, one micro-batch of one data-parallel rank, before any token leaves
the rank; the one-process reference runs the same global batch as 4 micro-steps of 2
sequences, and micro-step m of one process reads exactly the sequences data-parallel
rank m reads (``data.micro_batch_windows``), so it routes the same groups, drops the
same assignments and adds the same auxiliary losses, at every ep. So the MoE layouts are
compared with the same ``REL_TOL``; observed on torch 2.13 CPU: 2e-7 at ep2 (with or
without capacity), 2e-6 at ep4, 4e-6 with the sigmoid router under sharding none. A
reference that routes all 8 sequences of a step as one group (micro-batch 8) drops other
assignments and adds other auxiliary losses: against it the capacity layout differs by
2.3e-4, a thousand times its drift against the right groups (``CONTROLS``).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from polling import run_to_end
from trainer_harness import (
    REPO,
    TORCHRUN,
    assert_refused,
    describe,
    events,
    free_port,
    losses_by_step,
    progress,
    run_trainer,
)
from trainer_harness import trainer_env as harness_env

from runtime.train import parallel
from runtime.train.config import ConfigError, parse_config

STEPS = 10
REL_TOL = 1e-4
"""Relative tolerance of parity (observed: at most ~1e-6 on torch 2.13 CPU, 2 blocks)."""

WORKER = Path(__file__).with_name("parity_worker.py")

GPT = "--activation gelu --norm layernorm --bias --tied-embeddings"
"""A GPT-style model (GELU MLP, LayerNorm, biases, tied embeddings)."""

PP = "--layers 4 --pp 2"
"""Pipeline layouts train a 4-block model (a block per virtual stage at interleave 2)."""
PP_REF = "--layers 4"

MOE = "--experts 4 --top-k 2 --moe-ffn-hidden 64 --shared-ffn-hidden 64 --dense-first-layers 1"
"""An MoE model: block 0 dense, block 1 with 4 routed experts (top 2) and a shared one."""
CAPACITY = f"{MOE} --moe-capacity-factor 1.25"

LAYOUTS: dict[str, tuple[str, str]] = {
    # name: (4-rank flags, one-process reference flags); global batch 8 sequences
    "dp4 zero3": ("--grad-accum 1", "--grad-accum 4"),
    "dp4 zero1": ("--sharding zero1", "--grad-accum 4"),
    "dp4 zero2": ("--sharding zero2", "--grad-accum 4"),
    "dp4 none": ("--sharding none", "--grad-accum 4"),
    "hsdp 2x2": ("--sharding hsdp --hsdp-shard-size 2", "--grad-accum 4"),
    "dp4 recompute full": ("--recompute full", "--grad-accum 4"),
    "dp2 tp2 sp": ("--tp 2 --sequence-parallel --grad-accum 2", "--grad-accum 4"),
    "dp2 tp2 no sp": ("--tp 2 --no-sequence-parallel --grad-accum 2", "--grad-accum 4"),
    "gpt dp2 tp2 sp": (f"--tp 2 --sequence-parallel --grad-accum 2 {GPT}", f"--grad-accum 4 {GPT}"),
    "gpt dp4 zero3": (f"--grad-accum 1 {GPT}", f"--grad-accum 4 {GPT}"),
    # Pipelines (issue 18): 4 blocks, so interleave 2 has a block per virtual stage.
    "pp2 gpipe dp2": (f"{PP} --schedule gpipe --grad-accum 2", f"{PP_REF} --grad-accum 4"),
    "pp2 1f1b dp2": (f"{PP} --grad-accum 2", f"{PP_REF} --grad-accum 4"),
    "pp2 interleave2 dp2": (f"{PP} --interleave 2 --grad-accum 2", f"{PP_REF} --grad-accum 4"),
    "pp2 tp2 sp": (f"{PP} --tp 2 --sequence-parallel --grad-accum 4", f"{PP_REF} --grad-accum 4"),
    "pp2 uneven recompute full dp2": (
        f"{PP} --layers 6 --uneven-stages --recompute full --grad-accum 2",
        f"{PP_REF} --layers 6 --grad-accum 4",
    ),
    # MoE with expert parallelism (issue 18): experts over ep of the dp ranks.
    "moe ep2 dp4 zero3": (f"{MOE} --ep 2 --grad-accum 1", f"{MOE} --grad-accum 4"),
    "moe ep4 dp4 zero3": (f"{MOE} --ep 4 --grad-accum 1", f"{MOE} --grad-accum 4"),
    "moe ep2 x dp2 none dropless sigmoid": (
        f"{MOE} --ep 2 --sharding none --router-score sigmoid",
        f"{MOE} --router-score sigmoid --grad-accum 4",
    ),
    "moe ep2 dp4 capacity 1.25": (f"{CAPACITY} --ep 2", f"{CAPACITY} --grad-accum 4"),
    "dp2 tp2 sp selective tied": (
        "--tp 2 --sequence-parallel --grad-accum 2 --recompute selective --tied-embeddings",
        "--grad-accum 4 --tied-embeddings",
    ),
    # Context parallelism (issue 18), all-gather variant: 2 x cp chunks of the 32 tokens.
    "cp2 dp2": ("--cp 2 --grad-accum 2", "--grad-accum 4"),
    "cp4": ("--cp 4 --grad-accum 4", "--grad-accum 4"),
    "cp2 tp2 sp selective": (
        "--cp 2 --tp 2 --sequence-parallel --recompute selective --grad-accum 4",
        "--grad-accum 4",
    ),
    "cp2 hsdp dp2": ("--cp 2 --sharding hsdp --hsdp-shard-size 2 --grad-accum 2", "--grad-accum 4"),
}


CONTROLS: dict[str, tuple[str, str]] = {
    # name: (a 4-rank layout of LAYOUTS, a reference that must NOT match it)
    "moe capacity grouped by 8": (f"{CAPACITY} --ep 2", f"{CAPACITY} --micro-batch 8"),
}
"""Comparisons that show the parity test can fail: the capacity computed over groups of
8 sequences instead of the layout's 2 drops other assignments."""


def _worker_env() -> dict[str, str]:
    env = harness_env()
    # DTensor warns at every step of a 2-D norm reduction; the parity run need not say so.
    env["TORCH_CPP_LOG_LEVEL"] = "ERROR"
    return env


def _run_worker(out: Path, nproc: int, layouts: list[str]) -> dict[str, list[float]]:
    if nproc == 1:
        cmd = [sys.executable, str(WORKER)]
    else:
        cmd = [str(TORCHRUN), "--nnodes=1", f"--nproc-per-node={nproc}",
               "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{free_port()}",
               "--max-restarts=0", str(WORKER)]  # fmt: skip
    proc = run_to_end([*cmd, str(out), str(STEPS), *layouts], env=_worker_env(), cwd=REPO)
    assert proc.returncode == 0, describe(proc)
    losses: dict[str, list[float]] = json.loads(out.read_text())
    return losses


@pytest.fixture(scope="module")
def parity(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[list[float], list[float]]]:
    """name → (losses in the layout, losses of the one-process reference)."""
    tmp = tmp_path_factory.mktemp("parity")
    sharded = _run_worker(tmp / "four.json", 4, [flags for flags, _ in LAYOUTS.values()])
    references = sorted({ref for _, ref in (*LAYOUTS.values(), *CONTROLS.values())})
    single = _run_worker(tmp / "one.json", 1, references)
    pairs = LAYOUTS | CONTROLS
    return {name: (sharded[flags], single[ref]) for name, (flags, ref) in pairs.items()}


def _max_rel(got: list[float], want: list[float]) -> float:
    assert len(got) == len(want) == STEPS
    return max(abs(a - b) / abs(b) for a, b in zip(got, want, strict=True))


@pytest.mark.slow
@pytest.mark.parametrize("name", list(LAYOUTS))
def test_layout_losses_equal_one_process(
    name: str, parity: dict[str, tuple[list[float], list[float]]]
) -> None:
    got, want = parity[name]
    rel = _max_rel(got, want)
    print(f"{name}: max relative loss difference over {STEPS} steps {rel:.2e}")
    assert rel <= REL_TOL, f"{name}: {got} against one process {want}"
    assert want[-1] < want[0] - 0.5  # it trains: the comparison is not of flat lines


@pytest.mark.slow
def test_zero1_and_recompute_full_match_their_counterparts(
    parity: dict[str, tuple[list[float], list[float]]],
) -> None:
    zero3 = parity["dp4 zero3"][0]
    assert _max_rel(parity["dp4 zero1"][0], zero3) <= REL_TOL
    assert _max_rel(parity["dp4 recompute full"][0], zero3) <= REL_TOL


@pytest.mark.slow
def test_moe_capacity_parity_needs_the_same_token_groups(
    parity: dict[str, tuple[list[float], list[float]]],
) -> None:
    got, want = parity["moe capacity grouped by 8"]
    rel = _max_rel(got, want)
    print(f"capacity over groups of 8 sequences, not 2: max relative difference {rel:.2e}")
    assert rel > REL_TOL


@pytest.mark.slow
def test_plan_layout_is_applied_and_reported(tmp_path: Path) -> None:
    """A dp2 x tp2 plan with sequence parallelism on 4 ranks: tokens per step are the
    plan's global batch (not world size x micro-batch x accumulation)."""
    plan = {
        "model": {"num_layers": 2, "hidden_size": 64, "num_attention_heads": 4,
                  "num_kv_heads": 2, "vocab_size": 257},
        "training": {"seq_len": 32, "global_batch_seqs": 8, "precision": "fp32"},
        "layout": {"dp": 2, "tp": 2, "pp": 1, "cp": 1, "ep": 1, "sharding": "zero3",
                   "micro_batch": 2, "recompute": "selective", "sequence_parallel": True},
    }  # fmt: skip
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))
    job = tmp_path / "job"
    # No flags beyond the plan's: a flag would beat the plan.
    cmd = [str(TORCHRUN), "--nnodes=1", "--nproc-per-node=4", "--rdzv-backend=c10d",
           f"--rdzv-endpoint=127.0.0.1:{free_port()}", "--max-restarts=0", "-m",
           "runtime.train", "--plan", str(path), "--job-dir", str(job), "--steps", "2",
           "--eval-every", "0", "--device", "cpu"]  # fmt: skip
    run = run_to_end(cmd, watch=job, env=_worker_env(), cwd=REPO)
    assert run.returncode == 0, describe(run)
    (applied,) = events(job, "layout_applied")
    expected: dict[str, Any] = {
        "dp_replicate": 1, "dp_shard": 2, "tp": 2, "pp": 1, "cp": 1, "ep": 1,
        "sequence_parallel": True, "recompute": "selective", "sharding": "zero3",
        "precision": "fp32", "world_size": 4, "global_batch_tokens": 8 * 32,
        "micro_batch": 2, "grad_accum": 2,
    }  # fmt: skip
    assert {key: applied[key] for key in expected} == expected
    assert [r["tokens"] for r in progress(job) if "loss" in r] == [256, 512]


# ---- bad layouts: one line naming the knob, exit 2 -----------------------------------------

TINY = ["--layers", "1", "--hidden", "32", "--heads", "4", "--kv-heads", "2", "--seq-len", "16"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--tp", "3"], "--tp 3: must divide the 4 attention heads"),
        (["--tp", "4"], "--tp 4: must divide the 2 key/value heads"),
        (["--tp", "-1"], "--tp -1: must be 1 or more"),
        (["--dp", "-2"], "--dp -2: must be 0 (derived) or more"),
        (["--sharding", "zero4"], "--sharding zero4: use one of none, zero1, zero2, zero3, hsdp"),
        (["--recompute", "some"], "--recompute some: use one of none, selective, full"),
        (["--precision", "fp16"], "--precision fp16: use one of auto, fp32, bf16, bf16-pure, fp8"),
        (["--activation", "relu"], "--activation relu: use swiglu or gelu"),
        (["--norm", "batchnorm"], "--norm batchnorm: use rmsnorm or layernorm"),
        (["--head-dim", "7"], "--head-dim 7: must be even (rotary pairs)"),
        (["--schedule", "zb"], "--schedule zb: use one of 1f1b, gpipe"),
        (["--interleave", "2"], "--interleave 2: needs pipeline stages (--pp 2 or more)"),
        (["--uneven-stages"], "--uneven-stages True: needs pipeline stages (--pp 2 or more)"),
        (["--interleave", "0"], "--interleave 0: must be 1 or more"),
        (["--cp", "3"], "--cp 3: 2 x cp must divide the sequence of 16 tokens"),
        (["--cp", "16"], "--cp 16: 2 x cp must divide the sequence of 16 tokens"),
        (["--cp-impl", "star"], "--cp-impl star: use one of allgather, ring"),
    ],
)
def test_bad_layout_flags_name_the_knob(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config([*TINY, *argv])
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def _plan_file(tmp_path: Path, **changes: Any) -> Path:
    plan: dict[str, Any] = {
        "model": {"num_layers": 1, "hidden_size": 32, "num_attention_heads": 4,
                  "num_kv_heads": 2},
        "training": {"seq_len": 16, "global_batch_seqs": 4},
        "layout": {"dp": 2, "tp": 1, "micro_batch": 2, "sharding": "zero3"},
    }  # fmt: skip
    for key, value in changes.items():
        section, field = key.split("__")
        if section == "top":
            plan[field] = value
        else:
            plan[section][field] = value
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))
    return path


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"layout__tp": 3}, "plan layout.tp 3: must divide the 4 attention heads"),
        ({"layout__tp": -2}, "plan layout.tp -2: must be 1 or more"),
        ({"layout__sharding": "zero9"}, "plan layout.sharding zero9: use one of"),
        ({"layout__recompute": "half"}, "plan layout.recompute half: use one of"),
        ({"layout__ep": 2}, "plan layout.ep 2: the model has no experts (experts 1)"),
        (
            {"layout__recompute": "selective", "training__selective_recompute": "op"},
            "plan training.selective_recompute op: the reference trainer's selective",
        ),
        (
            {"training__fsdp_version": 1},
            "plan training.fsdp_version 1: the reference trainer shards with FSDP2",
        ),
        (
            {"training__loss_chunks": 8},
            "plan training.loss_chunks 8: the planner counts a compiled chunked loss",
        ),
        ({"layout__dp": -2}, "plan layout.dp -2: must be 0 (derived) or more"),
        ({"top__schema_version": 2}, "plan schema_version 2: this scalectl reads version 1"),
        ({"layout__cp": 3}, "plan layout.cp 3: 2 x cp must divide the sequence of 16 tokens"),
        ({"layout__cp_impl": "star"}, "plan layout.cp_impl star: use one of allgather, ring"),
    ],
)
def test_bad_plan_layouts_name_the_field(
    tmp_path: Path, changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        parse_config(["--plan", str(_plan_file(tmp_path, **changes))])
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--dp", "2"], "layout dp2 x tp1 x pp1 x cp1 = 2 ranks but the job has world size 1"),
        (["--pp", "2"], "--tp x --pp = 2 does not divide the world size 1"),
        (["--pp", "2", "--dp", "1"], "layout dp1 x tp1 x pp2 x cp1 = 2 ranks but the job has"),
        (["--cp", "2"], "--tp x --pp x --cp = 2 does not divide the world size 1"),
        (["--cp", "2", "--cp-impl", "ring", "--device", "cpu"], "--cp-impl ring: torch's "
         "context_parallel (ring attention) runs on CUDA only, this job runs on cpu"),
        (["--cp", "2", "--dp", "1", "--sharding", "none"], "--cp 2: the reference trainer "
         "runs context parallelism with FSDP sharding over dp_shard x cp and without "
         "pipeline stages, not with --sharding none"),
        (["--cp", "2", "--pp", "2", "--dp", "1"], "not with --pp 2; plan sharding"),
        (["--ep", "2"], "--ep 2: the model has no experts (experts 1); use ep 1"),
        (["--sharding", "hsdp"], "--hsdp-shard-size 0: with sharding hsdp it must be 2"),
        (["--hsdp-shard-size", "2"], "--hsdp-shard-size 2: goes with --sharding hsdp only"),
        (["--elastic-dp"], "--elastic-dp True: needs --dp or --plan"),
        (["--elastic-dp", "--dp", "2", "--tp", "2"], "--elastic-dp at world size 1: 1 ranks "
         "do not hold whole model replicas of tp x pp x cp = 2 ranks; launch with a node range"),
    ],
)  # fmt: skip
def test_layouts_this_job_cannot_run_exit_2_before_any_file(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    message: str,
) -> None:
    assert_refused([*TINY, *argv], message, tmp_path / "job", capsys, monkeypatch)


def test_parallel_dims_validate_their_product() -> None:
    dims = parallel.parallel_dims(world_size=8, dp=0, tp=2, sharding="hsdp", hsdp_shard_size=2)
    assert (dims.dp_replicate, dims.dp_shard, dims.tp, dims.dp) == (2, 2, 2, 4)
    none = parallel.parallel_dims(world_size=4, dp=0, tp=1, sharding="none", hsdp_shard_size=0)
    assert (none.dp_replicate, none.dp_shard) == (4, 1)
    with pytest.raises(parallel.LayoutError, match="world size 8"):
        parallel.ParallelDims(dp_replicate=1, dp_shard=3, tp=2, world_size=8)
    with pytest.raises(parallel.LayoutError, match="--dp-shard 0: must be 1 or more"):
        parallel.ParallelDims(dp_replicate=1, dp_shard=0, tp=2, world_size=8)


def test_elastic_dp_keeps_tp_and_the_global_batch() -> None:
    shape = {"tp": 2, "pp": 1, "cp": 1, "micro_batch": 2, "hsdp_shard_size": 0}
    assert parallel.elastic_dp(4, dp=2, grad_accum=2, **shape) == (2, 2)
    assert parallel.elastic_dp(2, dp=2, grad_accum=2, **shape) == (1, 4)
    assert parallel.elastic_dp(8, dp=2, grad_accum=2, **shape) == (4, 1)
    with pytest.raises(parallel.LayoutError, match="does not divide into dp 3 x micro_batch 2"):
        parallel.elastic_dp(6, dp=2, grad_accum=2, **shape)
    hsdp = shape | {"hsdp_shard_size": 2, "tp": 1}
    with pytest.raises(parallel.LayoutError, match="dp 3 is not a multiple of the hsdp shard"):
        parallel.elastic_dp(3, dp=4, grad_accum=3, **hsdp)


def test_an_elastic_round_on_fewer_ranks_reports_dp_and_accumulation(tmp_path: Path) -> None:
    """A round at world size 2 of a dp2 x tp2 job: tp kept, dp 1, accumulation doubled,
    tokens per step kept, and the layout_applied event says dp followed the world size."""
    job = tmp_path / "job"
    args = [*TINY, "--elastic-dp", "--dp", "2", "--tp", "2", "--grad-accum", "1",
            "--micro-batch", "2", "--steps", "1", "--eval-every", "0"]  # fmt: skip
    run = run_trainer(job, 2, args)
    assert run.returncode == 0, describe(run)
    (applied,) = events(job, "layout_applied")
    keys = ("world_size", "dp_shard", "tp", "grad_accum", "micro_batch", "global_batch_tokens")
    assert [applied[k] for k in keys] == [2, 1, 2, 2, 2, 2 * 2 * 16]
    assert applied["elastic_dp"] is True
    assert [r["tokens"] for r in progress(job) if "loss" in r] == [64]


@pytest.mark.slow
def test_checkpoints_move_between_layouts(tmp_path: Path) -> None:
    """Written under dp2 x tp2 (SP), resumed under dp4, then under tp2 on 2 ranks: the
    losses continue as a dp4 run that was never interrupted. Warm-up outlasts the run,
    so the learning rate of a step does not depend on ``--steps``."""
    common = ["--seq-len", "32", "--micro-batch", "2", "--warmup-steps", "50",
              "--ckpt-every", "0", "--eval-every", "0"]  # fmt: skip
    job, straight = tmp_path / "job", tmp_path / "straight"
    legs = [
        (4, ["--tp", "2", "--sequence-parallel", "--grad-accum", "2", "--steps", "3"]),
        (4, ["--grad-accum", "1", "--steps", "6"]),
        (2, ["--tp", "2", "--grad-accum", "4", "--steps", "8"]),
    ]
    for nproc, args in legs:
        run = run_trainer(job, nproc, [*common, *args])
        assert run.returncode == 0, describe(run)
    run = run_trainer(straight, 4, [*common, "--grad-accum", "1", "--steps", "8"])
    assert run.returncode == 0, describe(run)
    resumed = [(e["step"], e["world_size_then"], e["world_size"]) for e in events(job, "resumed")]
    assert resumed == [(3, 4, 4), (6, 4, 2)]
    got, want = losses_by_step(progress(job)), losses_by_step(progress(straight))
    assert sorted(got) == sorted(want) == list(range(1, 9))
    rel = max(abs(got[s] - want[s]) / want[s] for s in want)
    assert rel <= REL_TOL, f"{got} against an uninterrupted dp4 run {want}"


@pytest.mark.slow
def test_a_pipeline_checkpoint_resumes_without_the_pipeline(tmp_path: Path) -> None:
    """Written under pp2 x dp2 (stages keep the whole model's parameter names), resumed
    under dp4: the losses continue as a dp4 run that was never interrupted."""
    common = ["--layers", "4", "--seq-len", "32", "--micro-batch", "2", "--warmup-steps",
              "50", "--ckpt-every", "0", "--eval-every", "0"]  # fmt: skip
    job, straight = tmp_path / "job", tmp_path / "straight"
    legs = [
        (4, ["--pp", "2", "--interleave", "2", "--grad-accum", "2", "--steps", "3"]),
        (4, ["--grad-accum", "1", "--steps", "6"]),
    ]
    for nproc, args in legs:
        run = run_trainer(job, nproc, [*common, *args])
        assert run.returncode == 0, describe(run)
    run = run_trainer(straight, 4, [*common, "--grad-accum", "1", "--steps", "6"])
    assert run.returncode == 0, describe(run)
    applied = [(e["pp"], e["interleave"]) for e in events(job, "layout_applied")]
    assert applied == [(2, 2), (1, 1)]
    got, want = losses_by_step(progress(job)), losses_by_step(progress(straight))
    assert sorted(got) == sorted(want) == list(range(1, 7))
    rel = max(abs(got[s] - want[s]) / want[s] for s in want)
    assert rel <= REL_TOL, f"{got} against an uninterrupted dp4 run {want}"
