"""Where scalectl keeps its state on this machine."""

from __future__ import annotations

import os
from pathlib import Path

from contract import env
from launcher.errors import LaunchInputError


def scalectl_home() -> Path:
    """``$SCALECTL_HOME``, or ``~/.local/state/scalectl`` (XDG state directory)."""
    configured = env.home()
    if configured:
        return configured
    state = os.environ.get("XDG_STATE_HOME")
    base = Path(state).expanduser() if state else Path.home() / ".local" / "state"
    return base / "scalectl"


def default_jobs_root() -> Path:
    """``$SCALECTL_JOBS_ROOT``, or ``<scalectl_home>/jobs``.

    On a cluster this must be a shared file system visible from every node.
    """
    configured = env.jobs_root()
    if configured:
        return configured
    return scalectl_home() / "jobs"


def registry_path() -> Path:
    return scalectl_home() / "registry.sqlite3"


def make_directory(path: Path, refusal: str, *, exist_ok: bool = True) -> None:
    """``mkdir -p path``; when that fails, one LaunchInputError line: ``refusal`` with
    the system's reason in place of ``{why}``."""
    try:
        path.mkdir(parents=True, exist_ok=exist_ok)
    except OSError as exc:
        raise LaunchInputError(refusal.format(why=exc.strerror or exc)) from None
