"""A thin layer over the official ``kubernetes`` client for the Kubernetes backend.

It connects (the user's kubeconfig, else the in-cluster service account), calls the
typed APIs by object kind, hands back plain JSON dicts, retries what is worth retrying
(429 Too Many Requests honouring ``Retry-After``, 5xx, dropped connections; a bounded
number of times with back-off) and turns every other failure into one line that says
what was refused and what to do (:func:`K8sApi.explain`).

The ``kubernetes`` package is imported inside functions: importing it costs ~0.6 s.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from launcher.backends.k8s_errors import (
    RETRYABLE_STATUS,
    KubernetesApiError,
    WatchExpired,
    WatchInterrupted,
    backoff_s,
    explain,
    retry_after_s,
    root_cause,
)
from launcher.errors import BackendUnavailableError
from launcher.render.flavours import FLAVOURS
from launcher.render.k8s_resources import CORE_RESOURCES, Resource

T = TypeVar("T")

REQUEST_TIMEOUT_S = (10.0, 60.0)
"""(connect, read) timeout of every non-watch request."""
ATTEMPTS = 4
"""Tries of one request when the server throttles or fails transiently."""


RESOURCES: dict[tuple[str, str], Resource] = {
    (res.api_version, res.kind): res
    for res in (*CORE_RESOURCES, *(flavour.resource for flavour in FLAVOURS.values()))
}
"""Every kind a job may be made of, by (apiVersion, kind)."""


def resource_of(obj: dict[str, Any]) -> Resource:
    try:
        return RESOURCES[(obj["apiVersion"], obj["kind"])]
    except KeyError:
        raise ValueError(f"no API for {obj.get('apiVersion')} {obj.get('kind')}") from None


def connect(context: str | None = None, *, sleep: Callable[[float], None] = time.sleep) -> K8sApi:
    """An API handle from the kubeconfig (``$KUBECONFIG`` or ``~/.kube/config``), else the
    in-cluster service account; BackendUnavailableError when there is neither."""
    from kubernetes import client, config

    configuration = client.Configuration()
    paths = [
        os.path.expanduser(p)
        for p in (os.environ.get("KUBECONFIG") or "~/.kube/config").split(os.pathsep)
        if p
    ]
    if any(os.path.exists(p) for p in paths):
        try:
            # The file is named here: the library reads $KUBECONFIG once, at import time.
            config.load_kube_config(
                config_file=os.pathsep.join(paths),
                context=context,
                client_configuration=configuration,
            )
        except Exception as exc:  # ConfigException, YAML and file errors alike
            raise BackendUnavailableError(
                f"kubernetes: cannot use the kubeconfig {os.pathsep.join(paths)}: "
                f"{' '.join(str(exc).split())}; check `kubectl config get-contexts`"
                + (f" and kubernetes.context {context!r}" if context else "")
            ) from None
    elif os.environ.get("KUBERNETES_SERVICE_HOST"):
        if context is not None:
            raise BackendUnavailableError(
                f"kubernetes.context {context!r} is set but there is no kubeconfig here; "
                "remove it to use the in-cluster service account"
            )
        try:
            config.load_incluster_config(client_configuration=configuration)
        except Exception as exc:
            raise BackendUnavailableError(
                f"kubernetes: cannot use the in-cluster service account: {exc}"
            ) from None
    else:
        raise BackendUnavailableError(
            "kubernetes: no kubeconfig found (KUBECONFIG or ~/.kube/config) and not running "
            "inside a pod; point KUBECONFIG at your cluster's config"
        )
    # Our own loop retries (and knows which requests may be retried); urllib3 must not.
    configuration.retries = 0
    return K8sApi(client.ApiClient(configuration), sleep=sleep)


class K8sApi:
    """Calls by object kind; JSON dicts in and out. See module doc."""

    def __init__(
        self,
        api_client: Any,
        *,
        attempts: int = ATTEMPTS,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        from kubernetes import client

        self.client = api_client
        self.core = client.CoreV1Api(api_client)
        self.batch = client.BatchV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self.attempts = attempts
        self.sleep = sleep

    @property
    def host(self) -> str:
        return str(self.client.configuration.host)

    def plain(self, value: Any) -> Any:
        """A client model (or dict) as the API's JSON form."""
        return self.client.sanitize_for_serialization(value)

    # -- objects -------------------------------------------------------------------

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        from kubernetes.client import V1ConfigMap, V1Job, V1Service

        res = resource_of(obj)
        ns = obj["metadata"]["namespace"]
        what = f"{res.kind} {obj['metadata']['name']} in namespace {ns}"
        calls: dict[str, Callable[[], Any]] = {
            "ConfigMap": lambda: self.core.create_namespaced_config_map(
                ns, body=_model(V1ConfigMap, obj), _request_timeout=REQUEST_TIMEOUT_S
            ),
            "Service": lambda: self.core.create_namespaced_service(
                ns, body=_model(V1Service, obj), _request_timeout=REQUEST_TIMEOUT_S
            ),
            "Job": lambda: self.batch.create_namespaced_job(
                ns, body=_model(V1Job, obj), _request_timeout=REQUEST_TIMEOUT_S
            ),
        }
        call = calls.get(res.kind) or (
            lambda: self.custom.create_namespaced_custom_object(
                res.group, res.version, ns, res.plural, obj, _request_timeout=REQUEST_TIMEOUT_S
            )
        )
        return dict(self.plain(self._call("create", what, call, res)))

    def get(self, res: Resource, ns: str, name: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        calls: dict[str, Callable[[], Any]] = {
            "ConfigMap": lambda: self.core.read_namespaced_config_map(
                name, ns, _request_timeout=REQUEST_TIMEOUT_S
            ),
            "Service": lambda: self.core.read_namespaced_service(
                name, ns, _request_timeout=REQUEST_TIMEOUT_S
            ),
            "Job": lambda: self.batch.read_namespaced_job(
                name, ns, _request_timeout=REQUEST_TIMEOUT_S
            ),
        }
        call = calls.get(res.kind) or (
            lambda: self.custom.get_namespaced_custom_object(
                res.group, res.version, ns, res.plural, name, _request_timeout=REQUEST_TIMEOUT_S
            )
        )
        try:
            return dict(self.plain(self._call("read", f"{res.kind} {name}", call, res)))
        except KubernetesApiError as exc:
            if exc.status == 404:
                return None
            raise

    def delete(
        self,
        res: Resource,
        ns: str,
        name: str,
        *,
        propagation: str,
        grace_s: int | None = None,
    ) -> bool:
        """Delete with ``propagationPolicy``; False when it was already gone (404)."""
        kwargs: dict[str, Any] = {
            "propagation_policy": propagation,
            "_request_timeout": REQUEST_TIMEOUT_S,
        }
        if grace_s is not None:
            kwargs["grace_period_seconds"] = grace_s
        calls: dict[str, Callable[[], Any]] = {
            "ConfigMap": lambda: self.core.delete_namespaced_config_map(name, ns, **kwargs),
            "Service": lambda: self.core.delete_namespaced_service(name, ns, **kwargs),
            "Job": lambda: self.batch.delete_namespaced_job(name, ns, **kwargs),
        }
        call = calls.get(res.kind) or (
            lambda: self.custom.delete_namespaced_custom_object(
                res.group, res.version, ns, res.plural, name, **kwargs
            )
        )
        try:
            self._call("delete", f"{res.kind} {name} in namespace {ns}", call, res)
        except KubernetesApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def set_owner(self, obj: dict[str, Any], owner: dict[str, Any]) -> None:
        """Make ``owner`` the owner of ``obj`` (JSON merge patch), so that deleting the
        owner also deletes it (garbage collection)."""
        res = resource_of(obj)
        ns = obj["metadata"]["namespace"]
        name = obj["metadata"]["name"]
        meta = owner["metadata"]
        patch = {
            "metadata": {
                "ownerReferences": [
                    {
                        "apiVersion": owner["apiVersion"],
                        "kind": owner["kind"],
                        "name": meta["name"],
                        "uid": meta["uid"],
                    }
                ]
            }
        }
        kwargs: dict[str, Any] = {
            "_content_type": "application/merge-patch+json",
            "_request_timeout": REQUEST_TIMEOUT_S,
        }
        calls: dict[str, Callable[[], Any]] = {
            "ConfigMap": lambda: self.core.patch_namespaced_config_map(
                name, ns, body=patch, **kwargs
            ),
            "Service": lambda: self.core.patch_namespaced_service(name, ns, body=patch, **kwargs),
        }
        self._call("patch", f"{res.kind} {name}", calls[res.kind], res)

    # -- pods, events, logs --------------------------------------------------------------

    def list_pods(self, ns: str, selector: str) -> tuple[list[dict[str, Any]], str]:
        """(pods, the list's resourceVersion to watch from)."""
        result = self._call(
            "list",
            f"pods in namespace {ns}",
            lambda: self.core.list_namespaced_pod(
                ns, label_selector=selector, _request_timeout=REQUEST_TIMEOUT_S
            ),
        )
        body = self.plain(result)
        return list(body.get("items") or []), str(
            (body.get("metadata") or {}).get("resourceVersion", "")
        )

    def watch_pods(
        self, ns: str, selector: str, resource_version: str, timeout_s: int
    ) -> Iterator[dict[str, Any]]:
        """Watch events ``{type, object}`` after ``resource_version`` for up to
        ``timeout_s`` (server side); raises WatchExpired (410) or WatchInterrupted."""
        import urllib3
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException

        stream = watch.Watch().stream(
            self.core.list_namespaced_pod,
            ns,
            label_selector=selector,
            resource_version=resource_version,
            allow_watch_bookmarks=True,
            timeout_seconds=max(1, int(timeout_s)),
            _request_timeout=(REQUEST_TIMEOUT_S[0], timeout_s + REQUEST_TIMEOUT_S[1]),
        )
        try:
            for event in stream:
                yield {"type": event["type"], "object": event["raw_object"]}
        except ApiException as exc:
            if exc.status == 410:
                raise WatchExpired(str(exc.reason)) from None
            if exc.status in RETRYABLE_STATUS:
                raise WatchInterrupted(f"{exc.status} {exc.reason}") from None
            raise self.explain(exc, "watch", f"pods in namespace {ns}") from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise WatchInterrupted(str(exc)) from None

    def delete_pods(self, ns: str, selector: str, grace_s: int) -> None:
        self._call(
            "delete",
            f"pods in namespace {ns}",
            lambda: self.core.delete_collection_namespaced_pod(
                ns,
                label_selector=selector,
                grace_period_seconds=grace_s,
                _request_timeout=REQUEST_TIMEOUT_S,
            ),
        )

    def pod_log(self, ns: str, name: str, container: str) -> str | None:
        """The container's log; None when there is none yet (waiting) or the pod is gone."""
        try:
            text = self._call(
                "read the log of",
                f"pod {name}",
                lambda: self.core.read_namespaced_pod_log(
                    name, ns, container=container, _request_timeout=REQUEST_TIMEOUT_S
                ),
            )
        except KubernetesApiError as exc:
            if exc.status in {400, 404}:
                return None
            raise
        return text if isinstance(text, str) else str(text)

    def warning_events(self, ns: str) -> list[dict[str, Any]]:
        result = self._call(
            "list",
            f"events in namespace {ns}",
            lambda: self.core.list_namespaced_event(
                ns, field_selector="type=Warning", _request_timeout=REQUEST_TIMEOUT_S
            ),
        )
        return list(self.plain(result).get("items") or [])

    # -- errors and retries --------------------------------------------------------------

    def _call(
        self, action: str, what: str, call: Callable[[], T], res: Resource | None = None
    ) -> T:
        import urllib3
        from kubernetes.client.exceptions import ApiException

        for attempt in range(self.attempts):
            last = attempt == self.attempts - 1
            try:
                return call()
            except ApiException as exc:
                if exc.status in RETRYABLE_STATUS and not last:
                    wait_s = retry_after_s(exc)
                    self.sleep(backoff_s(attempt) if wait_s is None else wait_s)
                    continue
                raise self.explain(exc, action, what, res) from None
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                if not last:
                    self.sleep(backoff_s(attempt))
                    continue
                raise BackendUnavailableError(
                    f"kubernetes: cannot reach the API server at {self.host} to {action} "
                    f"{what} ({root_cause(exc)}); check the kubeconfig context "
                    "(`kubectl cluster-info`)"
                ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def explain(
        self, exc: Any, action: str, what: str, res: Resource | None = None
    ) -> KubernetesApiError:
        """One line for a refused request (:func:`launcher.backends.k8s_errors.explain`)."""
        return explain(exc, action, what, self.host, res)


def _model(cls: Any, obj: dict[str, Any]) -> Any:
    """The client's typed model of a manifest (round-trips to the same JSON)."""
    model = cls.from_dict(obj)
    assert model is not None
    return model


__all__ = [
    "RESOURCES",
    "K8sApi",
    "KubernetesApiError",
    "Resource",
    "WatchExpired",
    "WatchInterrupted",
    "backoff_s",
    "connect",
    "resource_of",
]
