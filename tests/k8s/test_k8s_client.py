"""The Kubernetes backend through the official client against the fake API server.

No real cluster: tests/k8s/fake_apiserver.py answers the REST paths and verbs the client
uses. Each failure mode gives a clear one-line message or a correct retry.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from fake_apiserver import FakeApiServer, make_pod
from k8s_specs import make_spec

from contract.jobdir import JobDir
from launcher.backends.base import SubmitRequest
from launcher.backends.k8s_api import KubernetesApiError
from launcher.backends.kubernetes import KubernetesBackend
from launcher.errors import BackendUnavailableError
from launcher.render.k8s import render
from launcher.spec import JobSpec
from launcher.states import JobState
from launcher.store import JobRecord

JOB = "20250601-120000-aaaa"
NS = "team-a"
NAME = f"run-{JOB}"
PATHS = {
    "pytorchjob": "/apis/kubeflow.org/v1/namespaces/team-a/pytorchjobs",
    "jobset": "/apis/jobset.x-k8s.io/v1alpha2/namespaces/team-a/jobsets",
    "indexed-job": "/apis/batch/v1/namespaces/team-a/jobs",
}
OWNER_RES = {
    "pytorchjob": "kubeflow.org/v1/pytorchjobs",
    "jobset": "jobset.x-k8s.io/v1alpha2/jobsets",
    "indexed-job": "batch/v1/jobs",
}


@pytest.fixture
def backend(kubeconfig: Path) -> KubernetesBackend:
    return KubernetesBackend(sleep=lambda s: None, poll_s=0.01)


def spec_for(flavor: str, **k8s) -> JobSpec:
    return make_spec(kubernetes={"flavor": flavor, **k8s})


def request(spec: JobSpec, tmp_path: Path, job_id: str = JOB) -> SubmitRequest:
    return SubmitRequest(
        job_id=job_id,
        spec=spec,
        job_dir=JobDir(tmp_path / "job"),
        registry_path=tmp_path / "registry.db",
    )


def record(spec: JobSpec, handle: str | None, tmp_path: Path, job_id: str = JOB) -> JobRecord:
    return JobRecord(
        id=job_id,
        name=spec.name,
        backend="kubernetes",
        backend_job_id=handle,
        state=JobState.PENDING,
        reason="",
        job_dir_text=str(tmp_path / "job"),
        nodes_min=spec.nodes.min,
        nodes_max=spec.nodes.max,
        procs_per_node=spec.procs_per_node,
        gpus_per_node=spec.gpus_per_node,
        created_ts=time.time(),
        updated_ts=time.time(),
        started_ts=None,
        ended_ts=None,
        exit_code=None,
        spec_json=json.dumps(spec.to_json()),
    )


def submitted(backend, fake_api, tmp_path, flavor="pytorchjob", **k8s):
    spec = spec_for(flavor, **k8s)
    handle = backend.submit(request(spec, tmp_path))
    return spec, record(spec, handle, tmp_path)


def worker(i: int, phase: str = "Pending", **kw) -> dict:
    return make_pod(JOB, f"{NAME}-worker-{i}", ns=NS, phase=phase, **kw)


# -- submit ------------------------------------------------------------------------------


@pytest.mark.parametrize("flavor", ["pytorchjob", "jobset", "indexed-job"])
def test_submit_creates_the_rendered_objects_then_owns_the_dependents(
    backend, fake_api: FakeApiServer, tmp_path: Path, flavor: str
) -> None:
    spec = spec_for(flavor)
    handle = backend.submit(request(spec, tmp_path))
    assert handle == f"{flavor}/{NS}/{NAME}"
    objects = render(spec, JOB)
    posts = fake_api.calls("POST")
    assert [p.path for p in posts][-1] == PATHS[flavor]
    assert posts[0].path == "/api/v1/namespaces/team-a/configmaps"
    assert [p.body for p in posts] == objects, "the client must send the manifests unchanged"
    owner = fake_api.get(OWNER_RES[flavor], NS, NAME)
    assert owner is not None
    configmap = fake_api.get("v1/configmaps", NS, f"{NAME}-files")
    assert configmap is not None
    [ref] = configmap["metadata"]["ownerReferences"]
    assert (ref["kind"], ref["name"], ref["uid"]) == (owner["kind"], NAME, owner["metadata"]["uid"])
    patches = fake_api.calls("PATCH")
    assert patches and all(
        p.headers["content-type"].startswith("application/merge-patch+json") for p in patches
    )
    assert all(p.headers["authorization"] == "Bearer test-token" for p in fake_api.requests)


def test_a_retried_submit_of_the_same_job_counts_as_created(
    backend, fake_api: FakeApiServer, tmp_path: Path
) -> None:
    spec = spec_for("jobset")
    first = backend.submit(request(spec, tmp_path))
    second = backend.submit(request(spec, tmp_path))
    assert first == second
    assert fake_api.names("jobset.x-k8s.io/v1alpha2/jobsets") == [NAME]


def test_a_name_taken_by_something_else_is_a_clear_error_and_nothing_is_left(
    backend, fake_api: FakeApiServer, tmp_path: Path, kubeconfig: Path
) -> None:
    from launcher.backends.k8s_api import connect

    stranger = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": NAME, "namespace": NS, "labels": {"team": "b"}},
        "spec": {"pytorchReplicaSpecs": {}},
    }
    connect().create(stranger)
    with pytest.raises(KubernetesApiError) as info:
        backend.submit(request(spec_for("pytorchjob"), tmp_path))
    message = str(info.value)
    assert f"a PyTorchJob named {NAME} already exists in namespace {NS}" in message
    assert "not made by scalectl" in message and "delete it or launch under another name" in message
    assert fake_api.names("v1/configmaps") == [], "the ConfigMap made before must be rolled back"


def test_forbidden_is_explained_and_what_was_created_is_deleted(
    backend, fake_api: FakeApiServer, tmp_path: Path
) -> None:
    fake_api.fail(
        "POST",
        "jobs",
        403,
        'jobs.batch is forbidden: User "alice" cannot create resource "jobs" in API group '
        '"batch" in the namespace "team-a"',
    )
    with pytest.raises(KubernetesApiError) as info:
        backend.submit(request(spec_for("indexed-job"), tmp_path))
    message = str(info.value)
    assert message.startswith(f"kubernetes: not allowed to create Job {NAME} in namespace team-a:")
    assert 'User "alice" cannot create resource "jobs"' in message and "RBAC" in message
    assert fake_api.names("v1/configmaps") == [] and fake_api.names("v1/services") == []
    deletes = [r.path for r in fake_api.calls("DELETE")]
    assert deletes == [
        f"/api/v1/namespaces/team-a/services/{NAME}",
        f"/api/v1/namespaces/team-a/configmaps/{NAME}-files",
    ]


def test_a_cluster_without_the_crd_says_what_to_install(tmp_path: Path, monkeypatch) -> None:
    with FakeApiServer(custom_apis=()) as server:
        monkeypatch.setenv("KUBECONFIG", str(server.write_kubeconfig(tmp_path / "kc")))
        backend = KubernetesBackend(sleep=lambda s: None)
        with pytest.raises(KubernetesApiError) as info:
            backend.submit(request(spec_for("jobset"), tmp_path))
    message = str(info.value)
    assert "this cluster has no JobSet API" in message
    assert "install JobSet (jobset.x-k8s.io/v1alpha2)" in message
    assert "indexed-job needs no operator" in message


def test_a_missing_namespace_says_so(backend, fake_api, tmp_path: Path) -> None:
    with pytest.raises(KubernetesApiError, match=r'namespaces "nowhere" not found; create'):
        backend.submit(request(spec_for("jobset", namespace="nowhere"), tmp_path))


def test_throttling_and_server_errors_are_retried(backend, fake_api, tmp_path: Path) -> None:
    fake_api.fail("POST", "configmaps", 429, "too many requests", times=2, retry_after=0)
    fake_api.fail("POST", "jobsets", 503, "etcd leader changed", times=1)
    backend.submit(request(spec_for("jobset"), tmp_path))
    assert len(fake_api.calls("POST", "/configmaps")) == 3
    assert len(fake_api.calls("POST", "/jobsets")) == 2
    assert fake_api.names("jobset.x-k8s.io/v1alpha2/jobsets") == [NAME]


def test_retries_are_bounded(backend, fake_api, tmp_path: Path) -> None:
    fake_api.fail("POST", "configmaps", 500, "boom", times=10)
    with pytest.raises(KubernetesApiError, match="500 Internal Server Error: boom"):
        backend.submit(request(spec_for("jobset"), tmp_path))
    assert len(fake_api.calls("POST", "/configmaps")) == 4


# -- connecting ---------------------------------------------------------------------------


def test_wrong_credentials(fake_api: FakeApiServer, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(fake_api.write_kubeconfig(tmp_path / "kc", token="x")))
    with pytest.raises(KubernetesApiError, match=r"refused the credentials \(401"):
        KubernetesBackend(sleep=lambda s: None).submit(request(spec_for("jobset"), tmp_path))


def test_no_kubeconfig_and_not_in_a_pod(tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailableError, match="no kubeconfig found"):
        KubernetesBackend().submit(request(spec_for("jobset"), tmp_path))


def test_unreachable_api_server(tmp_path: Path, monkeypatch) -> None:
    server = FakeApiServer()
    with server:
        path = server.write_kubeconfig(tmp_path / "kc")
        url = server.url
    monkeypatch.setenv("KUBECONFIG", str(path))  # the server is gone now
    with pytest.raises(BackendUnavailableError) as info:
        KubernetesBackend(sleep=lambda s: None).submit(request(spec_for("jobset"), tmp_path))
    assert f"cannot reach the API server at {url}" in str(info.value)
    assert "kubectl cluster-info" in str(info.value)


def test_kubeconfig_context(backend, fake_api, tmp_path: Path) -> None:
    backend.submit(request(spec_for("jobset", context="other"), tmp_path))
    with pytest.raises(BackendUnavailableError, match=r"kubernetes.context 'nope'"):
        backend.submit(
            request(spec_for("jobset", context="nope"), tmp_path, "20250601-120000-bbbb")
        )


def test_in_cluster_config_is_used_without_a_kubeconfig(tmp_path: Path, monkeypatch) -> None:
    from kubernetes.config import incluster_config

    from launcher.backends.k8s_api import connect

    token = tmp_path / "token"
    token.write_text("sa-token")
    cert = tmp_path / "ca.crt"
    cert.write_text("not a real certificate")
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(token))
    monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", str(cert))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    api = connect()
    assert api.host == "https://10.0.0.1:443"
    configuration = api.client.configuration
    assert configuration.api_key["BearerToken"].endswith(" sa-token")
    assert configuration.ssl_ca_cert == str(cert)


# -- status and watch ---------------------------------------------------------------------


def test_status_follows_the_cluster(backend, fake_api: FakeApiServer, tmp_path: Path) -> None:
    _, rec = submitted(backend, fake_api, tmp_path)
    assert backend.status(rec).reason == "no pods yet"
    fake_api.add_event(NS, f"{NAME}-worker-0", "FailedCreate", "exceeded quota: gpus")
    assert backend.status(rec).reason == "quota exceeded: exceeded quota: gpus"
    fake_api.put_pod(worker(0, waiting=("ImagePullBackOff", "Back-off pulling image")))
    assert backend.status(rec).reason == "ImagePullBackOff: Back-off pulling image"
    fake_api.put_pod(worker(0, "Running"))
    fake_api.put_pod(worker(1, "Running"))
    fake_api.put_pod(worker(2, unschedulable="0/3 nodes are available"))
    status = backend.status(rec)
    assert status.state is JobState.RUNNING
    assert status.reason == "2/4 pods running; Unschedulable: 0/3 nodes are available"
    fake_api.set_status(OWNER_RES["pytorchjob"], NS, NAME, {"conditions": [
        {"type": "Succeeded", "status": "True", "reason": "PyTorchJobSucceeded", "message": "done"}
    ]})  # fmt: skip
    status = backend.status(rec)
    assert (status.state, status.exit_code) == (JobState.COMPLETED, 0)


def test_status_never_raises(backend, fake_api: FakeApiServer, tmp_path: Path) -> None:
    _, rec = submitted(backend, fake_api, tmp_path)
    fake_api.fail("GET", "pytorchjobs", 403, "forbidden to get", times=1)
    status = backend.status(rec)
    assert status.state is JobState.UNKNOWN and "not allowed to read" in status.reason
    fake_api.stop()
    assert backend.status(rec).state is JobState.UNKNOWN


def test_watch_resumes_after_a_drop_and_relists_after_410(
    backend, fake_api: FakeApiServer, tmp_path: Path
) -> None:
    _, rec = submitted(backend, fake_api, tmp_path, "jobset")
    stream = backend.watch(rec, round_s=2, timeout_s=60)
    assert next(stream).reason == "no pods yet"
    lists = len([r for r in fake_api.calls("GET", "/pods") if "watch" not in r.query])

    pod0 = make_pod(JOB, f"{NAME}-node-0-0-x1", ns=NS, unschedulable="no GPUs free")
    fake_api.put_pod(pod0)
    assert next(stream).reason == "Unschedulable: no GPUs free"

    # The stream is cut after one event: the watch must resume from that event's version
    # (not list again) and see the events after it.
    fake_api.drop_watch_after(1)
    running = fake_api.put_pod(make_pod(JOB, f"{NAME}-node-0-0-x1", ns=NS, phase="Running"))
    fake_api.put_pod(make_pod(JOB, f"{NAME}-node-0-1-x2", ns=NS))
    assert next(stream).reason == "1/4 pods running"
    fake_api.put_pod(make_pod(JOB, f"{NAME}-node-0-1-x2", ns=NS, phase="Running"))
    assert next(stream).reason == "2/4 pods running"
    watches = [
        r.query["resourceVersion"] for r in fake_api.calls("GET", "/pods") if r.query.get("watch")
    ]
    assert watches[-1] == running["metadata"]["resourceVersion"], watches
    assert len([r for r in fake_api.calls("GET", "/pods") if "watch" not in r.query]) == lists

    # History compacted: the next watch gets 410 Gone; the backend lists again.
    fake_api.compact()
    fake_api.put_pod(make_pod(JOB, f"{NAME}-node-0-2-x3", ns=NS, phase="Running"))
    assert next(stream).reason == "3/4 pods running"
    after = [r for r in fake_api.calls("GET", "/pods") if "watch" not in r.query]
    assert len(after) == lists + 1, "a 410 must be followed by exactly one relist"

    fake_api.set_status(OWNER_RES["jobset"], NS, NAME, {"conditions": [
        {"type": "Completed", "status": "True", "reason": "AllJobsCompleted", "message": ""}
    ]})  # fmt: skip
    fake_api.put_pod(make_pod(JOB, f"{NAME}-node-0-1-x2", ns=NS, phase="Succeeded"))
    final = list(stream)
    assert final[-1].state is JobState.COMPLETED


# -- cancel -----------------------------------------------------------------------------------


@pytest.mark.parametrize("flavor", ["pytorchjob", "jobset", "indexed-job"])
def test_cancel_deletes_with_propagation_and_tolerates_404(
    backend, fake_api: FakeApiServer, tmp_path: Path, flavor: str
) -> None:
    _, rec = submitted(backend, fake_api, tmp_path, flavor)
    fake_api.put_pod(worker(0, "Running"))
    fake_api.put_pod(worker(1, "Running"))
    report = backend.cancel(rec, grace_s=None)
    assert (report.signalled, report.survivors) == (2, 0)
    owner_delete = fake_api.calls("DELETE", f"{PATHS[flavor]}/{NAME}")[0]
    assert owner_delete.query.get("propagationPolicy") == "Foreground"
    dependents = fake_api.calls("DELETE", "/api/v1/")
    assert dependents and all(d.query.get("propagationPolicy") == "Background" for d in dependents)
    # The owner's deletion garbage-collected the dependents first: their DELETE got 404.
    assert fake_api.names("v1/configmaps") == [] and fake_api.names("v1/pods") == []
    assert fake_api.get(OWNER_RES[flavor], NS, NAME) is None


def test_cancel_with_a_grace_period_deletes_the_pods_with_it(
    backend, fake_api: FakeApiServer, tmp_path: Path
) -> None:
    _, rec = submitted(backend, fake_api, tmp_path)
    fake_api.put_pod(worker(0, "Running"))
    backend.cancel(rec, grace_s=5)
    collection = fake_api.calls("DELETE", "/api/v1/namespaces/team-a/pods")
    assert collection[-1].query["gracePeriodSeconds"] == "5"
    assert collection[-1].query["labelSelector"] == f"scalectl.dev/job-id={JOB}"


def test_cancel_of_a_job_already_gone(backend, fake_api: FakeApiServer, tmp_path: Path) -> None:
    _, rec = submitted(backend, fake_api, tmp_path)
    backend.cancel(rec)
    again = backend.cancel(rec)
    assert again.signalled == 0 and "was already gone" in again.note


# -- logs -------------------------------------------------------------------------------------


def test_logs_are_copied_incrementally_and_across_restarts(
    backend, fake_api: FakeApiServer, tmp_path: Path
) -> None:
    _, rec = submitted(backend, fake_api, tmp_path)
    fake_api.put_pod(worker(0, "Running", container_id="containerd://one"))
    fake_api.put_pod(worker(1))  # still pending: no log yet
    fake_api.set_log(f"{NAME}-worker-0", "start\nstep 1\n")
    [log] = backend.log_files(rec)
    assert (log.node, log.rank) == (f"{NAME}-worker-0", "torchrun")
    assert log.path.read_text() == "start\nstep 1\n"
    fake_api.set_log(f"{NAME}-worker-0", "start\nstep 1\nstep 2\n")
    backend.log_files(rec)
    assert log.path.read_text() == "start\nstep 1\nstep 2\n"
    # The container restarted: its new log is appended, as on the other backends.
    fake_api.put_pod(worker(0, "Running", container_id="containerd://two", restarts=1))
    fake_api.set_log(f"{NAME}-worker-0", "start again\n")
    backend.log_files(rec)
    assert log.path.read_text() == "start\nstep 1\nstep 2\nstart again\n"
    reads = fake_api.calls("GET", "/log")
    assert all(r.query["container"] == "pytorch" for r in reads)
