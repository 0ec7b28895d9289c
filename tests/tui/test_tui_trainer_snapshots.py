"""Screenshots of the detail pane of the trainer's newer figures at 120x40: an MoE
pipeline job (bubble and state memory against the plan, the routing line) and a
completed LoRA fine-tune (state memory, the fine-tune line with its export).

Update after an intended change with ``pytest tests/tui/test_tui_trainer_snapshots.py
--snapshot-update`` and look at the SVGs under ``__snapshots__`` before committing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trainer_fixtures as tf
import tui_fixtures as fx
from test_tui_snapshots import SIZE, show, snapshot_app
from test_tui_snapshots import _utc as _utc  # autouse: the screenshots show times in UTC
from textual.pilot import Pilot

from tui.app import ScalectlApp


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ScalectlApp:
    home = tmp_path / "home"
    store = fx.build_home(home)
    tf.add_trainer_jobs(store, home / "jobs")
    store.close()
    return snapshot_app(home, monkeypatch)


def test_moe_pipeline_job(app: ScalectlApp, snap_compare: Any) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        await show(pilot, tf.MOE_ID)

    assert snap_compare(app, terminal_size=SIZE, run_before=before)


def test_lora_finetune_job(app: ScalectlApp, snap_compare: Any) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        await show(pilot, tf.LORA_ID)

    assert snap_compare(app, terminal_size=SIZE, run_before=before)
