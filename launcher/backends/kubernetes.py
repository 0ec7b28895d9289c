"""The Kubernetes backend: submit, watch, fetch logs of and cancel a job's objects.

``submit`` renders the manifests (``launcher.render.k8s``), creates the dependents
(ConfigMap, and the headless Service for ``indexed-job``) and then the object that owns
the pods (PyTorchJob, JobSet or Job), and makes that object the dependents' owner so
that deleting it deletes them too. A failure part-way deletes what was created, so
nothing is left half-made. A 409 Conflict for an object carrying this job's id is a
retried submission and counts as created; any other 409 is an error naming the object.

``status`` maps the owner's conditions, the pods and Warning events onto our states
(``launcher.backends.k8s_state``). ``watch`` lists the pods and then watches them,
resuming from the last resourceVersion when the stream drops and listing again when the
server answers 410 Gone. ``log_files`` copies each pod's container log (torchrun's
output; the ranks' own logs are in the job directory on the PVC) into the local job
directory, appending only what is new. ``cancel`` deletes the owner with
``propagationPolicy: Foreground`` (pods first, then the owner) and the dependents with
``Background``, tolerating 404 for what garbage collection removed first, and waits
until the pods are gone.

``backend_job_id`` is ``<flavor>/<namespace>/<name>``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contract.jobdir import JobDir, read_json, write_json_atomic
from launcher.backends.base import Backend, BackendStatus, CancelReport, LogFile, SubmitRequest
from launcher.backends.k8s_api import (
    K8sApi,
    KubernetesApiError,
    WatchExpired,
    WatchInterrupted,
    backoff_s,
    connect,
    resource_of,
)
from launcher.backends.k8s_state import job_status, one_line
from launcher.errors import BackendUnavailableError, LaunchInputError
from launcher.render.flavours import FLAVOURS
from launcher.render.k8s import CONTAINER_NAME, LABEL_JOB_ID, make_target, render, to_yaml
from launcher.render.k8s_resources import CONFIG_MAP, Resource
from launcher.spec import JobSpec
from launcher.states import JobState
from launcher.store import JobRecord

CHECK_JOB_ID = "00000000-000000-0000"
"""A job id of the real length, for checks made before the id exists."""
LOG_STATE_FILE = ".kubernetes-logs.json"
"""In ``logs/``: how much of each container's log was copied (pod uid/container id)."""
CANCEL_MARGIN_S = 30.0
"""Cancel waits the pods' grace period plus this long for them to be gone."""


@dataclass(frozen=True)
class Handle:
    """Where a submitted job's owner object is."""

    flavor: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.flavor}/{self.namespace}/{self.name}"

    @classmethod
    def parse(cls, text: str) -> Handle:
        flavor, _, rest = text.partition("/")
        namespace, _, name = rest.partition("/")
        if flavor not in FLAVOURS or not namespace or not name:
            raise LaunchInputError(f"{text!r} is not a Kubernetes job handle (flavor/ns/name)")
        return cls(flavor, namespace, name)

    @property
    def owner(self) -> Resource:
        return FLAVOURS[self.flavor].resource

    def dependents(self) -> list[tuple[Resource, str]]:
        return [(CONFIG_MAP, f"{self.name}-files"), *FLAVOURS[self.flavor].dependents(self.name)]


class KubernetesBackend(Backend):
    """Runs jobs on a Kubernetes cluster. See the module docstring."""

    name = "kubernetes"

    def __init__(
        self,
        connector: Callable[[str | None], K8sApi] | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        poll_s: float = 1.0,
    ) -> None:
        self._connector = connector
        self._sleep = sleep
        self._poll_s = poll_s

    def connect(self, context: str | None) -> K8sApi:
        if self._connector is not None:
            return self._connector(context)

        return connect(context, sleep=self._sleep)

    # -- before submit (pure) ------------------------------------------------------------

    def check(self, spec: JobSpec) -> None:
        make_target(spec, CHECK_JOB_ID)

    def resolve_env(self, spec: JobSpec, environ: Mapping[str, str]) -> dict[str, str]:
        """Nothing is resolved here: references become ``secretKeyRef`` in the manifests
        (``launcher.render.k8s_env``), so no value ever leaves this shell."""
        make_target(spec, CHECK_JOB_ID)
        return {}

    def describe(self, request: SubmitRequest) -> str:
        spec = request.spec
        objects = render(spec, request.job_id)
        header = (
            f"# scalectl job {request.job_id}: {spec.kubernetes.flavor} in namespace "
            f"{spec.kubernetes.namespace} (kubectl apply -f FILE would create the same)\n"
        )
        return to_yaml(objects, header).rstrip("\n")

    # -- submit ----------------------------------------------------------------------------

    def submit(self, request: SubmitRequest) -> str:
        spec = request.spec
        target = make_target(spec, request.job_id)
        objects = render(spec, request.job_id)
        api = self.connect(spec.kubernetes.context)
        dependents, owner = objects[:-1], objects[-1]
        created: list[dict[str, Any]] = []
        try:
            for obj in dependents:
                self._create(api, obj, request.job_id)
                created.append(obj)
            made = self._create(api, owner, request.job_id)
        except BaseException:
            self._roll_back(api, created)
            raise
        for obj in dependents:
            # Best effort: cancel deletes the dependents by name anyway.
            with contextlib.suppress(Exception):
                api.set_owner(obj, made)
        return str(Handle(target.flavor, target.namespace, target.name))

    def _create(self, api: K8sApi, obj: dict[str, Any], job_id: str) -> dict[str, Any]:
        try:
            return api.create(obj)
        except KubernetesApiError as exc:
            if exc.status != 409:
                raise
        meta = obj["metadata"]
        existing = api.get(resource_of(obj), meta["namespace"], meta["name"])
        labels = ((existing or {}).get("metadata") or {}).get("labels") or {}
        if existing is not None and labels.get(LABEL_JOB_ID) == job_id:
            return existing
        owner = labels.get(LABEL_JOB_ID)
        whose = f"it belongs to scalectl job {owner}" if owner else "it was not made by scalectl"
        raise KubernetesApiError(
            f"kubernetes: a {obj['kind']} named {meta['name']} already exists in namespace "
            f"{meta['namespace']} ({whose}); delete it or launch under another name",
            409,
        )

    def _roll_back(self, api: K8sApi, created: list[dict[str, Any]]) -> None:
        for obj in reversed(created):
            meta = obj["metadata"]
            try:
                api.delete(
                    resource_of(obj), meta["namespace"], meta["name"], propagation="Background"
                )
            except Exception:  # the submit error is the one to report
                continue

    # -- state -----------------------------------------------------------------------------

    def status(self, record: JobRecord) -> BackendStatus:
        if not record.backend_job_id:
            return BackendStatus(JobState.UNKNOWN, "never reached the cluster")
        try:
            handle = Handle.parse(record.backend_job_id)
            spec = JobSpec.model_validate(record.spec)
            api = self.connect(spec.kubernetes.context)
            return self._status(api, handle, spec, record.id)
        except (KubernetesApiError, BackendUnavailableError, LaunchInputError) as exc:
            return BackendStatus(JobState.UNKNOWN, one_line(str(exc)))

    def _status(
        self,
        api: K8sApi,
        handle: Handle,
        spec: JobSpec,
        job_id: str,
        pods: list[dict[str, Any]] | None = None,
    ) -> BackendStatus:
        owner = api.get(handle.owner, handle.namespace, handle.name)
        if pods is None:
            pods = api.list_pods(handle.namespace, selector(job_id))[0]

        def decide(events: list[dict[str, Any]]) -> BackendStatus:
            return job_status(
                handle.flavor,
                handle.name,
                owner,
                pods or [],
                events,
                expected_pods=spec.nodes.max,
                queue=spec.kubernetes.queue,
                container=CONTAINER_NAME,
            )

        status = decide([])
        # Pods that were never created leave their reason in events (quota, admission).
        if status.state is JobState.PENDING and status.reason in {"no pods yet", ""}:
            status = decide(api.warning_events(handle.namespace))
        return status

    def watch(
        self,
        record: JobRecord,
        *,
        timeout_s: float | None = None,
        round_s: int = 60,
    ) -> Iterator[BackendStatus]:
        """Each new state of the job until it ends (or ``timeout_s`` passes); see module doc."""
        if not record.backend_job_id:
            yield BackendStatus(JobState.UNKNOWN, "never reached the cluster")
            return
        handle = Handle.parse(record.backend_job_id)
        spec = JobSpec.model_validate(record.spec)
        api = self.connect(spec.kubernetes.context)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        last: BackendStatus | None = None
        for pods in self._pod_states(api, handle.namespace, selector(record.id), deadline, round_s):
            status = self._status(api, handle, spec, record.id, pods)
            if status != last:
                last = status
                yield status
            if status.state.is_terminal:
                return

    def _pod_states(
        self,
        api: K8sApi,
        namespace: str,
        labels: str,
        deadline: float | None,
        round_s: int,
    ) -> Iterator[list[dict[str, Any]]]:
        """The job's pods now, then again after every change, until ``deadline``: one
        list, then watch rounds of at most ``round_s`` from the last resourceVersion."""
        items, version = api.list_pods(namespace, labels)
        pods = {_pod_key(p): p for p in items}
        drops = 0
        while True:
            yield list(pods.values())
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return
            span = round_s if left is None else max(1, min(round_s, int(left + 0.999)))
            try:
                for event in api.watch_pods(namespace, labels, version, span):
                    obj = event["object"]
                    meta = obj.get("metadata") or {}
                    version = str(meta.get("resourceVersion") or version)
                    if event["type"] == "BOOKMARK":
                        continue
                    if event["type"] == "DELETED":
                        pods.pop(_pod_key(obj), None)
                    else:
                        pods[_pod_key(obj)] = obj
                    drops = 0
                    yield list(pods.values())
            except WatchExpired:
                # The resourceVersion was compacted away: list again, watch from there.
                items, version = api.list_pods(namespace, labels)
                pods = {_pod_key(p): p for p in items}
            except WatchInterrupted:
                self._sleep(backoff_s(min(drops, 4)))
                drops += 1

    # -- cancel ------------------------------------------------------------------------------

    def cancel(self, record: JobRecord, grace_s: float | None = None) -> CancelReport:
        if not record.backend_job_id:
            return CancelReport(signalled=0, note="the job never reached the cluster")
        handle = Handle.parse(record.backend_job_id)
        spec = JobSpec.model_validate(record.spec)
        api = self.connect(spec.kubernetes.context)
        labels = selector(record.id)
        pods = [p for p in api.list_pods(handle.namespace, labels)[0] if _alive(p)]
        existed = api.delete(handle.owner, handle.namespace, handle.name, propagation="Foreground")
        for res, name in handle.dependents():
            # 404 is fine: garbage collection may have removed it with its owner already.
            api.delete(res, handle.namespace, name, propagation="Background")
        if grace_s is not None and pods:
            api.delete_pods(handle.namespace, labels, max(0, int(grace_s)))
        grace = spec.kubernetes.termination_grace_s if grace_s is None else grace_s
        deadline = time.monotonic() + grace + CANCEL_MARGIN_S
        remaining = pods
        while True:
            remaining = [p for p in api.list_pods(handle.namespace, labels)[0] if _alive(p)]
            gone = api.get(handle.owner, handle.namespace, handle.name) is None
            if (gone and not remaining) or time.monotonic() >= deadline:
                break
            self._sleep(self._poll_s)
        note = "" if existed else f"{handle.owner.kind} {handle.name} was already gone"
        if not pods and existed:
            note = f"deleted {handle.owner.kind} {handle.name} (no pods were running)"
        return CancelReport(signalled=len(pods), survivors=len(remaining), note=note)

    # -- logs ----------------------------------------------------------------------------------

    def log_files(self, record: JobRecord) -> list[LogFile]:
        if record.backend_job_id:
            self.fetch_logs(record)
        return super().log_files(record)

    def fetch_logs(self, record: JobRecord) -> int:
        """Append what is new in each pod's log to ``logs/<node>.torchrun.log`` of the local
        job directory; returns the characters added. A restarted container's log is
        appended after the previous one's, as on the other backends."""
        assert record.backend_job_id
        handle = Handle.parse(record.backend_job_id)
        spec = JobSpec.model_validate(record.spec)
        api = self.connect(spec.kubernetes.context)
        jobdir = JobDir(record.job_dir)
        state_path = jobdir.logs_dir / LOG_STATE_FILE
        state = _read_state(state_path)
        added = 0
        pods, _ = api.list_pods(handle.namespace, selector(record.id))
        for pod in sorted(pods, key=_pod_key):
            container_id = _container_id(pod, CONTAINER_NAME)
            if not container_id:
                continue
            meta = pod.get("metadata") or {}
            key = f"{meta.get('uid', meta.get('name'))}/{container_id}"
            text = api.pod_log(handle.namespace, str(meta.get("name")), CONTAINER_NAME)
            if text is None:
                continue
            seen = int(state.get(key, 0))
            fresh = text[seen:] if len(text) >= seen else ""
            if fresh:
                node = (pod.get("spec") or {}).get("hostname") or meta.get("name")
                path = jobdir.log_file(str(node), "torchrun")
                path.parent.mkdir(parents=True, exist_ok=True)
                with open(path, "a", encoding="utf-8") as handle_out:
                    handle_out.write(fresh)
                added += len(fresh)
            state[key] = max(seen, len(text))
        jobdir.logs_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(state_path, state)
        return added


def selector(job_id: str) -> str:
    """Label selector of every pod of the job."""
    return f"{LABEL_JOB_ID}={job_id}"


def _read_state(path: Path) -> dict[str, Any]:
    try:
        value = read_json(path)
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _pod_key(pod: dict[str, Any]) -> str:
    return str((pod.get("metadata") or {}).get("name", ""))


def _alive(pod: dict[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") not in {"Succeeded", "Failed"}


def _container_id(pod: dict[str, Any], container: str) -> str:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        if cs.get("name") == container:
            return str(cs.get("containerID") or "")
    return ""
