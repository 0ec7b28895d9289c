"""Where each kind of object a job is made of lives in the Kubernetes REST API. Pure data:
:mod:`launcher.backends.k8s_api` calls the API with it, each flavour names its owner's."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Resource:
    """A kind of object the backend creates, and where it lives in the REST API."""

    api_version: str
    kind: str
    plural: str
    installed_by: str = ""
    """What installs the API when it is a CRD (for the 'not installed' message)."""

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        return self.api_version.rpartition("/")[2]

    @property
    def is_custom(self) -> bool:
        return bool(self.installed_by)


CONFIG_MAP = Resource("v1", "ConfigMap", "configmaps")
SERVICE = Resource("v1", "Service", "services")
BATCH_JOB = Resource("batch/v1", "Job", "jobs")
CORE_RESOURCES: tuple[Resource, ...] = (CONFIG_MAP, SERVICE, BATCH_JOB)
"""Built-in kinds (no CRD): the ConfigMap and Service every job may have, and the Job."""
