"""The ``scalectl`` console script and ``python -m scalectl``.

``agent`` goes straight to the node agent (:mod:`scalectl.agent_entry`) before typer is
imported. Everything else goes to the typer app in ``scalectl.cli``, imported only then
(the one deliberate lazy import here: the agent's path never loads typer).
Standard library only at import time.
"""

from __future__ import annotations

import sys

from scalectl.agent_entry import run_agent_if_asked

__all__ = ["main", "run_agent_if_asked"]


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    run_agent_if_asked(args)
    from scalectl.cli import main as cli_main

    cli_main(args)
