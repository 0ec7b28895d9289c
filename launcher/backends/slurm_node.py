"""The node agent's command inside a Slurm allocation, completed from the job directory.

``srun`` starts ``python -m scalectl agent --policy=slurm --job-dir=DIR`` on every node
(see ``launcher.backends.slurm_script``): no torchrun arguments, because an array's
elements differ in their args and env and each node's values (its name, whether it
hosts the rendezvous store, its CPUs) are only known there. ``scalectl.entry`` hands
such a command line to :func:`complete_agent_args` before the agent parses it, in the
same process: it reads ``job.json``, builds the agent options and torchrun arguments
with :func:`launcher.commands.node_command` (as every backend does), puts the rank
environment into ``os.environ`` (the agent passes its environment to torchrun), moves
to the job's working directory and sends the agent's output to
``logs/<node>.torchrun.log`` (every backend's name for the agent's log). What the agent
then does under Slurm (signals, node loss, ``slurm_node_*`` events) is
``runtime.agent.slurm_policy``.

The agent's own ``/proc/<pid>/environ`` keeps what ``srun`` gave it: ``SCALECTL_NODE``
(set here) reaches only its children, so "every process of the job on this node" is
torchrun and the ranks, not the agent that reports their loss.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping
from pathlib import Path

from contract.env import NODE_ENV, RDZV_ENDPOINT_ENV, rdzv_endpoint
from contract.job import read_job_file
from contract.jobdir import JobDir
from launcher.backends.slurm_script import slurm_signal_name
from launcher.commands import AGENT_ARGV, Rendezvous, node_command, rank_environment
from launcher.spec import JobSpec
from runtime.agent.slurm_policy import SlurmContext
from runtime.processes import redirect_output

POLICY_FLAG = "--policy=slurm"
"""The flag that, without torchrun arguments, marks a Slurm node task's short command
line (``scalectl.entry`` checks for it before importing anything)."""
LAST_CALL_TIMEOUT_S = 5
"""c10d ``last_call_timeout`` on Slurm: once ``nodes.min`` agents joined, how long to wait
for the rest. Slurm starts every node of an allocation at once, so with all of them the
rendezvous completes at ``max`` without waiting; this only delays a re-formed, smaller
rendezvous after a node loss."""
KEEP_ALIVE_INTERVAL_S = 2
KEEP_ALIVE_MAX_ATTEMPT = 3
"""A lost node's agent counts as dead after 2 s x 3 missed heartbeats (torch's default,
5 s x 3, makes the survivors wait 15 s before they re-form the rendezvous)."""


def agent_args(
    job_dir: Path, environ: MutableMapping[str, str], python: str
) -> tuple[list[str], dict[str, str], Path]:
    """(agent arguments after ``agent``, environment to add, working directory) for this
    node, from ``job.json`` and Slurm's environment."""
    jobdir = JobDir(job_dir.resolve())
    ctx = SlurmContext.from_env(environ)
    job = read_job_file(jobdir)
    job_id: str = job.job_id
    spec = JobSpec.model_validate(job.spec)
    grace_s = spec.slurm.stop_grace_s
    endpoint = rdzv_endpoint(environ)
    if not endpoint:
        raise SystemExit(
            f"scalectl agent: {RDZV_ENDPOINT_ENV} is not set (the sbatch script sets it)"
        )
    rendezvous = Rendezvous(
        endpoint=endpoint,
        run_id=job_id,
        # The first node hosts the c10d store; naming it avoids every agent on a
        # shared host (or behind one address) racing to bind it.
        conf={
            "last_call_timeout": LAST_CALL_TIMEOUT_S,
            "keep_alive_interval": KEEP_ALIVE_INTERVAL_S,
            "keep_alive_max_attempt": KEEP_ALIVE_MAX_ATTEMPT,
            "is_host": 1 if ctx.node_index == 0 else 0,
        },
    )
    argv = node_command(spec, jobdir.root, rendezvous, python, backend_grace_s=grace_s)
    options_end = argv.index("--")
    args = [
        *argv[1 + len(AGENT_ARGV) : options_end],
        POLICY_FLAG,
        f"--preempt-signal={slurm_signal_name(spec.slurm.signal)}",
        f"--node={ctx.node}",
        *argv[options_end:],
    ]
    env = {
        **rank_environment(spec, job_id, jobdir.root, ctx.node, ctx.cpus),
        "TORCH_ELASTIC_SHUTDOWN_TIMEOUT": str(max(1, int(grace_s))),
    }
    return args, env, Path(spec.workdir or jobdir.root)


def complete_agent_args(args: list[str]) -> list[str]:
    """The full agent command line for a short Slurm one (see the module docstring);
    sets up this process's environment, directory and output for it."""
    job_dir = _option(args, "--job-dir")
    if job_dir is None:
        raise SystemExit("scalectl agent --policy=slurm: --job-dir=DIR is required")
    full, env, workdir = agent_args(Path(job_dir), os.environ, sys.executable)
    os.environ.update(env)
    os.chdir(workdir)
    node = env[NODE_ENV]
    redirect_output(JobDir(Path(job_dir).resolve()).log_file(node, "torchrun"))
    return full


def _option(args: list[str], name: str) -> str | None:
    for index, arg in enumerate(args):
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
        if arg == name and index + 1 < len(args):
            return args[index + 1]
    return None
