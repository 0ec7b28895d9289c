"""scalectl launch / jobs / logs / cancel on the kubernetes backend, end to end through the
real CLI, the official client and the fake API server (no cluster)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from fake_apiserver import FakeApiServer, make_pod

from launcher.store import Store

SPEC = """\
name: Big_Run
entrypoint: {module: runtime.train}
args: [--steps, 10]
backend: kubernetes
nodes: 2
procs_per_node: 2
env:
  NCCL_DEBUG: INFO
  HF_TOKEN: {secret: hf, key: token}
kubernetes: {image: ghcr.io/org/train:1, pvc: shared, namespace: team-a, flavor: indexed-job}
"""


@pytest.fixture
def fake_api() -> Iterator[FakeApiServer]:
    # Objects vanish on the first read after a Foreground delete, so cancel returns at once.
    with FakeApiServer(foreground_reads=0) as server:
        yield server


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(SPEC)
    return path


def only_job() -> object:
    with Store() as store:
        [record] = store.list_jobs()
    return record


def test_launch_jobs_logs_cancel(cli, fake_api: FakeApiServer, kubeconfig, spec_file) -> None:
    result = cli("launch", str(spec_file))
    assert result.code == 0, result.err
    record = only_job()
    name = f"big-run-{record.id}"
    assert record.backend_job_id == f"indexed-job/team-a/{name}"
    assert f"launched job {record.id} (Big_Run) on kubernetes" in result.out
    assert fake_api.names("batch/v1/jobs") == [name]
    assert fake_api.names("v1/services") == [name]

    listed = json.loads(cli("jobs", "--json").out)
    assert (listed[0]["state"], listed[0]["reason"]) == ("PENDING", "no pods yet")

    for i in range(2):
        pod = make_pod(record.id, f"{name}-{i}-abcde", ns="team-a", phase="Running")
        pod["spec"]["hostname"] = f"{name}-{i}"
        fake_api.put_pod(pod)
        fake_api.set_log(f"{name}-{i}-abcde", f"torchrun on node {i}\n")
    listed = json.loads(cli("jobs", "--json").out)
    assert (listed[0]["state"], listed[0]["reason"]) == ("RUNNING", "2/2 pods running")

    logs = cli("logs", record.id)
    assert logs.code == 0, logs.err
    assert f"[{name}-0.torchrun] torchrun on node 0" in logs.out
    assert f"[{name}-1.torchrun] torchrun on node 1" in logs.out

    cancelled = cli("cancel", record.id)
    assert cancelled.code == 0, cancelled.err
    assert f"cancelled job {record.id} (Big_Run): 2 process(es) stopped" in cancelled.out
    assert fake_api.names("batch/v1/jobs") == [] and fake_api.names("v1/pods") == []
    assert only_job().state.value == "CANCELLED"


def test_dry_run_prints_the_manifests_and_creates_nothing(
    cli, fake_api: FakeApiServer, kubeconfig, spec_file
) -> None:
    result = cli("launch", str(spec_file), "--dry-run")
    assert result.code == 0, result.err
    documents = [d for d in yaml.safe_load_all(result.out) if d]
    assert [d["kind"] for d in documents] == ["ConfigMap", "Service", "Job"]
    assert fake_api.requests == []
    env = documents[-1]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {
        "name": "HF_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}},
    } in env


def one_line_error(result, fragment: str) -> None:
    assert result.code == 2, (result.code, result.out, result.err)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.err
    assert fragment in lines[0], lines[0]
    assert "Traceback" not in result.err + result.out


def test_forbidden_through_the_cli(cli, fake_api: FakeApiServer, kubeconfig, spec_file) -> None:
    fake_api.fail("POST", "jobs", 403, 'User "alice" cannot create resource "jobs"')
    result = cli("launch", str(spec_file))
    one_line_error(result, "kubernetes: not allowed to create Job")
    assert only_job().state.value == "FAILED"
    assert fake_api.names("v1/configmaps") == [] and fake_api.names("v1/services") == []


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (("NCCL_DEBUG: INFO", "WANDB_API_KEY: abc123"), "env.WANDB_API_KEY looks like a secret"),
        (("NCCL_DEBUG: INFO", "T: {from_env: HOME}"), "never written into a manifest"),
        (("pvc: shared", "pvc: Shared_PVC"), "kubernetes.pvc 'Shared_PVC'"),
        (("image: ghcr.io/org/train:1, ", ""), "kubernetes.image is required"),
    ],
)
def test_bad_specs_are_refused_before_anything_is_created(
    cli, fake_api: FakeApiServer, kubeconfig, spec_file: Path, edit, fragment: str
) -> None:
    spec_file.write_text(SPEC.replace(*edit))
    one_line_error(cli("launch", str(spec_file)), fragment)
    assert fake_api.requests == []
    with Store() as store:
        assert store.list_jobs() == []


def test_no_kubeconfig_through_the_cli(cli, spec_file) -> None:
    one_line_error(cli("launch", str(spec_file)), "no kubeconfig found")
