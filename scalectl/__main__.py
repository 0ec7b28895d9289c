"""``python -m scalectl``. ``agent`` goes straight to the node agent's own parser, before
typer is imported: every backend starts ``python -m scalectl agent`` on every node, and its
start is on the path to a job's first step (runtime/agent/main.py)."""

import sys

if sys.argv[1:2] == ["agent"]:
    from runtime.agent.main import main as agent_main

    sys.exit(agent_main(sys.argv[2:]))

from scalectl.cli import main

main()
