"""What a Kubernetes job's objects say about its state: pure, over plain JSON dicts.

Input: the object that owns the pods (PyTorchJob, JobSet or Job; None when it is gone),
the job's pods and the namespace's Warning events, all as the API server returns them
(camelCase JSON). Output: a :class:`BackendStatus`.

Order of precedence:

1. the owner's terminal condition (Succeeded/Completed/Complete → COMPLETED; Failed →
   FAILED, or TIMEOUT when the reason or message says the deadline passed);
2. being deleted → COMPLETING; suspended → PENDING (with Kueue: waiting for admission);
3. pods: any pod running → RUNNING (``k/N pods running``, plus why the others wait);
   none running and a pod disrupted by preemption or eviction → PREEMPTED; else
   PENDING with the first specific reason found: a waiting container
   (ImagePullBackOff, ErrImagePull, CreateContainerConfigError for a missing Secret,
   ...), Unschedulable (the scheduler's message), or a FailedCreate event saying a
   ResourceQuota is exceeded.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from launcher.backends.base import BackendStatus
from launcher.render.flavours import FLAVOURS
from launcher.states import JobState

REASON_CHARS = 240
"""Reasons are cut to this many characters: they go into one table cell."""

WAITING_PROBLEMS = frozenset(
    {
        "ImagePullBackOff",
        "ErrImagePull",
        "InvalidImageName",
        "ErrImageNeverPull",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
        "CrashLoopBackOff",
    }
)
"""Container waiting reasons worth showing (ContainerCreating/PodInitializing are normal)."""


def one_line(text: str) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= REASON_CHARS else flat[: REASON_CHARS - 1] + "…"


def conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``status.conditions`` by type (the last of each type wins)."""
    found: dict[str, dict[str, Any]] = {}
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if isinstance(cond, dict) and "type" in cond:
            found[str(cond["type"])] = cond
    return found


def _true(cond: dict[str, Any] | None) -> bool:
    return cond is not None and str(cond.get("status", "")).lower() == "true"


def _explain(cond: dict[str, Any]) -> str:
    reason = str(cond.get("reason") or "")
    message = str(cond.get("message") or "")
    return one_line(f"{reason}: {message}" if reason and message else reason or message)


def _is_timeout(cond: dict[str, Any]) -> bool:
    text = f"{cond.get('reason', '')} {cond.get('message', '')}".lower()
    return "deadlineexceeded" in text or "deadline" in text


def owner_terminal(flavor: str, owner: dict[str, Any]) -> BackendStatus | None:
    """COMPLETED / FAILED / TIMEOUT from the owner's conditions, else None."""
    conds = conditions(owner)
    success = conds.get(FLAVOURS[flavor].success_condition)
    if _true(success):
        assert success is not None
        return BackendStatus(JobState.COMPLETED, _explain(success) or "succeeded", 0)
    failed = conds.get("Failed")
    if _true(failed):
        assert failed is not None
        state = JobState.TIMEOUT if _is_timeout(failed) else JobState.FAILED
        return BackendStatus(state, _explain(failed) or "failed")
    return None


def owner_suspended(flavor: str, owner: dict[str, Any]) -> bool:
    return FLAVOURS[flavor].suspended(owner) or _true(conditions(owner).get("Suspended"))


def _container_statuses(pod: dict[str, Any]) -> list[dict[str, Any]]:
    status = pod.get("status") or {}
    return [
        *(status.get("initContainerStatuses") or []),
        *(status.get("containerStatuses") or []),
    ]


def pod_problem(pod: dict[str, Any]) -> str | None:
    """Why a pod is not running, when it is worth saying (see WAITING_PROBLEMS)."""
    for cs in _container_statuses(pod):
        waiting = (cs.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason")
        if reason in WAITING_PROBLEMS:
            message = waiting.get("message") or ""
            return one_line(f"{reason}: {message}" if message else str(reason))
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "PodScheduled" and str(cond.get("status")).lower() == "false":
            reason = cond.get("reason") or "Unschedulable"
            message = cond.get("message") or ""
            return one_line(f"{reason}: {message}" if message else str(reason))
    return None


def pod_disruption(pod: dict[str, Any]) -> str | None:
    """The preemption / eviction that hit a pod, if any (DisruptionTarget, Evicted)."""
    status = pod.get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("type") == "DisruptionTarget" and str(cond.get("status")).lower() == "true":
            return one_line(f"{cond.get('reason', 'Disrupted')}: {cond.get('message', '')}")
    if status.get("reason") == "Evicted":
        return one_line(f"Evicted: {status.get('message', '')}")
    return None


def is_running(pod: dict[str, Any]) -> bool:
    meta = pod.get("metadata") or {}
    return (pod.get("status") or {}).get("phase") == "Running" and not meta.get("deletionTimestamp")


def quota_problem(events: Iterable[dict[str, Any]], name: str) -> str | None:
    """A FailedCreate warning about a ResourceQuota on an object named like the job's."""
    for event in events:
        involved = (event.get("involvedObject") or {}).get("name", "")
        message = str(event.get("message") or "")
        if not str(involved).startswith(name):
            continue
        if "exceeded quota" in message or "forbidden: exceeded" in message:
            return one_line(f"quota exceeded: {message}")
    return None


def exit_code(pods: Iterable[dict[str, Any]], container: str) -> int | None:
    """The first non-zero exit code of the training container (current or last run)."""
    for pod in pods:
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            if cs.get("name") != container:
                continue
            for key in ("state", "lastState"):
                terminated = (cs.get(key) or {}).get("terminated") or {}
                code = terminated.get("exitCode")
                if isinstance(code, int) and code != 0:
                    return code
    return None


def job_status(
    flavor: str,
    name: str,
    owner: dict[str, Any] | None,
    pods: list[dict[str, Any]],
    events: Iterable[dict[str, Any]] = (),
    *,
    expected_pods: int,
    queue: str | None = None,
    container: str = "pytorch",
) -> BackendStatus:
    """The job's state (see module doc)."""
    if owner is None:
        return BackendStatus(
            JobState.UNKNOWN, f"{name} is gone from the cluster (deleted, or removed by a TTL)"
        )
    terminal = owner_terminal(flavor, owner)
    if terminal is not None:
        if terminal.state is not JobState.COMPLETED:
            return BackendStatus(terminal.state, terminal.reason, exit_code(pods, container))
        return terminal
    if (owner.get("metadata") or {}).get("deletionTimestamp"):
        return BackendStatus(JobState.COMPLETING, "being deleted")
    if owner_suspended(flavor, owner):
        why = f"suspended: waiting for Kueue to admit it to queue {queue}" if queue else "suspended"
        return BackendStatus(JobState.PENDING, why)
    live = [
        p
        for p in pods
        if not (p.get("metadata") or {}).get("deletionTimestamp")
        and (p.get("status") or {}).get("phase") not in {"Succeeded", "Failed"}
    ]
    running = [p for p in live if is_running(p)]
    disruption = next((d for d in map(pod_disruption, pods) if d), None)
    problem = next((p for p in map(pod_problem, live) if p), None)
    if problem is None and len(live) < expected_pods:
        problem = quota_problem(events, name)
    if running:
        reason = f"{len(running)}/{expected_pods} pods running"
        extra = problem or (f"a pod was {disruption}" if disruption else None)
        return BackendStatus(JobState.RUNNING, f"{reason}; {extra}" if extra else reason)
    if disruption is not None:
        return BackendStatus(JobState.PREEMPTED, disruption)
    if problem is not None:
        return BackendStatus(JobState.PENDING, problem)
    if not live:
        return BackendStatus(JobState.PENDING, "no pods yet")
    return BackendStatus(JobState.PENDING, f"{len(live)}/{expected_pods} pods starting")
