"""The Slurm backend: jobs become sbatch scripts, submitted with ``sbatch``.

* ``describe`` (``--dry-run``) and ``submit`` render the same script
  (:func:`launcher.backends.slurm_script.render_sbatch`, a pure function); ``submit``
  writes it next to the job (``<job_dir>/slurm/<id>_submission.sh``), runs ``sbatch``
  and parses the id. Env references resolved at launch travel only in
  the environment of that ``sbatch`` process (``--export=ALL``), never in a file.
* ``submit_array``: a sweep is ONE Slurm job array; element ``i`` has its own job
  directory and registry entry, and the handle ``<array id>_<i>``.
* ``status``: ``squeue`` while Slurm still holds the job (live state and reason:
  Priority, Resources, Dependency, BeginTime...), ``sacct`` once it has left the queue;
  mapped onto :class:`JobState` by :func:`launcher.backends.slurm_state.map_slurm_state`,
  with reasons from the job's events (requeues, node loss, the end helper's verdict).
* ``cancel``: a running job first gets its stop signal (``slurm.signal``, steps only),
  so the ranks checkpoint, and once the step is over (or after the grace) ``scancel``.

What happens inside the allocation (signals, node loss) is the node agent's Slurm
policy (:mod:`runtime.agent.slurm_policy`); requeue is :mod:`launcher.backends.slurm_task`.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from contract.events import EventKind, append_event
from contract.jobdir import JobDir, tail_jsonl
from launcher.backends.base import Backend, BackendStatus, CancelReport, SubmitRequest
from launcher.backends.slurm_script import (
    ArrayElement,
    ScriptRequest,
    check_slurm_spec,
    render_sbatch,
    slurm_signal_name,
)
from launcher.backends.slurm_state import (
    SlurmRecord,
    map_slurm_state,
    parse_sacct,
    parse_squeue,
)
from launcher.errors import BackendUnavailableError, JobActionError, LaunchInputError
from launcher.spec import JobSpec
from launcher.states import JobState
from launcher.store import JobRecord
from runtime.processes import job_processes

SUBMIT_DIR = "slurm"
"""Sub-directory of the job directory (or sweep directory) holding the submitted script."""
POLL_S = 0.5


class SlurmBackend(Backend):
    """Runs jobs on a Slurm cluster. See the module docstring."""

    name = "slurm"

    def check(self, spec: JobSpec) -> None:
        check_slurm_spec(spec)

    def script_request(self, request: SubmitRequest) -> ScriptRequest:
        return ScriptRequest(
            spec=request.spec,
            elements=(ArrayElement(request.job_id, request.job_dir.root),),
            python=sys.executable,
        )

    def describe(self, request: SubmitRequest) -> str:
        return render_sbatch(self.script_request(request))

    def submit(self, request: SubmitRequest) -> str:
        script = self.describe(request)
        folder = request.job_dir.root / SUBMIT_DIR
        slurm_id = _sbatch(script, folder, request.secret_env)
        append_event(
            request.job_dir,
            EventKind.SLURM_SUBMITTED,
            job_id=request.job_id,
            slurm_job_id=slurm_id,
            script=str(folder / f"{slurm_id}_submission.sh"),
        )
        return slurm_id

    def describe_array(
        self,
        requests: Sequence[SubmitRequest],
        sweep_dir: Path,
        throttle: int | None,
        name: str | None = None,
    ) -> str:
        return render_sbatch(_array_request(requests, sweep_dir, throttle, name))

    def submit_array(
        self,
        requests: Sequence[SubmitRequest],
        sweep_dir: Path,
        throttle: int | None,
        name: str | None = None,
    ) -> list[str]:
        """Submit one job array; returns ``<array id>_<i>`` for each request, in order."""
        secrets = [dict(r.secret_env) for r in requests]
        if any(s != secrets[0] for s in secrets):
            raise LaunchInputError(
                "env references must be the same for every run of a sweep; move them out "
                "of the grid"
            )
        script = self.describe_array(requests, sweep_dir, throttle, name)
        array_id = _sbatch(script, sweep_dir / SUBMIT_DIR, secrets[0] if secrets else {})
        handles = [f"{array_id}_{index}" for index in range(len(requests))]
        for request, handle in zip(requests, handles, strict=True):
            append_event(
                request.job_dir,
                EventKind.SLURM_SUBMITTED,
                job_id=request.job_id,
                slurm_job_id=handle,
                script=str(sweep_dir / SUBMIT_DIR / f"{array_id}_submission.sh"),
            )
        return handles

    def status(self, record: JobRecord) -> BackendStatus:
        if record.state.is_terminal:
            return BackendStatus(record.state, record.reason, record.exit_code)
        handle = record.backend_job_id
        if not handle:
            if record.age_s() < 60:
                return BackendStatus(JobState.PENDING, "submitting")
            return BackendStatus(JobState.FAILED, "never reached Slurm (no job id recorded)")
        events = _job_events(record)
        try:
            found = _query(handle)
        except BackendUnavailableError as exc:
            return BackendStatus(JobState.UNKNOWN, str(exc))
        if found is None:
            if record.age_s() < 60:
                return BackendStatus(record.state, record.reason, record.exit_code)
            return BackendStatus(JobState.UNKNOWN, f"Slurm has no record of job {handle}")
        return map_slurm_state(found, events)

    def cancel(self, record: JobRecord, grace_s: float | None = None) -> CancelReport:
        handle = record.backend_job_id
        if not handle:
            return CancelReport(0, note="the job never reached Slurm")
        spec = record.spec.get("slurm") or {}
        grace = grace_s if grace_s is not None else float(spec.get("stop_grace_s", 60.0))
        queued = _squeue(handle)
        if queued is None:
            return CancelReport(0, note=f"Slurm job {handle} had already left the queue")
        note = f"Slurm job {handle} cancelled while {queued.state.lower()}"
        if queued.state == "RUNNING" and grace > 0:
            # The stop signal (steps only, not the batch shell): ranks checkpoint and the
            # node tasks end the step; the end helper sees the `cancelled` event and
            # waits for the scancel below instead of requeueing.
            stop = slurm_signal_name(str(spec.get("signal", "USR2")))
            _run(["scancel", f"--signal={stop}", handle])
            if _wait(lambda: _step_over(record, handle), grace):
                note = f"Slurm job {handle} cancelled after its ranks stopped on SIG{stop}"
            else:
                note = f"Slurm job {handle} cancelled; its ranks did not stop within {grace:g} s"
        _run(["scancel", handle])
        _wait(lambda: _squeue(handle) is None or _squeue_done(handle), 60.0)

        survivors = job_processes(record.id)
        return CancelReport(signalled=1, survivors=len(survivors), note=note)

    def requeue(self, record: JobRecord) -> str:
        """The preemption path on demand: the stop signal goes to the job's steps, the
        ranks checkpoint the step they are on, and the end helper requeues the job
        (``scontrol requeue``, counted against ``slurm.max_requeues``); it starts again
        from that checkpoint once Slurm lets it (after ``cred_expire``, 120 s by default)."""
        handle = record.backend_job_id
        spec = record.spec.get("slurm") or {}
        if not spec.get("requeue", True):
            raise JobActionError(
                f"job {record.id}: slurm.requeue is off for it; cancel it and launch it again"
            )
        limit = int(spec.get("max_requeues", 3))
        used = sum(1 for e in _job_events(record) if e.get("event") == EventKind.REQUEUED)
        if used >= limit:
            raise JobActionError(
                f"job {record.id}: its requeue budget (slurm.max_requeues = {limit}) is spent; "
                "cancel it and launch it again to resume from its checkpoint"
            )
        queued = _squeue(handle) if handle else None
        if handle is None or queued is None or queued.state != "RUNNING":
            state = queued.state.lower() if queued else "not in the queue"
            raise JobActionError(
                f"job {record.id} is {state} in Slurm; only a running job can be requeued"
            )
        stop = slurm_signal_name(str(spec.get("signal", "USR2")))
        result = _run(["scancel", f"--signal={stop}", handle])
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip() or f"exit {result.returncode}"
            raise BackendUnavailableError(f"scancel --signal={stop} {handle} failed: {detail}")
        return (
            f"Slurm job {handle}: SIG{stop} sent; its ranks checkpoint, then it is requeued "
            f"(requeue {used + 1} of {limit}) and resumes from that checkpoint"
        )


def _array_request(
    requests: Sequence[SubmitRequest], sweep_dir: Path, throttle: int | None, name: str | None
) -> ScriptRequest:
    if not requests:
        raise LaunchInputError("a sweep needs at least one run")
    return ScriptRequest(
        spec=requests[0].spec,
        elements=tuple(ArrayElement(r.job_id, r.job_dir.root) for r in requests),
        python=sys.executable,
        array_dir=sweep_dir,
        throttle=throttle,
        name=name,
    )


# -- submission ----------------------------------------------------------------------

SBATCH_TIMEOUT_S = 120.0
"""How long ``sbatch`` may take to answer: slurmctld replies within seconds; a busy one
(thousands of queued jobs) can take tens of seconds, which must not read as a refusal."""


def _sbatch(script: str, folder: Path, secret_env: Mapping[str, str]) -> str:
    """Write ``script`` to ``folder/<slurm id>_submission.sh`` and submit it with ``sbatch``;
    returns the Slurm job id. ``secret_env`` goes only into the sbatch process's
    environment (the script exports it with ``--export=ALL``), never into a file."""
    if shutil.which("sbatch") is None:
        raise BackendUnavailableError(
            "sbatch is not on PATH; run scalectl on a Slurm login node, or use --dry-run"
        )
    folder.mkdir(parents=True, exist_ok=True)
    # Written under a temporary name: the Slurm id that names the file comes from sbatch.
    pending = folder / f".submission_file_{uuid.uuid4().hex}.sh"
    pending.write_text(script)
    try:
        result = _run(["sbatch", str(pending)], SBATCH_TIMEOUT_S, env={**os.environ, **secret_env})
        if result.returncode != 0:
            detail = sbatch_error(result.stderr or result.stdout)
            raise BackendUnavailableError(f"sbatch refused the job: {detail}")
        found = re.search(r"job (?P<id>[0-9]+)", result.stdout)
        if found is None:
            raise BackendUnavailableError(
                f"sbatch answered {result.stdout.strip()[:200]!r}, which names no job id"
            )
    except BackendUnavailableError:
        pending.unlink(missing_ok=True)
        raise
    slurm_id = found.group("id")
    pending.replace(folder / f"{slurm_id}_submission.sh")
    return slurm_id


def sbatch_error(stderr: str) -> str:
    """sbatch's first specific complaint (it ends with a generic "submission failed")."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line.split("error:", 1)[1].strip() for line in lines if "error:" in line]
    return errors[0] if errors else (lines[-1] if lines else "no output")


# -- querying Slurm -----------------------------------------------------------------


def _run(
    argv: list[str], timeout_s: float = 30.0, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, env=env)
    except FileNotFoundError:
        raise BackendUnavailableError(f"{argv[0]} is not on PATH; is this a Slurm host?") from None
    except subprocess.TimeoutExpired:
        raise BackendUnavailableError(f"{argv[0]} did not answer in {timeout_s:g} s") from None


def _squeue(handle: str) -> SlurmRecord | None:
    """The job as squeue sees it now; None once it has left the queue."""
    result = _run(["squeue", "-h", "-j", handle, "-o", "%i|%T|%r"])
    if result.returncode != 0:
        if "Invalid job id" in result.stderr:
            return None
        raise BackendUnavailableError(f"squeue failed: {result.stderr.strip()[:200]}")
    return parse_squeue(result.stdout, handle)


def _squeue_done(handle: str) -> bool:
    found = _squeue(handle)
    return found is None or found.state not in {"RUNNING", "COMPLETING", "PENDING", "CONFIGURING"}


def _sacct(handle: str) -> SlurmRecord | None:
    result = _run(["sacct", "-X", "-n", "-P", "-j", handle, "-o", "JobID,State,ExitCode,Reason"])
    if result.returncode != 0:
        raise BackendUnavailableError(f"sacct failed: {result.stderr.strip()[:200]}")
    return parse_sacct(result.stdout, handle)


def _query(handle: str) -> SlurmRecord | None:
    """squeue while the job is queued or running, else sacct (accounting)."""
    live = _squeue(handle)
    if live is not None and live.state in {"PENDING", "RUNNING", "CONFIGURING", "SUSPENDED"}:
        return live
    return _sacct(handle) or live


def _job_events(record: JobRecord) -> list[dict[str, Any]]:
    events = tail_jsonl(JobDir(record.job_dir).events, 500)
    return [e for e in events if e.get("job_id") == record.id]


def _step_over(record: JobRecord, handle: str) -> bool:
    """The srun step has ended: the end helper recorded `finished`, or Slurm let go."""
    if any(e.get("event") == EventKind.FINISHED for e in _job_events(record)):
        return True
    return _squeue(handle) is None


def _wait(predicate: Any, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(BackendUnavailableError):
            if predicate():
                return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_S)
