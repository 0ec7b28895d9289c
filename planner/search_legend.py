"""What ``plan search`` prints under its table: the meaning of the layout codes shown
(``planner.search_explain.describe_layout`` writes them), and the rows that stand for
several layouts with the same prediction. Pure; ``planner.render_search`` draws it."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

from planner.result import Estimate

_SHARDING = {
    "none": "no sharding, each data-parallel rank holds all state (DDP)",
    "zero1": "optimizer state sharded (ZeRO-1)",
    "zero2": "optimizer state and gradients sharded (ZeRO-2)",
    "zero3": "parameters, gradients, optimizer state sharded (ZeRO-3, FSDP)",
    "hsdp": "ZeRO-3 inside shard groups, replicated across them (HSDP)",
}
_DEGREES = "tp/pp/cp/dp: tensor-, pipeline-, context-, data-parallel degrees"

_CODES: list[tuple[str, str, str]] = [
    # (pattern, code with N, meaning with N): N is the number in the code
    (r"ep(\d+)", "epN", "N expert-parallel ranks (MoE)"),
    (r"etp(\d+)", "etpN", "tensor-parallel degree N inside each expert"),
    (r"hsdp/(\d+)", "hsdp/N", "HSDP, shards of N GPUs"),
    (r"mb(\d+)", "mbN", "N sequences per micro-batch"),
    (r"v(\d+)", "vN", "N virtual stages per pipeline rank (interleave)"),
    (r"sp()", "sp", "sequence parallelism"),
    (r"gpipe()", "gpipe", "all forwards, then all backwards (not 1F1B)"),
    (r"N(\d+)", "NN", "N micro-batches per chunk before the next chunk"),
    (r"uneven()", "uneven", "first and last pipeline stages hold fewer layers"),
    (r"keep-outputs()", "keep-outputs", "stage outputs kept until their backward"),
    (r"sel-rc()", "sel-rc", "selective recompute"),
    (r"full-rc()", "full-rc", "full recompute"),
    (r"offload(\d+)%", "offloadN%", "N% of activations in host memory"),
]
_DEGREE = re.compile(r"(tp|pp|cp|dp)\d+")


def _explain(code: str, meaning: str, values: list[str]) -> str:
    """``v5: 5 virtual stages ...`` for one value; ``vN: N virtual stages ...`` for more."""
    if len(values) == 1 and values[0]:
        said = meaning.replace("N sequences", "1 sequence") if values[0] == "1" else meaning
        return f"{code.replace('N', values[0], 1)}: {said.replace('N', values[0], 1)}"
    return f"{code}: {meaning}"


def legend(layouts: Iterable[str], collapsed: bool = False) -> str:
    """One line explaining each code that occurs in ``layouts``, in the order of
    ``describe_layout``; ``collapsed``: some row stands for several layouts (``×N``)."""
    degrees = False
    shardings: list[str] = []
    found: dict[int, list[str]] = {}
    for layout in layouts:
        for word in layout.split():
            if _DEGREE.fullmatch(word):
                degrees = True
            elif word in _SHARDING:
                shardings += [word] if word not in shardings else []
            else:
                for i, (pattern, _, _) in enumerate(_CODES):
                    match = re.fullmatch(pattern, word)
                    if match:
                        values = found.setdefault(i, [])
                        values += [match[1]] if match[1] not in values else []
                        break
    parts = [_DEGREES] if degrees else []
    parts += [f"{word}: {_SHARDING[word]}" for word in shardings]
    parts += [_explain(_CODES[i][1], _CODES[i][2], found[i]) for i in sorted(found)]
    if collapsed:
        parts.append(
            "×N: N layouts with the same predicted step time and memory (the knobs that "
            "differ change nothing there; --json lists each)"
        )
    return " · ".join(parts)


@dataclass(frozen=True)
class Row:
    """One row of the search table: the best of a group of equivalent layouts."""

    rank: int
    """1-based position in ``result.ranked`` (what ``--pick`` takes)."""
    estimate: Estimate
    why: str
    count: int = 1
    """Layouts this row stands for (same GPUs, step time and memory)."""


def _same(a: Estimate, b: Estimate) -> bool:
    return (
        a.layout.num_gpus == b.layout.num_gpus
        and math.isclose(a.step.time_s, b.step.time_s, rel_tol=1e-9)
        and math.isclose(a.memory_gib.total, b.memory_gib.total, rel_tol=1e-9)
    )


def collapse(ranked: list[Estimate], why_not: list[str]) -> list[Row]:
    """The ranked layouts with those that predict the same as a better-ranked one folded
    into its row (a knob with no effect at that degree lists the same layout twice)."""
    rows: list[Row] = []
    for rank, (est, why) in enumerate(zip(ranked, why_not, strict=True), start=1):
        for i, row in enumerate(rows):
            if _same(row.estimate, est):
                rows[i] = Row(row.rank, row.estimate, row.why, row.count + 1)
                break
        else:
            rows.append(Row(rank, est, why))
    return rows
