"""The Kubernetes flavours, by ``kubernetes.flavor`` name: one class per kind of object
that runs a job's pods (:class:`launcher.render.flavours.base.Flavour`).

To add a flavour: write its class in a module here and add it to ``FLAVOURS`` below;
add its name to ``KubernetesOptions.flavor`` in :mod:`launcher.spec` and regenerate the
example manifests (``make manifests``).
"""

from __future__ import annotations

from launcher.render.flavours.base import Flavour
from launcher.render.flavours.indexed_job import IndexedJob
from launcher.render.flavours.jobset import JobSet
from launcher.render.flavours.pytorchjob import PyTorchJob

FLAVOURS: dict[str, Flavour] = {
    flavour.name: flavour for flavour in (PyTorchJob(), JobSet(), IndexedJob())
}
"""Every flavour by name, in the order help texts list them (the default first)."""

FLAVORS: tuple[str, ...] = tuple(FLAVOURS)

__all__ = ["FLAVORS", "FLAVOURS", "Flavour"]
