"""Help without Markdown or tracebacks: ``scalectl --help`` must start in under 0.3 s
(bench/cli_startup.py).

Typer renders help through ``typer.rich_utils``, which imports at module level
``rich.markdown`` (and with it ``markdown_it``) and ``rich.traceback`` (and with it
``pygments``): about 110 ms of a 300 ms start. Help needs neither: Markdown is for
``rich_markup_mode="markdown"`` (scalectl uses ``"rich"``) and tracebacks for crashes.
So a process that prints help (and then exits) gets stand-ins for those two modules:
the class typer imports from each, and every other attribute, load the real module on
first use. Nothing changes for code that does use them; it only pays the import later.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

DEFERRED = {"rich.markdown": "Markdown", "rich.traceback": "Traceback"}
"""Module → the class ``typer.rich_utils`` imports from it by name."""

_MARK = "_scalectl_stand_in"


def _real(module: str) -> types.ModuleType:
    current = sys.modules.get(module)
    if current is not None and getattr(current, _MARK, False):
        del sys.modules[module]
    return importlib.import_module(module)


def _stand_in(module: str, class_name: str) -> types.ModuleType:
    stand_in = types.ModuleType(module, f"Loads {module} on first use (scalectl.fast_help).")

    class Deferred:
        """Builds the real class's instance (importing its module then)."""

        def __new__(cls, *args: Any, **kwargs: Any) -> Any:
            return getattr(_real(module), class_name)(*args, **kwargs)

    def module_getattr(name: str) -> Any:
        if name.startswith("__"):
            # The import system probes ``__path__`` and friends on every ``from ... import``.
            raise AttributeError(name)
        return getattr(_real(module), name)

    Deferred.__name__ = Deferred.__qualname__ = class_name
    setattr(stand_in, class_name, Deferred)
    stand_in.__getattr__ = module_getattr  # type: ignore[method-assign]
    setattr(stand_in, _MARK, True)
    return stand_in


def defer_help_imports() -> None:
    """Put the stand-ins in place for the modules not imported yet."""
    for module, class_name in DEFERRED.items():
        if module not in sys.modules:
            sys.modules[module] = _stand_in(module, class_name)


def wants_help(argv: list[str]) -> bool:
    """True when this run only prints help: no arguments, or ``--help``/``-h`` before any
    ``--`` (what follows ``--`` belongs to the training script)."""
    head = argv[: argv.index("--")] if "--" in argv else argv
    return not argv or "--help" in head or "-h" in head
