"""Published LoRA/QLoRA peak memory (finetune.yaml) against the planner (issue 19 item 1)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.validation.cases import Check
from tests.validation.finetune import finetune_checks

FINETUNE = list(finetune_checks())

_QLORA_GAP = (
    "measured with bitsandbytes 0.42.0 (litgpt's pin until d2ed13c3, 2024-12), whose "
    "MatMul4Bit keeps every 4-bit layer's input as ctx.tensors although the frozen weight "
    "needs no gradient (bitsandbytes PR #1270, fixed in 0.43.2); a ctx attribute is not "
    "released by backward, and litgpt's loop still holds the previous micro-batch's logits "
    "(hence its graph) during the next forward, so two micro-batches' inputs of the QKV, "
    "output, FC and down projections, 2 x (3h + ffn) x 2 bytes per token and layer, sit on "
    "top of what a current bitsandbytes run holds (3.1 GB llama-2-7b, 3.5 GB mistral-7b and "
    "llama-3-8b), plus the dequantised FP16 and BF16 copies of the 4-bit lm_head that "
    "Lightning's plugin also quantises; the planner models current bitsandbytes"
)
OUTSIDE = {
    "litgpt-finetune-llama-2-7b-qlora": _QLORA_GAP,
    "litgpt-finetune-llama-3-8b-qlora": _QLORA_GAP,
    "litgpt-finetune-mistral-7b-qlora": _QLORA_GAP,
}
"""Rows the planner models but misses by more than their tolerance: each is pinned to
fail, so fixing one makes its test fail until it moves out of this list."""


def _pinned(check: Check) -> Any:
    marks = []
    if check.id in OUTSIDE:
        marks.append(pytest.mark.xfail(strict=True, reason=OUTSIDE[check.id]))
    return pytest.param(check, id=check.id, marks=marks)


@pytest.mark.parametrize("check", [_pinned(c) for c in FINETUNE])
def test_finetune_peak_memory(check: Check) -> None:
    assert check.ok, (
        f"{check.id}: predicted {check.predicted:.2f} GB, published {check.published} GB "
        f"({check.error:+.1%}, tolerance {check.allowed:.0%})"
    )


def test_rows_cover_lora_and_qlora_and_outside_names_real_rows() -> None:
    ids = {c.id for c in FINETUNE}
    assert len(FINETUNE) == 6 and set(OUTSIDE) <= ids
    assert {c.layout.split()[4] for c in FINETUNE} == {"lora", "qlora"}
    # QLoRA's NF4 base must come out smaller than the same model's BF16 LoRA run.
    by_id = {c.id: c for c in FINETUNE}
    for model in ("llama-2-7b", "mistral-7b"):
        lora = by_id[f"litgpt-finetune-{model}-lora"]
        qlora = by_id[f"litgpt-finetune-{model}-qlora"]
        assert qlora.predicted < lora.predicted - 8.0
