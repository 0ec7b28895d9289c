"""A job's training curves from ``progress/<rank>.jsonl``, read incrementally.

Record shape (``runtime.progress``): ``ts``, ``rank``, ``step``, ``loss``, ``tokens``
(cumulative, all ranks together, the same on every rank), ``step_time_s``,
``world_size`` and extras such as ``tokens_per_s``, ``eval_loss``, ``max_rss_mib``,
``state_mib``, ``bubble_fraction`` and an MoE model's ``moe_*`` routing figures.

The lead rank (the lowest rank number that has a file, normally 0) gives the curves and
the routing figures (all-reduced, the same on every rank); every rank's newest record
gives the peak resident memory and the largest state memory. A step reported again after
a restart (the run resumed from an older checkpoint) replaces the points after it, so
the curve shows the run as it now stands.
"""

from __future__ import annotations

import bisect
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contract.jobdir import JobDir
from launcher.progress_view import ProgressSnapshot, largest, summarise, throughput
from tui.data.follow import JsonlTail
from tui.text import finite

MAX_POINTS = 20_000
"""Points kept per curve (older ones are thinned out by half when the limit is hit)."""
RECENT = 20
"""Records of the lead rank that give the "now" figures (median step time, tokens/s)."""
OTHER_RANKS_EVERY = 5
"""The other ranks' files (only their peak memory is shown) are read every this many polls."""


@dataclass(frozen=True)
class Curves:
    """Copies of the curves for drawing (x = step)."""

    steps: tuple[float, ...] = ()
    loss: tuple[float | None, ...] = ()
    tokens_per_s: tuple[float | None, ...] = ()
    eval_steps: tuple[float, ...] = ()
    eval_loss: tuple[float | None, ...] = ()


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
            rate = throughput(self.recent[-2:])
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

    def now(self) -> ProgressSnapshot:
        """The latest figures, computed as ``scalectl jobs`` computes them."""
        newest = list(self.last_by_rank.values())
        return summarise(
            self.recent,
            ranks_reporting=len(self.files),
            max_rss_mib=largest(newest, "max_rss_mib"),
            state_mib=largest(newest, "state_mib"),
        )

    def curves(self) -> Curves:
        return Curves(
            steps=tuple(self.steps),
            loss=tuple(self.loss),
            tokens_per_s=tuple(self.rate),
            eval_steps=tuple(self.eval_steps),
            eval_loss=tuple(self.eval_loss),
        )
