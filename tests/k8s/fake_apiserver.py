"""A small fake Kubernetes API server for the client-path tests (http.server in a thread).

It is not a cluster: no scheduler, no controllers, no kubelet. It answers the real REST
paths and verbs the official Python client uses, with the real response shapes, so
that ``launcher.backends.kubernetes`` is exercised through the real client, kubeconfig
loading, HTTP and JSON:

* ``POST   /api/v1/namespaces/{ns}/{configmaps,services}``,
  ``/apis/batch/v1/namespaces/{ns}/jobs``, ``/apis/kubeflow.org/v1/.../pytorchjobs``,
  ``/apis/jobset.x-k8s.io/v1alpha2/.../jobsets`` — create (201; 409 AlreadyExists;
  404 for a namespace or an API group that does not exist);
* ``GET`` an object (404 NotFound), a list (``labelSelector``, ``fieldSelector``), a
  watch (``?watch=true&resourceVersion=N&timeoutSeconds=S``: chunked JSON lines, one
  event each, BOOKMARK at the end, ERROR 410 Expired for a compacted version);
* ``PATCH`` with ``application/merge-patch+json`` (RFC 7386);
* ``DELETE`` an object (``propagationPolicy`` from the query or the DeleteOptions body;
  Foreground keeps the owner with a deletionTimestamp for a few reads; owned objects
  and the job's pods are garbage-collected) and a collection of pods;
* ``GET /api/v1/namespaces/{ns}/pods/{name}/log`` (text; 400 while the container waits).

Tests drive the cluster side by hand (``put_pod``, ``set_status``, ``compact``) and
inject faults (``fail``: any status for the next N matching requests, with
``Retry-After``; ``drop_watch_after``: cut a watch stream mid-way without its final
chunk). Every request is recorded (``requests``) so tests can assert the exact calls.
Requests need ``Authorization: Bearer <token>`` (401 otherwise).
"""

from __future__ import annotations

import copy
import json
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

BUILTIN = {
    "v1/configmaps": "ConfigMap",
    "v1/services": "Service",
    "v1/pods": "Pod",
    "v1/events": "Event",
    "batch/v1/jobs": "Job",
}
CUSTOM = {
    "kubeflow.org/v1/pytorchjobs": "PyTorchJob",
    "jobset.x-k8s.io/v1alpha2/jobsets": "JobSet",
}
OWNERS = {"batch/v1/jobs", "kubeflow.org/v1/pytorchjobs", "jobset.x-k8s.io/v1alpha2/jobsets"}
JOB_ID_LABEL = "scalectl.dev/job-id"


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    headers: dict[str, str]


@dataclass
class Fault:
    method: str
    resource: str
    status: int
    message: str
    times: int
    name: str | None = None
    retry_after: float | None = None
    reason: str = ""


@dataclass
class Stored:
    obj: dict[str, Any]
    reads_until_gone: int | None = None
    """Set by a Foreground delete: the object disappears after this many more reads."""


@dataclass
class WatchEvent:
    rv: int
    type: str
    obj: dict[str, Any]


@dataclass
class State:
    rv: int = 1000
    objects: dict[tuple[str, str, str], Stored] = field(default_factory=dict)
    history: list[WatchEvent] = field(default_factory=list)
    compacted_rv: int = 0
    faults: list[Fault] = field(default_factory=list)
    logs: dict[str, str] = field(default_factory=dict)
    drop_watch_after: int | None = None
    watch_epoch: int = 0
    """Bumped by ``compact``: open watch streams end when it changes."""


class FakeApiServer:
    """See module doc. Use as a context manager; ``url`` is ``http://127.0.0.1:PORT``."""

    def __init__(
        self,
        *,
        token: str = "test-token",
        namespaces: tuple[str, ...] = ("default", "ml-training", "team-a"),
        custom_apis: tuple[str, ...] = tuple(CUSTOM),
        foreground_reads: int = 2,
    ) -> None:
        self.token = token
        self.namespaces = set(namespaces)
        self.custom_apis = set(custom_apis)
        self.foreground_reads = foreground_reads
        self.state = State()
        self.cond = threading.Condition()
        self.requests: list[Recorded] = []
        self.stopping = False
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    # -- lifecycle -----------------------------------------------------------------------

    def __enter__(self) -> FakeApiServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        with self.cond:
            self.stopping = True
            self.cond.notify_all()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def write_kubeconfig(self, path: Path, *, token: str | None = None) -> Path:
        import yaml

        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "tester", "user": {"token": token or self.token}}],
            "contexts": [
                {"name": "fake", "context": {"cluster": "fake", "user": "tester"}},
                {"name": "other", "context": {"cluster": "fake", "user": "tester"}},
            ],
            "current-context": "fake",
        }
        path.write_text(yaml.safe_dump(config))
        return path

    # -- the cluster side, driven by tests ------------------------------------------------

    def fail(
        self,
        method: str,
        resource: str,
        status: int,
        message: str = "",
        *,
        times: int = 1,
        name: str | None = None,
        retry_after: float | None = None,
        reason: str = "",
    ) -> None:
        """Answer the next ``times`` matching requests with ``status`` and a Status body."""
        with self.cond:
            self.state.faults.append(
                Fault(method, resource, status, message, times, name, retry_after, reason)
            )

    def drop_watch_after(self, events: int) -> None:
        """Cut the next watch stream after ``events`` events, without its final chunk."""
        with self.cond:
            self.state.drop_watch_after = events

    def compact(self) -> int:
        """Compact the history (as etcd does) and end the open watches: a watch from
        any resourceVersion issued before now gets 410 Expired and must list again."""
        with self.cond:
            self.state.compacted_rv = self._bump()
            self.state.history.clear()
            self.state.watch_epoch += 1
            self.cond.notify_all()
            return self.state.compacted_rv

    def get(self, resource: str, ns: str, name: str) -> dict[str, Any] | None:
        with self.cond:
            stored = self.state.objects.get((resource, ns, name))
            return copy.deepcopy(stored.obj) if stored else None

    def names(self, resource: str) -> list[str]:
        with self.cond:
            return sorted(name for (res, _, name) in self.state.objects if res == resource)

    def put_pod(self, pod: dict[str, Any]) -> dict[str, Any]:
        """Add or replace a pod (as a kubelet/controller would), with a watch event."""
        with self.cond:
            meta = pod["metadata"]
            key = ("v1/pods", meta["namespace"], meta["name"])
            kind = "MODIFIED" if key in self.state.objects else "ADDED"
            pod = copy.deepcopy(pod)
            meta = pod["metadata"]
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", _now())
            meta["resourceVersion"] = str(self._bump())
            self.state.objects[key] = Stored(pod)
            self._event(kind, pod)
            return copy.deepcopy(pod)

    def remove_pod(self, ns: str, name: str) -> None:
        with self.cond:
            stored = self.state.objects.pop(("v1/pods", ns, name), None)
            if stored is not None:
                stored.obj["metadata"]["resourceVersion"] = str(self._bump())
                self._event("DELETED", stored.obj)

    def set_status(self, resource: str, ns: str, name: str, status: dict[str, Any]) -> None:
        with self.cond:
            stored = self.state.objects[(resource, ns, name)]
            stored.obj["status"] = status
            stored.obj["metadata"]["resourceVersion"] = str(self._bump())

    def add_event(self, ns: str, involved: str, reason: str, message: str) -> None:
        with self.cond:
            name = f"{involved}.{self._bump()}"
            self.state.objects[("v1/events", ns, name)] = Stored(
                {
                    "apiVersion": "v1",
                    "kind": "Event",
                    "metadata": {"name": name, "namespace": ns},
                    "involvedObject": {"name": involved, "namespace": ns},
                    "reason": reason,
                    "message": message,
                    "type": "Warning",
                }
            )

    def set_log(self, pod: str, text: str) -> None:
        with self.cond:
            self.state.logs[pod] = text

    def calls(self, method: str | None = None, contains: str = "") -> list[Recorded]:
        with self.cond:
            return [
                r
                for r in self.requests
                if (method is None or r.method == method) and contains in r.path
            ]

    # -- internals (hold self.cond) ------------------------------------------------------

    def _bump(self) -> int:
        self.state.rv += 1
        return self.state.rv

    def _event(self, kind: str, pod: dict[str, Any]) -> None:
        self.state.history.append(
            WatchEvent(int(pod["metadata"]["resourceVersion"]), kind, copy.deepcopy(pod))
        )
        self.cond.notify_all()

    def _collect_garbage(self, owner: dict[str, Any]) -> None:
        uid = owner["metadata"].get("uid")
        job_id = (owner["metadata"].get("labels") or {}).get(JOB_ID_LABEL)
        for key, stored in list(self.state.objects.items()):
            meta = stored.obj["metadata"]
            owned = any(ref.get("uid") == uid for ref in meta.get("ownerReferences") or [])
            pod_of_job = (
                key[0] == "v1/pods" and (meta.get("labels") or {}).get(JOB_ID_LABEL) == job_id
            )
            if owned or (job_id and pod_of_job):
                del self.state.objects[key]
                if key[0] == "v1/pods":
                    meta["resourceVersion"] = str(self._bump())
                    self._event("DELETED", stored.obj)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def status_body(code: int, message: str, reason: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    409: "AlreadyExists",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
}


def _matches(labels: dict[str, str], selector: str) -> bool:
    for term in filter(None, selector.split(",")):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True


def _field(obj: dict[str, Any], dotted: str) -> Any:
    value: Any = obj
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _merge(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge(result.get(key), value)
    return result


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in {"1", "true"}


def _handler_for(server: FakeApiServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def setup(self) -> None:
            super().setup()
            # Headers and body go out in separate writes; without this, delayed ACKs
            # add ~40 ms to every request on loopback.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        # -- plumbing ----------------------------------------------------------------

        def _send_json(self, code: int, body: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def _send_text(self, code: int, text: str) -> None:
            data = text.encode()
            self.send_response(code)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _status(self, code: int, message: str, reason: str = "", **headers: str) -> None:
            self._send_json(
                code, status_body(code, message, reason or _REASONS.get(code, "Unknown")), headers
            )

        def _chunk(self, line: dict[str, Any]) -> None:
            data = (json.dumps(line) + "\n").encode()
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        def _handle(self, method: str) -> None:
            parts = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode(errors="replace")
            with server.cond:
                server.requests.append(
                    Recorded(
                        method,
                        parts.path,
                        query,
                        copy.deepcopy(body),
                        {k.lower(): v for k, v in self.headers.items()},
                    )
                )
            if self.headers.get("Authorization") != f"Bearer {server.token}":
                self._status(401, "Unauthorized")
                return
            route = self._route(parts.path)
            if route is None:
                self._status(404, "the server could not find the requested resource")
                return
            resource, ns, name, sub = route
            if self._fault(method, resource, name):
                return
            if resource in CUSTOM and resource not in server.custom_apis:
                self._status(404, "the server could not find the requested resource")
                return
            if ns not in server.namespaces:
                self._status(404, f'namespaces "{ns}" not found')
                return
            handler = getattr(self, f"_{method.lower()}")
            handler(resource, ns, name, sub, query, body)

        def _route(self, path: str) -> tuple[str, str, str | None, str | None] | None:
            parts = path.strip("/").split("/")
            if len(parts) >= 2 and parts[0] == "api":
                group_version, rest = parts[1], parts[2:]
            elif len(parts) >= 3 and parts[0] == "apis":
                group_version, rest = f"{parts[1]}/{parts[2]}", parts[3:]
            else:
                return None
            if len(rest) < 3 or rest[0] != "namespaces":
                return None
            resource = f"{group_version}/{rest[2]}"
            if resource not in BUILTIN and resource not in CUSTOM:
                return None
            name = rest[3] if len(rest) > 3 else None
            sub = rest[4] if len(rest) > 4 else None
            return resource, rest[1], name, sub

        def _fault(self, method: str, resource: str, name: str | None) -> bool:
            with server.cond:
                for fault in server.state.faults:
                    if fault.times <= 0 or fault.method != method:
                        continue
                    if not resource.endswith(fault.resource):
                        continue
                    if fault.name is not None and fault.name != name:
                        continue
                    fault.times -= 1
                    break
                else:
                    return False
            headers = {}
            if fault.retry_after is not None:
                headers["Retry-After"] = f"{fault.retry_after:g}"
            self._status(
                fault.status,
                fault.message or _REASONS.get(fault.status, ""),
                fault.reason,
                **headers,
            )
            return True

        # -- verbs -------------------------------------------------------------------

        def _post(self, resource, ns, name, sub, query, body) -> None:  # type: ignore[no-untyped-def]
            if name is not None or not isinstance(body, dict):
                self._status(405, "method not allowed")
                return
            meta = body.setdefault("metadata", {})
            obj_name = meta.get("name")
            plural = resource.rsplit("/", 1)[1]
            group = resource.rsplit("/", 2)[0] if resource.count("/") == 2 else ""
            with server.cond:
                key = (resource, ns, obj_name)
                if key in server.state.objects:
                    what = f"{plural}.{group.split('/')[0]}" if group else plural
                    self._status(409, f'{what} "{obj_name}" already exists', "AlreadyExists")
                    return
                meta["namespace"] = ns
                meta["uid"] = str(uuid.uuid4())
                meta["creationTimestamp"] = _now()
                meta["generation"] = 1
                meta["resourceVersion"] = str(server._bump())
                server.state.objects[key] = Stored(copy.deepcopy(body))
            self._send_json(201, body)

        def _get(self, resource, ns, name, sub, query, body) -> None:  # type: ignore[no-untyped-def]
            if name is None:
                if _truthy(query.get("watch")):
                    self._watch(resource, ns, query)
                else:
                    self._list(resource, ns, query)
                return
            with server.cond:
                stored = server.state.objects.get((resource, ns, name))
                if stored is not None and stored.reads_until_gone is not None:
                    if stored.reads_until_gone <= 0:
                        del server.state.objects[(resource, ns, name)]
                        stored = None
                    else:
                        stored.reads_until_gone -= 1
                obj = copy.deepcopy(stored.obj) if stored else None
                log = server.state.logs.get(name, "")
            if obj is None:
                self._status(404, f'{resource.rsplit("/", 1)[1]} "{name}" not found')
                return
            if sub == "log":
                container = query.get("container", "")
                started = any(
                    cs.get("name") == container
                    and (
                        "running" in (cs.get("state") or {})
                        or "terminated" in (cs.get("state") or {})
                    )
                    for cs in (obj.get("status") or {}).get("containerStatuses") or []
                )
                if not started:
                    self._status(
                        400,
                        f'container "{container}" in pod "{name}" is waiting to start: '
                        "PodInitializing",
                    )
                    return
                self._send_text(200, log)
                return
            self._send_json(200, obj)

        def _list(self, resource: str, ns: str, query: dict[str, str]) -> None:
            selector = query.get("labelSelector", "")
            fields = query.get("fieldSelector", "")
            with server.cond:
                items = [
                    copy.deepcopy(s.obj)
                    for (res, n, _), s in sorted(server.state.objects.items())
                    if res == resource
                    and n == ns
                    and _matches(s.obj["metadata"].get("labels") or {}, selector)
                    and all(
                        str(_field(s.obj, k)) == v
                        for k, _, v in (t.partition("=") for t in filter(None, fields.split(",")))
                    )
                ]
                version = str(server.state.rv)
            kind = (BUILTIN.get(resource) or CUSTOM[resource]) + "List"
            api_version = resource.rsplit("/", 1)[0]
            self._send_json(
                200,
                {
                    "kind": kind,
                    "apiVersion": api_version,
                    "metadata": {"resourceVersion": version},
                    "items": items,
                },
            )

        def _watch(self, resource: str, ns: str, query: dict[str, str]) -> None:
            selector = query.get("labelSelector", "")
            cursor = int(query.get("resourceVersion") or 0)
            timeout_s = float(query.get("timeoutSeconds") or 30)
            bookmarks = _truthy(query.get("allowWatchBookmarks"))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            with server.cond:
                expired = cursor < server.state.compacted_rv
                current = server.state.rv
            if expired:
                self._chunk(
                    {
                        "type": "ERROR",
                        "object": status_body(
                            410, f"too old resource version: {cursor} ({current})", "Expired"
                        ),
                    }
                )
                self.wfile.write(b"0\r\n\r\n")
                return
            deadline = time.monotonic() + timeout_s
            sent = 0
            with server.cond:
                epoch = server.state.watch_epoch
            while True:
                with server.cond:
                    pending = [
                        e
                        for e in server.state.history
                        if e.rv > cursor
                        and _matches(e.obj["metadata"].get("labels") or {}, selector)
                        and e.obj["metadata"].get("namespace") == ns
                    ]
                    if not pending and not server.stopping:
                        server.cond.wait(min(0.05, max(0.0, deadline - time.monotonic())))
                    drop_after = server.state.drop_watch_after
                for event in pending:
                    self._chunk({"type": event.type, "object": event.obj})
                    cursor = event.rv
                    sent += 1
                    if drop_after is not None and sent >= drop_after:
                        with server.cond:
                            server.state.drop_watch_after = None
                        # Cut the connection mid-stream: no terminating chunk.
                        self.close_connection = True
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                with server.cond:
                    ended = server.state.watch_epoch != epoch
                if ended:
                    self.wfile.write(b"0\r\n\r\n")
                    return
                if time.monotonic() >= deadline or server.stopping:
                    break
            if bookmarks:
                with server.cond:
                    version = str(server.state.rv)
                self._chunk(
                    {
                        "type": "BOOKMARK",
                        "object": {
                            "kind": "Pod",
                            "apiVersion": "v1",
                            "metadata": {"resourceVersion": version},
                        },
                    }
                )
            self.wfile.write(b"0\r\n\r\n")

        def _patch(self, resource, ns, name, sub, query, body) -> None:  # type: ignore[no-untyped-def]
            if self.headers.get("Content-Type", "").split(";")[0] != "application/merge-patch+json":
                self._status(415, f"unsupported patch type {self.headers.get('Content-Type')}")
                return
            with server.cond:
                stored = server.state.objects.get((resource, ns, name))
                if stored is None:
                    obj = None
                else:
                    stored.obj = _merge(stored.obj, body)
                    stored.obj["metadata"]["resourceVersion"] = str(server._bump())
                    obj = copy.deepcopy(stored.obj)
            if obj is None:
                self._status(404, f'{resource.rsplit("/", 1)[1]} "{name}" not found')
                return
            self._send_json(200, obj)

        def _delete(self, resource, ns, name, sub, query, body) -> None:  # type: ignore[no-untyped-def]
            options = body if isinstance(body, dict) else {}
            policy = (
                query.get("propagationPolicy") or options.get("propagationPolicy") or "Background"
            )
            if name is None:
                selector = query.get("labelSelector", "")
                with server.cond:
                    gone = []
                    for key, stored in list(server.state.objects.items()):
                        if (
                            key[0] == resource
                            and key[1] == ns
                            and _matches(stored.obj["metadata"].get("labels") or {}, selector)
                        ):
                            del server.state.objects[key]
                            stored.obj["metadata"]["resourceVersion"] = str(server._bump())
                            if resource == "v1/pods":
                                server._event("DELETED", stored.obj)
                            gone.append(stored.obj)
                self._send_json(
                    200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": gone}
                )
                return
            with server.cond:
                stored = server.state.objects.get((resource, ns, name))
                if stored is None or stored.reads_until_gone is not None:
                    obj = None
                else:
                    obj = stored.obj
                    if resource in OWNERS:
                        server._collect_garbage(obj)
                    if policy == "Foreground" and resource in OWNERS:
                        obj["metadata"]["deletionTimestamp"] = _now()
                        obj["metadata"]["finalizers"] = ["foregroundDeletion"]
                        stored.reads_until_gone = server.foreground_reads
                    else:
                        del server.state.objects[(resource, ns, name)]
                    obj = copy.deepcopy(obj)
            if obj is None:
                self._status(404, f'{resource.rsplit("/", 1)[1]} "{name}" not found')
                return
            if policy == "Foreground" and resource in OWNERS:
                self._send_json(200, obj)
            else:
                self._send_json(
                    200,
                    {
                        "kind": "Status",
                        "apiVersion": "v1",
                        "metadata": {},
                        "status": "Success",
                        "details": {"name": name, "kind": resource.rsplit("/", 1)[1]},
                    },
                )

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

        def do_PATCH(self) -> None:
            self._handle("PATCH")

        def do_DELETE(self) -> None:
            self._handle("DELETE")

    return Handler


# -- pods as the kubelet would report them ------------------------------------------------


def make_pod(
    job_id: str,
    name: str,
    *,
    ns: str = "ml-training",
    phase: str = "Pending",
    hostname: str | None = None,
    container: str = "pytorch",
    waiting: tuple[str, str] | None = None,
    unschedulable: str | None = None,
    exit_code: int | None = None,
    container_id: str = "containerd://c0",
    restarts: int = 0,
    disruption: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """A pod of the job in the given phase, shaped like the API server's JSON."""
    status: dict[str, Any] = {"phase": phase, "conditions": []}
    if unschedulable is not None:
        status["conditions"].append(
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": unschedulable,
            }
        )
    if disruption is not None:
        status["conditions"].append(
            {
                "type": "DisruptionTarget",
                "status": "True",
                "reason": disruption[0],
                "message": disruption[1],
            }
        )
    state: dict[str, Any] | None = None
    if waiting is not None:
        state = {"waiting": {"reason": waiting[0], "message": waiting[1]}}
    elif phase == "Running":
        state = {"running": {"startedAt": _now()}}
    elif phase in {"Succeeded", "Failed"}:
        state = {
            "terminated": {
                "exitCode": exit_code or 0,
                "reason": "Completed" if phase == "Succeeded" else "Error",
            }
        }
    if state is not None:
        status["containerStatuses"] = [
            {
                "name": container,
                "image": "ghcr.io/example/train:1",
                "imageID": "",
                "ready": phase == "Running",
                "restartCount": restarts,
                "state": state,
                "containerID": container_id if "waiting" not in state else None,
            }
        ]
    spec: dict[str, Any] = {"containers": [{"name": container, "image": "ghcr.io/example/train:1"}]}
    if hostname is not None:
        spec["hostname"] = hostname
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": {JOB_ID_LABEL: job_id},
        },
        "spec": spec,
        "status": status,
    }
