"""The pod every flavour runs, one per node, and the objects every flavour shares (the
job-files ConfigMap, an Indexed Job's spec): pure functions of a :class:`Target`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from contract.env import NODE_ENV, NODE_INDEX_ENV
from contract.job import JobFile
from contract.jobdir import JOB_FILE, PLAN_FILE
from launcher.commands import Rendezvous, node_command, rank_environment
from launcher.render.k8s_env import field_entry, plain_entries, reference_entries
from launcher.render.k8s_names import check_image
from launcher.render.k8s_target import (
    COMPLETION_INDEX_ANNOTATION,
    CONTAINER_NAME,
    JOB_FILES_DIR,
    JOIN_TIMEOUT_S,
    MONITOR_INTERVAL_S,
    Target,
)
from launcher.spec import JobSpec


def job_files_configmap(target: Target) -> dict[str, Any]:
    """``job.json`` (and ``plan.json``) for the job directory on the PVC.

    How a planned job's layout reaches the pods: the plan document rides in this
    ConfigMap, which the init container copies into the job directory, and the scalar
    layout rides in every container's environment (``SCALECTL_LAYOUT_*``, from
    ``launcher.commands.rank_environment``, as on the local and Slurm backends). A
    ConfigMap is Kubernetes' own object for handing configuration files to pods (up to
    1 MiB; a plan is a few KiB), and copied onto the PVC it puts ``plan.json`` where
    every backend has it, so the trainer and ``scalectl jobs`` read one path. An
    annotation would be metadata for tools, capped at 256 KiB for all of an object's
    annotations, copied into each pod template and readable from inside a pod only
    through a downward-API volume: nothing a program expects to open.
    """
    spec = target.spec
    document = JobFile(job_id=target.job_id, spec=spec.to_json()).to_json()
    data = {JOB_FILE: json.dumps(document, indent=2, sort_keys=True) + "\n"}
    if spec.plan is not None:
        data[PLAN_FILE] = json.dumps(spec.plan, indent=2, sort_keys=True) + "\n"
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": target.metadata(target.files_name),
        "data": data,
    }


def indexed_job_spec(
    target: Target, *, backoff_limit: int | None, subdomain: str | None
) -> dict[str, Any]:
    """The spec of an Indexed Job of ``target.nodes`` pods (JobSet and plain Job flavours)."""
    spec = target.spec
    body: dict[str, Any] = {
        "completionMode": "Indexed",
        "completions": target.nodes,
        "parallelism": target.nodes,
    }
    if backoff_limit is not None:
        body["backoffLimit"] = backoff_limit
    else:
        body["backoffLimitPerIndex"] = spec.max_restarts
    if spec.time_limit_s is not None:
        body["activeDeadlineSeconds"] = spec.time_limit_s
    body["template"] = pod_template(target, restart_policy="Never", subdomain=subdomain)
    return body


def indexed_node_name_env(prefix: str) -> list[dict[str, Any]]:
    """``SCALECTL_NODE`` of a pod of an Indexed Job: ``<prefix><completion index>``."""
    # Indexed Job pod names carry a random suffix; the hostname does not.
    return [
        field_entry(NODE_INDEX_ENV, f"metadata.annotations['{COMPLETION_INDEX_ANNOTATION}']"),
        {"name": NODE_ENV, "value": f"{prefix}$({NODE_INDEX_ENV})"},
    ]


_COPY_JOB_FILES = """\
import os, shutil, sys
src, dst = sys.argv[1], sys.argv[2]
os.makedirs(dst, exist_ok=True)
for name in sorted(os.listdir(src)):
    if name.startswith('.') or os.path.exists(os.path.join(dst, name)):
        continue
    tmp = os.path.join(dst, '.%s.%d' % (name, os.getpid()))
    shutil.copyfile(os.path.join(src, name), tmp)
    os.replace(tmp, os.path.join(dst, name))
"""
"""Init container: put job.json/plan.json into the job directory once, atomically (every
pod runs it; the first copy wins, a relaunch into the same directory keeps it)."""


def pod_template(
    target: Target, *, restart_policy: str, subdomain: str | None = None
) -> dict[str, Any]:
    """core/v1 PodTemplateSpec of one node; see module doc."""
    options = target.spec.kubernetes
    pod: dict[str, Any] = {"restartPolicy": restart_policy}
    if subdomain is not None:
        pod["subdomain"] = subdomain
    pod["terminationGracePeriodSeconds"] = options.termination_grace_s
    if options.service_account is not None:
        pod["serviceAccountName"] = options.service_account
    if options.node_selector:
        pod["nodeSelector"] = dict(options.node_selector)
    if options.tolerations:
        pod["tolerations"] = [_toleration(t) for t in options.tolerations]
    image = check_image(options.image)
    pod["initContainers"] = [
        {
            "name": "job-files",
            "image": image,
            "imagePullPolicy": options.image_pull_policy,
            "command": [options.python, "-c", _COPY_JOB_FILES, JOB_FILES_DIR, target.job_dir],
            "volumeMounts": [
                {"name": "job-dir", "mountPath": options.job_dir_mount},
                {"name": "job-files", "mountPath": JOB_FILES_DIR, "readOnly": True},
            ],
        }
    ]
    pod["containers"] = [_training_container(target, image)]
    pod["volumes"] = [
        {"name": "job-dir", "persistentVolumeClaim": {"claimName": options.pvc}},
        {"name": "dshm", "emptyDir": _shm(options.shm_size_gib)},
        {"name": "job-files", "configMap": {"name": target.files_name}},
    ]
    return {"metadata": {"labels": target.labels}, "spec": pod}


def _training_container(target: Target, image: str) -> dict[str, Any]:
    spec = target.spec
    options = spec.kubernetes
    rendezvous = Rendezvous(
        endpoint=target.rdzv_endpoint,
        run_id=target.job_id,
        conf={"join_timeout": JOIN_TIMEOUT_S},
    )
    argv = node_command(
        spec,
        Path(target.job_dir),
        rendezvous,
        options.python,
        backend_grace_s=options.termination_grace_s,
        monitor_interval_s=MONITOR_INTERVAL_S,
    )
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": image,
        "imagePullPolicy": options.image_pull_policy,
        "command": [escape_dollars(word) for word in argv],
    }
    if options.workdir is not None:
        container["workingDir"] = options.workdir
    container["env"] = container_env(target)
    container["ports"] = [
        {"name": target.flavour.port_name, "containerPort": options.rdzv_port, "protocol": "TCP"}
    ]
    resources = _resources(spec)
    if resources:
        container["resources"] = resources
    container["volumeMounts"] = [
        {"name": "job-dir", "mountPath": options.job_dir_mount},
        {"name": "dshm", "mountPath": "/dev/shm"},
    ]
    return container


def container_env(target: Target) -> list[dict[str, Any]]:
    """Plain values (``$`` escaped), then the node's name, then Secret references."""
    spec = target.spec
    node_cpus = spec.cpus_per_node or spec.procs_per_node
    plain = rank_environment(spec, target.job_id, Path(target.job_dir), "", node_cpus)
    plain.pop(NODE_ENV, None)
    entries = plain_entries({k: escape_dollars(v) for k, v in plain.items()})
    entries += target.flavour.node_name_env(target)
    entries += reference_entries(spec)
    return entries


def escape_dollars(text: str) -> str:
    """``$`` → ``$$``: Kubernetes expands ``$(VAR)`` in command and env values and reads
    ``$$`` as a literal ``$``, so what the user wrote reaches the process unchanged."""
    return text.replace("$", "$$")


def _resources(spec: JobSpec) -> dict[str, dict[str, str]]:
    requests: dict[str, str] = {}
    if spec.cpus_per_node is not None:
        requests["cpu"] = str(spec.cpus_per_node)
    if spec.mem_gib is not None:
        requests["memory"] = quantity_gib(spec.mem_gib)
    limits: dict[str, str] = {}
    if spec.gpus_per_node:
        # Extended resources are set as limits (requests default to them).
        limits["nvidia.com/gpu"] = str(spec.gpus_per_node)
    out: dict[str, dict[str, str]] = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


def quantity_gib(gib: float) -> str:
    """A Kubernetes quantity for ``gib`` GiB: ``80Gi``, or MiB when not a whole number."""
    if float(gib).is_integer():
        return f"{int(gib)}Gi"
    return f"{max(1, round(gib * 1024))}Mi"


def _shm(size_gib: float | None) -> dict[str, Any]:
    shm: dict[str, Any] = {"medium": "Memory"}
    if size_gib is not None:
        shm["sizeLimit"] = quantity_gib(size_gib)
    return shm


def _toleration(t: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if t.key is not None:
        out["key"] = t.key
    out["operator"] = t.operator
    if t.value is not None:
        out["value"] = t.value
    if t.effect is not None:
        out["effect"] = t.effect
    if t.toleration_seconds is not None:
        out["tolerationSeconds"] = t.toleration_seconds
    return out
