"""Kubernetes manifests for one job: pure functions from a JobSpec to plain dicts.

Three flavours run the same node command (``launcher.commands.node_command``: the
runtime agent, which runs torchrun) once per pod, one pod per node; each is
one class in :mod:`launcher.render.flavours` (its objects, its pods' names, how its
owner reports success and suspension, its REST path):

* ``pytorchjob`` (:mod:`~launcher.render.flavours.pytorchjob`): a Kubeflow elastic
  PyTorchJob; pods ``<name>-worker-<i>``.
* ``jobset`` (:mod:`~launcher.render.flavours.jobset`): a JobSet of one replicated job
  of N pods; pods ``<name>-node-0-<i>.<name>``.
* ``indexed-job`` (:mod:`~launcher.render.flavours.indexed_job`): a plain Indexed Job
  and a headless Service, for clusters with no operator; pods ``<name>-<i>.<name>``.

Every flavour also gets a ConfigMap ``<name>-files`` with ``job.json`` (and
``plan.json``), copied by an init container into the job directory on the PVC
(``<job_dir_mount>/<job id>``), so the job directory in the cluster honours the same
contract as everywhere else. Pods get ``nvidia.com/gpu`` limits, CPU/memory requests,
node selector and tolerations, ``/dev/shm`` as a memory emptyDir, the PVC, env from
Secrets by reference only (``launcher.render.k8s_env``), and ``$`` doubled in command
and plain env values so Kubernetes' ``$(VAR)`` expansion leaves them as written. Every
object carries ``scalectl.dev/job-id``; the top object carries the Kueue
``kueue.x-k8s.io/queue-name`` label (and starts suspended, for Kueue to admit) when
``kubernetes.queue`` is set.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from launcher.errors import LaunchInputError
from launcher.render.flavours import FLAVORS, FLAVOURS
from launcher.render.k8s_names import object_name
from launcher.render.k8s_pod import (
    container_env,
    escape_dollars,
    job_files_configmap,
    pod_template,
    quantity_gib,
)
from launcher.render.k8s_target import (
    CONTAINER_NAME,
    JOIN_TIMEOUT_S,
    LABEL_FLAVOR,
    LABEL_JOB_ID,
    LABEL_JOB_NAME,
    LABEL_QUEUE,
    MONITOR_INTERVAL_S,
    Target,
    check_options,
)
from launcher.spec import JobSpec

__all__ = [
    "CONTAINER_NAME",
    "FLAVORS",
    "JOIN_TIMEOUT_S",
    "LABEL_FLAVOR",
    "LABEL_JOB_ID",
    "LABEL_JOB_NAME",
    "LABEL_QUEUE",
    "MONITOR_INTERVAL_S",
    "Target",
    "check_options",
    "container_env",
    "escape_dollars",
    "make_target",
    "pod_template",
    "quantity_gib",
    "render",
    "to_yaml",
]


def make_target(spec: JobSpec, job_id: str, flavor: str | None = None) -> Target:
    """Validate everything the manifests need; raise LaunchInputError on the first problem."""
    chosen = flavor or spec.kubernetes.flavor
    if chosen not in FLAVOURS:
        raise LaunchInputError(f"--k8s-flavor {chosen!r}: choose one of {', '.join(FLAVORS)}")
    flavour = FLAVOURS[chosen]
    if spec.kubernetes.flavor != chosen:
        # job.json in the cluster records the flavour that actually runs.
        spec = spec.model_copy(
            update={"kubernetes": spec.kubernetes.model_copy(update={"flavor": chosen})}
        )
    check_options(spec)
    name = object_name(spec.name, job_id, flavour.name_budget(spec.nodes.max))
    options = spec.kubernetes
    job_dir = f"{options.job_dir_mount.rstrip('/')}/{job_id}"
    port = options.rdzv_port
    host = flavour.rdzv_host(name)
    return Target(spec, job_id, flavour, name, job_dir, f"{host}:{port}")


# -- objects -------------------------------------------------------------------------


def render(spec: JobSpec, job_id: str, flavor: str | None = None) -> list[dict[str, Any]]:
    """Every object of the job, in the order to create them (the pods' owner last)."""
    target = make_target(spec, job_id, flavor)
    return [job_files_configmap(target), *target.flavour.objects(target)]


# -- YAML -----------------------------------------------------------------------------


def to_yaml(objects: Iterable[dict[str, Any]], header: str = "") -> str:
    """The objects as one multi-document YAML text (block style, keys in given order)."""
    import yaml

    class _Dumper(yaml.SafeDumper):
        pass

    def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
        # Multi-line strings (the init script, job.json) as literal blocks, for review.
        if "\n" in value and not any(line != line.rstrip() for line in value.split("\n")):
            return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
        return dumper.represent_scalar("tag:yaml.org,2002:str", value)

    _Dumper.add_representer(str, _str)
    body = yaml.dump_all(
        list(objects),
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=100,
        explicit_start=True,
    )
    return header + body
