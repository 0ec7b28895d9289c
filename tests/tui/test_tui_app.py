"""Pilot tests (``App.run_test``): each tab driven by keys and the mouse, actions with
confirmation, and bad job files, a vanished job directory and an unreadable registry
shown as messages, never as a traceback."""

from __future__ import annotations

import asyncio
import functools
import gc
import json
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import tui_fixtures as fx
from polling import wait_for_async
from textual.command import CommandPalette
from textual.geometry import Region
from textual.pilot import Pilot
from textual.widgets import Input

from contract.jobdir import JobDir
from launcher.states import JobState
from launcher.store import Store
from tui.app import ScalectlApp, help_sections, key_text
from tui.collector import YOUNG_THRESHOLD
from tui.panes.planner import PlannerPane
from tui.widgets.dialogs import ConfirmScreen, HelpScreen
from tui.widgets.gpugrid import GpuGrid, gpu_runs
from tui.widgets.logview import LogView
from tui.widgets.runs import plain
from tui.widgets.table import VirtualTable

SIZE = (120, 40)


def pilot_test(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test body on a fresh event loop (no asyncio plugin needed)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


@pytest.fixture(autouse=True)
def _utc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    fx.build_home(home).close()
    monkeypatch.setenv("SCALECTL_HOME", str(home))
    return home


def make_app(home: Path, **kwargs: Any) -> ScalectlApp:
    options: dict[str, Any] = {
        "registry": home / "registry.sqlite3",
        "home": home,
        "refresh_s": 0,
        "clock": lambda: fx.NOW,
        "refresh_backends": False,
    }
    options.update(kwargs)
    return ScalectlApp(**options)


@asynccontextmanager
async def running(app: ScalectlApp) -> AsyncIterator[Pilot[None]]:
    async with app.run_test(size=SIZE) as pilot:
        await app.refresh_now()
        await pilot.pause()
        yield pilot


async def select(app: ScalectlApp, pilot: Pilot[None], job_id: str) -> None:
    app.select_job(job_id)
    await pilot.pause()
    await app.refresh_now()
    await pilot.pause()


def table(app: ScalectlApp) -> VirtualTable:
    return app.query_one("#jobs-table", VirtualTable)


def shown_ids(app: ScalectlApp) -> list[str]:
    return [row.id for row in table(app).rows]


def static_text(app: ScalectlApp, selector: str) -> str:
    """What a widget shows, as plain text lines (whatever it renders: text or tables)."""
    widget = app.query_one(selector)
    strips = widget.render_lines(Region(0, 0, widget.size.width, widget.size.height))
    return "\n".join("".join(segment.text for segment in strip) for strip in strips)


def screen_text(app: ScalectlApp) -> str:
    strips = app.screen._compositor.render_strips()
    return "\n".join("".join(segment.text for segment in strip) for strip in strips)


async def until(pilot: Pilot[None], condition: Callable[[], bool], timeout_s: float = 20) -> None:
    await wait_for_async(condition, timeout_s, pause=pilot.pause)


# -- jobs tab ---------------------------------------------------------------------------


@pilot_test
async def test_jobs_table_filters_as_you_type_and_escape_clears(home: Path) -> None:
    app = make_app(home)
    async with running(app) as pilot:
        assert len(shown_ids(app)) == 7
        await pilot.press("slash")
        field = app.query_one("#filter", Input)
        assert field.display and field.has_focus
        await pilot.press(*"slurm")
        assert {row.name for row in table(app).rows} == {
            "llama3-8b-pretrain",
            "bad-run",
            "ablation-lr",
        }
        await pilot.press("space", *"fail")
        assert [row.name for row in table(app).rows] == ["bad-run"]
        await pilot.press("enter")
        assert table(app).has_focus and field.display
        assert "1 match 'slurm fail'" in static_text(app, "#status")
        # The filter moved the cursor: the rest of the app follows it.
        assert app.selected_id == table(app).cursor_key == fx.FAILED_ID
        await pilot.press("escape")
        assert len(shown_ids(app)) == 7 and not field.display


@pilot_test
async def test_sort_by_key_and_by_clicking_a_header(home: Path) -> None:
    app = make_app(home)
    async with running(app) as pilot:
        assert shown_ids(app)[0] == fx.PENDING_ID  # newest first
        await pilot.press("s")  # age -> name (the next sort key)
        names = [row.name for row in table(app).rows]
        assert names == sorted(names, key=str.lower)
        await pilot.press("S")
        assert [row.name for row in table(app).rows] == sorted(names, key=str.lower)[::-1]
        # Click the "step" header (where the table's layout puts it).
        grid = table(app)
        starts = {c.key: start for (start, _), c in zip(grid._layout(), grid.columns, strict=True)}
        x = starts["step"]
        await pilot.click("#jobs-table", offset=(x + 1, 0))
        assert grid.sort_column == "step"
        steps = [row.step or -1 for row in table(app).rows]
        assert steps == sorted(steps)
        # Click a row to select it.
        await pilot.click("#jobs-table", offset=(3, 1 + 6))
        assert table(app).cursor == 6


@pilot_test
async def test_selecting_a_job_shows_spec_timeline_and_plan_against_reality(home: Path) -> None:
    app = make_app(home)
    async with running(app) as pilot:
        await pilot.press("down")  # second row: the 16-GPU job
        await app.refresh_now()
        await pilot.pause()
        assert app.selected_id == fx.MAIN_ID
        spec = static_text(app, "#detail-spec")
        assert "llama3-8b-pretrain" in spec and "slurm (4242)" in spec
        assert "nodes 2 x 8 ranks, 8 GPU/node" in spec
        timeline = static_text(app, "#detail-timeline")
        assert "rank_failed" in timeline and "cause=CUDA error" in timeline
        assert "restarted" in timeline and "(×2)" in timeline
        screen = screen_text(app)
        assert "plan against reality" in screen
        # The plan's step time is the planner's, whatever it predicts today; the measured
        # one is the fixture's (about 10 % slower).
        from tui import text

        planned = fx.plan_document()["estimate"]["step"]["time_s"]
        assert text.seconds(planned) in screen and "13.6 s" in screen
        assert f"×{fx.STEP_TIME_S / planned:.2f}" in screen
        row = next(r for r in table(app).rows if r.id == fx.MAIN_ID)
        assert row.mfu is not None and 0.45 < row.mfu < 0.55


# -- telemetry tab ----------------------------------------------------------------------


@pilot_test
async def test_telemetry_sparklines_move_as_samples_arrive(home: Path) -> None:
    app = make_app(home)
    async with running(app) as pilot:
        await select(app, pilot, fx.MAIN_ID)
        await pilot.press("enter")  # Enter on a job opens its telemetry
        assert app.active_tab == "telemetry"
        grid = app.query_one("#gpu-grid", GpuGrid)
        assert len(grid.items) == 2 + 16
        before = plain(gpu_runs(grid.items[1], 118))  # type: ignore[arg-type]
        jobdir = JobDir(home / "jobs" / fx.MAIN_ID)
        fx.write_telemetry(jobdir, 2, 8, 3, t0=fx.NOW - 40, start=40)
        await app.refresh_now()
        await pilot.pause()
        after = plain(gpu_runs(grid.items[1], 118))  # type: ignore[arg-type]
        assert before != after
        assert "util" in after and "temp" in after
        assert "43 samples" in screen_text(app)
        title = static_text(app, "#telemetry-title")
        assert "2 node(s), 16 GPU(s)" in title


# -- logs tab ---------------------------------------------------------------------------


@pilot_test
async def test_logs_follow_toggle_search_and_switching_ranks(home: Path) -> None:
    app = make_app(home)
    async with running(app) as pilot:
        await select(app, pilot, fx.MAIN_ID)
        await pilot.press("3")
        await app.refresh_now()
        await pilot.pause()
        view = app.query_one("#log-view", LogView)
        assert view.follow and view.has_focus
        assert view.lines[-1].text.startswith("resumed from")
        jobdir = JobDir(home / "jobs" / fx.MAIN_ID)
        fx.append_log(jobdir, "node0", 0, [f"step {s}/400 loss 2.7" for s in range(101, 161)])
        await app.refresh_now()
        await pilot.pause()
        assert view.lines[-1].text == "step 160/400 loss 2.7"
        assert view.top == view.max_top > 0  # following: the end is in view
        await pilot.press("up")
        assert not view.follow
        assert "follow off" in static_text(app, "#logs-title")
        top = view.top
        fx.append_log(jobdir, "node0", 0, ["step 161/400 loss 2.6"])
        await app.refresh_now()
        await pilot.pause()
        assert view.top == top  # not following: the view stays put
        await pilot.press("f")
        assert view.follow and view.top == view.max_top
        await pilot.press("up", "end")  # End: back to the end, following
        assert view.follow and view.top == view.max_top
        await pilot.press("slash", *"resumed", "enter")
        assert len(view.matches) == 1 and not view.follow
        assert "1 match(es)" in static_text(app, "#logs-title")
        await pilot.press("t")
        assert view.timestamps
        assert view.lines[0].stamp_kind == "attempt" and view.lines[-1].stamp_kind == "read"
        await pilot.press("right_square_bracket")
        await app.refresh_now()
        await pilot.pause()
        assert "log node0.1 [2/3]" in static_text(app, "#logs-title")
        assert view.lines[1].text.endswith("rank 1")


@pilot_test
async def test_logs_of_a_finished_job_are_shown_whole(home: Path) -> None:
    app = make_app(home)
    async with running(app) as pilot:
        await select(app, pilot, fx.CPU_ID)
        await pilot.press("3")
        await app.refresh_now()
        await pilot.pause()
        view = app.query_one("#log-view", LogView)
        assert [line.text for line in view.lines][-1] == "training complete at step 30"


# -- actions ----------------------------------------------------------------------------


@pilot_test
async def test_cancel_asks_first_and_no_leaves_the_job_alone(home: Path) -> None:
    app = make_app(home)
    async with running(app) as pilot:
        await select(app, pilot, fx.MAIN_ID)
        await pilot.press("c")
        assert isinstance(app.screen, ConfirmScreen)
        assert "Cancel this job?" in screen_text(app)
        await pilot.press("n")
        assert not isinstance(app.screen, ConfirmScreen)
        await app.workers.wait_for_complete()
    with Store(home / "registry.sqlite3") as store:
        record = store.get(fx.MAIN_ID)
        assert record is not None and record.state is JobState.RUNNING


@pytest.mark.slow
@pilot_test
async def test_cancel_with_confirmation_stops_a_real_local_job(home: Path) -> None:
    from launcher import api, spec_from_mapping

    spec = spec_from_mapping(
        {
            "name": "sleeper",
            "entrypoint": {"command": [sys.executable, "-c", "import time; time.sleep(120)"]},
            "local": {"stop_grace_s": 2},
        }
    )
    with Store(home / "registry.sqlite3") as store:
        record = api.launch(spec, store)
    app = make_app(home, cancel_grace_s=2.0)
    async with running(app) as pilot:
        await select(app, pilot, record.id)
        await pilot.press("c")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await app.workers.wait_for_complete()
        await app.refresh_now()
        await pilot.pause()
        row = next(r for r in table(app).rows if r.id == record.id)
        assert row.state == "CANCELLED"
    with Store(home / "registry.sqlite3") as store:
        final = store.get(record.id)
        assert final is not None and final.state is JobState.CANCELLED


@pilot_test
async def test_requeue_asks_first_and_goes_through_the_launcher_api(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from launcher import api

    asked: list[str] = []

    def fake_requeue(store: Store, record: Any) -> str:
        asked.append(record.id)
        return "Slurm job 4242: SIGUSR2 sent"

    monkeypatch.setattr(api, "requeue", fake_requeue)
    app = make_app(home)
    async with running(app) as pilot:
        await select(app, pilot, fx.CPU_ID)  # a local job: nothing to requeue into
        await pilot.press("r")
        assert not isinstance(app.screen, ConfirmScreen)
        await select(app, pilot, fx.MAIN_ID)  # a running Slurm job
        await pilot.press("r")
        assert isinstance(app.screen, ConfirmScreen)
        text = screen_text(app)
        assert "Requeue this job?" in text and "SIGUSR2" in text and "max_requeues" in text
        await pilot.press("n")
        await app.workers.wait_for_complete()
        assert asked == []
        await pilot.press("r", "y")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert asked == [fx.MAIN_ID]


@pilot_test
async def test_open_job_dir_asks_first(home: Path) -> None:
    opened: list[Path] = []
    app = make_app(home, open_dir=opened.append)
    async with running(app) as pilot:
        await select(app, pilot, fx.CPU_ID)
        await pilot.press("o")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("escape")
        assert opened == []
        await pilot.press("o", "y")
        assert opened == [home / "jobs" / fx.CPU_ID]


@pilot_test
async def test_help_lists_every_key_and_colon_opens_the_palette(home: Path) -> None:
    app = make_app(home)
    async with running(app) as pilot:
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = screen_text(app)
        for _, keys in help_sections()[:3]:
            for key, _description in keys[:6]:
                assert key in text
        from tui.panes.logs import LogsPane

        listed = {key for _, keys in help_sections() for key, _ in keys}
        for binding in [*ScalectlApp.BINDINGS, *LogsPane.BINDINGS, *PlannerPane.BINDINGS]:
            assert key_text(binding.key) in listed  # type: ignore[union-attr]
        await pilot.press("escape")
        await pilot.press("colon")
        assert isinstance(app.screen, CommandPalette)
        await pilot.press(*"bad-run")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await pilot.pause()
        assert table(app).cursor_key == fx.FAILED_ID
        # ":" typed into the filter is text, not the palette.
        await pilot.press("slash", "colon")
        assert app.query_one("#filter", Input).value == ":"


# -- planner tab ------------------------------------------------------------------------


async def set_form(app: ScalectlApp, pilot: Pilot[None], **values: str) -> None:
    for key, value in values.items():
        app.query_one(f"#plan-{key.replace('_', '-')}", Input).value = value
    await pilot.pause()


@pilot_test
async def test_planner_search_ranks_layouts_and_names_bad_fields(home: Path) -> None:
    app = make_app(home)
    async with running(app) as pilot:
        await pilot.press("4")
        assert app.active_tab == "planner"
        await set_form(app, pilot, gpus="16", tokens="100B")
        await pilot.press("enter")
        await app.wait_for_search()
        await pilot.pause()
        pane = app.query_one("#planner-pane", PlannerPane)
        assert pane.result is not None and pane.result.ranked
        grid = app.query_one("#plan-table", VirtualTable)
        assert len(grid.rows) == len(pane.result.ranked)
        assert "memory per GPU" in screen_text(app) and "step time" in screen_text(app)
        first = grid.cursor_row
        grid.focus()
        await pilot.press("down")
        assert grid.cursor_row is not first
        await set_form(app, pilot, gpu="H10")
        await pilot.press("ctrl+r")
        await app.wait_for_search()
        await pilot.pause()
        assert "unknown GPU 'H10'" in static_text(app, "#plan-status")
        assert pane.result is None and not grid.rows


@pytest.mark.slow
@pilot_test
async def test_planner_launches_the_selected_plan_to_the_local_backend(
    home: Path, tmp_path: Path
) -> None:
    from test_tui_planning import tiny_config

    from launcher import api

    app = make_app(home)
    async with running(app) as pilot:
        await pilot.press("4")
        await set_form(
            app,
            pilot,
            model=str(tiny_config(tmp_path)),
            gpus="2",
            seq_len="128",
            batch="16",
            tokens="4096",
        )
        await pilot.press("ctrl+r")
        await app.wait_for_search()
        await pilot.pause()
        app.query_one("#plan-table", VirtualTable).focus()
        await pilot.press("l")
        assert isinstance(app.screen, ConfirmScreen)
        assert "Launch this plan?" in screen_text(app)
        await pilot.press("y")
        await app.workers.wait_for_complete()
        await app.refresh_now()
        await pilot.pause()
        assert app.active_tab == "jobs"
        launched = app.records.get(app.selected_id or "")
        assert launched is not None and launched.name == "tiny" and launched.backend == "local"
    with Store(home / "registry.sqlite3") as store:
        record = store.get(launched.id)
        assert record is not None
        assert JobDir(record.job_dir).plan_json.is_file()
        assert record.spec["entrypoint"]["module"] == "runtime.train"
        api.cancel(store, record, grace_s=1.0)


# -- bad files never crash the UI -----------------------------------------------------------


@pilot_test
async def test_corrupt_and_torn_lines_show_a_message(home: Path) -> None:
    app = make_app(home)
    async with running(app) as pilot:
        await select(app, pilot, fx.FAILED_ID)
        measures = screen_text(app)
        assert "corrupt line(s) skipped in telemetry/" in measures
        assert "corrupt line(s) skipped in events.jsonl" in measures
        assert "plan.json unreadable" in measures
        await pilot.press("2")
        assert "corrupt line(s)" in static_text(app, "#telemetry-title")


@pilot_test
async def test_a_vanished_job_dir_shows_a_message(home: Path) -> None:
    app = make_app(home)
    async with running(app) as pilot:
        await select(app, pilot, fx.GONE_ID)
        assert "is gone" in screen_text(app)
        assert "job dir gone" in screen_text(app)  # the table row says so too
        await select(app, pilot, fx.MAIN_ID)
        await pilot.press("3")
        await app.refresh_now()
        shutil.rmtree(home / "jobs" / fx.MAIN_ID)  # vanishes while being watched
        await app.refresh_now()
        await pilot.pause()
        assert "job directory is gone" in static_text(app, "#logs-title")
        await pilot.press("2")
        assert "is gone" in static_text(app, "#telemetry-title")
        assert app.query_one("#gpu-grid", GpuGrid).items  # what was read stays on screen


@pilot_test
async def test_an_unreadable_registry_shows_a_message(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "registry.sqlite3").write_bytes(b"definitely not sqlite " * 300)
    app = make_app(home)
    async with running(app) as pilot:
        assert "Registry unreadable" in static_text(app, "#status")
        assert "no jobs" in screen_text(app)
        await pilot.press("down", "c", "2", "3", "1")  # nothing selected: nothing breaks
        await app.refresh_now()
        assert app.is_running


@pilot_test
async def test_no_registry_yet_says_how_to_start(tmp_path: Path) -> None:
    app = make_app(tmp_path / "empty")
    async with running(app):
        assert "No job registry" in static_text(app, "#status")


def test_cli_rejects_a_bad_refresh_in_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "scalectl", "tui", "--refresh", "0"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "error: --refresh 0: choose between 0.2 and 60 seconds"


@pilot_test
async def test_start_job_is_selected(home: Path) -> None:
    app = make_app(home, start_job="bad-run")
    async with running(app) as pilot:
        await app.refresh_now()
        await pilot.pause()
        assert app.selected_id == fx.FAILED_ID
        assert table(app).cursor_key == fx.FAILED_ID


# -- work kept off hidden tabs ------------------------------------------------------------


@pilot_test
async def test_a_hidden_jobs_tab_catches_up_when_shown(home: Path) -> None:
    app = make_app(home)
    async with running(app) as pilot:
        await pilot.press("slash", *"slurm", "enter")
        assert "3 match 'slurm'" in static_text(app, "#status")
        await select(app, pilot, fx.MAIN_ID)
        await pilot.press("2")
        await pilot.pause()
        assert not app.jobs_pane.on_screen
        new_id = "20250616-090000-abcd"
        with Store(home / "registry.sqlite3") as store:
            fx.add_job(
                store,
                home / "jobs",
                fx.Job(new_id, "slurm-late", "slurm", JobState.RUNNING, created=fx.NOW - 60),
            )
        await app.refresh_now()
        await pilot.pause()
        # The status line counts it while the table waits for its tab to be shown.
        assert "8 jobs, 4 match 'slurm'" in static_text(app, "#status")
        assert new_id not in shown_ids(app)
        await pilot.press("1")
        await pilot.pause()
        assert app.jobs_pane.on_screen
        assert new_id in shown_ids(app) and len(shown_ids(app)) == 4
        assert table(app).cursor_key == fx.MAIN_ID


@pilot_test
async def test_a_hidden_telemetry_tab_draws_the_newest_snapshot_when_shown(home: Path) -> None:
    app = make_app(home)
    async with running(app) as pilot:
        await select(app, pilot, fx.MAIN_ID)
        await pilot.press("2")
        await pilot.pause()
        grid = app.query_one("#gpu-grid", GpuGrid)
        before = list(grid.items)
        assert before
        await pilot.press("1")
        await pilot.pause()
        jobdir = JobDir(home / "jobs" / fx.MAIN_ID)
        for path in jobdir.telemetry_files():
            node = path.stem
            record = fx.telemetry_record(node, 500, 8, t0=fx.NOW - 40)
            with path.open("a") as handle:
                handle.write(json.dumps(record) + "\n")
        await app.refresh_now()
        await pilot.pause()
        assert grid.items == before  # Jobs tab shown: the grid is not touched
        await pilot.press("2")
        await pilot.pause()
        assert grid.items != before
        assert grid.items[0].samples == before[0].samples + 1


@pilot_test
async def test_the_app_leaves_the_garbage_collector_as_it_found_it(home: Path) -> None:
    thresholds, frozen = gc.get_threshold(), gc.get_freeze_count()
    app = make_app(home)
    async with running(app):
        assert gc.get_threshold()[0] >= YOUNG_THRESHOLD
        assert app.collector.frozen and gc.get_freeze_count() > frozen
    assert gc.get_threshold() == thresholds
    assert gc.get_freeze_count() == frozen
