"""``launcher.progress_view``: the progress figures ``scalectl jobs``, ``make run`` and
the TUI show, from ``progress/<rank>.jsonl``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from contract.jobdir import JobDir, finite
from launcher.progress_view import ProgressSnapshot, read_progress, summarise, throughput


def _record(step: int, *, rank: int = 0, **extra: object) -> dict[str, object]:
    record: dict[str, object] = {
        "ts": 1000.0 + 2.0 * step,
        "rank": rank,
        "step": step,
        "loss": 5.0 - 0.1 * step,
        "tokens": 4096 * step,
        "step_time_s": 2.0 + 0.01 * step,
        "world_size": 2,
        "max_rss_mib": 1000.0 + rank,
    }
    record.update(extra)
    return record


def _write(jobdir: JobDir, rank: int, lines: list[str]) -> None:
    jobdir.progress_dir.mkdir(parents=True, exist_ok=True)
    jobdir.progress_file(rank).write_text("".join(line + "\n" for line in lines))


def test_no_progress_yet_is_an_empty_snapshot(tmp_path: Path) -> None:
    assert read_progress(tmp_path / "missing") == ProgressSnapshot()
    jobdir = JobDir(tmp_path / "job")
    jobdir.create()
    assert read_progress(jobdir) == ProgressSnapshot()


def test_figures_come_from_the_lead_rank_and_memory_from_every_rank(tmp_path: Path) -> None:
    jobdir = JobDir(tmp_path / "job")
    jobdir.create()
    _write(jobdir, 0, [json.dumps(_record(s)) for s in range(1, 11)] + ['{"step": 11, "lo'])
    _write(jobdir, 1, [json.dumps(_record(s, rank=1, max_rss_mib=3000.0)) for s in range(1, 9)])
    snap = read_progress(jobdir)
    assert snap.step == 10 and snap.world_size == 2 and snap.ranks_reporting == 2
    assert snap.loss == pytest.approx(4.0) and snap.tokens == 40960
    assert snap.tokens_per_s == pytest.approx(4096 / 2.0)  # tokens over ts, first to last
    assert snap.step_time_s == pytest.approx(2.055)  # median of steps 1..10
    assert snap.max_rss_mib == 3000.0 and snap.ts == 1020.0


def test_summarise_keeps_a_nan_loss_and_skips_bad_numbers() -> None:
    lead = [_record(1), _record(2, loss=float("nan"), step_time_s="slow", tokens=None)]
    snap = summarise(lead, ranks_reporting=1, max_rss_mib=None)
    assert snap.step == 2 and math.isnan(snap.loss or 0.0)
    assert snap.step_time_s == pytest.approx(2.01)  # the string is not a number
    assert summarise([], ranks_reporting=3, max_rss_mib=5.0) == ProgressSnapshot(
        ranks_reporting=3, max_rss_mib=5.0
    )


def test_throughput_falls_back_to_the_newest_reported_rate() -> None:
    assert throughput([_record(1), _record(3)]) == pytest.approx(4096 / 2.0)
    single = [{"step": 1, "tokens_per_s": 123.0}]
    assert throughput(single) == 123.0
    assert throughput([]) is None
    # A restart that reset the token count does not give a negative rate.
    assert throughput([_record(5), _record(6, tokens=0, tokens_per_s=7.0)]) == 7.0


def test_finite_accepts_finite_numbers_only() -> None:
    assert finite(1.5) == 1.5 and finite(3) == 3.0 and finite(-0.0) == 0.0
    for value in (float("nan"), float("inf"), -float("inf"), True, None, "1", 10**400, [1]):
        assert finite(value) is None
