"""Published fine-tuning peak memory and tokens/s (finetune.yaml) against the planner
(issue 19 item 1)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.validation.cases import Check
from tests.validation.finetune import finetune_checks

FINETUNE = list(finetune_checks())

_LORA_GAP = (
    "activation offloading moves the 28 checkpointed layer inputs (1.3 GiB) to host memory; "
    "the planner's Layout.activation_offload is a fraction below 1 of each layer's "
    "activations, not torchtune's offload of every saved tensor over 1 KiB, so it is not "
    "set here. With it taken off the planner is still {rest}; not explained further (the "
    "published peak leaves 1.85 GiB beyond weights, adapters and their states in both "
    "rows, less than the BF16 logits alone, 1.96 GiB, that the chunked loss keeps, so the "
    "source's peak may not include the whole logits tensor)"
)
_RESERVED_AT_INIT = (
    "the figure is max_memory_reserved: the same table publishes 9.13 GB reserved after "
    "model init, before any training step, and training adds 0.16 GB to it. The planner "
    "now counts init's allocations (training.nf4_init_unchunked: the NF4 model plus torchao "
    "0.1's whole-tensor to_nf4 of the largest matrix, 7.1 GB), not the blocks the caching "
    "allocator keeps reserved beyond them (about 2 GB), which depend on the order and sizes "
    "of init's allocations; not modelled"
)
OUTSIDE = {
    "torchtune-flags-llama-3.2-3b-full-packed": (
        "the uncompiled run holds 9.0 GiB more than the compiled one (the next row, which "
        "the planner meets within 2 %), while the planner's saved activations do not depend "
        "on kernels (50.3 GiB for both: its eager kernels cost time, not memory); eager "
        "PyTorch keeps FP32 intermediates of RMSNorm, rotary and SwiGLU for the backward "
        "that compiled kernels recompute; not modelled"
    ),
    "torchtune-flags-llama-3.2-3b-full-ac": (
        "the planner is 3.7 GiB over (28.6 GiB: 23.9 of BF16 weights, gradients and AdamW "
        "states, which the published no-checkpointing rows bear out, 3.8 of checkpointed "
        "layer inputs and chunked-loss logits, 0.9 of workspace and fragmentation "
        "allowance); not explained further"
    ),
    "torchtune-tutorials-llama-2-7b-lora-all-r8": (
        "max_memory_reserved: the caching allocator's cached blocks on top of the step's "
        "allocations; all four LoRA rows of the table are 9-10 % under the planner's "
        "allocated peak, this one 10.1 % (the planner's fragmentation allowance is 5 % of "
        "activations and workspace, constants.yaml allocator_fragmentation, not a share of "
        "the weights' reservation); not modelled"
    ),
    "torchtune-tutorials-llama-2-7b-qlora": _RESERVED_AT_INIT,
    "torchtune-readme-llama-3.1-8b-lora-4090": (
        "the published peak is below what the recipe must hold at the end of its forward: "
        "the frozen BF16 weights (14.96 GiB), the BF16 logits the chunked loss keeps for its "
        "backward (2 x 2048 x 128256 x 2 bytes, 0.98 GiB) and the checkpointed layer inputs "
        "(32 x 4096 x 4096 x 2 bytes, 1.0 GiB) come to 16.9 GiB against 16.2 published; the "
        "table does not say which logged peak it shows, and its stated settings cannot give "
        "it"
    ),
    "torchtune-readme-llama-3.1-8b-qlora-4090": (
        "the published 7.4 GiB is just what the recipe must hold at the end of its forward: "
        "NF4 blocks with BF16 embedding and output (5.3 GiB), the BF16 logits the chunked "
        "loss keeps (0.98 GiB), the checkpointed layer inputs (1.0 GiB) and the adapters' "
        "BF16 gradients and states (0.1 GiB); the planner adds one chunk's FP32 logits "
        "(0.25 GiB) and 1.1 GiB of dequantisation buffer, workspace and fragmentation "
        "allowance that the run shows no room for; not explained further"
    ),
    "torchtune-flags-llama-3.2-3b-lora": _LORA_GAP.format(rest="18 % over (10.0 GiB)"),
    "torchtune-flags-llama-3.2-3b-qlora": _LORA_GAP.format(rest="37 % over (6.3 GiB)"),
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
