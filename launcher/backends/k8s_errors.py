"""Kubernetes API failures as one line each (what was refused, why, what to do), the
watch's two recoverable ends, and the retry timing of throttled or failed requests."""

from __future__ import annotations

import json
from typing import Any

from launcher.render.k8s_resources import Resource

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
"""HTTP statuses worth retrying: throttled (429) or a transient server failure."""


class KubernetesApiError(RuntimeError):
    """The API server refused a request; the message says why and what to do."""

    user_error = True

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class WatchExpired(Exception):
    """410 Gone: the watch's resourceVersion is too old; list again, then watch."""


class WatchInterrupted(Exception):
    """The watch connection dropped; watch again from the last resourceVersion."""


def explain(
    exc: Any, action: str, what: str, host: str, res: Resource | None = None
) -> KubernetesApiError:
    """One line for a refused request: what, why (the server's message), and the fix."""
    status = exc.status
    message = server_message(exc)
    if status == 401:
        text = (
            f"kubernetes: the API server at {host} refused the credentials "
            "(401 Unauthorized); log in again or refresh the token in your kubeconfig"
        )
    elif status == 403:
        text = (
            f"kubernetes: not allowed to {action} {what}: {message}; ask a cluster admin "
            "for RBAC permission, or set kubernetes.namespace to one you may use"
        )
    elif status == 404 and action == "create":
        if "namespaces" in message and "not found" in message:
            text = (
                f"kubernetes: cannot {action} {what}: {message}; create the namespace or "
                "set kubernetes.namespace to an existing one"
            )
        elif res is not None and res.is_custom:
            text = (
                f"kubernetes: this cluster has no {res.kind} API ({message}); install "
                f"{res.installed_by}, or choose another flavour (--k8s-flavor / "
                "kubernetes.flavor: indexed-job needs no operator)"
            )
        else:
            text = f"kubernetes: cannot {action} {what}: {message}"
    elif status == 409:
        text = f"kubernetes: cannot {action} {what}: it already exists ({message})"
    elif status == 422:
        text = f"kubernetes: the API server rejected {what}: {message}"
    else:
        text = f"kubernetes: cannot {action} {what}: {status} {exc.reason}: {message}"
    return KubernetesApiError(text, status)


def server_message(exc: Any) -> str:
    """The ``message`` of the API server's Status body, else the HTTP reason."""
    body = getattr(exc, "body", None)
    if body:
        try:
            data = json.loads(body)
        except (TypeError, ValueError):
            return " ".join(str(body).split())[:300]
        if isinstance(data, dict) and data.get("message"):
            return " ".join(str(data["message"]).split())
    return str(getattr(exc, "reason", "") or "no message")


def retry_after_s(exc: Any) -> float | None:
    headers = getattr(exc, "headers", None) or {}
    value = headers.get("Retry-After") if hasattr(headers, "get") else None
    try:
        return min(30.0, max(0.0, float(value))) if value is not None else None
    except ValueError:
        return None


def backoff_s(attempt: int) -> float:
    return min(8.0, 0.5 * 2**attempt)


def root_cause(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    return " ".join(str(reason or exc).split())[:200]
