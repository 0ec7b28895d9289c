"""Published fine-tuning peak memory and tokens/s (finetune.yaml) against the planner
(issue 19 item 1)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.validation.cases import Check
from tests.validation.finetune import finetune_checks

FINETUNE = list(finetune_checks())

_RESERVED_AT_INIT = (
    "the figure is max_memory_reserved: the same table publishes 9.13 GB reserved after "
    "model init, before any training step, and training adds 0.16 GB to it. The planner "
    "now counts init's allocations (training.nf4_init_unchunked: the NF4 model plus torchao "
    "0.1's whole-tensor to_nf4 of the largest matrix, 7.1 GB), not the blocks the caching "
    "allocator keeps reserved beyond them (about 2 GB), which depend on the order and sizes "
    "of init's allocations; not modelled"
)
OUTSIDE = {
    "torchtune-tutorials-llama-2-7b-qlora": _RESERVED_AT_INIT,
}
"""Rows the planner models but misses by more than their tolerance: each is pinned to
fail, so fixing one makes its test fail until it moves out of this list."""


def _pinned(check: Check) -> Any:
    marks = []
    if check.id in OUTSIDE:
        marks.append(pytest.mark.xfail(strict=True, reason=OUTSIDE[check.id]))
    return pytest.param(check, id=check.id, marks=marks)


@pytest.mark.parametrize("check", [_pinned(c) for c in FINETUNE if c.kind == "memory"])
def test_finetune_peak_memory(check: Check) -> None:
    unit = check.metric.removeprefix("peak_memory_")
    assert check.ok, (
        f"{check.id}: predicted {check.predicted:.2f} {unit}, published {check.published} "
        f"{unit} ({check.error:+.1%}, tolerance {check.allowed:.0%})"
    )


@pytest.mark.parametrize("check", [_pinned(c) for c in FINETUNE if c.kind == "throughput"])
def test_finetune_tokens_per_s(check: Check) -> None:
    assert check.ok, (
        f"{check.id}: predicted {check.predicted:.0f} tokens/s per GPU, published "
        f"{check.published:g} ({check.error:+.1%}, tolerance {check.allowed:.0%})"
    )


def test_rows_cover_every_method_and_outside_names_real_rows() -> None:
    ids = {c.id for c in FINETUNE}
    assert len(FINETUNE) == 26 and set(OUTSIDE) <= ids
    assert {c.regime["finetune"] for c in FINETUNE} == {"full", "lora", "qlora"}
    assert {(c.kind, c.allowed) for c in FINETUNE} == {("memory", 0.10), ("throughput", 0.15)}
    by_id = {c.id: c for c in FINETUNE}
    # QLoRA's NF4 base must come out smaller than the same model's BF16 LoRA run: 9.3 GB
    # less of weights, less the two micro-batches of 4-bit matmul inputs that bitsandbytes
    # 0.42 holds (3.2 GB llama-2-7b, 3.7 GB mistral-7b); published 6.1 and 6.4 GB apart.
    for model in ("litgpt-finetune-llama-2-7b", "litgpt-finetune-mistral-7b"):
        assert by_id[f"{model}-qlora"].predicted < by_id[f"{model}-lora"].predicted - 5.0
    tt = "torchtune-flags-llama-3.2-3b"
    assert by_id[f"{tt}-qlora"].predicted < by_id[f"{tt}-lora"].predicted - 3.0
    # Activation checkpointing costs time and saves memory; LoRA skips the frozen weights'
    # gradient GEMMs, so it outruns full fine-tuning under the same recompute.
    full, ac = by_id[f"{tt}-full-chunked-ce"], by_id[f"{tt}-full-ac"]
    assert ac.predicted < full.predicted
    assert (
        by_id[f"{tt}-full-ac-throughput"].predicted
        < by_id[f"{tt}-full-chunked-ce-throughput"].predicted
    )
    assert by_id[f"{tt}-lora-throughput"].predicted > by_id[f"{tt}-full-ac-throughput"].predicted
    # A GiB row is compared in GiB: the CUDA context is the only thing taken off.
    assert by_id[f"{tt}-lora"].metric == "peak_memory_gib"
