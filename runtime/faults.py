"""Deterministic fault injection for the reference trainer (and the agent's fault tests).

The environment variable ``SCALECTL_FAULTS`` holds faults separated by ``;``, each
``kind@key=value,key=value``::

    SCALECTL_FAULTS="crash@step=12,rank=1;hang@step=20,rank=0;exit@step=8,code=3"

Keys: ``step`` (required) is the step the fault belongs to; ``rank`` (optional, the global
rank) restricts it to one rank, ``node`` (optional, ``SCALECTL_NODE``) to the ranks of one
node; otherwise every rank fires it. Kinds, and where they fire:

=====================  =========================================================  ===========
kind                   what happens                                               point
=====================  =========================================================  ===========
``crash``              raises ``FaultInjected`` (a Python exception, exit code 1)  step start
``exit``               ``os._exit(code)``; ``code=`` (0-255, default 1)            step start
``kill``               the rank sends itself SIGKILL                              step start
``hang``               sleeps forever in Python, or ``secs=S`` seconds then goes   step start
                       on (a stall)
``signal``             the rank sends itself ``sig=`` (name or number, default     step start
                       TERM), then goes on: the trainer's handler does the rest
``crash_in_checkpoint`` SIGKILL while writing the checkpoint of ``step``: after     checkpoint
                       this rank's shard files are written, before the metadata
                       and the commit rename
``slow``               from ``step`` on, every step's forward compute on this      compute
                       rank takes ``secs=`` longer (a throttled device: a
                       straggler); not one-shot, it lasts for the process
=====================  =========================================================  ===========

``kill`` and ``signal`` take ``target=``: ``rank`` (default, the rank itself), ``agent``
(the node agent, ``SCALECTL_AGENT_PID``: a preemption signal arriving at a step) or
``node`` (every process of this job on this node, found by ``SCALECTL_JOB_ID`` and
``SCALECTL_NODE`` in ``/proc/<pid>/environ``, agent first, the rank itself last: the
node is lost). Under Slurm the agent is ``srun``'s task and its own environment has no
``SCALECTL_NODE`` (only its children's has), so it outlives torchrun and the ranks and
reports the loss (``runtime.agent.slurm_policy``).

"Step start" for ``step=N`` means before step N runs: N-1 steps are complete (and a
checkpoint due at step N-1 is committed). The trainer calls :meth:`Injector.fire` with
the point name (``"step"`` or ``"checkpoint"``) and the step.

One shot per job: before firing, a rank creates the marker file
``<job_dir>/faults/<id>.rank<r>`` with ``O_EXCL``; a fault whose marker exists does not
fire again, so after the restart the run goes past the fault. Without a job directory
there is no marker, and a fault fires every time a process reaches it. Firing also
appends a ``fault_injected`` event (kind, step, rank, spec) to ``events.jsonl`` and prints
one line to stderr, so a supervisor can tell an injected fault from a real one.

Standard library only.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from contract import env
from contract.env import AGENT_PID_ENV, FAULTS_ENV
from contract.events import EventKind, append_event
from runtime import processes

FAULTS_DIR = "faults"
"""Sub-directory of the job directory holding the one-shot markers."""

STEP = "step"
CHECKPOINT = "checkpoint"

_KINDS: dict[str, tuple[str, frozenset[str]]] = {
    "crash": (STEP, frozenset()),
    "exit": (STEP, frozenset({"code"})),
    "kill": (STEP, frozenset({"target"})),
    "hang": (STEP, frozenset({"secs"})),
    "signal": (STEP, frozenset({"sig", "target"})),
    "crash_in_checkpoint": (CHECKPOINT, frozenset()),
    "slow": (STEP, frozenset({"secs"})),
}

TARGETS = ("rank", "agent", "node")
"""What ``kill``/``signal`` hit (see the module docstring)."""


class FaultSpecError(ValueError):
    """``SCALECTL_FAULTS`` could not be parsed; the message names the part and the fix."""

    user_error = True


class FaultInjected(RuntimeError):
    """The exception a ``crash`` fault raises."""


@dataclass(frozen=True)
class Fault:
    """One parsed fault."""

    kind: str
    """One of ``crash exit kill hang signal crash_in_checkpoint``."""
    step: int
    """The step it belongs to (see the module docstring for what that means per kind)."""
    rank: int | None
    """Global rank that fires it; ``None``: every rank."""
    code: int = 1
    """Exit status for ``exit``."""
    signum: int = signal.SIGTERM
    """Signal number for ``signal``."""
    secs: float | None = None
    """Stall length for ``hang``; ``None``: forever."""
    target: str = "rank"
    """Who ``kill``/``signal`` hit: ``rank``, ``agent`` or ``node``."""
    node: str | None = None
    """Node (``SCALECTL_NODE``) whose ranks fire it; ``None``: any node."""
    spec: str = ""
    """The fault as written (trimmed), used for its marker id and in events."""

    @property
    def point(self) -> str:
        return _KINDS[self.kind][0]

    @property
    def marker_id(self) -> str:
        return hashlib.sha1(self.spec.encode()).hexdigest()[:12]


def parse(text: str) -> list[Fault]:
    """Parse a ``SCALECTL_FAULTS`` value; raises FaultSpecError naming the bad part."""
    faults: list[Fault] = []
    for raw in text.split(";"):
        spec = raw.strip()
        if spec:
            faults.append(_parse_one(spec))
    return faults


def _parse_one(spec: str) -> Fault:
    where = f"{FAULTS_ENV} entry {spec!r}"
    kind, sep, rest = spec.partition("@")
    kind = kind.strip()
    if kind not in _KINDS:
        raise FaultSpecError(
            f"{where}: unknown fault kind {kind!r}; use one of {', '.join(_KINDS)}"
        )
    if not sep:
        raise FaultSpecError(f"{where}: missing '@step=N'; write e.g. '{kind}@step=10'")
    allowed = {"step", "rank", "node"} | _KINDS[kind][1]
    values: dict[str, str] = {}
    for item in rest.split(","):
        key, eq, value = (part.strip() for part in item.partition("="))
        if not eq or not key or not value:
            raise FaultSpecError(f"{where}: {item.strip()!r} is not key=value")
        if key not in allowed:
            keys = ", ".join(sorted(allowed))
            raise FaultSpecError(f"{where}: key {key!r} does not apply to {kind}; allowed: {keys}")
        values[key] = value
    if "step" not in values:
        raise FaultSpecError(f"{where}: 'step=N' is required")
    fault = Fault(
        kind=kind,
        step=_nonneg_int(values["step"], "step", where),
        rank=_nonneg_int(values["rank"], "rank", where) if "rank" in values else None,
        spec=spec,
    )
    if "code" in values:
        code = _nonneg_int(values["code"], "code", where)
        if code > 255:
            raise FaultSpecError(f"{where}: code={code} is not an exit status; use 0-255")
        fault = replace(fault, code=code)
    if "sig" in values:
        fault = replace(fault, signum=_signal_number(values["sig"], where))
    if "secs" in values:
        try:
            secs = float(values["secs"])
        except ValueError:
            secs = -1.0
        if not secs > 0:
            raise FaultSpecError(f"{where}: secs={values['secs']!r} must be a positive number")
        fault = replace(fault, secs=secs)
    elif kind == "slow":
        raise FaultSpecError(f"{where}: 'secs=S' is required (extra compute seconds per step)")
    if "node" in values:
        fault = replace(fault, node=values["node"])
    if "target" in values:
        if values["target"] not in TARGETS:
            raise FaultSpecError(
                f"{where}: target={values['target']!r} is not one of {', '.join(TARGETS)}"
            )
        fault = replace(fault, target=values["target"])
    return fault


def _nonneg_int(value: str, key: str, where: str) -> int:
    if not value.isdigit():
        raise FaultSpecError(f"{where}: {key}={value!r} must be a non-negative integer")
    return int(value)


def _signal_number(value: str, where: str) -> int:
    if value.isdigit():
        number = int(value)
        if number in {int(s) for s in signal.Signals}:
            return number
    else:
        name = value.upper()
        name = name if name.startswith("SIG") else f"SIG{name}"
        if name in signal.Signals.__members__:
            return int(signal.Signals[name])
    raise FaultSpecError(f"{where}: sig={value!r} is not a signal; use e.g. TERM, USR2 or 15")


class Injector:
    """Fires the faults that belong to this rank at the points the trainer reaches."""

    def __init__(self, faults: list[Fault], rank: int, job_dir: Path | None) -> None:
        self.rank = rank
        self.job_dir = job_dir
        node = env.node()
        self.faults = [
            f
            for f in faults
            if (f.rank is None or f.rank == rank) and (f.node is None or f.node == node)
        ]
        self._fired: set[Fault] = set()

    @classmethod
    def from_env(cls, rank: int, job_dir: Path | None) -> Injector:
        """Parse ``SCALECTL_FAULTS`` (empty or unset: no faults)."""
        return cls(parse(env.faults()), rank, job_dir)

    def __bool__(self) -> bool:
        return bool(self.faults)

    def fire(self, point: str, step: int) -> None:
        """Fire every fault of this rank registered at ``point`` for ``step``."""
        for fault in self.faults:
            if fault.kind == "slow":
                continue
            if fault.point == point and fault.step == step and self._claim(fault):
                self._act(fault)

    def slowdown_s(self, step: int) -> float:
        """Extra compute seconds ``slow`` faults add to ``step`` on this rank (0.0: none).

        The first slowed step records the ``fault_injected`` event (once per job).
        """
        extra = 0.0
        for fault in self.faults:
            if fault.kind == "slow" and step >= fault.step and fault.secs is not None:
                extra += fault.secs
                if fault not in self._fired and self._claim(fault):
                    self._announce(fault)
                self._fired.add(fault)
        return extra

    def _claim(self, fault: Fault) -> bool:
        if fault in self._fired:
            return False
        self._fired.add(fault)
        if self.job_dir is None:
            return True
        marker_dir = self.job_dir / FAULTS_DIR
        marker_dir.mkdir(parents=True, exist_ok=True)
        marker = marker_dir / f"{fault.marker_id}.rank{self.rank}"
        try:
            fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as handle:
            handle.write(fault.spec + "\n")
        return True

    def _announce(self, fault: Fault) -> str:
        what = f"{fault.kind} at step {fault.step} on rank {self.rank} ({fault.spec})"
        print(f"scalectl fault injection: {what}", file=sys.stderr, flush=True)
        if self.job_dir is not None:
            append_event(
                self.job_dir,
                EventKind.FAULT_INJECTED,
                kind=fault.kind,
                step=fault.step,
                rank=self.rank,
                spec=fault.spec,
                target=fault.target,
            )
        sys.stdout.flush()
        return what

    def _act(self, fault: Fault) -> None:
        what = self._announce(fault)
        if fault.kind == "crash":
            raise FaultInjected(f"injected {what}")
        if fault.kind == "exit":
            os._exit(fault.code)
        if fault.kind in ("kill", "signal") and fault.target != "rank":
            sig = signal.SIGKILL if fault.kind == "kill" else fault.signum
            _signal_target(fault.target, sig)
            if fault.kind == "signal":
                return
        if fault.kind in ("kill", "crash_in_checkpoint"):
            os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(60)  # SIGKILL is delivered before this returns
        if fault.kind == "hang":
            if fault.secs is not None:
                time.sleep(fault.secs)
                return
            while True:
                time.sleep(3600)
        if fault.kind == "signal":
            os.kill(os.getpid(), fault.signum)


def _signal_target(target: str, sig: int) -> None:
    """Send ``sig`` to the node agent, or SIGKILL the whole node (see the docstring)."""
    if target == "agent":
        agent = os.environ.get(AGENT_PID_ENV, "")
        if agent.isdigit():
            os.kill(int(agent), sig)
        else:
            print(
                f"scalectl fault injection: no {AGENT_PID_ENV}; nothing signalled", file=sys.stderr
            )
        return
    for pid in node_processes(env.job_id(), env.node()):
        if pid != os.getpid():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)


def node_processes(job_id: str | None, node: str | None) -> list[int]:
    """Pids whose environment has this ``SCALECTL_JOB_ID`` and ``SCALECTL_NODE``.

    The node agent comes first (its pid is ``SCALECTL_AGENT_PID``), so it cannot react
    to the deaths of the others.
    """
    if not job_id or not node:
        return []
    found = processes.job_pids(job_id, node)
    agent = os.environ.get(AGENT_PID_ENV, "")
    found.sort(key=lambda pid: (str(pid) != agent, pid))
    return found
