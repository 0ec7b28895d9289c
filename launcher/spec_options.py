"""Backend options of a :class:`launcher.spec.JobSpec`: ``local``, ``slurm`` and
``kubernetes`` sub-models; each backend reads its own and ignores the others."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from launcher.spec_parts import FROZEN


class LocalOptions(BaseModel):
    """Options of the local backend (this machine)."""

    model_config = FROZEN
    nodes: int | None = Field(default=None, ge=1)
    """Node agents (torchrun instances) to start on this machine; default ``nodes.min``.

    More than one simulates a multi-node elastic job on one host (each is a "node"
    named ``<host>-<i>``), which is how the elastic paths are tested without a cluster.
    """
    rdzv_port: int | None = Field(default=None, ge=1024, le=65535)
    """c10d rendezvous port on 127.0.0.1; default: a free port picked at start."""
    stop_grace_s: float = Field(default=30.0, ge=0)
    """Seconds between SIGTERM and SIGKILL when the job is cancelled or times out."""


class SlurmOptions(BaseModel):
    """Options of the Slurm backend (issue 6). One task (node agent) runs per node."""

    model_config = FROZEN
    partition: str | None = None
    """``--partition``."""
    account: str | None = None
    """``--account``."""
    qos: str | None = None
    """``--qos``."""
    constraint: str | None = None
    """``--constraint`` (node features, e.g. ``h100``)."""
    exclusive: bool = False
    """``--exclusive``: whole nodes, shared with no other job."""
    extra_sbatch: list[str] = Field(default_factory=list)
    """Extra sbatch options, one per item without ``#SBATCH`` (e.g. ``--reservation=big``)."""
    setup: list[str] = Field(default_factory=list)
    """Shell lines run before the job step (``module load ...``, ``source venv/bin/activate``)."""
    container_image: str | None = None
    """pyxis/enroot ``--container-image`` for the job step; None runs on the host."""
    container_mounts: list[str] = Field(default_factory=list)
    """pyxis ``--container-mounts`` entries, ``SRC:DST[:FLAGS]``."""
    signal: str = "USR2"
    """Signal Slurm sends before the time limit (``--signal``) so ranks can checkpoint."""
    signal_before_end_s: int = Field(default=120, ge=0)
    """Seconds before the time limit at which ``signal`` is sent."""
    requeue: bool = True
    """Requeue after preemption or the pre-time-limit signal (``--requeue``)."""
    max_requeues: int = Field(default=3, ge=0)
    """Requeue budget; the job stops requeueing after this many."""
    stop_grace_s: float = Field(default=60.0, ge=0)
    """Seconds the ranks get to checkpoint and exit after ``signal`` (preemption, the
    time limit, ``scalectl cancel``) before the node agent kills what is left."""
    after: list[str] = Field(default_factory=list)
    """Slurm job ids this job starts after, once they completed successfully
    (``--dependency=afterok:...``); ``scalectl launch --after JOB`` fills it in."""


class Toleration(BaseModel):
    """A Kubernetes pod toleration (core/v1 Toleration)."""

    model_config = FROZEN
    key: str | None = None
    """Taint key the toleration matches; None with ``Exists`` matches every taint."""
    operator: Literal["Exists", "Equal"] = "Equal"
    """``Equal`` compares ``value``; ``Exists`` matches any value."""
    value: str | None = None
    """Taint value for ``Equal``."""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    """Taint effect matched; None matches all effects."""
    toleration_seconds: int | None = None
    """For ``NoExecute``: how long the pod stays bound after the taint appears."""


class KubernetesOptions(BaseModel):
    """Options of the Kubernetes backend (issue 9)."""

    model_config = FROZEN
    image: str | None = None
    """Container image with scalectl and the training code; required by this backend."""
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    """``imagePullPolicy`` of the training containers."""
    namespace: str = "default"
    """Namespace the objects are created in."""
    flavor: Literal["pytorchjob", "jobset", "indexed-job"] = "pytorchjob"
    """Which kind of object runs the job (Kubeflow PyTorchJob, JobSet, Indexed Job)."""
    queue: str | None = None
    """Kueue LocalQueue name (``kueue.x-k8s.io/queue-name`` label); None: no Kueue."""
    node_selector: dict[str, str] = Field(default_factory=dict)
    """Pod ``nodeSelector`` (e.g. ``nvidia.com/gpu.product: NVIDIA-H100-80GB-HBM3``)."""
    tolerations: list[Toleration] = Field(default_factory=list)
    """Pod tolerations, e.g. for tainted GPU nodes."""
    pvc: str | None = None
    """PersistentVolumeClaim holding the job directory and checkpoints."""
    job_dir_mount: str = "/scalectl"
    """Where ``pvc`` is mounted in the pods; job directories live under it."""
    service_account: str | None = None
    """Pod ``serviceAccountName``; None uses the namespace default."""
    shm_size_gib: float | None = Field(default=None, gt=0)
    """Size of the memory-backed ``/dev/shm`` emptyDir; None leaves it unbounded."""
    python: str = "python3"
    """Python interpreter inside the image: runs torchrun, and module/script entrypoints
    that set no ``entrypoint.python``."""
    workdir: str | None = None
    """Working directory of the containers; None keeps the image's ``WORKDIR``. (The
    spec's ``workdir`` is a path on the submitting machine and is not used here.)"""
    env_secret: str | None = None
    """Secret that ``{from_env: NAME}`` entries come from on this backend: each becomes
    ``secretKeyRef {name: env_secret, key: NAME}``. None refuses ``from_env`` entries,
    because their values must never be written into a manifest."""
    termination_grace_s: int = Field(default=120, ge=0)
    """Pod ``terminationGracePeriodSeconds``: time between SIGTERM and SIGKILL when a pod
    is deleted or preempted, for the ranks to write a checkpoint."""
    rdzv_port: int = Field(default=29400, ge=1024, le=65535)
    """Port of the c10d rendezvous store on the first pod."""
    context: str | None = None
    """kubeconfig context to use; None uses the current context (or the in-cluster
    service account when there is no kubeconfig)."""
