"""Manifests of each flavour: their content, and validation against the schemas.

Built-in kinds are checked with kubernetes-validate (strict) for Kubernetes 1.29 and
1.37; PyTorchJob and JobSet against the CRD schemas in tests/k8s/schemas (authored from
the projects' Go types) with their pod/job templates against the official schemas;
the mutation tests show each check can fail.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from k8s_specs import JOB_ID, make_spec
from k8s_validation import ManifestInvalid, validate_objects

from launcher.commands import Rendezvous, node_command
from launcher.errors import LaunchInputError
from launcher.render import k8s
from launcher.render.k8s import FLAVORS, make_target, render

NAME = f"run-{JOB_ID}"


def owner(flavor: str, **overrides) -> dict:
    return render(make_spec(**overrides), JOB_ID, flavor)[-1]


def pod_of(obj: dict) -> dict:
    if obj["kind"] == "PyTorchJob":
        return obj["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]
    if obj["kind"] == "JobSet":
        return obj["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]
    return obj["spec"]["template"]


def test_pytorchjob_is_elastic_with_c10d() -> None:
    job = owner("pytorchjob")
    assert (job["apiVersion"], job["kind"]) == ("kubeflow.org/v1", "PyTorchJob")
    spec = job["spec"]
    assert spec["elasticPolicy"] == {
        "minReplicas": 2,
        "maxReplicas": 4,
        "rdzvBackend": "c10d",
        "rdzvPort": 29400,
        "rdzvId": JOB_ID,
        "maxRestarts": 2,
    }
    assert spec["nprocPerNode"] == "8"
    assert list(spec["pytorchReplicaSpecs"]) == ["Worker"]
    worker = spec["pytorchReplicaSpecs"]["Worker"]
    assert worker["replicas"] == 4 and worker["restartPolicy"] == "ExitCode"
    assert spec["runPolicy"] == {"cleanPodPolicy": "None", "backoffLimit": 2}
    ports = pod_of(job)["spec"]["containers"][0]["ports"]
    assert ports == [{"name": "pytorchjob-port", "containerPort": 29400, "protocol": "TCP"}]


def test_jobset_has_one_replicated_job_of_n_pods_and_rank0_dns_endpoint() -> None:
    js = owner("jobset")
    spec = js["spec"]
    assert spec["failurePolicy"] == {"maxRestarts": 2}
    assert spec["network"] == {
        "enableDNSHostnames": True,
        "subdomain": NAME,
        "publishNotReadyAddresses": True,
    }
    [rjob] = spec["replicatedJobs"]
    assert rjob["name"] == "node" and rjob["replicas"] == 1
    job = rjob["template"]["spec"]
    assert (job["completionMode"], job["completions"], job["parallelism"]) == ("Indexed", 4, 4)
    command = pod_of(js)["spec"]["containers"][0]["command"]
    assert f"--rdzv-endpoint={NAME}-node-0-0.{NAME}:29400" in command


def test_indexed_job_and_headless_service() -> None:
    objects = render(make_spec(), JOB_ID, "indexed-job")
    kinds = [o["kind"] for o in objects]
    assert kinds == ["ConfigMap", "Service", "Job"]
    service, job = objects[1], objects[2]
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"] is True
    assert service["spec"]["selector"] == {"scalectl.dev/job-id": JOB_ID}
    assert job["spec"]["completionMode"] == "Indexed"
    assert job["spec"]["backoffLimitPerIndex"] == 2
    pod = pod_of(job)
    assert pod["spec"]["subdomain"] == NAME == service["metadata"]["name"]
    command = pod["spec"]["containers"][0]["command"]
    assert f"--rdzv-endpoint={NAME}-0.{NAME}:29400" in command
    env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
    assert env["SCALECTL_NODE_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    )
    assert env["SCALECTL_NODE"]["value"] == f"{NAME}-$(SCALECTL_NODE_INDEX)"


@pytest.mark.parametrize("flavor", FLAVORS)
def test_the_entrypoint_is_the_node_command(flavor: str) -> None:
    spec = make_spec()
    target = make_target(spec, JOB_ID, flavor)
    expected = node_command(
        target.spec,
        Path(target.job_dir),
        Rendezvous(target.rdzv_endpoint, JOB_ID, {"join_timeout": k8s.JOIN_TIMEOUT_S}),
        "python3",
        backend_grace_s=spec.kubernetes.termination_grace_s,
        monitor_interval_s=k8s.MONITOR_INTERVAL_S,
    )
    container = pod_of(render(spec, JOB_ID, flavor)[-1])["spec"]["containers"][0]
    assert container["name"] == "pytorch"
    assert container["command"] == expected
    assert "--nnodes=2:4" in expected and "--nproc-per-node=8" in expected
    # The agent stops before the kubelet's kill (terminationGracePeriodSeconds 120).
    assert "--stop-grace-s=115" in expected
    assert f"/scalectl/{JOB_ID}" == target.job_dir


@pytest.mark.parametrize("flavor", FLAVORS)
def test_pod_resources_placement_volumes(flavor: str) -> None:
    job = owner(
        flavor,
        mem_gib=1.5,
        kubernetes={
            "node_selector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
            "tolerations": [
                {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
                {
                    "key": "spot",
                    "operator": "Equal",
                    "value": "true",
                    "effect": "NoExecute",
                    "toleration_seconds": 60,
                },
            ],
            "shm_size_gib": 64,
            "service_account": "trainer",
            "image_pull_policy": "Always",
            "workdir": "/app",
        },
    )
    pod = pod_of(job)["spec"]
    container = pod["containers"][0]
    assert container["resources"] == {
        "requests": {"cpu": "64", "memory": "1536Mi"},
        "limits": {"nvidia.com/gpu": "8"},
    }
    assert container["imagePullPolicy"] == "Always" and container["workingDir"] == "/app"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert pod["tolerations"][1] == {
        "key": "spot",
        "operator": "Equal",
        "value": "true",
        "effect": "NoExecute",
        "tolerationSeconds": 60,
    }
    assert pod["serviceAccountName"] == "trainer"
    assert pod["terminationGracePeriodSeconds"] == 120
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "64Gi"}
    assert volumes["job-dir"]["persistentVolumeClaim"] == {"claimName": "shared"}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts == {"/scalectl": "job-dir", "/dev/shm": "dshm"}
    init = pod["initContainers"][0]
    assert init["command"][-2:] == ["/etc/scalectl/job-files", f"/scalectl/{JOB_ID}"]


def test_cpu_job_has_no_gpu_limit() -> None:
    container = pod_of(owner("indexed-job", gpus_per_node=0))["spec"]["containers"][0]
    assert "limits" not in container["resources"]


@pytest.mark.parametrize("flavor", FLAVORS)
def test_every_object_and_pod_is_labelled_with_the_job_id(flavor: str) -> None:
    objects = render(make_spec(), JOB_ID, flavor)
    for obj in objects:
        labels = obj["metadata"]["labels"]
        assert labels["scalectl.dev/job-id"] == JOB_ID
        assert labels["app.kubernetes.io/managed-by"] == "scalectl"
        assert obj["metadata"]["namespace"] == "team-a"
    assert pod_of(objects[-1])["metadata"]["labels"]["scalectl.dev/job-id"] == JOB_ID


@pytest.mark.parametrize("flavor", FLAVORS)
def test_kueue_queue_label_and_suspend_only_when_asked(flavor: str) -> None:
    plain = owner(flavor)
    assert "kueue.x-k8s.io/queue-name" not in plain["metadata"]["labels"]
    queued = owner(flavor, kubernetes={"queue": "h100-queue"})
    assert queued["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "h100-queue"
    suspend = (
        queued["spec"]["runPolicy"]["suspend"]
        if flavor == "pytorchjob"
        else queued["spec"]["suspend"]
    )
    assert suspend is True


def test_time_limit_is_an_active_deadline() -> None:
    run_policy = owner("pytorchjob", time_limit_s="2h")["spec"]["runPolicy"]
    assert run_policy["activeDeadlineSeconds"] == 7200
    assert owner("indexed-job", time_limit_s="2h")["spec"]["activeDeadlineSeconds"] == 7200
    js = owner("jobset", time_limit_s="2h")
    assert js["spec"]["replicatedJobs"][0]["template"]["spec"]["activeDeadlineSeconds"] == 7200


def test_job_files_configmap_records_the_flavour_that_runs_and_the_plan() -> None:
    import json

    objects = render(make_spec(plan={"model": {"num_layers": 2}}), JOB_ID, "jobset")
    data = objects[0]["data"]
    job = json.loads(data["job.json"])
    assert job["job_id"] == JOB_ID and job["spec"]["kubernetes"]["flavor"] == "jobset"
    assert json.loads(data["plan.json"]) == {"model": {"num_layers": 2}}
    command = pod_of(objects[-1])["spec"]["containers"][0]["command"]
    assert command[command.index("--plan") + 1] == f"/scalectl/{JOB_ID}/plan.json"


# -- names -------------------------------------------------------------------------------


@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("name", ["My_Run.V2", "a" * 63, "9-lives"])
@pytest.mark.parametrize("nodes", [1, 1000])
def test_hostile_names_become_valid_objects(flavor: str, name: str, nodes: int) -> None:
    objects = render(make_spec(name=name, nodes=nodes), JOB_ID, flavor)
    validate_objects(objects)
    top = objects[-1]["metadata"]
    assert top["annotations"]["scalectl.dev/job-name"] == name
    assert top["name"].endswith(JOB_ID)


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"kubernetes": {"image": None}}, "kubernetes.image is required"),
        ({"kubernetes": {"pvc": None}}, "kubernetes.pvc is required"),
        ({"kubernetes": {"pvc": "Shared_PVC"}}, "kubernetes.pvc 'Shared_PVC'"),
        ({"kubernetes": {"namespace": "Team_A"}}, "kubernetes.namespace 'Team_A'"),
        ({"kubernetes": {"queue": "queue one"}}, "kubernetes.queue 'queue one'"),
        ({"kubernetes": {"node_selector": {"bad key": "x"}}}, "node_selector key 'bad key'"),
        ({"kubernetes": {"job_dir_mount": "/dev/shm"}}, "would hide a system directory"),
        ({"kubernetes": {"job_dir_mount": "scalectl"}}, "must be an absolute path"),
        ({"kubernetes": {"service_account": "Trainer"}}, "kubernetes.service_account"),
        (
            {"kubernetes": {"tolerations": [{"key": "k", "operator": "Exists", "value": "v"}]}},
            "operator Exists takes no value",
        ),
    ],
)
def test_bad_kubernetes_options_are_refused(overrides: dict, fragment: str) -> None:
    with pytest.raises(LaunchInputError) as info:
        make_target(make_spec(**overrides), JOB_ID)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_unknown_flavour_is_refused() -> None:
    with pytest.raises(LaunchInputError, match="choose one of pytorchjob, jobset, indexed-job"):
        make_target(make_spec(), JOB_ID, "mpijob")


# -- validation ---------------------------------------------------------------------------

VARIANTS = {
    "example": {},
    "fixed-size-cpu": {"nodes": 2, "gpus_per_node": 0, "cpus_per_node": None, "mem_gib": None},
    "everything": {
        "time_limit_s": "1d",
        "checkpoint": {"every_steps": 100, "keep_last": 2},
        "env": {"NCCL_DEBUG": "INFO", "HF_TOKEN": {"secret": "hf", "key": "token"}},
        "kubernetes": {
            "queue": "q",
            "shm_size_gib": 0.5,
            "service_account": "sa",
            "node_selector": {"pool": "gpu"},
            "tolerations": [{"operator": "Exists"}],
            "workdir": "/workspace",
        },
    },
}


@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_manifests_pass_schema_validation(flavor: str, variant: str) -> None:
    done = validate_objects(render(make_spec(**VARIANTS[variant]), JOB_ID, flavor))
    assert any("against k8s 1.29" in d for d in done) and any("1.37" in d for d in done)
    if flavor != "indexed-job":
        assert any(".schema.json" in d for d in done), "the CRD schema must have been used"


def mutated(flavor: str, change) -> list[dict]:
    objects = copy.deepcopy(render(make_spec(), JOB_ID, flavor))
    change(objects[-1])
    return objects


@pytest.mark.parametrize(
    ("flavor", "change", "fragment"),
    [
        # An unknown field in the pod: the official PodSpec schema, strict.
        ("pytorchjob", lambda o: pod_of(o)["spec"].update(bogus=1), "bogus"),
        ("jobset", lambda o: pod_of(o)["spec"].update(hostNetwork="yes"), "hostNetwork"),
        ("indexed-job", lambda o: o["spec"].update(completions="four"), "four"),
        # CRD schemas: enum, unknown field, required field.
        (
            "pytorchjob",
            lambda o: o["spec"]["pytorchReplicaSpecs"]["Worker"].update(restartPolicy="Maybe"),
            "Maybe",
        ),
        ("pytorchjob", lambda o: o["spec"]["elasticPolicy"].update(rdzvBackend="zk"), "zk"),
        ("jobset", lambda o: o["spec"]["failurePolicy"].update(maxRetries=3), "maxRetries"),
        ("jobset", lambda o: o["spec"]["replicatedJobs"][0].pop("name"), "name"),
        # Admission rules: the operator's and the JobSet webhook's.
        (
            "pytorchjob",
            lambda o: pod_of(o)["spec"]["containers"][0].update(name="trainer"),
            "no container named pytorch",
        ),
        (
            "jobset",
            lambda o: o["metadata"].update(name="x" * 50),
            "would exceed 63 characters",
        ),
        ("indexed-job", lambda o: o["metadata"]["labels"].update({"bad key": "v"}), "bad key"),
    ],
)
def test_validation_catches_broken_manifests(flavor: str, change, fragment: str) -> None:
    with pytest.raises(ManifestInvalid, match=fragment):
        validate_objects(mutated(flavor, change))
