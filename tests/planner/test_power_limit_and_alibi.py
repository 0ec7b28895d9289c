"""A board power limit below the TDP slows compute by the DVFS cube law and caps the
power drawn; ALiBi models carry no position table and no rotary pass."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

import planner
from planner import ClusterSpec, Layout, ModelSpec, TrainingSpec
from planner.catalog import get_gpu
from planner.errors import PlanInputError
from planner.estimator import host_memory_gib
from planner.formulas.step import power_capped_clock_fraction

H100 = get_gpu("H100-SXM-80GB")
TRAINING = TrainingSpec(seq_len=4096, global_batch_seqs=64, total_tokens=1e12)
LAYOUT = Layout(dp=8, micro_batch=1, sharding="zero3", recompute="full")


def _estimate(gpu: object, model: str | ModelSpec = "llama3-8b") -> planner.Estimate:
    spec = planner.get_model(model) if isinstance(model, str) else model
    return planner.estimate(spec, ClusterSpec(gpu=gpu, num_gpus=8), TRAINING, LAYOUT)


def test_clock_fraction_follows_the_cube_law() -> None:
    assert power_capped_clock_fraction(700, 700, 70) == pytest.approx(1.0)
    # (430 / 630)^(1/3): a 500 W cap on a 700 W H100 idling at 70 W
    assert power_capped_clock_fraction(500, 700, 70) == pytest.approx(0.8805, abs=1e-4)
    half = power_capped_clock_fraction(385, 700, 70)  # half the dynamic range
    assert half == pytest.approx(0.5 ** (1 / 3))


def test_power_limit_slows_compute_and_caps_power() -> None:
    full = _estimate(H100)
    capped = _estimate(H100.model_copy(update={"power_limit_w": 500.0}))
    assert capped.step.time_s > full.step.time_s
    # compute-bound: the step stretches by about 1 / clock fraction, not more
    ratio = capped.step.time_s / full.step.time_s
    assert 1.0 < ratio <= 1 / power_capped_clock_fraction(500, 700, 70) + 1e-9
    assert capped.step.gpu_power_w <= 500.0 < full.step.gpu_power_w


@pytest.mark.parametrize("limit", [60.0, 800.0])
def test_power_limit_outside_idle_to_tdp_is_refused(limit: float) -> None:
    with pytest.raises((PlanInputError, ValidationError), match=r"power_limit_w .* tdp_w"):
        H100.model_validate({**H100.model_dump(), "power_limit_w": limit})


def test_alibi_has_no_rotary_pass_and_no_position_table() -> None:
    base = planner.get_model("llama3-8b")
    alibi = base.model_copy(update={"position_embedding": "alibi", "name": "llama3-8b-alibi"})
    assert alibi.num_params == base.num_params
    rope_est, alibi_est = _estimate(H100, base), _estimate(H100, alibi)
    assert alibi_est.step.breakdown["memory_bound_s"] < rope_est.step.breakdown["memory_bound_s"]
    assert alibi_est.step.breakdown["gemm_s"] == pytest.approx(rope_est.step.breakdown["gemm_s"])


def _offload(host_gib: float, offload: float) -> tuple[planner.Estimate, float, float]:
    gpu = H100.model_copy(update={"node_host_memory_gib": host_gib})
    layout = Layout(
        dp=8, micro_batch=1, sharding="zero3", recompute="none", activation_offload=offload
    )
    args = (planner.get_model("llama3-8b"), ClusterSpec(gpu=gpu, num_gpus=8), TRAINING, layout)
    return (planner.estimate(*args), *host_memory_gib(*args))


def test_offloaded_activations_must_fit_the_nodes_host_memory() -> None:
    roomy, used, capacity = _offload(2048.0, 0.5)
    assert roomy.fits and 0 < used < capacity == 2048.0
    # the same layout on a node whose host memory cannot hold 8 GPUs' offloaded layers
    tight, used_tight, capacity_tight = _offload(used / 2, 0.5)
    assert not tight.fits and used_tight == pytest.approx(used)
    assert used_tight > capacity_tight
    assert tight.memory_gib.total == pytest.approx(roomy.memory_gib.total)
    # without offload nothing goes to the host, whatever its size
    none, used_none, _ = _offload(used / 2, 0.0)
    assert none.fits and used_none == 0.0


def test_host_offload_is_the_offloaded_share_of_every_gpu_on_the_node() -> None:
    assert _offload(2048.0, 0.5)[1] == pytest.approx(2 * _offload(2048.0, 0.25)[1])


def test_default_host_memory_is_the_dgx_h100s() -> None:
    assert H100.node_host_memory_gib == 2048.0
    with pytest.raises(ValidationError):
        H100.model_validate({**H100.model_dump(), "node_host_memory_gib": 0.0})


def _offload_s(gpus: int, sharding: str, overlap: bool = True) -> float:
    training = TrainingSpec(
        seq_len=4096, global_batch_seqs=64, total_tokens=1e12, overlap_grad_reduce=overlap
    )
    layout = Layout(
        dp=gpus, micro_batch=1, sharding=sharding, recompute="none", activation_offload=0.5
    )
    est = planner.estimate(
        planner.get_model("llama3-8b"), ClusterSpec(gpu=H100, num_gpus=gpus), training, layout
    )
    return est.step.breakdown["offload_s"]


def test_offload_copies_share_the_pcie_link_with_cross_node_gradient_reduction() -> None:
    # inside one node the gradient reduction rides NVLink: the copies hide alike
    assert _offload_s(8, "zero2") == pytest.approx(_offload_s(8, "zero1"))
    # across nodes ZeRO-2 reduces every micro-batch's gradients over the NIC, on the same
    # PCIe link as the copies; ZeRO-1 only the last micro-batch's; without overlap the
    # reduction runs after backward, beside no copy
    alone = _offload_s(16, "zero2", overlap=False)
    assert alone == pytest.approx(_offload_s(16, "zero1", overlap=False))
    assert _offload_s(16, "zero2") > _offload_s(16, "zero1") > alone


def test_search_does_not_offload_where_cross_node_reductions_hold_the_link() -> None:
    # Llama-3-70B on 512 H100 at 8k (issue 17): before the link was shared with the
    # data-parallel reduction, every top layout offloaded half its activations at
    # ZeRO-2 over 64 data-parallel ranks spanning nodes.
    result = planner.search(
        planner.get_model("llama3-70b"),
        ClusterSpec(gpu="H100-SXM-80GB", num_gpus=512),
        TrainingSpec(seq_len=8192, global_batch_seqs=512, total_tokens=1e12),
        top_k=10,
    )
    # ZeRO-2 reduce-scatters every micro-batch's gradients, so a cross-node reduction holds
    # the link under every layer; ZeRO-1 reduces under the last micro-batch only
    # (activations.data_parallel_link_share), so its offload stays almost all hidden.
    assert result.ranked
    for est in result.ranked:
        lo = est.layout
        if lo.activation_offload > 0 and lo.sharding == "zero2":
            assert lo.dp * lo.cp * lo.tp <= 8  # only when the reduction stays in a node
        if lo.activation_offload > 0 and lo.sharding == "zero1":
            assert est.step.breakdown["offload_s"] < 0.02 * est.step.time_s


def test_expert_parallelism_may_span_tensor_parallel_ranks_when_folded() -> None:
    """Megatron's MoE parallel folding: with expert_tp pinned, ep·expert_tp need only
    divide tp·cp·dp (Qwen3-235B on 256 H100: tp 2, dp 16, ep 32, expert_tp 1)."""
    model = planner.get_model("mixtral-8x7b")
    cluster = ClusterSpec(gpu=H100, num_gpus=16)
    training = TrainingSpec(seq_len=4096, global_batch_seqs=64, total_tokens=1e12)
    lo = Layout(dp=2, tp=8, ep=4, sequence_parallel=True, sharding="zero1")
    with pytest.raises(PlanInputError, match=r"ep=4 must divide dp·cp = 2.*--expert-tp"):
        planner.estimate(model, cluster, training, lo)
    folded = planner.estimate(model, cluster, training, lo.model_copy(update={"expert_tp": 2}))
    assert folded.step.breakdown["ep_comm_s"] > 0
    # the 4 expert ranks sit expert_tp = 2 apart: inside one node, unlike ep 4 over dp
    wide = Layout(dp=4, tp=4, ep=4, sequence_parallel=True, sharding="zero1")
    across = planner.estimate(model, cluster, training, wide)
    inside = planner.estimate(model, cluster, training, wide.model_copy(update={"expert_tp": 1}))
    assert inside.step.breakdown["ep_comm_s"] < across.step.breakdown["ep_comm_s"]
