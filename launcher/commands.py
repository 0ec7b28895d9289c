"""Command lines and environments every backend runs: pure functions, no I/O.

One place builds them, so the local supervisor, the Slurm node agent and the Kubernetes
manifests start ranks the same way (ARCHITECTURE.md, "The process tree per backend"):
:func:`node_command` puts the node agent between the backend and torchrun.

The chain on every node::

    backend ─► scalectl agent ─► torchrun (elastic, c10d) ─► runtime.rank_exec ─► entrypoint

The agent (``runtime.agent``) owns torchrun's ``--max-restarts`` (from ``max_restarts``),
restarts, hang and straggler detection, preemption and telemetry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contract import env as env_names
from contract.jobdir import JobDir
from contract.plan import PlanError, parse_plan
from contract.plan_layout import layout_environment, resolve_layout
from launcher.spec import JobSpec

RANK_EXEC_MODULE = "runtime.rank_exec"
"""Wrapper each rank runs under: per-rank log file, header line, then exec."""

AGENT_ARGV = ("-m", "scalectl", "agent")
"""How a backend starts the node agent with a given Python (works in any venv)."""


@dataclass(frozen=True)
class Rendezvous:
    """Where and how the node agents of one job meet (torch elastic c10d rendezvous)."""

    endpoint: str
    """``HOST:PORT`` of the c10d store (first node of the allocation, or 127.0.0.1)."""
    run_id: str
    """``--rdzv-id``: the same on every node of one job; the scalectl job id."""
    conf: Mapping[str, int | str] = field(default_factory=dict)
    """``--rdzv-conf`` entries (``join_timeout``, ``last_call_timeout``, ...)."""


def entrypoint_argv(spec: JobSpec, job_dir: Path, default_python: str) -> list[str]:
    """The command one rank executes: the entrypoint and its arguments.

    For the reference trainer the policy fields become its flags unless the user's args
    already set them: ``--ckpt-every`` from ``checkpoint.every_steps``,
    ``--keep-checkpoints`` from ``checkpoint.keep_last``, ``--plan <job_dir>/plan.json``
    when a plan is embedded, and ``--elastic-dp`` when that plan's job has a node range.
    """
    args = list(spec.args)
    if spec.entrypoint.is_reference_trainer:
        if spec.checkpoint.every_steps is not None and not _has_flag(args, "--ckpt-every"):
            args += ["--ckpt-every", str(spec.checkpoint.every_steps)]
        if spec.checkpoint.keep_last is not None and not _has_flag(args, "--keep-checkpoints"):
            args += ["--keep-checkpoints", str(spec.checkpoint.keep_last)]
        if spec.plan is not None and not _has_flag(args, "--plan"):
            args += ["--plan", str(job_dir / "plan.json")]
        if spec.plan is not None and spec.nodes.min != spec.nodes.max:
            # launch checked that every node count of the range holds the layout
            # (plan_launch.check_node_range); the trainer resizes dp at each round.
            args.append("--elastic-dp")
    return spec.entrypoint.argv(args, default_python)


def _has_flag(args: Sequence[str], flag: str) -> bool:
    return any(a == flag or a.startswith(flag + "=") for a in args)


def torchrun_argv(
    spec: JobSpec,
    rank_argv: Sequence[str],
    rendezvous: Rendezvous,
    python: str,
    *,
    monitor_interval_s: float = 0.1,
) -> list[str]:
    """``python -m torch.distributed.run ...`` for one node: plain torchrun, no agent
    (what benchmarks compare the agent against)."""
    args = torchrun_args(spec, rank_argv, rendezvous, monitor_interval_s=monitor_interval_s)
    return [python, "-m", "torch.distributed.run", f"--max-restarts={spec.max_restarts}", *args]


def torchrun_args(
    spec: JobSpec,
    rank_argv: Sequence[str],
    rendezvous: Rendezvous,
    *,
    monitor_interval_s: float = 0.1,
) -> list[str]:
    """torchrun's arguments except ``--max-restarts`` (the agent sets that).

    ``-m runtime.rank_exec -- <rank argv>`` makes every rank run through the log
    wrapper; ``--no-python`` is never needed because the wrapper execs any command.
    """
    argv = [
        f"--nnodes={spec.nodes.min}:{spec.nodes.max}",
        f"--nproc-per-node={spec.procs_per_node}",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint={rendezvous.endpoint}",
        f"--rdzv-id={rendezvous.run_id}",
        f"--monitor-interval={monitor_interval_s:g}",
    ]
    if rendezvous.conf:
        conf = ",".join(f"{key}={value}" for key, value in rendezvous.conf.items())
        argv.append(f"--rdzv-conf={conf}")
    argv += ["-m", RANK_EXEC_MODULE, "--", *rank_argv]
    return argv


AGENT_STOP_MARGIN_S = 5.0
"""The node agent's stop grace is the backend's minus this (at most half of it): after a
stop signal the agent kills the ranks still running, writes its summary and exits with
128+N before the backend's own kill (after ``local.stop_grace_s`` / ``slurm.stop_grace_s``,
or the kubelet's after ``terminationGracePeriodSeconds``)."""


def agent_stop_grace_s(backend_grace_s: float) -> float:
    """How long the agent lets ranks checkpoint after a stop signal, given the backend's
    grace before it kills the node's processes."""
    return max(backend_grace_s - AGENT_STOP_MARGIN_S, backend_grace_s / 2)


def node_command(
    spec: JobSpec,
    job_dir: Path,
    rendezvous: Rendezvous,
    python: str,
    *,
    backend_grace_s: float,
    monitor_interval_s: float = 0.1,
) -> list[str]:
    """What a backend starts on each node: the node agent wrapping the elastic torchrun.

    ``python -m scalectl agent --job-dir D --restarts N --stop-grace-s G -- <torchrun
    args>``, G from the backend's own grace (:func:`agent_stop_grace_s`); the node name
    comes from ``SCALECTL_NODE`` (``rank_environment``) or the host name.
    """
    rank_argv = entrypoint_argv(spec, job_dir, python)
    args = torchrun_args(spec, rank_argv, rendezvous, monitor_interval_s=monitor_interval_s)
    return [
        python,
        *AGENT_ARGV,
        f"--job-dir={job_dir}",
        f"--restarts={spec.max_restarts}",
        f"--stop-grace-s={agent_stop_grace_s(backend_grace_s):g}",
        "--",
        *args,
    ]


def omp_threads(spec: JobSpec, node_cpus: int) -> int:
    """Threads per rank: the node's CPUs split evenly between its ranks, at least one.

    Uses ``cpus_per_node`` when the spec asks for a CPU count (that is what the
    scheduler grants), else the CPUs this node has. Splitting avoids the
    oversubscription torchrun's blanket ``OMP_NUM_THREADS=1`` avoids, without leaving
    cores idle when there are more cores than ranks.
    """
    cpus = spec.cpus_per_node if spec.cpus_per_node is not None else node_cpus
    return max(1, cpus // spec.procs_per_node)


def rank_environment(
    spec: JobSpec,
    job_id: str,
    job_dir: Path,
    node: str,
    node_cpus: int,
) -> dict[str, str]:
    """Environment added for every rank of ``node`` (plain values only, no secrets).

    ``SCALECTL_JOB_ID`` also marks every process of the job, which is how the local
    backend finds them all when it cancels (no orphan survives).
    """
    env: dict[str, str] = {
        "PYTHONUNBUFFERED": "1",
        "OMP_NUM_THREADS": str(omp_threads(spec, node_cpus)),
    }
    env.update(spec.env_plain())
    env.update(
        {
            env_names.JOB_ID_ENV: job_id,
            env_names.JOB_DIR_ENV: str(job_dir),
            env_names.NODE_ENV: node,
        }
    )
    if spec.checkpoint.every_steps is not None:
        env[env_names.CKPT_EVERY_STEPS_ENV] = str(spec.checkpoint.every_steps)
    if spec.checkpoint.keep_last is not None:
        env[env_names.CKPT_KEEP_LAST_ENV] = str(spec.checkpoint.keep_last)
    if spec.plan is not None:
        env[env_names.PLAN_FILE_ENV] = str(JobDir(job_dir).plan_json)
        env.update(_layout_environment(spec.plan))
        if spec.nodes.min != spec.nodes.max:
            env[env_names.LAYOUT_ELASTIC_DP_ENV] = "1"
    return env


def _layout_environment(plan: dict[str, Any]) -> dict[str, str]:
    """``SCALECTL_LAYOUT_*`` of an embedded plan; none for a plan that is not a Plan
    (launch refuses those in ``api.prepare``; this also serves specs built in tests)."""
    try:
        return layout_environment(resolve_layout(parse_plan(plan)))
    except PlanError:
        return {}
