"""A ring-attention plan exports only to the framework whose ring it was priced as
(``training.ring_attention``): Megatron-LM runs Transformer Engine's ring, torchtitan
torch's ``context_parallel``; the refusal is one line naming the field and the fix."""

from __future__ import annotations

from typing import Any

import pytest

from planner.export_frameworks import framework_arguments
from planner.export_plan import ExportError
from tests.planner.export_fixtures import export_of

RUNS = {"megatron": "te", "torchtitan": "torch"}
"""Whose ring each target runs."""


@pytest.mark.parametrize("target", sorted(RUNS))
@pytest.mark.parametrize("priced", ["te", "torch", None])
def test_only_the_ring_the_target_runs_exports(target: str, priced: str | None) -> None:
    training: dict[str, Any] = {} if priced is None else {"ring_attention": priced}
    export = export_of(training=training, cp=2, dp=8, cp_impl="ring")
    # A plan written before the field does not say which ring it priced: it exports.
    if priced is None or priced == RUNS[target]:
        framework_arguments(export, target)
        return
    with pytest.raises(ExportError) as info:
        framework_arguments(export, target)
    assert str(info.value).startswith(f"plan training.ring_attention {priced!r}: ")
    assert str(info.value).endswith(f"plan with --ring-attention {RUNS[target]}")
    # Without context parallelism, or gathering K/V instead (Megatron-LM), no ring to price.
    framework_arguments(export_of(training=training, cp=1, dp=16, cp_impl="ring"), target)
    if target == "megatron":
        framework_arguments(export_of(training=training, cp=2, dp=8, cp_impl="allgather"), target)


def test_torchtitan_has_no_allgather_context_parallelism() -> None:
    """torchtitan's context parallelism is torch's ring (``context_parallel``); the Llama 3
    all-gather variant the plan priced is Megatron-LM's ``--cp-comm-type all_gather``."""
    allgather = export_of(cp=2, dp=8, cp_impl="allgather")
    with pytest.raises(ExportError, match=r"^plan layout.cp_impl 'allgather': torchtitan"):
        framework_arguments(allgather, "torchtitan")
    framework_arguments(export_of(cp=1, dp=16, cp_impl="allgather"), "torchtitan")
