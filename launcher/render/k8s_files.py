"""``scalectl manifests``: write a job's Kubernetes manifests as YAML files, one per flavour."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from launcher.errors import LaunchInputError
from launcher.paths import make_directory
from launcher.render.k8s import FLAVORS, render, to_yaml
from launcher.spec import JobSpec


def flavors_from_option(option: str | None, spec: JobSpec) -> list[str]:
    """``--k8s-flavor``: one flavour, ``all``, or None for the spec's own."""
    if option is None:
        return [spec.kubernetes.flavor]
    if option == "all":
        return list(FLAVORS)
    if option not in FLAVORS:
        raise LaunchInputError(
            f"--k8s-flavor {option!r}: choose one of {', '.join(FLAVORS)} or all"
        )
    return [option]


def write_manifests(
    spec: JobSpec,
    flavors: Sequence[str],
    job_id: str,
    out_dir: Path,
    source: str,
) -> list[Path]:
    """Render every flavour first (so a bad spec writes nothing), then write
    ``<out_dir>/<flavor>.yaml`` for each, atomically. ``source`` (the spec file as given)
    goes into the header, which does not depend on ``out_dir``."""
    texts: dict[str, str] = {}
    for flavor in flavors:
        header = (
            f"# Generated from {source} by `scalectl manifests --k8s-flavor {flavor} "
            f"--job-id {job_id}`.\n"
            "# Do not edit: change the job spec and generate again (make manifests).\n"
        )
        texts[flavor] = to_yaml(render(spec, job_id, flavor), header)
    make_directory(out_dir, f"-o {out_dir}: cannot create the directory ({{why}}); choose another")
    written = []
    for flavor, text in texts.items():
        path = out_dir / f"{flavor}.yaml"
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=out_dir)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
        written.append(path)
    return written
