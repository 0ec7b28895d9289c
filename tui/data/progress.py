"""A job's training curves from ``progress/<rank>.jsonl``, read incrementally.

Record shape (``runtime.progress``): ``ts``, ``rank``, ``step``, ``loss``, ``tokens``
(cumulative, all ranks together, the same on every rank), ``step_time_s``,
``world_size`` and extras such as ``tokens_per_s``, ``eval_loss``, ``max_rss_mib``.

The lead rank (the lowest rank number that has a file, normally 0) gives the curves;
every rank's newest record gives the peak resident memory. A step reported again after
a restart (the run resumed from an older checkpoint) replaces the points after it, so
the curve shows the run as it now stands.
"""

from __future__ import annotations

import bisect
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from launcher.jobdir import JobDir
from tui.data.follow import JsonlTail
from tui.text import finite

MAX_POINTS = 20_000
"""Points kept per curve (older ones are thinned out by half when the limit is hit)."""
RECENT = 20
OTHER_RANKS_EVERY = 5
"""The other ranks' files (only their peak memory is shown) are read every this many polls."""
"""Records of the lead rank that give the "now" figures (median step time, tokens/s)."""


@dataclass(frozen=True)
class ProgressNow:
    """The latest figures of a job (None when not reported)."""

    step: int | None = None
    loss: float | None = None
    tokens: int | None = None
    tokens_per_s: float | None = None
    """Tokens over wall time across the recent records of the lead rank."""
    step_time_s: float | None = None
    """Median step time over the recent records."""
    world_size: int | None = None
    ts: float | None = None
    ranks_reporting: int = 0
    max_rss_mib: float | None = None
    """Largest ``max_rss_mib`` in any rank's newest record."""


@dataclass(frozen=True)
class Curves:
    """Copies of the curves for drawing (x = step)."""

    steps: tuple[float, ...] = ()
    loss: tuple[float | None, ...] = ()
    tokens_per_s: tuple[float | None, ...] = ()
    eval_steps: tuple[float, ...] = ()
    eval_loss: tuple[float | None, ...] = ()


def window_rate(records: list[dict[str, Any]]) -> float | None:
    """Tokens per second between the first and the last record that carry ``ts`` and
    ``tokens`` (cumulative), else the newest record's own ``tokens_per_s``."""
    first = next((p for p in (_point(r) for r in records) if p is not None), None)
    last = next((p for p in (_point(r) for r in reversed(records)) if p is not None), None)
    if first is not None and last is not None:
        (t0, k0), (t1, k1) = first, last
        if t1 > t0 and k1 >= k0:
            return (k1 - k0) / (t1 - t0)
    return finite(records[-1].get("tokens_per_s")) if records else None


def _point(record: dict[str, Any]) -> tuple[float, float] | None:
    ts, tokens = finite(record.get("ts")), finite(record.get("tokens"))
    return (ts, tokens) if ts is not None and tokens is not None else None


def recent_figures(records: list[dict[str, Any]]) -> tuple[float | None, float | None]:
    """(tokens/s, median step time) over a run of one rank's records."""
    rate = window_rate(records)
    times = [t for t in (finite(r.get("step_time_s")) for r in records) if t is not None]
    return rate, (statistics.median(times) if times else None)


@dataclass
class ProgressSeries:
    """Follows a job's progress files; ``poll`` each tick, then read ``now``/``curves``."""

    jobdir: JobDir
    window_bytes: int = 4 << 20
    lead: JsonlTail | None = None
    others: dict[Path, JsonlTail] = field(default_factory=dict)
    last_by_rank: dict[Path, dict[str, Any]] = field(default_factory=dict)
    steps: list[float] = field(default_factory=list)
    loss: list[float | None] = field(default_factory=list)
    rate: list[float | None] = field(default_factory=list)
    eval_steps: list[float] = field(default_factory=list)
    eval_loss: list[float | None] = field(default_factory=list)
    recent: list[dict[str, Any]] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    polls: int = 0
    _listed_mtime: int = -1

    def poll(self) -> None:
        self._list_files()
        if not self.files:
            return
        lead_path = self.files[0]
        if self.lead is None or self.lead.path != lead_path:
            self.lead = JsonlTail(lead_path, self.window_bytes)
            self._clear()
        for record in self.lead.poll():
            self._add(record)
        if self.recent:
            self.last_by_rank[lead_path] = self.recent[-1]
        self.polls += 1
        if self.polls % OTHER_RANKS_EVERY != 1 and self.last_by_rank.keys() >= set(self.files):
            return
        for path in self.files[1:]:
            tail = self.others.get(path)
            if tail is None:
                # Only the newest record of the other ranks is needed.
                tail = self.others[path] = JsonlTail(path, 16 * 1024)
            records = tail.poll()
            if records:
                self.last_by_rank[path] = records[-1]

    def _list_files(self) -> None:
        directory = self.jobdir.progress_dir
        try:
            mtime = os.stat(directory).st_mtime_ns
        except OSError:
            self.files = []
            return
        if mtime == self._listed_mtime:
            return
        self._listed_mtime = mtime
        try:
            self.files = self.jobdir.progress_files()
        except OSError:
            self.files = []

    def _clear(self) -> None:
        for values in (self.steps, self.loss, self.rate, self.eval_steps, self.eval_loss):
            values.clear()
        self.recent.clear()

    def _add(self, record: dict[str, Any]) -> None:
        step = finite(record.get("step"))
        if step is None:
            return
        if self.steps and step <= self.steps[-1]:
            # Resumed from an earlier checkpoint: the curve continues from there.
            cut = bisect.bisect_left(self.steps, step)
            for values in (self.steps, self.loss, self.rate):
                del values[cut:]
            cut = bisect.bisect_left(self.eval_steps, step)
            del self.eval_steps[cut:]
            del self.eval_loss[cut:]
            # "Now" figures start again with the new attempt (no downtime in the rate).
            self.recent.clear()
        loss = record.get("loss")
        self.steps.append(step)
        self.loss.append(float(loss) if isinstance(loss, int | float) else None)
        self.recent.append(record)
        del self.recent[:-RECENT]
        rate = finite(record.get("tokens_per_s"))
        if rate is None:
            rate, _ = recent_figures(self.recent[-2:])
        self.rate.append(rate)
        if "eval_loss" in record:
            self.eval_steps.append(step)
            self.eval_loss.append(finite(record.get("eval_loss")))
        if len(self.steps) > MAX_POINTS:
            self.steps[:] = self.steps[::2]
            self.loss[:] = self.loss[::2]
            self.rate[:] = self.rate[::2]

    @property
    def bad_lines(self) -> int:
        tails = [self.lead, *self.others.values()] if self.lead else list(self.others.values())
        return sum(t.bad_lines for t in tails if t is not None)

    def now(self) -> ProgressNow:
        if not self.recent:
            return ProgressNow(ranks_reporting=len(self.files), max_rss_mib=self._max_rss())
        last = self.recent[-1]
        rate, step_time = recent_figures(self.recent)
        step, tokens, world = (finite(last.get(k)) for k in ("step", "tokens", "world_size"))
        return ProgressNow(
            step=int(step) if step is not None else None,
            loss=self.loss[-1] if self.loss else None,
            tokens=int(tokens) if tokens is not None else None,
            tokens_per_s=rate,
            step_time_s=step_time,
            world_size=int(world) if world is not None else None,
            ts=finite(last.get("ts")),
            ranks_reporting=len(self.files),
            max_rss_mib=self._max_rss(),
        )

    def _max_rss(self) -> float | None:
        values = [finite(r.get("max_rss_mib")) for r in self.last_by_rank.values()]
        present = [v for v in values if v is not None]
        return max(present) if present else None

    def curves(self) -> Curves:
        return Curves(
            steps=tuple(self.steps),
            loss=tuple(self.loss),
            tokens_per_s=tuple(self.rate),
            eval_steps=tuple(self.eval_steps),
            eval_loss=tuple(self.eval_loss),
        )
