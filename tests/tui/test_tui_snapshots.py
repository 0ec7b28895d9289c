"""Screenshots of the main screens at 120x40 with the deterministic fixture registry.

Update after an intended change with ``pytest tests/tui/test_tui_snapshots.py
--snapshot-update`` and look at the SVGs under ``__snapshots__`` before committing.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import tui_fixtures as fx
from textual.pilot import Pilot
from textual.widgets import Input

from tui.app import ScalectlApp

SIZE = (120, 40)


@pytest.fixture(autouse=True)
def _utc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ScalectlApp:
    home = tmp_path / "home"
    fx.build_home(home).close()
    return snapshot_app(home, monkeypatch)


def snapshot_app(home: Path, monkeypatch: pytest.MonkeyPatch) -> ScalectlApp:
    """The app over ``home`` as every screenshot sees it: no refresh timer, the fixtures'
    clock, no backend queries."""
    monkeypatch.setenv("SCALECTL_HOME", str(home))
    return ScalectlApp(
        registry=home / "registry.sqlite3",
        home=home,
        refresh_s=0,
        clock=lambda: fx.NOW,
        refresh_backends=False,
    )


async def show(pilot: Pilot[Any], job_id: str, tab: str | None = None) -> None:
    app = pilot.app
    assert isinstance(app, ScalectlApp)
    await app.refresh_now()
    app.select_job(job_id)
    await pilot.pause()
    if tab is not None:
        await pilot.press(tab)
    await app.refresh_now()
    await pilot.pause()


def test_jobs_screen(app: ScalectlApp, snap_compare: Any) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        await show(pilot, fx.MAIN_ID)

    assert snap_compare(app, terminal_size=SIZE, run_before=before)


def test_telemetry_screen(app: ScalectlApp, snap_compare: Any) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        await show(pilot, fx.MAIN_ID, "2")

    assert snap_compare(app, terminal_size=SIZE, run_before=before)


def test_logs_screen(app: ScalectlApp, snap_compare: Any) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        await show(pilot, fx.MAIN_ID, "3")
        await pilot.press("t", "slash", *"loss", "enter", "n")
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=before)


def test_planner_screen(app: ScalectlApp, snap_compare: Any) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        assert isinstance(pilot.app, ScalectlApp)
        await pilot.press("4")
        pilot.app.query_one("#plan-gpus", Input).value = "16"
        await pilot.press("ctrl+r")
        await pilot.app.wait_for_search()
        await pilot.pause()
        pilot.app.query_one("#plan-table").focus()
        await pilot.press("down")
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=before)


def test_failed_job_with_corrupt_files(app: ScalectlApp, snap_compare: Any) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        await show(pilot, fx.FAILED_ID)

    assert snap_compare(app, terminal_size=SIZE, run_before=before)
