"""A plain ``batch/v1`` Indexed Job and a headless Service, for clusters with no operator.

plain ``batch/v1`` Job with ``completionMode: Indexed`` and a
  headless Service ``<name>`` (``publishNotReadyAddresses``), for clusters with no
  operator; pod ``i`` is ``<name>-i.<name>``; ``backoffLimitPerIndex`` lets each node be
  replaced ``max_restarts`` times.
"""

from __future__ import annotations

from typing import Any

from launcher.render.flavours.base import Flavour
from launcher.render.k8s_names import LABEL_MAX
from launcher.render.k8s_pod import indexed_job_spec, indexed_node_name_env
from launcher.render.k8s_resources import BATCH_JOB, SERVICE, Resource
from launcher.render.k8s_target import RDZV_PORT_NAME, Target


class IndexedJob(Flavour):
    name = "indexed-job"
    resource = BATCH_JOB
    success_condition = "Complete"

    def name_budget(self, nodes: int) -> int:
        last_index = len(str(max(nodes, 1) - 1))
        return LABEL_MAX - 1 - last_index

    def rdzv_host(self, name: str) -> str:
        return f"{name}-0.{name}"

    def objects(self, target: Target) -> list[dict[str, Any]]:
        return [headless_service(target), indexed_job(target)]

    def node_name_env(self, target: Target) -> list[dict[str, Any]]:
        return indexed_node_name_env(f"{target.name}-")

    def dependents(self, name: str) -> list[tuple[Resource, str]]:
        return [(SERVICE, name)]


def indexed_job(target: Target) -> dict[str, Any]:
    """batch/v1 Indexed Job whose pods find each other through ``headless_service``."""
    job_spec = indexed_job_spec(target, backoff_limit=None, subdomain=target.name)
    if target.spec.kubernetes.queue is not None:
        job_spec = {"suspend": True, **job_spec}
    return {
        "apiVersion": IndexedJob.resource.api_version,
        "kind": "Job",
        "metadata": target.metadata(top=True),
        "spec": job_spec,
    }


def headless_service(target: Target) -> dict[str, Any]:
    """Gives pod ``i`` of the Indexed Job the DNS name ``<name>-i.<name>``."""
    port = target.spec.kubernetes.rdzv_port
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": target.metadata(),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": target.selector,
            "ports": [
                {"name": RDZV_PORT_NAME, "port": port, "targetPort": port, "protocol": "TCP"}
            ],
        },
    }
