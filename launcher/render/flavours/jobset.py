"""``JobSet`` (``jobset.x-k8s.io/v1alpha2``) of one replicated job of N pods.

``jobset.x-k8s.io/v1alpha2`` JobSet with one replicated job (``node``) of
  one Indexed Job with N pods; ``failurePolicy.maxRestarts`` recreates every pod after a
  failure (each resumes from the newest checkpoint); rank 0's store is at the DNS name
  JobSet gives the first pod, ``<name>-node-0-0.<name>:<rdzv_port>``.
"""

from __future__ import annotations

from typing import Any

from launcher.render.flavours.base import Flavour
from launcher.render.k8s_names import LABEL_MAX
from launcher.render.k8s_pod import indexed_job_spec, indexed_node_name_env
from launcher.render.k8s_resources import Resource
from launcher.render.k8s_target import Target

REPLICATED_JOB = "node"
"""The JobSet's one replicated job."""
JOBSET_POD_SUFFIX = 6
"""``-xxxxx``: the random suffix of pod names, counted by the JobSet webhook."""


class JobSet(Flavour):
    name = "jobset"
    resource = Resource(
        "jobset.x-k8s.io/v1alpha2", "JobSet", "jobsets", "JobSet (jobset.x-k8s.io/v1alpha2)"
    )
    success_condition = "Completed"

    def name_budget(self, nodes: int) -> int:
        last_index = len(str(max(nodes, 1) - 1))
        # The JobSet webhook checks <name>-<rjob>-<job index>-<pod index>-xxxxx.
        return LABEL_MAX - len(f"-{REPLICATED_JOB}-0-") - last_index - JOBSET_POD_SUFFIX

    def rdzv_host(self, name: str) -> str:
        return f"{name}-{REPLICATED_JOB}-0-0.{name}"

    def objects(self, target: Target) -> list[dict[str, Any]]:
        return [jobset(target)]

    def node_name_env(self, target: Target) -> list[dict[str, Any]]:
        return indexed_node_name_env(f"{target.name}-{REPLICATED_JOB}-0-")


def jobset(target: Target) -> dict[str, Any]:
    """JobSet with one replicated job of N pods; see module doc."""
    spec = target.spec
    body: dict[str, Any] = {}
    if spec.kubernetes.queue is not None:
        body["suspend"] = True
    body.update(
        {
            "network": {
                "enableDNSHostnames": True,
                "subdomain": target.name,
                "publishNotReadyAddresses": True,
            },
            "successPolicy": {"operator": "All"},
            "failurePolicy": {"maxRestarts": spec.max_restarts},
            "replicatedJobs": [
                {
                    "name": REPLICATED_JOB,
                    "replicas": 1,
                    "template": {
                        "metadata": {"labels": target.labels},
                        "spec": indexed_job_spec(target, backoff_limit=0, subdomain=None),
                    },
                }
            ],
        }
    )
    return {
        "apiVersion": JobSet.resource.api_version,
        "kind": "JobSet",
        "metadata": target.metadata(top=True),
        "spec": body,
    }
