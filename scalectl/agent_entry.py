"""``scalectl agent ARGS`` goes straight to the node agent's own parser
(``runtime.agent.main``), before typer is imported: every backend starts the agent on
every node, so its start is on the path to a job's first step. Standard library only at
import time; both ``scalectl.entry`` and ``scalectl.cli`` route through it."""

from __future__ import annotations

import sys


def run_agent_if_asked(args: list[str]) -> None:
    """``agent ARGS``: run the node agent and exit with its code; otherwise return.

    A Slurm node task's short command line (``agent --policy=slurm --job-dir=DIR``, no
    torchrun arguments) is completed from the job directory first, in this process, so
    the agent is ``srun``'s task itself (``launcher.backends.slurm_node``)."""
    if args[:1] == ["agent"]:
        agent_args = args[1:]
        if "--policy=slurm" in agent_args and "--" not in agent_args:
            from launcher.backends.slurm_node import complete_agent_args

            agent_args = complete_agent_args(agent_args)
        from runtime.agent.main import main as agent_main

        sys.exit(agent_main(agent_args))
