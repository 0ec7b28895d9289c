"""``python -m runtime.rank_exec -- CMD ARGS...``: the wrapper every rank runs under torchrun.

It gives each rank its own log, ``logs/<node>.<rank>.log`` in the job directory, opened
in append mode so restarts and requeues add to it instead of replacing it; points
stdout and stderr at it; writes one header line (time, attempt, world size); and then
``exec``s the real entrypoint, so the rank *is* the entrypoint process (same pid,
signals go straight to it, no extra Python interpreter stays resident).

Standard library and ``contract`` (jobdir, env, events) only (it runs once per rank per restart and
must start in milliseconds). Reads only environment variables: ``RANK``,
``LOCAL_RANK``, ``WORLD_SIZE``, ``TORCHELASTIC_RESTART_COUNT`` (set by torchrun),
``SCALECTL_JOB_DIR``, ``SCALECTL_JOB_ID`` and ``SCALECTL_NODE`` (set by the backend).

On a restart (``TORCHELASTIC_RESTART_COUNT > 0``) global rank 0 also records a
``restarted`` event, so the job's timeline shows every attempt, unless the node agent
runs it (``SCALECTL_AGENT_PID``): the agent records restarts with their cause. Under the
agent it also sleeps the restart back-off (``SCALECTL_RESTART_BACKOFF``) before exec.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
from pathlib import Path

from contract.env import JOB_ID_ENV, agent_pid, restart_backoff
from contract.env import job_dir as job_dir_env
from contract.env import job_id as job_id_env
from contract.env import node as node_env
from contract.events import EventKind, append_event
from contract.jobdir import JobDir

EXEC_FAILED_EXIT_CODE = 127


def header_line(env: dict[str, str], node: str, argv: list[str], now_s: float) -> str:
    """The first line a rank writes to its log on every start."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(now_s))
    return (
        f"==== scalectl {stamp} job={env.get(JOB_ID_ENV, '?')} node={node} "
        f"rank={env.get('RANK', '0')} local_rank={env.get('LOCAL_RANK', '0')} "
        f"world_size={env.get('WORLD_SIZE', '1')} "
        f"attempt={env.get('TORCHELASTIC_RESTART_COUNT', '0')} pid={os.getpid()} "
        f"cmd={' '.join(argv)} ====\n"
    )


def node_name(env: dict[str, str]) -> str:
    node = node_env(env) or socket.gethostname().split(".")[0] or "localhost"
    return "".join(c if c.isalnum() or c in "._-" else "-" for c in node)


def main(argv: list[str]) -> int:
    command = argv[1:] if argv and argv[0] == "--" else argv
    if not command:
        sys.stderr.write("usage: python -m runtime.rank_exec -- COMMAND [ARGS...]\n")
        return 2
    env = dict(os.environ)
    job_dir = job_dir_env(env)
    node = node_name(env)
    if job_dir:
        path = JobDir(job_dir).log_file(node, env.get("RANK", "0"))
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.write(fd, header_line(env, node, command, time.time()).encode())
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        _record_restart(env, job_dir)
    _restart_backoff(env)
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        os.write(2, f"scalectl rank_exec: cannot run {command[0]!r}: {exc.strerror}\n".encode())
        return EXEC_FAILED_EXIT_CODE
    return EXEC_FAILED_EXIT_CODE  # pragma: no cover - exec does not return


def backoff_s(env: dict[str, str]) -> float:
    """Back-off before this start, for torchrun's in-place restarts under the node agent.

    ``SCALECTL_RESTART_BACKOFF=base,max`` (set by the agent): restart n ≥ 2 waits
    ``min(max, base × 2^(n-2))``; the first restart and first start wait nothing.
    """
    attempt = env.get("TORCHELASTIC_RESTART_COUNT", "0")
    backoff = restart_backoff(env)
    if backoff is None or not attempt.lstrip("-").isdigit():
        return 0.0
    n, (base_s, cap_s) = int(attempt), backoff
    if n < 2 or base_s <= 0:
        return 0.0
    return min(cap_s, base_s * 2 ** (n - 2))


def _restart_backoff(env: dict[str, str]) -> None:
    delay = backoff_s(env)
    if delay > 0:
        os.write(2, f"scalectl rank_exec: restart back-off {delay:g}s\n".encode())
        time.sleep(delay)


def _record_restart(env: dict[str, str], job_dir: Path) -> None:
    attempt = env.get("TORCHELASTIC_RESTART_COUNT", "0")
    if env.get("RANK", "0") != "0" or not attempt.isdigit() or int(attempt) == 0:
        return
    if agent_pid(env) is not None:
        return  # the node agent records restarts, with their cause
    # The event is a courtesy; the rank must start regardless.
    with contextlib.suppress(OSError):
        append_event(
            job_dir,
            EventKind.RESTARTED,
            source="launcher",
            job_id=job_id_env(env),
            attempt=int(attempt),
            world_size=int(env.get("WORLD_SIZE", "1")),
        )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
