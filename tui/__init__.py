"""Terminal UI (Textual): jobs, telemetry, logs, and plan against reality.

Public API (imported lazily: Textual loads only when the UI starts)::

    from tui import ScalectlApp      # the application (``scalectl tui`` runs it)

Layout: ``tui.data`` reads the registry and job directories into frozen snapshots
(standard library plus ``launcher.store``/``contract``; no Textual), ``tui.widgets``
draws them, ``tui.panes`` are the four tabs, ``tui.app`` lays them out, and
``tui.controllers`` gives them behaviour (the refresh tick in a worker thread, job
actions, planner requests).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {"ScalectlApp": "tui.app"}

__all__ = ["ScalectlApp"]

if TYPE_CHECKING:
    from tui.app import ScalectlApp


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tui' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
