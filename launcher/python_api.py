"""The Python API for notebooks and sweeps: ``from scalectl import plan_search, estimate,
launch``.

``launch`` takes the path of ``scalectl launch --plan`` (:func:`launcher.plan_job`) and
returns a :class:`Job` handle, in the spirit of submitit's ``Job``: ``state``,
``wait(timeout)``, ``progress()``, ``logs(rank)``, ``cancel()`` and ``result()`` (the
node agent's summary.json). A handle holds only the job's id and directory; every call
reads the registry and the job directory afresh, so a handle survives a kernel restart
(``Job.attach(job_id)``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contract.jobdir import JobDir, read_json
from launcher import api
from launcher.errors import JobNotFoundError
from launcher.flags import LaunchFlags
from launcher.plan_launch import plan_job
from launcher.progress_view import ProgressSnapshot, read_progress
from launcher.states import JobState
from launcher.store import JobRecord, Store
from planner.layout_search import Objective
from planner.result import Plan
from planner.specs import ClusterSpec, Layout, ModelSpec, TrainingSpec

POLL_S = 0.5
"""How often ``wait`` reads the job's state: the local backend's state changes within a
second of a process exit, and a registry read costs about a millisecond."""
SUMMARY_GRACE_S = 10.0
"""How long ``result`` waits for summary.json after the job ended: the last node agent
writes it as it exits, the registry may say ended a moment before."""


def _model(model: str | Path | ModelSpec) -> ModelSpec:
    """A ModelSpec from a preset name, a Hugging Face config.json path, or itself."""
    import planner

    if isinstance(model, ModelSpec):
        return model
    if Path(model).exists():
        return planner.load_hf_config(model)
    return planner.get_model(str(model))


def estimate(
    model: str | Path | ModelSpec, cluster: ClusterSpec, training: TrainingSpec, layout: Layout
) -> Plan:
    """The Plan of one layout (``scalectl plan estimate``): specs and the estimate."""
    import planner

    return planner.make_plan(_model(model), cluster, training, layout)


def plan_search(
    model: str | Path | ModelSpec,
    cluster: ClusterSpec,
    training: TrainingSpec,
    *,
    objective: Objective = "time",
    top_k: int = 10,
    **pinned: Any,
) -> list[Plan]:
    """The best layouts as Plans, best first (``scalectl plan search``); ``pinned`` fixes
    Layout fields (``tp=2``, ``sharding="zero3"``...). Raises ``NoFeasibleLayout`` when
    nothing fits, ``PlanInputError`` for bad input."""
    import planner

    found = planner.search(
        _model(model),
        cluster,
        training,
        pinned=pinned or None,
        objective=objective,
        top_k=top_k,
    )
    found.raise_if_infeasible()
    return [found.plan(index) for index in range(len(found.ranked))]


@dataclass(frozen=True)
class Job:
    """A launched job (see the module docstring)."""

    id: str
    """The registry's job id (``scalectl jobs``)."""
    job_dir: Path
    """Its directory: job.json, plan.json, events, progress, logs, summary.json."""

    @classmethod
    def attach(cls, job_id: str) -> Job:
        """The handle of a job already in the registry (an id or a unique prefix)."""
        with Store() as store:
            record = store.resolve(job_id)
        return cls(record.id, Path(record.job_dir))

    def record(self) -> JobRecord:
        """The registry row, its state refreshed from the backend."""
        with Store() as store:
            record = store.get(self.id)
            if record is None:
                raise JobNotFoundError(f"job {self.id}: not in the registry")
            return api.refresh(store, record)

    @property
    def state(self) -> JobState:
        """PENDING, RUNNING, COMPLETED, FAILED, CANCELLED... (launcher.states)."""
        return self.record().state

    def wait(self, timeout: float | None = None) -> JobState:
        """Block until the job ended; its final state. ``TimeoutError`` after ``timeout``
        seconds (None: no limit); the job keeps running."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            state = self.state
            if state.is_terminal:
                return state
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {self.id} still {state.value} after {timeout} s")
            time.sleep(POLL_S)

    def progress(self) -> ProgressSnapshot:
        """The newest step, loss, tokens/s and step time over all ranks."""
        return read_progress(self.job_dir)

    def logs(self, rank: int = 0) -> str:
        """Everything rank ``rank`` printed (stdout and stderr, across restarts)."""
        logs = [log for log in JobDir(self.job_dir).logs() if log.rank == str(rank)]
        return "".join(log.path.read_text(encoding="utf-8", errors="replace") for log in logs)

    def cancel(self) -> JobState:
        """Stop the job (the trainer checkpoints on the way out); its state after."""
        with Store() as store:
            record = store.get(self.id)
            if record is None:
                raise JobNotFoundError(f"job {self.id}: not in the registry")
            return api.cancel(store, record).record.state

    def result(self, timeout: float | None = None) -> dict[str, Any]:
        """Wait for the end (as :meth:`wait`) and return summary.json, the node agent's
        summary (state, steps, losses, restarts, plan against measured)."""
        self.wait(timeout)
        path = JobDir(self.job_dir).summary_json
        deadline = time.monotonic() + SUMMARY_GRACE_S
        while not path.is_file() and time.monotonic() < deadline:
            time.sleep(POLL_S)
        if not path.is_file():
            raise FileNotFoundError(f"job {self.id} ended without a summary.json in {path.parent}")
        summary: dict[str, Any] = read_json(path)
        return summary


def launch(
    plan: Plan | Mapping[str, Any] | str | Path,
    backend: str = "local",
    *,
    args: Sequence[str] = (),
    nodes: int | str | None = None,
    procs_per_node: int | None = None,
    name: str | None = None,
    module: str | None = None,
    script: str | None = None,
    env: Mapping[str, str] | None = None,
    max_restarts: int | None = None,
    jobs_root: str | Path | None = None,
    framework: str | None = None,
) -> Job:
    """Launch ``plan`` (a Plan, its JSON mapping or a plan.json path) as
    ``scalectl launch --plan`` does: nodes and ranks from the plan's cluster (``nodes``,
    ``procs_per_node`` may override while the layout holds; ``nodes="1:2"`` makes dp
    elastic with tp kept, as ``--nodes MIN:MAX``), the reference trainer unless
    ``module``/``script`` names your program, ``args`` its arguments. With ``framework``
    (torchtitan, megatron) ``args`` (or ``module``/``script`` and ``args``) name that
    framework's entrypoint and the plan, exported for it, follows (``launch --plan
    --framework``). Bad input raises ``LaunchInputError`` naming the field, before
    anything is created."""
    flags = LaunchFlags(
        backend=backend,
        name=name,
        nodes=None if nodes is None else str(nodes),
        procs_per_node=procs_per_node,
        module=module,
        script=script,
        env=[f"{key}={value}" for key, value in (env or {}).items()],
        max_restarts=max_restarts,
        jobs_root=None if jobs_root is None else str(jobs_root),
    )
    spec = plan_job(plan, flags, list(args), source="scalectl.launch", framework=framework).spec
    with Store() as store:
        record = api.launch(spec, store)
    return Job(record.id, Path(record.job_dir))
