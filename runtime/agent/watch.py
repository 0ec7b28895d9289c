"""Progress of the ranks, read from ``progress/<rank>.jsonl``: hang and straggler checks.

The policy functions are pure (numbers in, decision out); :class:`ProgressWatcher` does
the incremental file reading (each poll reads only the bytes appended since the last).

Hang timeout (``hang_timeout_s``): ``max(floor_s, multiplier × slowest recent gap)``, where
a gap is the time between two consecutive steps of one rank in one generation of
workers. Gaps, not ``step_time_s``: a gap also holds the checkpoint and evaluation pauses
that happen between steps, which must not look like a hang. Before a rank's first step of
a generation (start-up: imports, rendezvous, checkpoint load, compilation) the allowance
is ``startup_s`` instead. Detection is armed only once the job has reported progress at
all (a script that never reports cannot be told from a hung one) and is off once the
generation has recorded ``training_complete`` in events.jsonl (after the last step the
ranks save, tear down and exit; there is no next step to wait for). Scripts other than
the reference trainer can say so with ``runtime.progress.event("training_complete")``.

Straggler (``find_stragglers``): per rank, the median over its last ``window`` steps of
the per-step compute time (``compute_s`` from the reference trainer: forward compute
outside collectives; ``step_time_s`` for scripts that report only that); a rank whose
median exceeds ``(1 + threshold) ×`` the median of the other ranks' medians, and by at
least ``min_excess_s`` (so millisecond jitter of tiny steps is no straggler), is a
straggler. Medians, so a single slow step (GC, a page fault storm) does not count; the
whole window must be slow for the median to move.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from contract.events import EventKind
from contract.jobdir import JobDir, read_jsonl


def hang_timeout_s(gaps: Iterable[float], floor_s: float, multiplier: float) -> float:
    """How long a rank may go without a step before it counts as hung (see module doc)."""
    slowest = max(gaps, default=0.0)
    return max(floor_s, multiplier * slowest)


@dataclass(frozen=True)
class Stall:
    """A local rank that has not reported a step for too long."""

    rank: int
    silent_s: float
    """Seconds since its last step (or since the generation started, before its first)."""
    allowed_s: float
    """The timeout that applied."""
    last_step: int | None
    """Its last reported step in this generation, None before the first."""


def stalled(
    ranks: Iterable[int],
    last_seen: dict[int, tuple[int, float]],
    generation_start_ts: float,
    now_ts: float,
    timeout_s: float,
    startup_s: float,
) -> list[Stall]:
    """Local ranks silent for longer than allowed.

    ``last_seen`` maps rank to (step, ts) of its newest record of this generation.
    """
    found: list[Stall] = []
    for rank in ranks:
        seen = last_seen.get(rank)
        if seen is None:
            silent, allowed, step = now_ts - generation_start_ts, startup_s, None
        else:
            silent, allowed, step = now_ts - seen[1], timeout_s, seen[0]
        if silent >= allowed:
            found.append(Stall(rank, round(silent, 3), round(allowed, 3), step))
    return found


def find_stragglers(
    medians: dict[int, float], threshold: float, min_excess_s: float = 0.0
) -> dict[int, float]:
    """Ranks whose median step metric exceeds the others' by more than ``threshold``.

    Returns rank → ratio (its median over the median of the other ranks' medians).
    Needs at least two ranks.
    """
    out: dict[int, float] = {}
    if len(medians) < 2:
        return out
    for rank, value in medians.items():
        others = [v for r, v in medians.items() if r != rank]
        reference = statistics.median(others)
        slow = value > (1.0 + threshold) * reference and value - reference >= min_excess_s
        if reference > 0 and slow:
            out[rank] = round(value / reference, 3)
    return out


@dataclass
class _RankState:
    offset: int = 0
    last: tuple[int, float] | None = None
    """(step, ts) of the newest record of the current generation."""
    window: deque[float] = field(default_factory=deque)


class ProgressWatcher:
    """Reads every rank's progress file incrementally; keeps what the checks need."""

    def __init__(self, job: JobDir, straggler_window: int = 20, gap_window: int = 256) -> None:
        self.job = job
        self.straggler_window = straggler_window
        self.gaps: deque[float] = deque(maxlen=gap_window)
        self.generation_start_ts = 0.0
        self.ever_progressed = False
        """Whether any rank of the job has ever reported a step (arms hang detection)."""
        self.max_step: int | None = None
        self.completed = False
        """A ``training_complete`` event was recorded in this generation."""
        self._ranks: dict[int, _RankState] = {}
        self._events_offset = 0

    def new_generation(self, start_ts: float) -> None:
        """Workers were (re)started at ``start_ts``: forget per-generation state."""
        self.generation_start_ts = start_ts
        self.completed = False
        for state in self._ranks.values():
            state.last = None
            state.window = deque(maxlen=self.straggler_window)

    def poll(self) -> None:
        chunk = read_jsonl(self.job.events, self._events_offset)
        self._events_offset = chunk.offset
        for record in chunk.records:
            ts = record.get("ts")
            if record.get("event") == EventKind.TRAINING_COMPLETE and isinstance(ts, int | float):
                self.completed = self.completed or ts >= self.generation_start_ts
        for path in self.job.progress_files():
            stem = path.stem
            if not stem.isdigit():
                continue
            state = self._ranks.setdefault(
                int(stem), _RankState(window=deque(maxlen=self.straggler_window))
            )
            self._read(path, state)

    def _read(self, path: Path, state: _RankState) -> None:
        chunk = read_jsonl(path, state.offset)
        state.offset = chunk.offset
        for record in chunk.records:
            step, ts = record.get("step"), record.get("ts")
            if not isinstance(step, int) or not isinstance(ts, int | float):
                continue
            self.ever_progressed = True
            self.max_step = step if self.max_step is None else max(self.max_step, step)
            if ts < self.generation_start_ts:
                continue  # written by an earlier generation, read late
            if state.last is not None and step == state.last[0] + 1:
                self.gaps.append(ts - state.last[1])
            state.last = (step, float(ts))
            metric = record.get("compute_s") or record.get("step_time_s")
            if isinstance(metric, int | float) and metric > 0:
                state.window.append(float(metric))

    def last_seen(self) -> dict[int, tuple[int, float]]:
        return {r: s.last for r, s in self._ranks.items() if s.last is not None}

    def medians(self) -> dict[int, float]:
        """Per rank, the median metric of its last ``straggler_window`` steps (full windows)."""
        return {
            rank: statistics.median(state.window)
            for rank, state in self._ranks.items()
            if len(state.window) >= self.straggler_window
        }

    def timeout_s(self, floor_s: float, multiplier: float) -> float:
        return hang_timeout_s(self.gaps, floor_s, multiplier)
