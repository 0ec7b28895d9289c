"""Backends: where jobs run. ``get_backend(name)`` imports only the one asked for."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from launcher.errors import BackendUnavailableError

if TYPE_CHECKING:
    from launcher.backends.base import Backend

_BACKENDS: dict[str, tuple[str, str]] = {
    "local": ("launcher.backends.local", "LocalBackend"),
    "slurm": ("launcher.backends.slurm", "SlurmBackend"),
    "kubernetes": ("launcher.backends.kubernetes", "KubernetesBackend"),
}


def get_backend(name: str) -> Backend:
    """An instance of the backend called ``name`` (imported on first use)."""
    try:
        module_name, class_name = _BACKENDS[name]
    except KeyError:
        raise BackendUnavailableError(
            f"unknown backend {name!r}; choose one of {', '.join(_BACKENDS)}"
        ) from None
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise BackendUnavailableError(
            f"the {name} backend is not available in this scalectl yet"
        ) from None
    backend: Backend = getattr(module, class_name)()
    return backend
