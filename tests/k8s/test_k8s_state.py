"""Objects, pods and events as the API server reports them → our states, with reasons."""

from __future__ import annotations

import pytest
from fake_apiserver import make_pod

from launcher.backends.k8s_state import job_status
from launcher.states import JobState

JOB = "20250601-120000-8b8b"
NAME = f"run-{JOB}"


def owner(conditions: list[dict] | None = None, **spec) -> dict:
    return {"metadata": {"name": NAME}, "spec": spec, "status": {"conditions": conditions or []}}


def cond(kind: str, reason: str = "", message: str = "", status: str = "True") -> dict:
    return {"type": kind, "status": status, "reason": reason, "message": message}


def pod(i: int, phase: str = "Pending", **kw) -> dict:
    return make_pod(JOB, f"{NAME}-worker-{i}", phase=phase, **kw)


def status(flavor: str, obj, pods=(), events=(), queue=None):
    return job_status(flavor, NAME, obj, list(pods), list(events), expected_pods=2, queue=queue)


@pytest.mark.parametrize(
    ("flavor", "success"),
    [("pytorchjob", "Succeeded"), ("jobset", "Completed"), ("indexed-job", "Complete")],
)
def test_success_conditions(flavor: str, success: str) -> None:
    result = status(flavor, owner([cond("Running", status="False"), cond(success, "Done")]))
    assert (result.state, result.exit_code) == (JobState.COMPLETED, 0)


def test_failure_carries_the_reason_and_the_exit_code() -> None:
    failed = owner([cond("Failed", "BackoffLimitExceeded", "Job has reached the backoff limit")])
    pods = [pod(0, "Failed", exit_code=1), pod(1, "Failed", exit_code=137)]
    result = status("indexed-job", failed, pods)
    assert result.state is JobState.FAILED
    assert result.reason == "BackoffLimitExceeded: Job has reached the backoff limit"
    assert result.exit_code == 1


@pytest.mark.parametrize(
    ("flavor", "condition"),
    [
        ("indexed-job", cond("Failed", "DeadlineExceeded", "Job was active longer than specified")),
        ("jobset", cond("Failed", "FailedJobs", "job failed: DeadlineExceeded")),
        ("pytorchjob", cond("Failed", "PyTorchJobFailed", "exceeded its deadline")),
    ],
)
def test_deadline_is_timeout(flavor: str, condition: dict) -> None:
    assert status(flavor, owner([condition])).state is JobState.TIMEOUT


def test_gone_is_unknown_and_says_so() -> None:
    result = status("jobset", None)
    assert result.state is JobState.UNKNOWN and "gone from the cluster" in result.reason


def test_suspended_by_kueue() -> None:
    result = status("jobset", owner(suspend=True), queue="h100")
    assert result == type(result)(
        JobState.PENDING, "suspended: waiting for Kueue to admit it to queue h100"
    )
    result = status("pytorchjob", owner(runPolicy={"suspend": True}))
    assert (result.state, result.reason) == (JobState.PENDING, "suspended")


def test_unschedulable() -> None:
    message = "0/8 nodes are available: 8 Insufficient nvidia.com/gpu."
    result = status("pytorchjob", owner(), [pod(0, unschedulable=message), pod(1)])
    assert result.state is JobState.PENDING
    assert result.reason == f"Unschedulable: {message}"


@pytest.mark.parametrize(
    "waiting",
    [
        ("ImagePullBackOff", 'Back-off pulling image "ghcr.io/org/train:1"'),
        ("ErrImagePull", "manifest unknown"),
        ("CreateContainerConfigError", 'secret "hf-token" not found'),
    ],
)
def test_container_problems(waiting: tuple[str, str]) -> None:
    result = status("jobset", owner(), [pod(0, waiting=waiting)])
    assert (result.state, result.reason) == (JobState.PENDING, f"{waiting[0]}: {waiting[1]}")


def test_quota_exceeded_from_events_when_pods_are_missing() -> None:
    events = [
        {
            "involvedObject": {"name": f"{NAME}-node-0"},
            "reason": "FailedCreate",
            "message": 'pods "x" is forbidden: exceeded quota: gpu-quota, requested: '
            "nvidia.com/gpu=8, used: nvidia.com/gpu=8, limited: nvidia.com/gpu=8",
        },
        {"involvedObject": {"name": "someone-else"}, "message": "exceeded quota: other"},
    ]
    result = status("jobset", owner(), [], events)
    assert result.state is JobState.PENDING
    assert result.reason.startswith("quota exceeded: ") and "gpu-quota" in result.reason


def test_running_counts_pods_and_says_why_the_others_wait() -> None:
    pods = [pod(0, "Running"), pod(1, unschedulable="0/8 nodes are available")]
    result = status("pytorchjob", owner([cond("Running")]), pods)
    assert result.state is JobState.RUNNING
    assert result.reason == "1/2 pods running; Unschedulable: 0/8 nodes are available"


def test_preempted_when_nothing_runs_after_a_disruption() -> None:
    hit = pod(0, "Failed", disruption=("PreemptionByScheduler", "preempted by high-prio"))
    result = status("indexed-job", owner(), [hit])
    assert result.state is JobState.PREEMPTED and "PreemptionByScheduler" in result.reason
    running = status("indexed-job", owner(), [hit, pod(1, "Running")])
    assert running.state is JobState.RUNNING and "preempted" in running.reason


def test_being_deleted_is_completing() -> None:
    obj = owner()
    obj["metadata"]["deletionTimestamp"] = "2025-06-01T00:00:00Z"
    assert status("jobset", obj, [pod(0, "Running")]).state is JobState.COMPLETING


def test_reasons_are_one_short_line() -> None:
    message = "line\n" * 200
    result = status("jobset", owner(), [pod(0, waiting=("ErrImagePull", message))])
    assert "\n" not in result.reason and len(result.reason) <= 240
