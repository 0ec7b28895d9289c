"""Kubeflow Training Operator ``PyTorchJob`` (``kubeflow.org/v1``), elastic.

Kubeflow Training Operator ``kubeflow.org/v1`` PyTorchJob in elastic
  mode: Worker replicas only, ``elasticPolicy`` with ``minReplicas``/``maxReplicas`` =
  ``nodes``, ``rdzvBackend: c10d``, ``maxRestarts``; ``nprocPerNode``. The operator
  names pods ``<name>-worker-<i>`` with a Service each, so rank 0's store is at
  ``<name>-worker-0:<rdzv_port>`` (the same endpoint the operator writes into
  ``PET_RDZV_ENDPOINT``). Pods restart under ``restartPolicy: ExitCode``: exit codes
  128-255 (killed by a signal: OOM kill, preemption, node loss) are retried within
  ``runPolicy.backoffLimit``; 1-127 (the program failed) are final.
"""

from __future__ import annotations

from typing import Any

from contract.env import NODE_ENV
from launcher.render.flavours.base import Flavour
from launcher.render.k8s_env import field_entry
from launcher.render.k8s_names import LABEL_MAX
from launcher.render.k8s_pod import pod_template
from launcher.render.k8s_resources import Resource
from launcher.render.k8s_target import Target

PYTORCHJOB_PORT_NAME = "pytorchjob-port"
"""Port name the training operator looks up on the ``pytorch`` container."""


class PyTorchJob(Flavour):
    name = "pytorchjob"
    resource = Resource(
        "kubeflow.org/v1",
        "PyTorchJob",
        "pytorchjobs",
        "the Kubeflow Training Operator (kubeflow.org/v1)",
    )
    success_condition = "Succeeded"
    port_name = PYTORCHJOB_PORT_NAME

    def name_budget(self, nodes: int) -> int:
        last_index = len(str(max(nodes, 1) - 1))
        return LABEL_MAX - len("-worker-") - last_index

    def rdzv_host(self, name: str) -> str:
        return f"{name}-worker-0"

    def objects(self, target: Target) -> list[dict[str, Any]]:
        return [pytorchjob(target)]

    def node_name_env(self, target: Target) -> list[dict[str, Any]]:
        # The operator's pod names (<name>-worker-<i>) are stable across restarts.
        return [field_entry(NODE_ENV, "metadata.name")]

    def suspended(self, owner: dict[str, Any]) -> bool:
        spec = owner.get("spec") or {}
        return bool((spec.get("runPolicy") or {}).get("suspend"))


def pytorchjob(target: Target) -> dict[str, Any]:
    """Kubeflow PyTorchJob (elastic, Worker replicas only); see module doc."""
    spec = target.spec
    run_policy: dict[str, Any] = {"cleanPodPolicy": "None", "backoffLimit": spec.max_restarts}
    if spec.time_limit_s is not None:
        run_policy["activeDeadlineSeconds"] = spec.time_limit_s
    if spec.kubernetes.queue is not None:
        run_policy["suspend"] = True
    return {
        "apiVersion": PyTorchJob.resource.api_version,
        "kind": "PyTorchJob",
        "metadata": target.metadata(top=True),
        "spec": {
            "runPolicy": run_policy,
            "elasticPolicy": {
                "minReplicas": spec.nodes.min,
                "maxReplicas": spec.nodes.max,
                "rdzvBackend": "c10d",
                "rdzvPort": spec.kubernetes.rdzv_port,
                "rdzvId": target.job_id,
                "maxRestarts": spec.max_restarts,
            },
            "nprocPerNode": str(spec.procs_per_node),
            "pytorchReplicaSpecs": {
                "Worker": {
                    "replicas": spec.nodes.max,
                    "restartPolicy": "ExitCode",
                    "template": pod_template(target, restart_policy="Never"),
                }
            },
        },
    }
