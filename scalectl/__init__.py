"""scalectl: plan, launch, keep alive and watch distributed LLM training runs.

The Python API (``launcher/python_api.py``), loaded on first use so that ``import
scalectl`` (every CLI start) stays light::

    from scalectl import plan_search, estimate, launch, Job
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = ("plan_search", "estimate", "launch", "Job")

__all__ = ["Job", "__version__", "estimate", "launch", "plan_search"]

if TYPE_CHECKING:
    from launcher.python_api import Job, estimate, launch, plan_search


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'scalectl' has no attribute {name!r}")
    return getattr(importlib.import_module("launcher.python_api"), name)
