"""Compute slowed by the data-parallel collectives hidden under it (issue 17):
planner.formulas.step.overlap_contention_time, charged in planner.terms.data_parallel."""

from __future__ import annotations

from typing import Any

import pytest

import planner
from planner.formulas import step
from planner.inputs import constants
from tests.planner.planner_fixtures import cluster, layout, llama, training


def _breakdown(gpus: int, overlap: bool = True, **kw: Any) -> dict[str, float]:
    est = planner.estimate(
        llama(), cluster(gpus), training(overlap_grad_reduce=overlap), layout(**kw)
    )
    assert sum(est.step.breakdown.values()) == pytest.approx(est.step.time_s, rel=1e-9)
    return est.step.breakdown


def test_contention_scales_with_the_link_rate_and_stops_at_the_intra_node_rate() -> None:
    k = constants().overlap_contention_per_comm_s
    assert step.overlap_contention_time(2.0, 360e9, 360e9, k) == pytest.approx(2.0 * k)
    assert step.overlap_contention_time(2.0, 45e9, 360e9, k) == pytest.approx(2.0 * k / 8)
    assert step.overlap_contention_time(2.0, 720e9, 360e9, k) == pytest.approx(2.0 * k)
    assert step.overlap_contention_time(0.0, 360e9, 360e9, k) == 0.0


def test_nothing_hidden_nothing_charged() -> None:
    # Without overlap every collective is exposed (dp_comm_s) and none slows compute.
    alone = _breakdown(64, dp=64, sharding="zero3", overlap=False)
    assert alone["dp_contention_s"] == 0.0
    assert alone["dp_comm_s"] > 0.0
    hidden = _breakdown(64, dp=64, sharding="zero3")
    assert hidden["dp_contention_s"] > 0.0
    assert hidden["dp_comm_s"] < alone["dp_comm_s"]
    # Slower than perfectly hidden, faster than not overlapped at all (Lee et al. 2025).
    assert hidden["dp_comm_s"] + hidden["dp_contention_s"] < alone["dp_comm_s"]


def test_a_ring_over_one_nic_a_gpu_charges_the_bytes_it_hides_not_the_seconds() -> None:
    # The same ZeRO-1 layout on 8 GPUs in one node (NVLink) and on 8 one-GPU nodes (one
    # 400 Gb/s NIC each, 1/8 of the rate): the slow ring hides fewer of its bytes under
    # the last micro-batch's backward, leaves more exposed, and slows compute less.
    def run(gpus_per_node: int) -> dict[str, float]:
        est = planner.estimate(
            llama(),
            cluster(8, gpus_per_node=gpus_per_node),
            training(batch=64),
            layout(dp=8, sharding="zero1"),
        )
        return est.step.breakdown

    node, nics = run(8), run(1)
    assert nics["dp_comm_s"] > 10 * node["dp_comm_s"]
    assert 0.0 < nics["dp_contention_s"] < node["dp_contention_s"]


def test_zero2_pays_for_every_micro_batchs_reduce_scatter() -> None:
    # 256 sequences over 16 ranks at micro-batch 2: 8 micro-batches. ZeRO-1 reduces once,
    # ZeRO-2 after each micro-batch's backward: more bytes beside compute, more contention.
    zero1 = _breakdown(16, dp=16, sharding="zero1", micro_batch=2)
    zero2 = _breakdown(16, dp=16, sharding="zero2", micro_batch=2)
    assert zero2["dp_contention_s"] > 4 * zero1["dp_contention_s"]
