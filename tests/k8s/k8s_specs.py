"""Job specs for the Kubernetes tests."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from launcher.spec import JobSpec, spec_from_mapping

JOB_ID = "20250601-120000-8b8b"

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_SPEC = REPO / "manifests" / "llama3-8b.job.yaml"
EXAMPLE_JOB_ID = "20250601-120000-8b8b"
"""The fixed job id of the checked-in example manifests (so they do not drift)."""

BASE: dict[str, Any] = {
    "name": "run",
    "backend": "kubernetes",
    "entrypoint": {"module": "runtime.train"},
    "args": ["--steps", "100"],
    "nodes": "2:4",
    "procs_per_node": 8,
    "gpus_per_node": 8,
    "cpus_per_node": 64,
    "mem_gib": 512,
    "max_restarts": 2,
    "kubernetes": {
        "image": "ghcr.io/org/train:1",
        "pvc": "shared",
        "namespace": "team-a",
    },
}


def mapping(**overrides: Any) -> dict[str, Any]:
    """BASE with top-level keys replaced and ``kubernetes`` keys merged."""
    data = copy.deepcopy(BASE)
    k8s = overrides.pop("kubernetes", None)
    data.update(overrides)
    if k8s is not None:
        data["kubernetes"] = {**data["kubernetes"], **k8s}
    return data


def make_spec(**overrides: Any) -> JobSpec:
    return spec_from_mapping(mapping(**overrides))
