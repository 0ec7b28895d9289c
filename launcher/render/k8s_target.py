"""One Kubernetes job's identity and layout (:class:`Target`), and the checks of the
Kubernetes options that every flavour's manifests rely on. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from launcher.errors import LaunchInputError
from launcher.render.k8s_env import check_plain_env, reference_entries
from launcher.render.k8s_names import (
    check_absolute_path,
    check_dns1123_label,
    check_image,
    check_label_value,
    check_qualified_name,
    check_subdomain,
    label_value,
)
from launcher.spec import JobSpec

if TYPE_CHECKING:
    from launcher.render.flavours.base import Flavour

CONTAINER_NAME = "pytorch"
"""The training container; PyTorchJob requires one named so (training-operator
``pytorch_validation.go``), and the other flavours use the same name."""
RDZV_PORT_NAME = "c10d"
JOB_FILES_DIR = "/etc/scalectl/job-files"
"""Where the job-files ConfigMap is mounted for the init container."""
MONITOR_INTERVAL_S = 1.0
"""torchrun ``--monitor-interval`` in pods: a failed rank is noticed within a second,
without polling many times a second on every node of a large job."""
JOIN_TIMEOUT_S = 1800
"""c10d ``join_timeout``: pods of one job start minutes apart when multi-GB images are
pulled onto cold nodes; torch's default (600 s) gives up too early there."""

LABEL_JOB_ID = "scalectl.dev/job-id"
LABEL_JOB_NAME = "scalectl.dev/job-name"
LABEL_FLAVOR = "scalectl.dev/flavor"
ANNOTATION_JOB_NAME = "scalectl.dev/job-name"
LABEL_QUEUE = "kueue.x-k8s.io/queue-name"
COMPLETION_INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"


@dataclass(frozen=True)
class Target:
    """One job's Kubernetes identity and layout, validated; what every renderer reads."""

    spec: JobSpec
    """The spec (backend options under ``spec.kubernetes``)."""
    job_id: str
    """The scalectl job id."""
    flavour: Flavour
    """Which kind of object runs the pods (:mod:`launcher.render.flavours`)."""
    name: str
    """Name of every object of the job (the ConfigMap adds ``-files``)."""
    job_dir: str
    """The job directory inside the pods, on the PVC."""
    rdzv_endpoint: str
    """``HOST:PORT`` of the c10d store on the first pod."""

    @property
    def flavor(self) -> str:
        """The flavour's name (``kubernetes.flavor``)."""
        return self.flavour.name

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
