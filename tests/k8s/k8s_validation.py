"""Validating generated manifests without an API server (used by the k8s tests).

* Built-in kinds (ConfigMap, Service, batch/v1 Job) against the official OpenAPI schemas
  shipped in ``kubernetes-validate``, strict (unknown fields are errors), for every
  version in :data:`KUBERNETES_VERSIONS`.
* PyTorchJob and JobSet against the CRD schemas in ``schemas/`` (authored from the
  projects' Go API types; versions named in each file), and their embedded pod / job
  templates against the official core/v1 PodTemplate and batch/v1 Job schemas.
* The admission rules that schemas cannot express: the training operator's
  ``pytorch_validation.go`` and the JobSet webhook's name-length checks, and label
  syntax (which the OpenAPI schemas leave as free strings).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate

from launcher.render.k8s_names import (
    is_dns1035_label,
    is_dns1123_label,
    is_label_value,
    is_qualified_name,
    is_subdomain,
)

KUBERNETES_VERSIONS = ("1.29", "1.37")
"""Oldest version we claim (backoffLimitPerIndex is beta and on from 1.29) and the
newest kubernetes-validate 1.37.0 ships schemas for."""

SCHEMAS = Path(__file__).parent / "schemas"
CRD_SCHEMA_FILES = {
    ("kubeflow.org/v1", "PyTorchJob"): "kubeflow.org_v1_pytorchjob.schema.json",
    ("jobset.x-k8s.io/v1alpha2", "JobSet"): "jobset.x-k8s.io_v1alpha2_jobset.schema.json",
}


class ManifestInvalid(AssertionError):
    """A manifest broke a schema or an admission rule; the message says which and where."""


@functools.cache
def crd_validator(api_version: str, kind: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMAS / CRD_SCHEMA_FILES[(api_version, kind)]).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def validate_builtin(obj: dict[str, Any], version: str) -> None:
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = "/".join(str(p) for p in exc.path)
        raise ManifestInvalid(
            f"{obj['kind']} {obj['metadata'].get('name')} @ {where} (k8s {version}): {exc.message}"
        ) from None


def validate_crd(obj: dict[str, Any]) -> None:
    validator = crd_validator(obj["apiVersion"], obj["kind"])
    errors = sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        where = "/".join(str(p) for p in first.absolute_path)
        raise ManifestInvalid(f"{obj['kind']} @ {where}: {first.message}")


def embedded_objects(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """Built-in objects made from a CRD's embedded templates, for the official schemas."""
    name = obj["metadata"]["name"]
    out: list[dict[str, Any]] = []
    if obj["kind"] == "PyTorchJob":
        for rtype, replica in obj["spec"]["pytorchReplicaSpecs"].items():
            out.append(
                {
                    "apiVersion": "v1",
                    "kind": "PodTemplate",
                    "metadata": {"name": f"{name}-{rtype.lower()}"},
                    "template": replica["template"],
                }
            )
    elif obj["kind"] == "JobSet":
        for rjob in obj["spec"]["replicatedJobs"]:
            template = rjob["template"]
            out.append(
                {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "metadata": {
                        **template.get("metadata", {}),
                        "name": f"{name}-{rjob['name']}-0",
                    },
                    "spec": template["spec"],
                }
            )
    return out


def check_metadata(obj: dict[str, Any]) -> None:
    meta = obj["metadata"]
    for key, value in (meta.get("labels") or {}).items():
        if not is_qualified_name(key) or not is_label_value(str(value)):
            raise ManifestInvalid(f"{obj['kind']} label {key}={value!r} is not valid syntax")
    for key in meta.get("annotations") or {}:
        if not is_qualified_name(key):
            raise ManifestInvalid(f"{obj['kind']} annotation key {key!r} is not valid syntax")
    if not is_dns1123_label(meta.get("namespace", "default")):
        raise ManifestInvalid(f"namespace {meta.get('namespace')!r} is not a DNS-1123 label")


def check_admission(obj: dict[str, Any]) -> None:
    """Rules the API server's validation or the operators' webhooks apply to names."""
    name = obj["metadata"]["name"]
    kind = obj["kind"]
    if kind in {"ConfigMap"} and not is_subdomain(name):
        raise ManifestInvalid(f"{kind} name {name!r} is not a DNS-1123 subdomain")
    if kind == "Service" and not is_dns1035_label(name):
        raise ManifestInvalid(f"Service name {name!r} is not a DNS-1035 label")
    if kind == "Job":
        spec = obj["spec"]
        if not is_dns1123_label(name):
            raise ManifestInvalid(f"Job name {name!r} is not a DNS-1123 label")
        last = f"{name}-{spec['completions'] - 1}"
        if spec.get("completionMode") == "Indexed" and not is_dns1123_label(last):
            raise ManifestInvalid(f"pod hostname {last!r} is over 63 characters")
    if kind == "PyTorchJob":
        _check_pytorchjob(obj)
    if kind == "JobSet":
        _check_jobset(obj)


def _check_pytorchjob(obj: dict[str, Any]) -> None:
    # Mirrors kubeflow/training-operator pkg/apis/kubeflow.org/v1/pytorch_validation.go.
    name = obj["metadata"]["name"]
    spec = obj["spec"]
    if not is_dns1035_label(name):
        raise ManifestInvalid(f"PyTorchJob name {name!r} is not a DNS-1035 label")
    for rtype, replica in spec["pytorchReplicaSpecs"].items():
        containers = replica["template"]["spec"].get("containers") or []
        if not containers:
            raise ManifestInvalid(f"PyTorchJob {rtype}: containers definition expected")
        if any(not c.get("image") for c in containers):
            raise ManifestInvalid(f"PyTorchJob {rtype}: image is undefined in a container")
        if not any(c.get("name") == "pytorch" for c in containers):
            raise ManifestInvalid(f"PyTorchJob {rtype}: no container named pytorch")
        if rtype == "Master" and replica.get("replicas", 1) != 1:
            raise ManifestInvalid("PyTorchJob: there must be only 1 master replica")
        last = f"{name}-{rtype.lower()}-{replica.get('replicas', 1) - 1}"
        if not is_dns1035_label(last):
            raise ManifestInvalid(f"PyTorchJob pod/service name {last!r} is not a DNS-1035 label")
    elastic = spec.get("elasticPolicy") or {}
    if "nprocPerNode" in spec and "nProcPerNode" in elastic:
        raise ManifestInvalid(".spec.elasticPolicy.nProcPerNode is deprecated, use nprocPerNode")
    low, high = elastic.get("minReplicas"), elastic.get("maxReplicas")
    if low is not None and high is not None and low > high:
        raise ManifestInvalid("elasticPolicy.minReplicas is above maxReplicas")


def _check_jobset(obj: dict[str, Any]) -> None:
    # Mirrors kubernetes-sigs/jobset api/jobset/v1alpha2/jobset_webhook.go ValidateCreate.
    name = obj["metadata"]["name"]
    spec = obj["spec"]
    subdomain = (spec.get("network") or {}).get("subdomain")
    if subdomain and not (is_subdomain(subdomain) and is_dns1035_label(subdomain)):
        raise ManifestInvalid(f"JobSet subdomain {subdomain!r} is not a DNS-1035 label")
    for rjob in spec["replicatedJobs"]:
        replicas = rjob.get("replicas", 1)
        job_name = f"{name}-{rjob['name']}-{replicas - 1}"
        if not is_dns1035_label(job_name):
            raise ManifestInvalid(f"JobSet job name {job_name!r} is not a DNS-1035 label")
        job = rjob["template"]["spec"]
        if job.get("completionMode") == "Indexed" and job.get("completions") is not None:
            pod = f"{job_name}-{job['completions'] - 1}-abcde"
            if not is_dns1035_label(pod):
                raise ManifestInvalid(f"JobSet pod name {pod!r} would exceed 63 characters")


def validate_objects(objects: list[dict[str, Any]]) -> list[str]:
    """Validate every object: schemas first (so the rules below can trust the shape),
    then metadata syntax and admission rules. Returns one line per schema check done;
    raises ManifestInvalid on the first failure."""
    done: list[str] = []
    for obj in objects:
        key = (obj["apiVersion"], obj["kind"])
        if key in CRD_SCHEMA_FILES:
            validate_crd(obj)
            done.append(f"{obj['kind']} against {CRD_SCHEMA_FILES[key]}")
            inner = embedded_objects(obj)
        else:
            inner = [obj]
        for builtin in inner:
            for version in KUBERNETES_VERSIONS:
                validate_builtin(builtin, version)
                done.append(
                    f"{builtin['kind']} {builtin['metadata']['name']} against k8s {version}"
                )
        check_metadata(obj)
        check_admission(obj)
    return done
