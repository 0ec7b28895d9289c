"""The TUI's data layer (no Textual): incremental readers, rows, charts, plan comparison."""

from __future__ import annotations

import itertools
import json
import random
import time
from pathlib import Path

import pytest
import tui_fixtures as fx
from rich.cells import cell_len
from rich.style import Style

from contract.jobdir import JobDir
from launcher.progress_view import read_progress
from launcher.states import JobState
from launcher.store import Store
from tui import text
from tui.data.compare import Measured, PlanFacts, compare, measured_mfu, plan_facts
from tui.data.events import EventLog, describe
from tui.data.follow import JsonlTail, start_offset
from tui.data.jobs import JobsSource, filter_rows, sort_rows
from tui.data.jobview import JobView
from tui.data.logs import LogTail, header_time, list_logs
from tui.data.progress import ProgressSeries
from tui.data.telemetry import TelemetrySeries
from tui.widgets.charts import BLOCKS, braille_plot, downsample, sparkline
from tui.widgets.runs import Run, StyleCache, plain, strip


@pytest.fixture(autouse=True)
def _utc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()


# -- incremental JSON Lines ---------------------------------------------------------------


def test_tail_reads_only_new_lines_and_waits_for_a_torn_one(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}\n{"a": 3')
    tail = JsonlTail(path)
    assert [r["a"] for r in tail.poll()] == [1, 2]
    assert tail.poll() == []
    with open(path, "a") as handle:
        handle.write('}\n{"a": 4}\n')
    assert [r["a"] for r in tail.poll()] == [3, 4]
    assert tail.bad_lines == 0


def test_tail_counts_corrupt_lines_and_restarts_a_replaced_file(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text('{"a": 1}\nnot json\n[1, 2]\n{"a": 2}\n')
    tail = JsonlTail(path)
    assert [r["a"] for r in tail.poll()] == [1, 2]
    assert tail.bad_lines == 2
    path.write_text('{"a": 9}\n')  # truncated (shorter than the offset)
    assert [r["a"] for r in tail.poll()] == [9]
    assert tail.resets == 1


def test_tail_of_a_long_file_starts_at_a_line_boundary_near_the_end(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text("".join(json.dumps({"i": i, "pad": "x" * 50}) + "\n" for i in range(1000)))
    tail = JsonlTail(path, window_bytes=1000)
    records = tail.poll()
    assert 10 <= len(records) <= 20
    assert records[-1]["i"] == 999
    assert [r["i"] for r in records] == list(range(records[0]["i"], 1000))
    assert tail.bad_lines == 0  # the fragment before the first newline is not corruption
    assert start_offset(path, path.stat().st_size, 10**9) == 0


def test_tail_of_a_missing_file_is_empty(tmp_path: Path) -> None:
    tail = JsonlTail(tmp_path / "nope.jsonl")
    assert tail.poll() == [] and not tail.exists


# -- progress ---------------------------------------------------------------------------


def test_progress_curves_rewind_when_a_job_resumes_from_an_older_step(tmp_path: Path) -> None:
    jobdir = JobDir(tmp_path)
    fx.write_progress(jobdir, range(1, 21), t0=0.0, ranks=2)
    series = ProgressSeries(jobdir)
    series.poll()
    assert series.curves().steps == tuple(float(s) for s in range(1, 21))
    fx.write_progress(jobdir, range(15, 18), t0=1000.0, ranks=1)  # resumed from step 14
    series.poll()
    assert series.curves().steps == tuple(float(s) for s in [*range(1, 15), 15, 16, 17])
    now = series.now()
    assert now.step == 17
    assert now.ranks_reporting == 2
    assert now.max_rss_mib == 2049.0  # rank 1's record
    assert now.tokens_per_s == pytest.approx(256 * 8192 / fx.STEP_TIME_S)


# -- telemetry --------------------------------------------------------------------------


def test_telemetry_keeps_nulls_as_gaps_and_reads_incrementally(tmp_path: Path) -> None:
    jobdir = JobDir(tmp_path)
    fx.write_telemetry(jobdir, nodes=2, gpus=4, samples=5, t0=100.0)
    series = TelemetrySeries(jobdir)
    series.poll()
    view = series.view()
    assert [n.node for n in view.nodes] == ["node0", "node1"]
    assert view.gpu_count == 8
    assert all(len(g.util_percent) == 5 for n in view.nodes for g in n.gpus)
    record = fx.telemetry_record("node0", 5, 4, t0=100.0)
    record["gpus"][2]["power_w"] = None
    record["gpus"][3] = {**record["gpus"][3], "error": "gpu_lost: GpuIsLost"}
    with open(jobdir.telemetry_file("node0"), "a") as handle:
        handle.write(json.dumps(record) + "\n")
    series.poll()
    node0 = series.view().nodes[0]
    assert len(node0.gpus[0].util_percent) == 6
    assert node0.gpus[2].power_w[-1] is None
    assert node0.gpus[3].error == "gpu_lost: GpuIsLost"
    assert len(series.view().nodes[1].gpus[0].util_percent) == 5


def test_gpu_power_comes_from_the_energy_counters(tmp_path: Path) -> None:
    jobdir = JobDir(tmp_path)
    fx.write_telemetry(jobdir, nodes=1, gpus=2, samples=11, t0=0.0)
    series = TelemetrySeries(jobdir)
    series.poll()
    view = series.view()
    gpus = view.nodes[0].gpus
    expected = sum(g.energy_used_j or 0 for g in gpus) / 10.0
    assert view.gpu_power_w() == pytest.approx(expected)
    assert 2 * 250 < expected < 2 * 650  # the fixture's power swings between 250 and 650 W


# -- events and logs -------------------------------------------------------------------


def test_events_timeline_names_the_cause_and_folds_checkpoint_runs(tmp_path: Path) -> None:
    jobdir = JobDir(tmp_path)
    fx.event(jobdir, 1.0, "started", world_size=2)
    for step in (10, 20, 30):
        fx.event(jobdir, 2.0 + step, "checkpoint_saved", source="trainer", step=step)
    fx.event(jobdir, 50.0, "rank_failed", rank=1, exit_code=-9, cause="SIGKILL")
    fx.event(jobdir, 51.0, "a_new_kind", answer=42)
    log = EventLog(jobdir)
    assert log.poll()
    items = log.timeline(10)
    assert [i.event for i in items] == ["started", "checkpoint_saved", "rank_failed", "a_new_kind"]
    assert items[1].detail.endswith("(×3)")
    assert items[2].detail.startswith("cause=SIGKILL exit_code=-9 rank=1")
    assert items[3].detail == "answer=42"
    assert describe({"event": "x", "ts": "bad"}).ts is None


def test_log_tail_stamps_lines_with_their_attempt_then_with_read_time(tmp_path: Path) -> None:
    jobdir = JobDir(tmp_path)
    jobdir.create()
    path = jobdir.log_file("node0", 0)
    path.write_text(fx.header("2025-06-15T14:00:30", 0, 0) + "hello\npart")
    tail = LogTail(path)
    first = tail.poll(now_s=fx.NOW)
    assert [line.text for line in first][1:] == ["hello"]
    started = header_time(first[0].text)
    assert started == time.mktime(time.strptime("2025-06-15T14:00:30", "%Y-%m-%dT%H:%M:%S"))
    assert all(line.stamp == started and line.stamp_kind == "attempt" for line in first)
    with open(path, "a") as handle:
        handle.write("ial\nnext\n")
    later = tail.poll(now_s=fx.NOW + 5)
    assert [(line.text, line.stamp, line.stamp_kind) for line in later] == [
        ("partial", fx.NOW + 5, "read"),
        ("next", fx.NOW + 5, "read"),
    ]
    path.write_text("rotated\n")
    assert [line.text for line in tail.poll(now_s=fx.NOW + 6)] == ["rotated"]
    assert tail.resets == 1


def test_logs_are_listed_ranks_first_in_rank_order(tmp_path: Path) -> None:
    jobdir = JobDir(tmp_path)
    jobdir.create()
    for name in ("n0.10.log", "n0.2.log", "n0.torchrun.log", "n1.0.log", "junk.txt", "x.log"):
        (jobdir.logs_dir / name).write_text("")
    assert [s.label for s in list_logs(jobdir)] == ["n1.0", "n0.2", "n0.10", "n0.torchrun"]
    assert list_logs(JobDir(tmp_path / "missing")) == []


# -- plan against reality -----------------------------------------------------------------


def test_measured_mfu_scales_the_planned_mfu_by_throughput_and_gpu_count() -> None:
    facts = PlanFacts(num_gpus=16, tokens_per_s=100_000.0, mfu=0.5)
    assert measured_mfu(facts, 90_000.0, 16) == pytest.approx(0.45)
    # Elastic: the same throughput from half the GPUs is twice the utilisation.
    assert measured_mfu(facts, 90_000.0, 8) == pytest.approx(0.9)
    assert measured_mfu(PlanFacts(), 90_000.0, 8) is None


def test_compare_rows_and_their_colours() -> None:
    facts = plan_facts(fx.plan_document(16))
    assert facts.model == "llama3-8b" and facts.num_gpus == 16
    assert facts.layout == "dp16 tp1 pp1 cp1 zero3 mb1 rc=selective"
    assert facts.step_time_s is not None and facts.energy_per_step_j is not None
    rows = compare(
        facts,
        Measured(
            step_time_s=facts.step_time_s * 1.05,
            tokens_per_s=(facts.tokens_per_s or 0) / 1.5,
            world_size=16,
            gpu_memory_mib=None,
            rank_rss_mib=2048.0,
            gpu_power_w=16 * 500.0,
        ),
    )
    by_metric = {row.metric: row for row in rows}
    assert by_metric["step time"].style == "green" and by_metric["step time"].ratio == "×1.05"
    assert by_metric["tokens/s"].style == "red"
    assert by_metric["memory (rank RSS)"].measured == "2.00 GiB"
    # The plan's GPU power x GPUs x step time against telemetry power x measured step time.
    assert facts.gpu_energy_per_step_j is not None
    energy = 16 * 500.0 * facts.step_time_s * 1.05
    assert by_metric["GPU energy/step"].ratio == f"×{energy / facts.gpu_energy_per_step_j:.2f}"
    # A plan without the GPUs' power shows facility energy and claims no ratio.
    old_plan = fx.plan_document(16)
    del old_plan["estimate"]["step"]["gpu_power_w"]
    old_rows = {r.metric: r for r in compare(plan_facts(old_plan), Measured(step_time_s=1.0))}
    assert old_rows["energy/step"].ratio == "≠basis"
    assert plan_facts("not a plan") == PlanFacts()
    assert plan_facts({"estimate": {"step": {"time_s": "fast"}}}).step_time_s is None


# -- registry rows ----------------------------------------------------------------------


def test_jobs_source_lists_rows_and_skips_unchanged_registries(tmp_path: Path) -> None:
    fx.build_home(tmp_path, telemetry_samples=3, progress_steps=5).close()
    source = JobsSource(tmp_path / "registry.sqlite3", refresh_backends=False)
    first = source.poll()
    assert first.rows is not None and len(first.rows) == 7
    by_id = {row.id: row for row in first.rows}
    assert by_id[fx.MAIN_ID].step == 5 and by_id[fx.MAIN_ID].mfu is not None
    assert by_id[fx.GONE_ID].dir_missing
    assert source.poll().rows is None  # nothing changed: no rows rebuilt
    fx.write_progress(JobDir(tmp_path / "jobs" / fx.MAIN_ID), range(6, 8), t0=fx.NOW)
    rows = source.poll().rows
    assert rows is not None and {r.id: r for r in rows}[fx.MAIN_ID].step == 7
    fx.write_progress(JobDir(tmp_path / "jobs" / fx.MAIN_ID), range(8, 10), t0=fx.NOW)
    with Store(tmp_path / "registry.sqlite3") as store:
        store.transition(fx.MAIN_ID, JobState.COMPLETED, now_s=fx.NOW)
    rows = source.poll().rows
    assert rows is not None
    ended = {r.id: r for r in rows}[fx.MAIN_ID]
    assert ended.state == "COMPLETED" and ended.step == 9  # its last records are read
    source.close()


def test_jobs_source_reports_a_missing_and_an_unreadable_registry(tmp_path: Path) -> None:
    source = JobsSource(tmp_path / "registry.sqlite3", refresh_backends=False)
    result = source.poll()
    assert result.rows == () and result.message and "No job registry" in result.message
    (tmp_path / "registry.sqlite3").write_bytes(b"this is not a database, not even close" * 200)
    result = source.poll()
    assert result.message and "unreadable" in result.message
    assert result.rows is None  # unchanged: still the empty list


def test_filter_and_sort_rows(tmp_path: Path) -> None:
    fx.build_home(tmp_path, telemetry_samples=1, progress_steps=50).close()
    source = JobsSource(tmp_path / "registry.sqlite3", refresh_backends=False)
    rows = source.poll().rows
    source.close()
    assert rows is not None
    assert {r.name for r in filter_rows(rows, "SLURM")} == {
        "llama3-8b-pretrain",
        "bad-run",
        "ablation-lr",
    }
    assert [r.name for r in filter_rows(rows, "slurm failed")] == ["bad-run"]
    assert [r.name for r in filter_rows(rows, "unschedulable")] == ["mixtral-sft"]
    assert filter_rows(rows, "  ") == list(rows)
    by_name = [r.name for r in sort_rows(list(rows), "name", False)]
    assert by_name == sorted(by_name, key=str.lower)
    newest_first = sort_rows(list(rows), "age", False)
    assert newest_first[0].id == fx.PENDING_ID
    assert sort_rows(list(rows), "step", True)[0].id == fx.MAIN_ID


def test_job_view_warns_about_corruption_and_a_vanished_directory(tmp_path: Path) -> None:
    store = fx.build_home(tmp_path, telemetry_samples=2, progress_steps=2)
    failed = store.get(fx.FAILED_ID)
    gone = store.get(fx.GONE_ID)
    store.close()
    assert failed is not None and gone is not None
    snapshot = JobView(failed, home=tmp_path).poll()
    text_ = " ".join(snapshot.warnings)
    assert "1 corrupt line(s) skipped in telemetry/" in text_
    assert "1 corrupt line(s) skipped in events.jsonl" in text_
    assert "plan.json unreadable" in text_
    assert snapshot.compare == ()
    snapshot = JobView(gone, home=tmp_path).poll()
    assert snapshot.dir_missing
    assert "is gone" in snapshot.warnings[0] and "$SCALECTL_HOME/jobs/" in snapshot.warnings[0]


def test_job_view_shows_the_layout_that_ran_beside_the_plan(tmp_path: Path) -> None:
    from contract.event_kinds import EventKind
    from contract.events import append_event
    from tui.panes.jobs import render_layout_check

    store = fx.build_home(tmp_path, telemetry_samples=1, progress_steps=2)
    record = store.get(fx.MAIN_ID)
    store.close()
    assert record is not None
    job = JobDir(record.job_dir)
    plan = {
        "training": {"seq_len": 32, "global_batch_seqs": 8},
        "layout": {"dp": 2, "tp": 2, "sharding": "zero3", "micro_batch": 2},
    }
    job.plan_json.write_text(json.dumps(plan))
    view = JobView(record, home=tmp_path)
    check = view.poll().layout_check
    assert check is not None and check.applied is None  # the trainer has not started
    applied = {"dp_replicate": 1, "dp_shard": 2, "tp": 2, "sharding": "zero3"}
    applied |= {"world_size": 4, "global_batch_tokens": 256, "micro_batch": 2}
    append_event(job, EventKind.LAYOUT_APPLIED, source="trainer", **applied, grad_accum=2)
    check = view.poll().layout_check
    assert check is not None and check.differs == ()
    assert str(render_layout_check(check)) == "layout ran: as planned (layout_applied)"
    # A restart that derived accumulation from dp x tp: flagged, in red.
    append_event(job, EventKind.LAYOUT_APPLIED, source="trainer", **applied, grad_accum=1)
    check = view.poll().layout_check
    assert check is not None and check.differs == ("grad_accum",)
    shown = render_layout_check(check)
    assert "grad_accum: plan 2, ran 1" in str(shown)
    assert shown.style == "bold red" and {span.style for span in shown.spans} == {"red"}
    # After a node of a 1:2 range was lost: dp 1, tp and tokens per step kept. Shown as
    # the resize the range allowed, not flagged.
    shrunk = applied | {"dp_shard": 1, "world_size": 2, "elastic_dp": True}
    append_event(job, EventKind.LAYOUT_APPLIED, source="trainer", **shrunk, grad_accum=4)
    check = view.poll().layout_check
    assert check is not None and check.differs == ()
    assert check.resized == ("dp_shard", "world_size", "grad_accum")
    shown = render_layout_check(check)
    assert str(shown).startswith("layout ran: as planned (layout_applied)\ndp resized")
    assert "world_size: plan 4, ran 2" in str(shown) and "grad_accum: plan 2, ran 4" in str(shown)
    assert shown.style == "green" and "red" not in {span.style for span in shown.spans}


# -- charts and text --------------------------------------------------------------------


def test_sparkline_uses_a_fixed_scale_and_blanks_for_missing_samples() -> None:
    assert sparkline([0, 50, 100, None], 0, 100, 4) == BLOCKS[0] + BLOCKS[4] + BLOCKS[7] + " "
    assert sparkline([100.0] * 10, 0, 100, 3) == BLOCKS[7] * 3
    assert sparkline([1.0], 0, 100, 3) == "  " + BLOCKS[0]


def test_braille_plot_draws_a_connected_line_corner_to_corner() -> None:
    rows = braille_plot([0, 1], [0.0, 1.0], 2, 1)
    assert len(rows) == 1 and len(rows[0]) == 2
    # Bottom-left dot of the first cell and top-right dot of the last cell are set.
    assert ord(rows[0][0]) - 0x2800 & 0x40
    assert ord(rows[0][1]) - 0x2800 & 0x08
    gap = braille_plot([0, 1, 2], [0.0, None, 0.0], 3, 1)
    assert gap[0][1] == "⠀"  # no line drawn through a missing sample
    xs, ys = downsample(list(range(100)), [float(i) for i in range(100)], 10)
    assert len(xs) == 10 and ys[0] == pytest.approx(4.5)


def _reference_plot(points: list[tuple[int, int]], width: int, height: int) -> list[str]:
    """Dots of straight segments between consecutive (column, row) points, drawn the
    plain way: every point of each segment by linear interpolation, rounded."""
    grid = [[0] * width for _ in range(height)]
    bits = ((0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80))

    def dot(c: int, r: int) -> None:
        grid[r // 4][c // 2] |= bits[c % 2][r % 4]

    for (c0, r0), (c1, r1) in itertools.pairwise(points):
        steps = max(abs(c1 - c0), abs(r1 - r0))
        for k in range(steps + 1):
            dot(
                round(c0 + (c1 - c0) * k / max(1, steps)), round(r0 + (r1 - r0) * k / max(1, steps))
            )
    dot(*points[0])
    return ["".join(chr(0x2800 + b) for b in line) for line in grid]


@pytest.mark.parametrize("seed", range(20))
def test_braille_plot_matches_a_plain_reference(seed: int) -> None:
    # Vertical, horizontal and 45-degree segments have one right set of dots, whichever
    # line algorithm draws them.
    rng = random.Random(seed)
    width, height = rng.randint(3, 30), rng.randint(1, 8)
    cols, rows = width * 2, height * 4
    points = [(0, rng.randrange(rows))]
    while points[-1][0] < cols - 1:
        c, r = points[-1]
        kind = rng.choice(("vertical", "horizontal", "diagonal"))
        if kind == "vertical":
            points.append((c, rng.randrange(rows)))
        elif kind == "horizontal":
            points.append((min(cols - 1, c + rng.randint(1, 6)), r))
        else:
            size = min(cols - 1 - c, max(r, rows - 1 - r), rng.randint(1, rows))
            down = r + size < rows and (r - size < 0 or rng.random() < 0.5)
            points.append((c + size, r + size if down else r - size))
    xs = [float(c) for c, _ in points]
    ys = [float(rows - 1 - r) for _, r in points]
    got = braille_plot(xs, ys, width, height, x_range=(0, cols - 1), y_range=(0, rows - 1))
    assert got == _reference_plot(points, width, height)


def test_downsample_averages_buckets_and_skips_gaps() -> None:
    ys: list[float | None] = [1.0, 3.0, None, float("nan"), 5.0, 7.0]
    xs = [float(i) for i in range(6)]
    assert downsample(xs, ys, 3) == ([1.0, 3.0, 5.0], [2.0, None, 6.0])
    assert downsample(xs, ys, 10) == (xs, ys)


def test_strips_are_exactly_as_wide_as_asked() -> None:
    base = Style(bgcolor="black")
    styles = StyleCache()
    runs: list[Run] = [("gpu0 ", "bold"), ("▁▂█⣿", "green"), (" 41%", "")]
    for width in (3, 9, 10, 40):
        line = strip(runs, width, base, styles)
        assert line.cell_length == width == sum(cell_len(s.text) for s in line)
        assert "".join(s.text for s in line) == plain(runs)[:width].ljust(width)


def test_the_tui_and_scalectl_jobs_agree_on_progress(tmp_path: Path) -> None:
    jobdir = JobDir(tmp_path / "job")
    jobdir.create()
    fx.write_progress(jobdir, range(1, 41), t0=fx.NOW - 600, ranks=3)
    series = ProgressSeries(jobdir)
    series.poll()
    assert series.now() == read_progress(jobdir)
    assert series.now().step == 40 and series.now().max_rss_mib == 2050.0


def test_text_formatting() -> None:
    assert text.si(1_534_000) == "1.53M" and text.si(950) == "950" and text.si(None) == "–"
    assert text.age(59) == "59s" and text.age(3 * 3600 + 5) == "3h" and text.age(None) == "–"
    assert text.seconds(0.0123) == "12.3 ms" and text.seconds(12.37) == "12.4 s"
    assert text.percent(0.4567, 1) == "45.7%"
    assert text.short_path("/h/jobs/x", Path("/h")) == "$SCALECTL_HOME/jobs/x"
    assert text.truncate("abcdef", 4) == "abc…"
    assert text.clock(fx.NOW) == "15:06:40"
