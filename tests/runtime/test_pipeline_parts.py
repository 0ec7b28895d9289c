"""Pipeline parts without processes: stage sizes as the planner counts them, looped
placement, evaluation padding, and the bad inputs a plan can carry."""

from __future__ import annotations

import pytest

from contract.plan import PlanError, parse_plan
from contract.plan_layout import resolve_layout
from runtime.train.parallel import LayoutError
from runtime.train.pipeline import eval_calls, layer_ranges, stage_ids, stage_layer_counts


@pytest.mark.parametrize(
    ("layers", "stages", "uneven", "counts"),
    [
        (4, 2, False, [2, 2]),
        (4, 4, False, [1, 1, 1, 1]),
        (5, 2, False, [3, 2]),
        (6, 2, True, [3, 3]),  # (6 + 2) / 2 = 4 each, then one fewer on first and last
        (8, 4, True, [1, 3, 3, 1]),  # 10 over 4: the middle first, then -1 at the ends
        (126, 16, True, [7, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 7]),  # Llama 3 405B
    ],
)
def test_stage_sizes(layers: int, stages: int, uneven: bool, counts: list[int]) -> None:
    got = stage_layer_counts(layers, stages, uneven)
    assert got == counts and sum(got) == layers
    # The most loaded stage holds what the planner counts (planner/terms/shapes.py); with
    # two uneven stages there is no middle one, and the planner counts one block too many.
    extra = 2 if uneven else 0
    if not (uneven and stages == 2):
        assert max(got) == -(-(layers + extra) // stages)


def test_too_many_stages_name_the_knobs() -> None:
    with pytest.raises(LayoutError, match="8 virtual stages for 4 layers"):
        stage_layer_counts(4, 8, False)
    with pytest.raises(LayoutError, match="uneven stages"):
        stage_layer_counts(4, 4, True)


def test_looped_placement_and_ranges() -> None:
    assert [stage_ids(r, 2, 2) for r in range(2)] == [[0, 2], [1, 3]]
    assert layer_ranges([2, 1, 3]) == [range(0, 2), range(2, 3), range(3, 6)]


def test_eval_calls_pad_to_the_longest_rank() -> None:
    # 5 rows here, 7 on the longest rank, micro-batches of 2, 2 per call: 2 calls each.
    assert eval_calls(5, 7, 2, 2) == [[(0, 2), (2, 4)], [(4, 5), (5, 5)]]
    assert eval_calls(0, 1, 2, 2) == [[(0, 0), (0, 0)]]


def _plan(**layout: object) -> dict[str, object]:
    return {
        "model": {"num_layers": 4, "num_attention_heads": 4, "num_kv_heads": 2},
        "training": {"seq_len": 16, "global_batch_seqs": 8},
        "layout": {"dp": 2, "micro_batch": 2, **layout},
    }


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ({"pp": 2, "interleave": 4}, "layout.pp x layout.interleave = 8 virtual stages"),
        ({"pp": 4, "uneven_stages": True}, "(uneven stages: two more)"),
        ({"pp": 2, "schedule": "zero-bubble"}, "layout.schedule 'zero-bubble': use one of"),
        ({"pp": 2, "interleave": 0}, "layout.interleave 0: must be 1 or more"),
    ],
)
def test_bad_pipeline_plans_name_the_field(layout: dict[str, object], message: str) -> None:
    with pytest.raises(PlanError, match=message.replace("(", r"\(").replace(")", r"\)")):
        resolve_layout(parse_plan(_plan(**layout), "plan"))


def test_a_good_pipeline_plan_resolves() -> None:
    resolved = resolve_layout(parse_plan(_plan(pp=2, interleave=2, schedule="1f1b"), "plan"))
    assert resolved.world_size == 4 and resolved.grad_accum == 2
