"""The level-compiled numpy cost model equals the scalar estimate; the enumeration is every
valid layout; the Pareto front is the set of non-dominated points."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import planner
from planner.core import Outputs
from planner.estimator import estimate
from planner.layouts import LEVELS, OFFLOAD_OPTIONS, divisors, enumerate_layouts
from planner.levels import compile_levels
from planner.pareto import pareto_front, rank
from planner.vector import cost_model

PROBLEMS = [
    ("llama3-8b", "H100", 64, dict(seq_len=4096, global_batch_seqs=128)),
    ("mixtral-8x7b", "H100", 64, dict(seq_len=4096, global_batch_seqs=64)),
    ("llama2-70b", "A100", 128, dict(seq_len=4096, global_batch_seqs=128, precision="bf16",
                                      attention_kernel="unfused", overlap_grad_reduce=False)),
    ("llama3-8b", "H100", 32, dict(seq_len=8192, global_batch_seqs=64, precision="fp8",
                                   tp_comm_overlap=True, grad_reduce_dtype="bf16")),
    ("llama3-8b", "H100", 16, dict(seq_len=2048, global_batch_seqs=32, precision="fp32",
                                   optimizer="sgd_momentum")),
    ("gpt3-175b", "H100", 256, dict(seq_len=2048, global_batch_seqs=256)),
    ("mixtral-8x7b", "H100", 64, dict(seq_len=4096, global_batch_seqs=64, ep_comm_overlap=True)),
]  # fmt: skip


def _problem(
    i: int,
) -> tuple[planner.ModelSpec, planner.ClusterSpec, planner.TrainingSpec]:
    name, gpu, gpus, kw = PROBLEMS[i]
    cluster = planner.ClusterSpec(
        gpu=gpu, num_gpus=gpus, co2_basis="tdp" if i == 2 else "estimated"
    )
    return planner.get_model(name), cluster, planner.TrainingSpec(total_tokens=1e12, **kw)


@pytest.mark.parametrize("index", range(len(PROBLEMS)))
def test_level_programs_equal_the_scalar_estimate(index: int) -> None:
    """Every output of the level-compiled model, fitting or not, on random candidates."""
    model, cluster, training = _problem(index)
    tree = enumerate_layouts(model, cluster, training, [cluster.num_gpus])
    assert tree.size > 100
    costs = cost_model(model, cluster.accelerator(), cluster, training)
    names = tuple(Outputs._fields)
    columns = dict(zip(names, costs.run(tree, names), strict=True))
    rng = np.random.default_rng(index)
    for row in rng.choice(tree.size, 40, replace=False):
        layout = tree.layout(int(row))
        scalar = estimate(model, cluster, training, layout)
        assert columns["total_gib"][row] == pytest.approx(scalar.memory_gib.total, rel=1e-9)
        assert bool(columns["fits"][row]) == scalar.fits
        assert columns["step_time_s"][row] == pytest.approx(scalar.step.time_s, rel=1e-9)
        assert columns["mfu"][row] == pytest.approx(scalar.step.mfu, rel=1e-9)
        assert columns["energy_mwh"][row] == pytest.approx(scalar.train.energy_mwh, rel=1e-9)
        assert columns["goodput"][row] == pytest.approx(scalar.train.goodput, rel=1e-9)
        for key, value in scalar.step.breakdown.items():
            assert columns[key][row] == pytest.approx(value, rel=1e-9, abs=1e-15), key
    # the two programs the search runs agree with the full one
    memory = costs.memory(tree)
    np.testing.assert_allclose(memory, columns["total_gib"], rtol=1e-12)
    ranked = costs.metrics(tree, memory)
    np.testing.assert_allclose(ranked["days"], columns["days"], rtol=1e-12)


def test_only_needed_nodes_are_compiled() -> None:
    fixed = (("flash", 1.0), ("fp8", 0.0), ("overlap_grad_reduce", 1.0),
             ("tp_comm_overlap", 0.0), ("co2_tdp_basis", 0.0), ("experts", 1.0))  # fmt: skip
    memory = compile_levels(fixed, LEVELS, ("total_gib",))
    full = compile_levels(fixed, LEVELS, tuple(Outputs._fields))
    assert len(memory.source) < 0.5 * len(full.source)
    assert "_where" in full.source and "flash" not in memory.source


def _brute_force(
    model: planner.ModelSpec, cluster: planner.ClusterSpec, training: planner.TrainingSpec
) -> set[tuple[object, ...]]:
    """Every Layout the checks accept, under the enumeration's documented policies."""
    gpus, per_node, layers = cluster.num_gpus, cluster.gpus_per_node, model.num_layers
    found = set()
    for tp, cp, pp in itertools.product(divisors(per_node), divisors(gpus), range(1, layers + 1)):
        if gpus % (tp * cp * pp):
            continue
        dp = gpus // (tp * cp * pp)
        shardings: list[tuple[str, int | None]] = [("none", None)]
        if dp * cp > 1:
            shardings += [("zero1", None), ("zero2", None), ("zero3", None)]
            shardings += [("hsdp", h) for h in divisors(dp) if 1 < h < dp]
        eps = [e for e in divisors(model.num_experts) if (dp * cp) % e == 0]
        recompute = [(rc, 0.0) for rc in ("none", "selective", "full")]
        recompute += [("none", f) for f in OFFLOAD_OPTIONS]  # offload without recompute
        for (sharding, h), mb, (rc, off), v, sp, ep, uneven in itertools.product(
            shardings, range(1, training.global_batch_seqs + 1), recompute,
            range(1, layers + 2 + 1), (False, True), eps, (False, True),
        ):  # fmt: skip
            if uneven and (pp == 1 or (layers + 2) % (pp * v)):
                continue  # first and last stage one layer fewer: pp·v divides layers + 2
            if not uneven and v > 1 and (pp == 1 or layers % (pp * v)):
                continue  # interleave only with whole layers per virtual stage
            if sp and tp == 1:
                continue  # identical to sp off
            lo = planner.Layout(dp=dp, tp=tp, pp=pp, cp=cp, sharding=sharding,
                                hsdp_shard_size=h, micro_batch=mb, recompute=rc,
                                interleave=v, sequence_parallel=sp, ep=ep,
                                uneven_stages=uneven, activation_offload=off)  # fmt: skip
            if not planner.layout_problems(model, cluster, training, lo):
                found.add(tuple(lo.model_dump().values()))
    return found


@pytest.mark.parametrize("name", ["tiny-dense", "tiny-moe"])
def test_enumeration_is_every_valid_layout(name: str) -> None:
    model = planner.ModelSpec(
        name=name, num_layers=6, hidden_size=256, num_attention_heads=8, num_kv_heads=4,
        ffn_hidden_size=512, vocab_size=1000, num_experts=4 if name == "tiny-moe" else 1,
        top_k=2 if name == "tiny-moe" else 1,
    )  # fmt: skip
    cluster = planner.ClusterSpec(gpu="H100", num_gpus=16, gpus_per_node=4)
    training = planner.TrainingSpec(seq_len=64, global_batch_seqs=16, total_tokens=1e9)
    tree = enumerate_layouts(model, cluster, training, [16])
    enumerated = [tuple(tree.layout(i).model_dump().values()) for i in range(tree.size)]
    assert len(enumerated) == len(set(enumerated))
    assert set(enumerated) == _brute_force(model, cluster, training)


def test_pareto_front_is_the_non_dominated_set() -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        time = rng.integers(0, 30, 300).astype(float)
        cost = rng.integers(0, 30, 300).astype(float)
        front = set(pareto_front(time, cost).tolist())
        points = {(time[i], cost[i]) for i in front}
        assert len(points) == len(front)  # one index per point
        for i in range(len(time)):
            dominated = np.any(
                (time <= time[i]) & (cost <= cost[i]) & ((time < time[i]) | (cost < cost[i]))
            )
            assert ((time[i], cost[i]) in points) == (not dominated)


def test_rank_breaks_ties_by_later_keys() -> None:
    a = np.array([3.0, 1.0, 1.0, 2.0, 1.0])
    b = np.array([0.0, 5.0, 4.0, 0.0, 4.0])
    assert rank([a, b], 3).tolist() == [2, 4, 1]
    assert rank([a, b], 10).tolist() == [2, 4, 1, 3, 0]
