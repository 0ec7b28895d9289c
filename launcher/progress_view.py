"""A job's training progress at a glance, read from ``progress/<rank>.jsonl``.

Part of the launcher's public read API (the CLI's ``jobs`` table, ``make run``'s
progress bar and the TUI use it). Standard library only; reads at most a small window
at the end of each file, so it stays cheap on long runs.

Record convention (``runtime.progress``): ``step`` counts optimizer steps since the
start of the job, ``tokens`` is the cumulative token count of all ranks together (every
rank reports the same value), ``step_time_s`` is the rank's wall time for the step.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contract.jobdir import JobDir, finite, tail_jsonl

_WINDOW_RECORDS = 20
_WINDOW_BYTES = 64 * 1024


@dataclass(frozen=True)
class ProgressSnapshot:
    """The latest progress of a job (every field None when nothing was reported yet)."""

    step: int | None = None
    """Newest step reported by rank 0 (or the lowest rank that reported)."""
    loss: float | None = None
    """Loss at that step."""
    tokens: int | None = None
    """Cumulative tokens of all ranks at that step."""
    tokens_per_s: float | None = None
    """Recent throughput of the whole job: tokens over wall time across the last records."""
    step_time_s: float | None = None
    """Median step time over the last records of the reporting rank."""
    world_size: int | None = None
    """World size of the newest record."""
    ranks_reporting: int = 0
    """How many progress files exist."""
    max_rss_mib: float | None = None
    """Largest ``max_rss_mib`` any rank reported (peak resident memory of one rank)."""
    ts: float | None = None
    """Time of the newest record, seconds since the epoch."""
    bubble_fraction: float | None = None
    """Median share of a step the reporting rank idled in its pipeline schedule (pipelined
    reference-trainer jobs only)."""
    state_mib: float | None = None
    """Largest ``state_mib`` any rank reported: its parameters, gradients and optimizer
    states, MiB (reference trainer)."""
    moe_tokens_per_expert: tuple[int, ...] | None = None
    """MoE: routed assignments each expert processed in the newest step (all ranks)."""
    moe_load_imbalance: float | None = None
    """MoE: the busiest expert's assignments over the mean, newest step (1.0 = even)."""
    moe_dropped_tokens: int | None = None
    """MoE: assignments dropped for capacity in the newest step."""
    moe_aux_loss: float | None = None
    """MoE: load-balancing loss of the newest step."""


def read_progress(job_dir: JobDir | Path) -> ProgressSnapshot:
    """Summarise the job's progress files (tolerant of torn or corrupt lines)."""
    jobdir = job_dir if isinstance(job_dir, JobDir) else JobDir(Path(job_dir))
    try:
        files = jobdir.progress_files()
    except OSError:
        return ProgressSnapshot()
    if not files:
        return ProgressSnapshot()
    lead: list[dict[str, Any]] = []
    newest: list[dict[str, Any]] = []
    for index, path in enumerate(files):
        records = tail_jsonl(path, _WINDOW_RECORDS, _WINDOW_BYTES)
        if index == 0 or not lead:
            lead = records
        newest += records[-1:]
    return summarise(
        lead,
        ranks_reporting=len(files),
        max_rss_mib=largest(newest, "max_rss_mib"),
        state_mib=largest(newest, "state_mib"),
    )


def largest(records: list[dict[str, Any]], key: str) -> float | None:
    """The largest finite ``key`` of the records (each rank's newest), None if none has it."""
    values = [v for v in (finite(r.get(key)) for r in records) if v is not None]
    return max(values) if values else None


def summarise(
    lead: list[dict[str, Any]],
    *,
    ranks_reporting: int,
    max_rss_mib: float | None,
    state_mib: float | None = None,
) -> ProgressSnapshot:
    """The snapshot from the lead rank's newest records, oldest first (pure; the TUI
    feeds it from its incremental reader)."""
    if not lead:
        return ProgressSnapshot(
            ranks_reporting=ranks_reporting, max_rss_mib=max_rss_mib, state_mib=state_mib
        )
    last = lead[-1]
    experts = expert_loads(last.get("moe_tokens_per_expert"))
    return ProgressSnapshot(
        step=_int(last.get("step")),
        loss=_loss(last.get("loss")),
        tokens=_int(last.get("tokens")),
        tokens_per_s=throughput(lead),
        step_time_s=_median([finite(r.get("step_time_s")) for r in lead]),
        world_size=_int(last.get("world_size")),
        ranks_reporting=ranks_reporting,
        max_rss_mib=max_rss_mib,
        ts=finite(last.get("ts")),
        bubble_fraction=_median([finite(r.get("bubble_fraction")) for r in lead]),
        state_mib=state_mib,
        moe_tokens_per_expert=experts,
        moe_load_imbalance=load_imbalance(experts),
        moe_dropped_tokens=_int(last.get("moe_dropped_tokens")),
        moe_aux_loss=finite(last.get("moe_aux_loss")),
    )


def expert_loads(value: Any) -> tuple[int, ...] | None:
    """``moe_tokens_per_expert`` as a tuple; None unless every entry is a finite count."""
    if not isinstance(value, list) or not value:
        return None
    counts = [finite(v) for v in value]
    if any(c is None or c < 0 for c in counts):
        return None
    return tuple(int(c) for c in counts if c is not None)


def load_imbalance(loads: tuple[int, ...] | None) -> float | None:
    """Expert load imbalance: the busiest expert's tokens over the mean (1.0 is an even
    load; E experts: E when one took everything). Wang et al. 2024, "Auxiliary-Loss-Free
    Load Balancing Strategy for Mixture-of-Experts" (arXiv 2408.15664), measure balance
    as MaxVio = max/mean - 1: this figure is MaxVio + 1."""
    if not loads or sum(loads) == 0:
        return None
    return max(loads) / (sum(loads) / len(loads))


def throughput(records: list[dict[str, Any]]) -> float | None:
    """Tokens per second over a run of one rank's records (cumulative ``tokens``, ``ts``).

    Uses the span between the first and last record, so logging jitter averages out;
    falls back to the newest record's own ``tokens_per_s`` when fewer than two records
    carry tokens.
    """
    points = [
        (ts, tokens)
        for ts, tokens in ((finite(r.get("ts")), finite(r.get("tokens"))) for r in records)
        if ts is not None and tokens is not None
    ]
    if len(points) >= 2:
        (t0, k0), (t1, k1) = points[0], points[-1]
        if t1 > t0 and k1 >= k0:
            return (k1 - k0) / (t1 - t0)
    return finite(records[-1].get("tokens_per_s")) if records else None


def _loss(value: Any) -> float | None:
    # A NaN or infinite loss is news the reader must see, so it is kept.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _int(value: Any) -> int | None:
    number = finite(value)
    return int(number) if number is not None else None


def _median(values: list[float | None]) -> float | None:
    present = sorted(v for v in values if v is not None)
    if not present:
        return None
    middle = len(present) // 2
    if len(present) % 2:
        return present[middle]
    return (present[middle - 1] + present[middle]) / 2
