"""Every ``SCALECTL_*`` environment variable of the project: one name, one accessor each.

The launcher sets most of them for every rank (``launcher.commands.rank_environment``),
the node agent adds its own for the ranks under it, and the user's shell may set the
``HOME``/``JOBS_ROOT`` pair and the fault-injection list. No other module spells a
``SCALECTL_`` name (tests/contract/test_contract_literals.py fails if one does): it
imports the ``*_ENV`` constant to set a variable and calls the accessor to read one.

Accessors take an optional ``environ`` mapping (default: ``os.environ`` at call time),
so code that already holds a copy of the environment (``runtime.rank_exec``) and tests
read the same way. An empty value reads as unset, as every reader here always did.

Standard library only: every rank imports this module at start-up.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

PREFIX = "SCALECTL_"
"""What every variable of this module starts with (a child's environment is cleaned by it)."""

HOME_ENV = "SCALECTL_HOME"
"""Directory of scalectl's state (the job registry, default jobs root); set by the user.
Default when unset: ``~/.local/state/scalectl``."""

JOBS_ROOT_ENV = "SCALECTL_JOBS_ROOT"
"""Directory holding job directories; set by the user. Default: ``$SCALECTL_HOME/jobs``."""

JOB_ID_ENV = "SCALECTL_JOB_ID"
"""The job's id; set for every process of the job. It also marks the job's processes:
a process-table scan finds a job's leftovers by it in ``/proc/<pid>/environ``."""

JOB_DIR_ENV = "SCALECTL_JOB_DIR"
"""The job directory (contract.jobdir); set for every rank. Where progress, events and
logs go; a program run outside scalectl without it reports nothing."""

NODE_ENV = "SCALECTL_NODE"
"""The node's name in file names (``logs/<node>.<rank>.log``, ``telemetry/<node>.jsonl``);
set by the backend. Default: the host name's first label."""

NODE_INDEX_ENV = "SCALECTL_NODE_INDEX"
"""The pod's completion index on an indexed Kubernetes Job (a field reference the
manifest turns into ``SCALECTL_NODE``); read by nothing else."""

AGENT_PID_ENV = "SCALECTL_AGENT_PID"
"""Pid of the node agent; set by the agent for the ranks under it. A rank that sees it
leaves restart events to the agent; fault injection signals it to fake a preemption."""

RESTART_BACKOFF_ENV = "SCALECTL_RESTART_BACKOFF"
"""``base,max`` seconds of back-off between torchrun's in-place restarts; set by the
node agent, slept by ``runtime.rank_exec`` (restart n ≥ 2 waits ``min(max, base·2^(n-2))``)."""

SIGNALS_REACH_ALL_ENV = "SCALECTL_SIGNALS_REACH_ALL"
"""``1`` when the scheduler's signals reach every process of the job (so the agent does
not forward them to the ranks); read by the agent's local and Kubernetes policies, for a
scheduler it has no policy for (the Slurm policy reads the cluster's proctrack type
itself)."""

RDZV_ENDPOINT_ENV = "SCALECTL_RDZV_ENDPOINT"
"""``host:port`` of torchrun's c10d rendezvous; exported by the sbatch script (the first
node of the allocation) for the node agent's command (``launcher.backends.slurm_node``)."""

FAULTS_ENV = "SCALECTL_FAULTS"
"""Fault injection for tests and drills: ``kind@step=N,...`` entries separated by ``;``
(runtime.faults documents the grammar); set by the user in the job's ``env``."""

TRAIN_DUMP_STATE_ENV = "SCALECTL_TRAIN_DUMP_STATE"
"""``1``: rank 0 of the reference trainer also writes the full (gathered) model and
optimizer state to ``<job_dir>/debug/{saved,resumed}_step_<n>.pt`` at every save and
resume: a verification aid (tests compare them) that costs a full gather; set by tests."""

CKPT_EVERY_STEPS_ENV = "SCALECTL_CKPT_EVERY_STEPS"
"""The spec's ``checkpoint.every_steps``, for the user's own program (the reference
trainer gets ``--ckpt-every``); set only when the spec has it."""

CKPT_KEEP_LAST_ENV = "SCALECTL_CKPT_KEEP_LAST"
"""The spec's ``checkpoint.keep_last``, for the user's own program (the reference trainer
gets ``--keep-checkpoints``); set only when the spec has it."""

PLAN_FILE_ENV = "SCALECTL_PLAN_FILE"
"""Path of ``plan.json`` in the job directory; set for every rank of a job launched from
a Plan. The reference trainer reads the plan from it when no ``--plan`` flag names one."""

LOCAL_NODE_RETURN_S_ENV = "SCALECTL_LOCAL_NODE_RETURN_S"
"""Seconds before the local backend starts a lost node's agent again (tests shorten it)."""

# The planned layout, for any program a Plan launches (set with SCALECTL_PLAN_FILE; the
# reference trainer reads plan.json itself). contract.plan_layout.layout_environment
# writes them; :func:`layout` reads them.

LAYOUT_DP_ENV = "SCALECTL_LAYOUT_DP"
"""Data-parallel degree of the plan's layout."""

LAYOUT_TP_ENV = "SCALECTL_LAYOUT_TP"
"""Tensor-parallel degree."""

LAYOUT_PP_ENV = "SCALECTL_LAYOUT_PP"
"""Pipeline stages."""

LAYOUT_CP_ENV = "SCALECTL_LAYOUT_CP"
"""Context-parallel degree."""

LAYOUT_EP_ENV = "SCALECTL_LAYOUT_EP"
"""Expert-parallel degree."""

LAYOUT_SHARDING_ENV = "SCALECTL_LAYOUT_SHARDING"
"""Data-parallel sharding: none, zero1, zero2, zero3 or hsdp (unset: the plan does not say)."""

LAYOUT_HSDP_SHARD_SIZE_ENV = "SCALECTL_LAYOUT_HSDP_SHARD_SIZE"
"""With sharding hsdp: ranks of one shard group; unset otherwise."""

LAYOUT_SEQUENCE_PARALLEL_ENV = "SCALECTL_LAYOUT_SEQUENCE_PARALLEL"
"""``1`` when norms and the residual stream are split along the sequence over tp, else ``0``."""

LAYOUT_RECOMPUTE_ENV = "SCALECTL_LAYOUT_RECOMPUTE"
"""Activation recomputation: none, selective or full (unset: the plan does not say)."""

LAYOUT_MICRO_BATCH_ENV = "SCALECTL_LAYOUT_MICRO_BATCH"
"""Sequences per micro-batch per data-parallel rank."""

LAYOUT_GRAD_ACCUM_ENV = "SCALECTL_LAYOUT_GRAD_ACCUM"
"""Micro-steps per optimiser step: global batch / (dp x micro-batch); unset when the plan
has no global batch."""

LAYOUT_GLOBAL_BATCH_TOKENS_ENV = "SCALECTL_LAYOUT_GLOBAL_BATCH_TOKENS"
"""Tokens per optimiser step, the whole job; unset when the plan does not say."""

LAYOUT_ELASTIC_DP_ENV = "SCALECTL_LAYOUT_ELASTIC_DP"
"""``1`` when the job's node range lets dp follow the world size (``launch --plan --nodes
MIN:MAX``): at each rendezvous round dp = ``WORLD_SIZE`` / (tp x pp x cp) and gradient
accumulation = global batch tokens / (seq_len x dp x micro-batch), so tokens per step stay
the plan's; ``SCALECTL_LAYOUT_DP`` and ``_GRAD_ACCUM`` are then the plan's values. Unset
for a fixed node count."""

ALL = (
    HOME_ENV,
    JOBS_ROOT_ENV,
    JOB_ID_ENV,
    JOB_DIR_ENV,
    NODE_ENV,
    NODE_INDEX_ENV,
    AGENT_PID_ENV,
    RESTART_BACKOFF_ENV,
    SIGNALS_REACH_ALL_ENV,
    RDZV_ENDPOINT_ENV,
    FAULTS_ENV,
    TRAIN_DUMP_STATE_ENV,
    CKPT_EVERY_STEPS_ENV,
    CKPT_KEEP_LAST_ENV,
    PLAN_FILE_ENV,
    LOCAL_NODE_RETURN_S_ENV,
    LAYOUT_DP_ENV,
    LAYOUT_TP_ENV,
    LAYOUT_PP_ENV,
    LAYOUT_CP_ENV,
    LAYOUT_EP_ENV,
    LAYOUT_SHARDING_ENV,
    LAYOUT_HSDP_SHARD_SIZE_ENV,
    LAYOUT_SEQUENCE_PARALLEL_ENV,
    LAYOUT_RECOMPUTE_ENV,
    LAYOUT_MICRO_BATCH_ENV,
    LAYOUT_GRAD_ACCUM_ENV,
    LAYOUT_GLOBAL_BATCH_TOKENS_ENV,
    LAYOUT_ELASTIC_DP_ENV,
)
"""Every variable above, in the order documented."""


def _get(name: str, environ: Mapping[str, str] | None) -> str | None:
    value = (os.environ if environ is None else environ).get(name)
    return value or None


def _int(name: str, environ: Mapping[str, str] | None) -> int | None:
    value = _get(name, environ)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def home(environ: Mapping[str, str] | None = None) -> Path | None:
    """``$SCALECTL_HOME`` as a path (``~`` expanded), or None when unset."""
    value = _get(HOME_ENV, environ)
    return Path(value).expanduser() if value else None


def jobs_root(environ: Mapping[str, str] | None = None) -> Path | None:
    """``$SCALECTL_JOBS_ROOT`` as a path (``~`` expanded), or None when unset."""
    value = _get(JOBS_ROOT_ENV, environ)
    return Path(value).expanduser() if value else None


def job_id(environ: Mapping[str, str] | None = None) -> str | None:
    """``$SCALECTL_JOB_ID``, or None outside a scalectl job."""
    return _get(JOB_ID_ENV, environ)


def job_dir(environ: Mapping[str, str] | None = None) -> Path | None:
    """``$SCALECTL_JOB_DIR`` as a path, or None outside a scalectl job."""
    value = _get(JOB_DIR_ENV, environ)
    return Path(value) if value else None


def node(environ: Mapping[str, str] | None = None) -> str | None:
    """``$SCALECTL_NODE`` as set (not sanitised), or None when the backend set none."""
    return _get(NODE_ENV, environ)


def node_index(environ: Mapping[str, str] | None = None) -> int | None:
    """``$SCALECTL_NODE_INDEX`` as an integer, or None when unset or not a number."""
    return _int(NODE_INDEX_ENV, environ)


def agent_pid(environ: Mapping[str, str] | None = None) -> int | None:
    """The node agent's pid, or None when no agent runs this process (or it is garbled)."""
    value = _int(AGENT_PID_ENV, environ)
    return value if value is not None and value > 0 else None


def restart_backoff(environ: Mapping[str, str] | None = None) -> tuple[float, float] | None:
    """``(base_s, max_s)`` from ``$SCALECTL_RESTART_BACKOFF``; None when unset or garbled."""
    base, _, cap = (_get(RESTART_BACKOFF_ENV, environ) or "").partition(",")
    try:
        return float(base), float(cap)
    except ValueError:
        return None


def format_restart_backoff(base_s: float, max_s: float) -> str:
    """The value the agent sets: ``base,max`` in seconds (what restart_backoff reads)."""
    return f"{base_s:g},{max_s:g}"


def signals_reach_all(environ: Mapping[str, str] | None = None) -> bool:
    """True when ``$SCALECTL_SIGNALS_REACH_ALL`` is ``1``."""
    return _get(SIGNALS_REACH_ALL_ENV, environ) == "1"


def rdzv_endpoint(environ: Mapping[str, str] | None = None) -> str | None:
    """``host:port`` of the rendezvous, or None when the sbatch script set none."""
    return _get(RDZV_ENDPOINT_ENV, environ)


def faults(environ: Mapping[str, str] | None = None) -> str:
    """The fault-injection list (``""`` when unset); runtime.faults parses it."""
    return _get(FAULTS_ENV, environ) or ""


def train_dump_state(environ: Mapping[str, str] | None = None) -> bool:
    """True when ``$SCALECTL_TRAIN_DUMP_STATE`` is ``1``."""
    return _get(TRAIN_DUMP_STATE_ENV, environ) == "1"


def ckpt_every_steps(environ: Mapping[str, str] | None = None) -> int | None:
    """The spec's checkpoint interval in steps, or None when it has none."""
    return _int(CKPT_EVERY_STEPS_ENV, environ)


def ckpt_keep_last(environ: Mapping[str, str] | None = None) -> int | None:
    """How many committed checkpoints the spec keeps, or None when it does not say."""
    return _int(CKPT_KEEP_LAST_ENV, environ)


def plan_file(environ: Mapping[str, str] | None = None) -> Path | None:
    """Path of the job's ``plan.json``, or None for a job launched without a Plan."""
    value = _get(PLAN_FILE_ENV, environ)
    return Path(value) if value else None


def local_node_return_s(environ: Mapping[str, str] | None = None) -> float | None:
    """``$SCALECTL_LOCAL_NODE_RETURN_S`` in seconds; None when unset.

    Raises ValueError on a value that is not a number (a test's typo must not pass).
    """
    value = _get(LOCAL_NODE_RETURN_S_ENV, environ)
    return float(value) if value is not None else None


@dataclass(frozen=True)
class LayoutEnv:
    """The planned layout as the ``SCALECTL_LAYOUT_*`` variables give it."""

    dp: int
    """Data-parallel degree."""
    tp: int
    """Tensor-parallel degree."""
    pp: int
    """Pipeline stages."""
    cp: int
    """Context-parallel degree."""
    ep: int
    """Expert-parallel degree."""
    sequence_parallel: bool
    """Norms and residual stream split along the sequence over tp."""
    sharding: str | None
    """none, zero1, zero2, zero3 or hsdp; None when the plan does not say."""
    hsdp_shard_size: int | None
    """HSDP shard group size; None unless sharding is hsdp."""
    recompute: str | None
    """none, selective or full; None when the plan does not say."""
    micro_batch: int | None
    """Sequences per micro-batch per data-parallel rank."""
    grad_accum: int | None
    """Micro-steps per optimiser step."""
    global_batch_tokens: int | None
    """Tokens per optimiser step, the whole job."""
    elastic_dp: bool = False
    """dp (and with it grad_accum) follows the world size of each rendezvous round."""


def layout(environ: Mapping[str, str] | None = None) -> LayoutEnv | None:
    """The planned layout, or None for a job launched without a Plan (or garbled values)."""
    degrees = [_int(name, environ) for name in (LAYOUT_DP_ENV, LAYOUT_TP_ENV, LAYOUT_PP_ENV,
                                                 LAYOUT_CP_ENV, LAYOUT_EP_ENV)]  # fmt: skip
    if any(value is None for value in degrees):
        return None
    dp, tp, pp, cp, ep = (int(value or 1) for value in degrees)
    return LayoutEnv(
        dp=dp,
        tp=tp,
        pp=pp,
        cp=cp,
        ep=ep,
        sequence_parallel=_get(LAYOUT_SEQUENCE_PARALLEL_ENV, environ) == "1",
        sharding=_get(LAYOUT_SHARDING_ENV, environ),
        hsdp_shard_size=_int(LAYOUT_HSDP_SHARD_SIZE_ENV, environ),
        recompute=_get(LAYOUT_RECOMPUTE_ENV, environ),
        micro_batch=_int(LAYOUT_MICRO_BATCH_ENV, environ),
        grad_accum=_int(LAYOUT_GRAD_ACCUM_ENV, environ),
        global_batch_tokens=_int(LAYOUT_GLOBAL_BATCH_TOKENS_ENV, environ),
        elastic_dp=_get(LAYOUT_ELASTIC_DP_ENV, environ) == "1",
    )
