"""``scalectl agent ARGS`` goes straight to the node agent's own parser
(``runtime.agent.main``), before typer is imported: every backend starts the agent on
every node, so its start is on the path to a job's first step. Standard library only at
import time; both ``scalectl.entry`` and ``scalectl.cli`` route through it."""

from __future__ import annotations

import sys


def run_agent_if_asked(args: list[str]) -> None:
    """``agent ARGS``: run the node agent and exit with its code; otherwise return."""
    if args[:1] == ["agent"]:
        from runtime.agent.main import main as agent_main

        sys.exit(agent_main(args[1:]))
