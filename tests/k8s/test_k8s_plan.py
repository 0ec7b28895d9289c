"""``scalectl launch --plan`` on the Kubernetes backend: ``--dry-run`` renders manifests of
every flavour that carry the plan's layout, and they validate (no API server here).

The layout reaches the pods twice, as on every backend: the ``SCALECTL_LAYOUT_*``
variables in the container's environment (any program) and ``plan.json`` in the job
directory on the PVC, copied there from the job-files ConfigMap by the init container
(the reference trainer's ``--plan``). Each flavour's objects are checked against the
official schemas and admission rules (``k8s_validation``) and its custom resource
against the upstream CRD (``upstream_crds``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from k8s_validation import validate_objects
from tiny_plans import dp2_tp2_plan
from upstream_crds import crds_dir, validate_upstream

from contract import env
from launcher.render.k8s import FLAVORS
from launcher.store import Store

CUSTOM_KINDS = {"PyTorchJob", "JobSet"}


def _pod_spec(owner: dict[str, Any]) -> dict[str, Any]:
    if owner["kind"] == "PyTorchJob":
        return owner["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]
    if owner["kind"] == "JobSet":
        return owner["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]
    return owner["spec"]["template"]["spec"]


def _dry_run(cli: Any, tmp_path: Path, flavor: str, *flags: str) -> list[dict[str, Any]]:
    plan = dp2_tp2_plan(cli, tmp_path, gpus_per_node=2)
    spec = tmp_path / "job.yaml"
    spec.write_text(
        "backend: kubernetes\n"
        f"kubernetes: {{image: ghcr.io/org/train:1, pvc: shared, flavor: {flavor}}}\n"
    )
    run = cli("launch", str(spec), "--plan", str(plan), *flags, "--dry-run",
              "--", "--steps", "10")  # fmt: skip
    assert run.code == 0, run.err
    lines = run.out.splitlines()
    # The plan lines come first, broken at 80 columns (continuations indented).
    head = 0
    while head < len(lines) and lines[head].startswith(("plan: ", "      ")):
        head += 1
    plan_lines = " ".join(ln.strip() for ln in lines[:head]).replace(" plan: ", "\nplan: ")
    first = plan_lines.splitlines()[0]
    assert first.startswith("plan: layout dp2 tp2 pp1 cp1 zero3 mb2")
    assert "tokens per step 256; grad accum 2" in first
    body = "\n".join(lines[head:])
    with Store() as store:
        assert store.list_jobs() == []
    return [d for d in yaml.safe_load_all(body) if d]


@pytest.mark.parametrize("flavor", FLAVORS)
def test_every_flavour_carries_the_layout_and_validates(
    cli: Any, tmp_path: Path, flavor: str
) -> None:
    objects = _dry_run(cli, tmp_path, flavor)
    configmap, owner = objects[0], objects[-1]
    plan = json.loads((tmp_path / "p.json").read_text())
    # The plan document, as written, in the ConfigMap the init container copies.
    assert configmap["kind"] == "ConfigMap"
    assert json.loads(configmap["data"]["plan.json"]) == plan
    job = json.loads(configmap["data"]["job.json"])
    assert job["spec"]["plan"] == plan
    assert (job["spec"]["nodes"], job["spec"]["procs_per_node"]) == ({"min": 2, "max": 2}, 2)
    pod = _pod_spec(owner)
    (init,) = pod["initContainers"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounted = {m["name"] for m in init["volumeMounts"]}
    assert any(volumes[n].get("configMap", {}).get("name") == configmap["metadata"]["name"]
               for n in mounted)  # fmt: skip
    job_dir = f"/scalectl/{job['job_id']}"
    assert job_dir in init["command"]
    # The layout in every rank's environment, and the trainer pointed at plan.json.
    (container,) = pod["containers"]
    values = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    assert values[env.PLAN_FILE_ENV] == f"{job_dir}/plan.json"
    layout = env.layout(values)
    assert layout is not None
    assert (layout.dp, layout.tp, layout.micro_batch, layout.grad_accum) == (2, 2, 2, 2)
    assert (layout.sharding, layout.sequence_parallel, layout.elastic_dp) == ("zero3", True, False)
    assert layout.global_batch_tokens == 256
    command = container["command"]
    assert command[command.index("--plan") + 1] == f"{job_dir}/plan.json"
    assert "--nnodes=2:2" in command and "--nproc-per-node=2" in command
    # One GPU per planned rank.
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "2"

    assert validate_objects(objects)
    if owner["kind"] in CUSTOM_KINDS and crds_dir() is not None:
        validate_upstream(owner)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_node_range_renders_an_elastic_dp_job(cli: Any, tmp_path: Path, flavor: str) -> None:
    objects = _dry_run(cli, tmp_path, flavor, "--nodes", "1:2")
    (container,) = _pod_spec(objects[-1])["containers"]
    values = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    layout = env.layout(values)
    assert layout is not None and layout.elastic_dp and layout.tp == 2
    assert "--nnodes=1:2" in container["command"] and "--elastic-dp" in container["command"]
    assert validate_objects(objects)
    if objects[-1]["kind"] in CUSTOM_KINDS and crds_dir() is not None:
        validate_upstream(objects[-1])


def test_the_upstream_crd_check_can_fail(cli: Any, tmp_path: Path) -> None:
    if crds_dir() is None:
        pytest.skip("no ../shared/k8s-crds beside this checkout")
    owner = _dry_run(cli, tmp_path, "jobset")[-1]
    owner["spec"]["replicatedJobs"][0]["replicas"] = "two"
    with pytest.raises(AssertionError, match="replicas"):
        validate_upstream(owner)
    owner["spec"]["replicatedJobs"][0]["replicas"] = 1
    owner["spec"]["layoutHint"] = "dp2"
    with pytest.raises(AssertionError, match="would prune"):
        validate_upstream(owner)


def test_a_node_range_that_breaks_the_layout_renders_nothing(cli: Any, tmp_path: Path) -> None:
    plan = dp2_tp2_plan(cli, tmp_path, gpus_per_node=2)
    spec = tmp_path / "job.yaml"
    spec.write_text("backend: kubernetes\nkubernetes: {image: img:1, pvc: shared}\n")
    run = cli("launch", str(spec), "--plan", str(plan), "--nodes", "1:3", "--dry-run")
    assert run.code == 2 and run.out == ""
    assert run.err.startswith("error: --nodes 1:3: at 3 node(s) x 2 rank(s)")
