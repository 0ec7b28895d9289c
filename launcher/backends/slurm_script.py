"""The sbatch script of a Slurm job or job array: a pure function of the spec.

``render_sbatch`` is what ``scalectl launch --backend slurm --dry-run`` prints and
exactly what ``SlurmBackend.submit`` hands to ``sbatch`` (a golden file pins it). The
``#SBATCH`` block, setup, command and teardown sections are laid out by
:func:`launcher.backends.sbatch_format.sbatch_script` exactly as submitit lays out its
own scripts (parameters sorted, values shell-quoted, ``--open-mode=append``); this
module adds the one ``srun`` step and the lines around it.

What the script does, in order:

1. exports ``SCALECTL_JOB_ID`` / ``SCALECTL_JOB_DIR`` (for an array: picked by
   ``$SLURM_ARRAY_TASK_ID`` from two bash arrays), so every process of the job — batch
   shell, ``srun``, node task, torchrun, ranks — carries the job's marker;
2. resolves the rendezvous endpoint: the first node of the allocation
   (``scontrol show hostnames``) turned into its ``NodeAddr`` (``scontrol show node``;
   a hostname or IP on real clusters, 127.0.0.1 on the local two-slurmd cluster) and a
   port derived from the job id (:func:`rdzv_port_expr`);
3. runs the user's ``slurm.setup`` lines;
4. runs ONE ``srun`` step, one task per node, ``--kill-on-bad-exit=1``: the node agent
   ``python -m scalectl agent --policy=slurm``, whose command line
   (:func:`launcher.commands.node_command`) ``launcher.backends.slurm_node`` completes
   from job.json on the node; it starts torchrun;
5. hands the step's exit status to ``slurm_task end``, which decides: finished,
   failed, or preempted / node lost → ``scontrol requeue`` within the budget.

Nothing secret is ever in the script: env references (``{from_env: X}``) travel in
the environment of the ``sbatch`` process (``--export=ALL``), plain env values and args
are read by the node task from job.json. User-given values that do land in the script
(paths, partition, ...) are quoted with :func:`shlex.quote`, which Slurm's ``#SBATCH``
parser understands too; values that cannot be expressed on one ``#SBATCH`` line
(newlines) or that Slurm would rewrite (``%`` patterns, ``\\``) are refused by
:func:`check_slurm_spec`.
"""

from __future__ import annotations

import math
import shlex
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from contract.env import JOB_DIR_ENV, JOB_ID_ENV, RDZV_ENDPOINT_ENV
from launcher.backends.sbatch_format import sbatch_script
from launcher.commands import Rendezvous, node_command
from launcher.errors import LaunchInputError
from launcher.spec import JobSpec

SLURM_TASK_MODULE = "launcher.backends.slurm_task"
"""The node task and the end-of-job helper, run inside the allocation."""

RDZV_PORT_BASE = 20000
RDZV_PORT_SPAN = 10000
"""c10d rendezvous port = ``RDZV_PORT_BASE + job id % RDZV_PORT_SPAN``: below Linux's
ephemeral range (32768+), so no outgoing connection holds it, and distinct for any two
jobs whose Slurm ids differ by less than the span (jobs sharing a node)."""

BATCH_LOG = "batch.slurm.log"
"""The batch shell's output (setup lines, end helper, Slurm's own messages), in logs/."""

_UNSAFE_PATH_CHARS = {"\n": "a newline", "\r": "a carriage return", "%": "'%'", "\\": "'\\'"}


@dataclass(frozen=True)
class ArrayElement:
    """One job of the script: a plain job has one, a sweep array one per grid point."""

    job_id: str
    """The scalectl job id (registry id and process marker)."""
    job_dir: Path
    """Its job directory (absolute, on a file system every node sees)."""


@dataclass(frozen=True)
class ScriptRequest:
    """Everything :func:`render_sbatch` needs; all elements share ``spec``'s resources."""

    spec: JobSpec
    """The spec (for an array: the first element's; the others differ only in args/env)."""
    elements: tuple[ArrayElement, ...]
    """One element for a plain job; several make a job array (``--array``)."""
    python: str
    """Interpreter that runs the node task and the end helper on the nodes."""
    array_dir: Path | None = None
    """Arrays only: the sweep directory, where each element's batch output starts."""
    throttle: int | None = None
    """Arrays only: at most this many elements run at once (``--array=0-N%throttle``)."""
    name: str | None = None
    """Slurm job name; default ``spec.name`` (a sweep passes its own, not run 0's)."""

    @property
    def is_array(self) -> bool:
        return len(self.elements) > 1 or self.array_dir is not None


def slurm_signal_name(text: str) -> str:
    """``USR2``/``SIGUSR2``/``12`` → ``USR2`` (Slurm's spelling); LaunchInputError if unknown."""
    raw = text.strip().upper()
    try:
        sig = (
            signal.Signals(int(raw))
            if raw.isdigit()
            else signal.Signals["SIG" + raw.removeprefix("SIG")]
        )
    except (KeyError, ValueError):
        raise LaunchInputError(
            f"slurm.signal {text!r} is not a signal name; write e.g. USR2, USR1 or TERM"
        ) from None
    if sig in (signal.SIGKILL, signal.SIGSTOP):
        raise LaunchInputError(
            f"slurm.signal {sig.name} cannot be caught, so nothing could checkpoint; use USR2"
        )
    return sig.name.removeprefix("SIG")


def check_slurm_spec(spec: JobSpec, job_dirs: Sequence[Path] = ()) -> None:
    """Refuse, with one line naming the field, what the script could not carry faithfully."""
    slurm = spec.slurm
    slurm_signal_name(slurm.signal)
    paths: list[tuple[str, Path | None]] = [
        ("workdir", spec.workdir),
        ("jobs_root", spec.jobs_root),
        ("job_dir", spec.job_dir),
        *(("job_dir", d) for d in job_dirs),
    ]
    for field, path in paths:
        if path is None:
            continue
        for char, name in _UNSAFE_PATH_CHARS.items():
            if char in str(path):
                raise LaunchInputError(
                    f"{field} {str(path)!r} contains {name}, which Slurm's output paths and "
                    f"#SBATCH lines cannot carry; choose a {field} without it"
                )
    for field in ("partition", "account", "qos", "constraint", "container_image"):
        value = getattr(slurm, field)
        if value is not None and (not value.strip() or "\n" in value or "\r" in value):
            raise LaunchInputError(f"slurm.{field} {value!r} must be one non-empty line")
    for index, line in enumerate(slurm.extra_sbatch):
        if not line.startswith("-") or "\n" in line or "\r" in line:
            raise LaunchInputError(
                f"slurm.extra_sbatch[{index}] {line!r} must be one sbatch option on one line, "
                "e.g. --reservation=big (without #SBATCH)"
            )
    for index, mount in enumerate(slurm.container_mounts):
        if "\n" in mount or "," in mount or not mount:
            raise LaunchInputError(
                f"slurm.container_mounts[{index}] {mount!r} must be one SRC:DST[:FLAGS] entry"
            )
    for index, job in enumerate(slurm.after):
        if not job.replace("_", "").isdigit():
            raise LaunchInputError(
                f"slurm.after[{index}] {job!r} is not a Slurm job id; give the id sbatch "
                "printed, or use --after with a scalectl job"
            )
    limit = spec.time_limit_s
    if limit is not None and slurm.signal_before_end_s and slurm.signal_before_end_s >= limit:
        raise LaunchInputError(
            f"slurm.signal_before_end_s ({slurm.signal_before_end_s}) must be shorter than "
            f"time_limit_s ({limit}); lower it or raise the time limit"
        )


def time_limit_minutes(seconds: int) -> int:
    """Slurm's ``--time`` in whole minutes (its resolution), rounded up."""
    return max(1, math.ceil(seconds / 60))


def mem_request(mem_gib: float) -> str:
    """``--mem`` per node in MiB (``16G`` would lose fractions)."""
    return f"{math.ceil(mem_gib * 1024)}M"


def rdzv_port_expr() -> str:
    """Shell arithmetic for the rendezvous port (see RDZV_PORT_BASE)."""
    return f"$(({RDZV_PORT_BASE} + SLURM_JOB_ID % {RDZV_PORT_SPAN}))"


def rdzv_port(slurm_job_id: int) -> int:
    """The port :func:`rdzv_port_expr` gives for ``slurm_job_id`` (for tests and docs)."""
    return RDZV_PORT_BASE + slurm_job_id % RDZV_PORT_SPAN


def node_task_python(spec: JobSpec, default_python: str) -> str:
    """Interpreter of the node task (it needs scalectl importable): the one that runs
    scalectl; inside a container, where the host's venv path means nothing, the
    entrypoint's interpreter or the image's ``python3``. The end helper runs in the
    batch shell on the host, so it always uses ``default_python``."""
    if spec.slurm.container_image:
        return spec.entrypoint.python or "python3"
    return default_python


def sbatch_flags(request: ScriptRequest) -> dict[str, object]:
    """The ``#SBATCH`` flags of the script, by submitit's parameter names (``None`` = absent)."""
    spec = request.spec
    slurm = spec.slurm
    flags: dict[str, object] = {
        "job_name": request.name or spec.name,
        "partition": slurm.partition,
        "account": slurm.account,
        "qos": slurm.qos,
        "constraint": slurm.constraint,
        "exclusive": True if slurm.exclusive else None,
        "time": time_limit_minutes(spec.time_limit_s) if spec.time_limit_s else None,
        # The whole elastic range is allocated: Slurm grants a node range (--nodes=1-2)
        # at its minimum even on an idle cluster, and nodes.min is the floor torchrun
        # keeps training at when nodes are lost, not a size to start at.
        "nodes": spec.nodes.max,
        "ntasks_per_node": 1,
        "cpus_per_task": spec.cpus_per_node,
        "gpus_per_node": spec.gpus_per_node or None,
        "mem": mem_request(spec.mem_gib) if spec.mem_gib is not None else None,
        "signal": f"{slurm_signal_name(slurm.signal)}@{slurm.signal_before_end_s}",
        "requeue" if slurm.requeue else "no-requeue": True,
        "chdir": str(spec.workdir) if spec.workdir is not None else None,
        "open-mode": "append",
    }
    if slurm.after:
        flags["dependency"] = "afterok:" + ":".join(slurm.after)
        flags["kill-on-invalid-dep"] = "yes"
    if request.is_array:
        assert request.array_dir is not None, "an array needs its sweep directory"
        count = len(request.elements)
        flags["array"] = f"0-{count - 1}%{min(count, request.throttle or count)}"
        flags["output"] = str(request.array_dir / "batch-%A_%a.log")
    else:
        flags["output"] = str(request.elements[0].job_dir / "logs" / BATCH_LOG)
    return flags


def _identity_lines(request: ScriptRequest) -> list[str]:
    if not request.is_array:
        element = request.elements[0]
        return [
            f"export {JOB_ID_ENV}={shlex.quote(element.job_id)}",
            f"export {JOB_DIR_ENV}={shlex.quote(str(element.job_dir))}",
        ]
    ids = " ".join(shlex.quote(e.job_id) for e in request.elements)
    dirs = " ".join(shlex.quote(str(e.job_dir)) for e in request.elements)
    return [
        f"scalectl_job_ids=({ids})",
        f"scalectl_job_dirs=({dirs})",
        f'export {JOB_ID_ENV}="${{scalectl_job_ids[$SLURM_ARRAY_TASK_ID]}}"',
        f'export {JOB_DIR_ENV}="${{scalectl_job_dirs[$SLURM_ARRAY_TASK_ID]}}"',
        f'exec >>"${JOB_DIR_ENV}/logs/{BATCH_LOG}" 2>&1',
    ]


def _setup_lines(request: ScriptRequest) -> list[str]:
    return [
        "# scalectl: the job's marker and directory, then the rendezvous endpoint (first",
        "# node of the allocation, by its NodeAddr; port derived from the job id)",
        *_identity_lines(request),
        'scalectl_head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
        'scalectl_addr=$(scontrol show node "$scalectl_head"'
        " | sed -n 's/^ *NodeAddr=\\([^ ]*\\).*/\\1/p' | head -n 1)",
        f'export {RDZV_ENDPOINT_ENV}="${{scalectl_addr:-$scalectl_head}}:{rdzv_port_expr()}"',
        *request.spec.slurm.setup,
    ]


def srun_argv_text(request: ScriptRequest) -> str:
    """The one ``srun`` line: one node task per node of the allocation."""
    spec = request.spec
    slurm = spec.slurm
    words = [
        "srun",
        "--kill-on-bad-exit=1",
        "--ntasks-per-node=1",
        "--open-mode=append",
    ]
    if spec.cpus_per_node is not None:
        # Slurm 22.05's srun no longer inherits --cpus-per-task from sbatch.
        words.append(f"--cpus-per-task={spec.cpus_per_node}")
    if slurm.container_image:
        words.append(f"--container-image={slurm.container_image}")
    if slurm.container_mounts:
        words.append(f"--container-mounts={','.join(slurm.container_mounts)}")
    head = shlex.join(words)
    python = shlex.quote(node_task_python(spec, request.python))
    out = f'--output="${JOB_DIR_ENV}/logs/{BATCH_LOG}"'
    return (
        f'{head} --ntasks="$SLURM_JOB_NUM_NODES" {out} '
        f'{python} -u -m scalectl agent --policy=slurm --job-dir="${JOB_DIR_ENV}"'
    )


def _node_command_comment(request: ScriptRequest) -> list[str]:
    """What each node task starts, as comment lines (documentation for --dry-run)."""
    element = request.elements[0]
    rendezvous = Rendezvous(endpoint=f"${RDZV_ENDPOINT_ENV}", run_id=f"${JOB_ID_ENV}")
    python = node_task_python(request.spec, request.python)
    argv = node_command(
        request.spec,
        element.job_dir,
        rendezvous,
        python,
        backend_grace_s=request.spec.slurm.stop_grace_s,
    )
    text = shlex.join(argv)
    which = "run 0's node tasks start" if request.is_array else "each node task starts"
    lines = [f"# {which} (rendezvous conf and per-node values added at run time):"]
    # Every physical line of the quoted command is prefixed, so an argument holding a
    # newline can never end the comment.
    lines += ["#   " + line for line in text.split("\n")]
    return lines


def render_sbatch(request: ScriptRequest) -> str:
    """The sbatch script (pure: same request, same text)."""
    spec = request.spec
    check_slurm_spec(spec, [e.job_dir for e in request.elements])
    python = shlex.quote(request.python)
    command = "\n".join(
        [
            *_node_command_comment(request),
            srun_argv_text(request),
            "scalectl_step_rc=$?",
        ]
    )
    teardown = [f'exec {python} -m {SLURM_TASK_MODULE} end "${JOB_DIR_ENV}" "$scalectl_step_rc"']
    text = sbatch_script(sbatch_flags(request), _setup_lines(request), command, teardown)
    return _with_extra_sbatch(text, spec.slurm.extra_sbatch)


def _with_extra_sbatch(text: str, extra: Sequence[str]) -> str:
    """Insert the user's extra ``#SBATCH`` lines after ours (still before any command)."""
    if not extra:
        return text
    lines = text.split("\n")
    last = max(i for i, line in enumerate(lines) if line.startswith("#SBATCH "))
    added = ["# slurm.extra_sbatch", *(f"#SBATCH {item}" for item in extra)]
    return "\n".join(lines[: last + 1] + added + lines[last + 1 :])
