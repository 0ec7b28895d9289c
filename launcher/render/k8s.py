"""Kubernetes manifests for one job: pure functions from a JobSpec to plain dicts.

Three flavours run the same node command (``launcher.commands.node_command``: today
torchrun, later the runtime agent wrapping it) once per pod, one pod per node:

* ``pytorchjob`` — Kubeflow Training Operator ``kubeflow.org/v1`` PyTorchJob in elastic
  mode: Worker replicas only, ``elasticPolicy`` with ``minReplicas``/``maxReplicas`` =
  ``nodes``, ``rdzvBackend: c10d``, ``maxRestarts``; ``nprocPerNode``. The operator
  names pods ``<name>-worker-<i>`` with a Service each, so rank 0's store is at
  ``<name>-worker-0:<rdzv_port>`` (the same endpoint the operator writes into
  ``PET_RDZV_ENDPOINT``). Pods restart under ``restartPolicy: ExitCode``: exit codes
  128-255 (killed by a signal: OOM kill, preemption, node loss) are retried within
  ``runPolicy.backoffLimit``; 1-127 (the program failed) are final.
* ``jobset`` — ``jobset.x-k8s.io/v1alpha2`` JobSet with one replicated job (``node``) of
  one Indexed Job with N pods; ``failurePolicy.maxRestarts`` recreates every pod after a
  failure (each resumes from the newest checkpoint); rank 0's store is at the DNS name
  JobSet gives the first pod, ``<name>-node-0-0.<name>:<rdzv_port>``.
* ``indexed-job`` — plain ``batch/v1`` Job with ``completionMode: Indexed`` and a
  headless Service ``<name>`` (``publishNotReadyAddresses``), for clusters with no
  operator; pod ``i`` is ``<name>-i.<name>``; ``backoffLimitPerIndex`` lets each node be
  replaced ``max_restarts`` times.

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

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from contract.env import NODE_ENV, NODE_INDEX_ENV
from contract.job import JobFile
from contract.jobdir import JOB_FILE, PLAN_FILE
from launcher.commands import Rendezvous, node_command, rank_environment
from launcher.errors import LaunchInputError
from launcher.render.k8s_env import (
    check_plain_env,
    field_entry,
    plain_entries,
    reference_entries,
)
from launcher.render.k8s_names import (
    LABEL_MAX,
    check_absolute_path,
    check_dns1123_label,
    check_image,
    check_label_value,
    check_qualified_name,
    check_subdomain,
    label_value,
    object_name,
)
from launcher.spec import JobSpec

Flavor = Literal["pytorchjob", "jobset", "indexed-job"]
FLAVORS: tuple[Flavor, ...] = ("pytorchjob", "jobset", "indexed-job")

CONTAINER_NAME = "pytorch"
"""The training container; PyTorchJob requires one named so (training-operator
``pytorch_validation.go``), and the other flavours use the same name."""
REPLICATED_JOB = "node"
"""The JobSet's one replicated job."""
PYTORCHJOB_PORT_NAME = "pytorchjob-port"
"""Port name the training operator looks up on the ``pytorch`` container."""
RDZV_PORT_NAME = "c10d"
JOB_FILES_DIR = "/etc/scalectl/job-files"
"""Where the job-files ConfigMap is mounted for the init container."""
MONITOR_INTERVAL_S = 1.0
"""torchrun ``--monitor-interval`` in pods: a failed rank is noticed within a second,
without polling many times a second on every node of a large job."""
JOIN_TIMEOUT_S = 1800
"""c10d ``join_timeout``: pods of one job start minutes apart when multi-GB images are
pulled onto cold nodes; torch's default (600 s) gives up too early there."""
JOBSET_POD_SUFFIX = 6
"""``-xxxxx``: the random suffix of pod names, counted by the JobSet webhook."""

LABEL_JOB_ID = "scalectl.dev/job-id"
LABEL_JOB_NAME = "scalectl.dev/job-name"
LABEL_FLAVOR = "scalectl.dev/flavor"
ANNOTATION_JOB_NAME = "scalectl.dev/job-name"
LABEL_QUEUE = "kueue.x-k8s.io/queue-name"
COMPLETION_INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"

API_VERSIONS: dict[str, tuple[str, str]] = {
    "pytorchjob": ("kubeflow.org/v1", "PyTorchJob"),
    "jobset": ("jobset.x-k8s.io/v1alpha2", "JobSet"),
    "indexed-job": ("batch/v1", "Job"),
}
"""Flavour → (apiVersion, kind) of the object that owns the pods."""


@dataclass(frozen=True)
class Target:
    """One job's Kubernetes identity and layout, validated; what every renderer reads."""

    spec: JobSpec
    """The spec (backend options under ``spec.kubernetes``)."""
    job_id: str
    """The scalectl job id."""
    flavor: Flavor
    """Which kind of object runs the pods."""
    name: str
    """Name of every object of the job (the ConfigMap adds ``-files``)."""
    job_dir: str
    """The job directory inside the pods, on the PVC."""
    rdzv_endpoint: str
    """``HOST:PORT`` of the c10d store on the first pod."""

    @property
    def namespace(self) -> str:
        return self.spec.kubernetes.namespace

    @property
    def nodes(self) -> int:
        """Pods (nodes) at the most; the elastic minimum is ``spec.nodes.min``."""
        return self.spec.nodes.max

    @property
    def files_name(self) -> str:
        return f"{self.name}-files"

    @property
    def selector(self) -> dict[str, str]:
        """Labels that select the job's pods (and nothing else)."""
        return {LABEL_JOB_ID: self.job_id}

    @property
    def labels(self) -> dict[str, str]:
        labels = {
            "app.kubernetes.io/name": "scalectl",
            "app.kubernetes.io/managed-by": "scalectl",
            LABEL_JOB_ID: self.job_id,
            LABEL_FLAVOR: self.flavor,
        }
        name = label_value(self.spec.name)
        if name:
            labels[LABEL_JOB_NAME] = name
        return labels

    def metadata(self, name: str | None = None, *, top: bool = False) -> dict[str, Any]:
        labels = self.labels
        if top and self.spec.kubernetes.queue is not None:
            labels[LABEL_QUEUE] = self.spec.kubernetes.queue
        return {
            "name": name or self.name,
            "namespace": self.namespace,
            "labels": labels,
            "annotations": {ANNOTATION_JOB_NAME: self.spec.name},
        }


def name_budget(flavor: Flavor, nodes: int) -> int:
    """Longest object name whose derived pod names and hostnames stay within 63."""
    last_index = len(str(max(nodes, 1) - 1))
    if flavor == "pytorchjob":
        return LABEL_MAX - len("-worker-") - last_index
    if flavor == "jobset":
        # The JobSet webhook checks <name>-<rjob>-<job index>-<pod index>-xxxxx.
        return LABEL_MAX - len(f"-{REPLICATED_JOB}-0-") - last_index - JOBSET_POD_SUFFIX
    return LABEL_MAX - 1 - last_index


def make_target(spec: JobSpec, job_id: str, flavor: str | None = None) -> Target:
    """Validate everything the manifests need; raise LaunchInputError on the first problem."""
    chosen = flavor or spec.kubernetes.flavor
    if chosen not in FLAVORS:
        raise LaunchInputError(f"--k8s-flavor {chosen!r}: choose one of {', '.join(FLAVORS)}")
    kind: Flavor = chosen
    if spec.kubernetes.flavor != kind:
        # job.json in the cluster records the flavour that actually runs.
        spec = spec.model_copy(
            update={"kubernetes": spec.kubernetes.model_copy(update={"flavor": kind})}
        )
    check_options(spec)
    name = object_name(spec.name, job_id, name_budget(kind, spec.nodes.max))
    options = spec.kubernetes
    job_dir = f"{options.job_dir_mount.rstrip('/')}/{job_id}"
    port = options.rdzv_port
    host = {
        "pytorchjob": f"{name}-worker-0",
        "jobset": f"{name}-{REPLICATED_JOB}-0-0.{name}",
        "indexed-job": f"{name}-0.{name}",
    }[kind]
    return Target(spec, job_id, kind, name, job_dir, f"{host}:{port}")


def check_options(spec: JobSpec) -> None:
    """Refuse Kubernetes options that would make invalid manifests (one line each)."""
    options = spec.kubernetes
    check_image(options.image)
    check_dns1123_label(options.namespace, "kubernetes.namespace")
    if options.pvc is None:
        raise LaunchInputError(
            "kubernetes.pvc is required: name a ReadWriteMany PersistentVolumeClaim for the "
            "job directory and checkpoints (every pod must see the same files)"
        )
    check_subdomain(options.pvc, "kubernetes.pvc")
    check_absolute_path(options.job_dir_mount, "kubernetes.job_dir_mount")
    if options.job_dir_mount.rstrip("/") in {"", "/dev", "/dev/shm", "/etc", "/proc", "/sys"}:
        raise LaunchInputError(
            f"kubernetes.job_dir_mount {options.job_dir_mount!r} would hide a system "
            "directory; choose e.g. /scalectl"
        )
    if options.workdir is not None:
        check_absolute_path(options.workdir, "kubernetes.workdir")
    if options.service_account is not None:
        check_subdomain(options.service_account, "kubernetes.service_account")
    if options.queue is not None:
        check_label_value(options.queue, "kubernetes.queue")
        if not options.queue:
            raise LaunchInputError("kubernetes.queue is empty; name a Kueue LocalQueue")
    if options.env_secret is not None:
        check_subdomain(options.env_secret, "kubernetes.env_secret")
    if not options.python.strip() or any(c.isspace() for c in options.python):
        raise LaunchInputError(
            f"kubernetes.python {options.python!r}: name the interpreter, e.g. python3"
        )
    for key, value in options.node_selector.items():
        check_qualified_name(key, "kubernetes.node_selector key")
        check_label_value(value, f"kubernetes.node_selector.{key}")
    for i, toleration in enumerate(options.tolerations):
        where = f"kubernetes.tolerations[{i}]"
        if toleration.key is not None:
            check_qualified_name(toleration.key, f"{where}.key")
        if toleration.operator == "Exists" and toleration.value:
            raise LaunchInputError(f"{where}: operator Exists takes no value; remove value")
        if toleration.operator == "Equal" and toleration.key is None:
            raise LaunchInputError(f"{where}: operator Equal needs a key; add key or use Exists")
        if toleration.value:
            check_label_value(toleration.value, f"{where}.value")
        if toleration.toleration_seconds is not None and toleration.effect != "NoExecute":
            raise LaunchInputError(f"{where}: toleration_seconds applies to effect NoExecute only")
    check_plain_env(spec)
    reference_entries(spec)


# -- objects -------------------------------------------------------------------------


def render(spec: JobSpec, job_id: str, flavor: str | None = None) -> list[dict[str, Any]]:
    """Every object of the job, in the order to create them (the pods' owner last)."""
    target = make_target(spec, job_id, flavor)
    objects = [job_files_configmap(target)]
    if target.flavor == "pytorchjob":
        objects.append(pytorchjob(target))
    elif target.flavor == "jobset":
        objects.append(jobset(target))
    else:
        objects += [headless_service(target), indexed_job(target)]
    return objects


def pytorchjob(target: Target) -> dict[str, Any]:
    """Kubeflow PyTorchJob (elastic, Worker replicas only); see module doc."""
    spec = target.spec
    run_policy: dict[str, Any] = {"cleanPodPolicy": "None", "backoffLimit": spec.max_restarts}
    if spec.time_limit_s is not None:
        run_policy["activeDeadlineSeconds"] = spec.time_limit_s
    if spec.kubernetes.queue is not None:
        run_policy["suspend"] = True
    return {
        "apiVersion": API_VERSIONS["pytorchjob"][0],
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
                        "spec": _indexed_job_spec(target, backoff_limit=0),
                    },
                }
            ],
        }
    )
    return {
        "apiVersion": API_VERSIONS["jobset"][0],
        "kind": "JobSet",
        "metadata": target.metadata(top=True),
        "spec": body,
    }


def indexed_job(target: Target) -> dict[str, Any]:
    """batch/v1 Indexed Job whose pods find each other through ``headless_service``."""
    job_spec = _indexed_job_spec(target, backoff_limit=None)
    if target.spec.kubernetes.queue is not None:
        job_spec = {"suspend": True, **job_spec}
    return {
        "apiVersion": API_VERSIONS["indexed-job"][0],
        "kind": "Job",
        "metadata": target.metadata(top=True),
        "spec": job_spec,
    }


def _indexed_job_spec(target: Target, *, backoff_limit: int | None) -> dict[str, Any]:
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
    subdomain = target.name if target.flavor == "indexed-job" else None
    body["template"] = pod_template(target, restart_policy="Never", subdomain=subdomain)
    return body


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


def job_files_configmap(target: Target) -> dict[str, Any]:
    """``job.json`` (and ``plan.json``) for the job directory on the PVC."""
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


# -- the pod ---------------------------------------------------------------------------

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
    port_name = PYTORCHJOB_PORT_NAME if target.flavor == "pytorchjob" else RDZV_PORT_NAME
    container["ports"] = [
        {"name": port_name, "containerPort": options.rdzv_port, "protocol": "TCP"}
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
    if target.flavor == "pytorchjob":
        # The operator's pod names (<name>-worker-<i>) are stable across restarts.
        entries.append(field_entry(NODE_ENV, "metadata.name"))
    else:
        # Indexed Job pod names carry a random suffix; the hostname does not.
        prefix = (
            f"{target.name}-{REPLICATED_JOB}-0-" if target.flavor == "jobset" else f"{target.name}-"
        )
        entries.append(
            field_entry(NODE_INDEX_ENV, f"metadata.annotations['{COMPLETION_INDEX_ANNOTATION}']")
        )
        entries.append({"name": NODE_ENV, "value": f"{prefix}$({NODE_INDEX_ENV})"})
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


def owner_of_pods(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """The object whose deletion removes the pods (the last one rendered)."""
    return objects[-1]
