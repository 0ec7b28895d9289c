"""Validating rendered custom resources against the upstream CRDs in ``../shared/k8s-crds``
(the generated CustomResourceDefinitions the JobSet and Kubeflow projects publish; see its
README for the commits), as the API server would on create:

* the version's ``openAPIV3Schema`` with jsonschema (types, required fields, enums,
  patterns, lengths; ``x-kubernetes-*`` keywords are not JSON Schema and are ignored);
* structural pruning: the API server silently drops a field the schema does not know
  (no ``x-kubernetes-preserve-unknown-fields`` in these CRDs), so a field it would prune
  is an error here: it would never reach the operator.

The CEL rules (``x-kubernetes-validations``) are not evaluated (no CEL evaluator in the
test environment); the admission rules they encode that matter to scalectl are checked
by ``k8s_validation.check_admission``.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import jsonschema
import yaml

REPO = Path(__file__).resolve().parents[2]
CRD_FILES = {
    ("kubeflow.org", "PyTorchJob"): "kubeflow.org_pytorchjobs.yaml",
    ("jobset.x-k8s.io", "JobSet"): "jobset.x-k8s.io_jobsets.yaml",
}


def crds_dir() -> Path | None:
    """``../shared/k8s-crds`` of the checkout (``/work/shared`` beside ``/work/main``; a
    worktree under ``/work/wt/`` finds the same folder one level further up)."""
    for root in (REPO.parent, REPO.parent.parent):
        path = root / "shared" / "k8s-crds"
        if path.is_dir():
            return path
    return None


@functools.cache
def crd_schema(api_version: str, kind: str) -> dict[str, Any]:
    """The ``openAPIV3Schema`` of ``kind`` at ``api_version`` in the upstream CRD."""
    group, _, version = api_version.rpartition("/")
    folder = crds_dir()
    assert folder is not None, "no ../shared/k8s-crds beside this checkout"
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    crd = yaml.load((folder / CRD_FILES[(group, kind)]).read_text(), Loader=loader)
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    return served["schema"]["openAPIV3Schema"]


def pruned_fields(value: Any, schema: dict[str, Any], where: str = "") -> list[str]:
    """Paths of the fields of ``value`` that structural pruning would drop."""
    found: list[str] = []
    if isinstance(value, dict) and "properties" in schema:
        known = schema["properties"]
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            if key in known:
                found += pruned_fields(item, known[key], f"{where}/{key}")
            elif isinstance(extra, dict):
                found += pruned_fields(item, extra, f"{where}/{key}")
            elif extra is not True:
                found.append(f"{where}/{key}")
    elif isinstance(value, dict) and isinstance(schema.get("additionalProperties"), dict):
        for key, item in value.items():
            found += pruned_fields(item, schema["additionalProperties"], f"{where}/{key}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            found += pruned_fields(item, schema["items"], f"{where}/{index}")
    return found


def validate_upstream(obj: dict[str, Any]) -> None:
    """Raise AssertionError naming the field when the upstream CRD refuses ``obj`` or
    would prune a field of it."""
    schema = crd_schema(obj["apiVersion"], obj["kind"])
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(obj), key=str)
    if errors:
        where = "/".join(str(p) for p in errors[0].absolute_path)
        raise AssertionError(f"{obj['kind']} @ {where}: {errors[0].message}")
    pruned = pruned_fields(obj, schema)
    assert pruned == [], f"{obj['kind']}: the API server would prune {pruned}"
