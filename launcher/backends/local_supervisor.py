"""The local backend's supervisor: ``python -m launcher.backends.local_supervisor JOB_DIR``.

Started by ``LocalBackend.submit`` with ``--detach``: it forks, the parent prints the
child's pid and exits (so the CLI reaps it and the job never becomes anyone's zombie),
and the child, in a session of its own, supervises the job:

1. starts one node agent (``scalectl agent``, which runs the elastic torchrun) per local
   node (``launcher.commands.node_command``), each in a process group of its own so a
   signal reaches it only through us;
2. records ``started`` and the RUNNING state;
3. every 0.2 s: reaps agents, enforces the time limit, prunes old checkpoints
   (``checkpoint.keep_last``); an agent killed by a signal while others still run is a
   lost node: it is started again after ``NODE_RETURN_S`` (the node returns, as a
   Kubernetes pod would; the job grows back), at most ``max_restarts`` times;
4. on SIGTERM/SIGINT/SIGHUP (``scalectl cancel``) or at the time limit: SIGTERM to each
   agent (it passes it through torchrun to the ranks, which checkpoint), SIGKILL to every process
   of the job after ``local.stop_grace_s``;
5. at the end: stops stragglers (anything still carrying the job's id), records
   ``finished`` with the exit code and the final state, and exits with that code.

This module is only the entry (standard library only, so the fork comes first); the
supervision itself is :mod:`launcher.backends.local_supervision`. It imports neither
torch nor pydantic-heavy backends beyond the spec, so it stays small.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="local_supervisor")
    parser.add_argument("job_dir", type=Path)
    parser.add_argument("--registry", type=Path, required=True)
    parser.add_argument("--detach", action="store_true")
    args = parser.parse_args(argv)
    if args.detach:
        # Fork before importing anything heavy: the parent only reports the pid.
        child = os.fork()
        if child:
            sys.stdout.write(f"{child}\n")
            sys.stdout.flush()
            os._exit(0)
    # Deliberately here, after the fork: pydantic, sqlite and the backends load only in
    # the child, so the parent (which `scalectl launch` waits for) exits at once.
    from launcher.backends.local_supervision import supervise

    return supervise(args.job_dir.resolve(), args.registry)


if __name__ == "__main__":
    sys.exit(main())
