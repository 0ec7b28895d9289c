"""The interface every Kubernetes flavour implements: one class per kind of object that
runs a job's pods. A new flavour is one module here plus one line in ``__init__.py``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

from launcher.render.k8s_resources import Resource
from launcher.render.k8s_target import RDZV_PORT_NAME, Target


class Flavour(ABC):
    """Render, state mapping and API path of one flavour (``kubernetes.flavor``)."""

    name: ClassVar[str]
    """``kubernetes.flavor`` / ``--k8s-flavor`` value, and the first part of the handle."""
    resource: ClassVar[Resource]
    """The object that owns the pods: its apiVersion, kind and REST path."""
    success_condition: ClassVar[str]
    """The owner's condition type that says every pod finished well."""
    port_name: ClassVar[str] = RDZV_PORT_NAME
    """Name of the rendezvous port on the training container."""

    @abstractmethod
    def name_budget(self, nodes: int) -> int:
        """Longest object name whose derived pod names and hostnames stay within 63."""

    @abstractmethod
    def rdzv_host(self, name: str) -> str:
        """The host name of the first pod of a job whose objects are called ``name``."""

    @abstractmethod
    def objects(self, target: Target) -> list[dict[str, Any]]:
        """The flavour's objects after the job-files ConfigMap, the pods' owner last."""

    @abstractmethod
    def node_name_env(self, target: Target) -> list[dict[str, Any]]:
        """Env entries that give each pod its ``SCALECTL_NODE`` (stable across restarts)."""

    def dependents(self, name: str) -> list[tuple[Resource, str]]:
        """Objects besides the ConfigMap that the owner's deletion must take along."""
        return []

    def suspended(self, owner: dict[str, Any]) -> bool:
        """The owner's own suspend flag (``spec.suspend`` unless the flavour moves it)."""
        return bool((owner.get("spec") or {}).get("suspend"))
