"""``scalectl launch`` flags and trailing words → a JobSpec mapping (pure, no I/O).

Rules:

* the first trailing word names a spec file when it ends in ``.yaml``/``.yml``/``.json``;
* flags given on the command line override the file's keys (dotted keys, see
  :func:`launcher.spec.apply_overrides`);
* with ``--module``/``--script`` or an entrypoint from the file, the remaining words are
  appended to the entrypoint's ``args`` (so ``-- --steps 50`` overrides a trainer flag:
  argparse keeps the last);
* otherwise the words are the command: ``train.py ...`` (a script, run with Python) or
  ``python train.py ...`` / any executable (run as given).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from launcher.errors import LaunchInputError

SPEC_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class LaunchFlags:
    """Every ``scalectl launch`` option; None means "not given"."""

    backend: str | None = None
    name: str | None = None
    nodes: str | None = None
    procs_per_node: int | None = None
    gpus_per_node: int | None = None
    cpus_per_node: int | None = None
    mem_gib: float | None = None
    time_limit: str | None = None
    module: str | None = None
    script: str | None = None
    env: list[str] = field(default_factory=list)
    max_restarts: int | None = None
    ckpt_every: int | None = None
    keep_last: int | None = None
    job_dir: str | None = None
    jobs_root: str | None = None
    workdir: str | None = None
    local_nodes: int | None = None


def split_words(words: list[str]) -> tuple[Path | None, list[str]]:
    """(spec file, the remaining words)."""
    if words and words[0].lower().endswith(SPEC_SUFFIXES):
        return Path(words[0]), words[1:]
    return None, list(words)


def overrides_from_flags(flags: LaunchFlags) -> dict[str, Any]:
    """Dotted spec keys for the flags that were given."""
    simple: dict[str, Any] = {
        "backend": flags.backend,
        "name": flags.name,
        "nodes": flags.nodes,
        "procs_per_node": flags.procs_per_node,
        "gpus_per_node": flags.gpus_per_node,
        "cpus_per_node": flags.cpus_per_node,
        "mem_gib": flags.mem_gib,
        "time_limit_s": flags.time_limit,
        "max_restarts": flags.max_restarts,
        "checkpoint.every_steps": flags.ckpt_every,
        "checkpoint.keep_last": flags.keep_last,
        "job_dir": flags.job_dir,
        "jobs_root": flags.jobs_root,
        "workdir": flags.workdir,
        "local.nodes": flags.local_nodes,
    }
    out = {key: value for key, value in simple.items() if value is not None}
    if flags.module is not None and flags.script is not None:
        raise LaunchInputError("give --module or --script, not both")
    if flags.module is not None:
        out["entrypoint"] = {"module": flags.module}
    elif flags.script is not None:
        out["entrypoint"] = {"script": flags.script}
    for item in flags.env:
        key, eq, value = item.partition("=")
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*\Z", key):
            raise LaunchInputError(f"--env {item!r}: write NAME=VALUE, or NAME to pass it through")
        # `--env NAME` passes the launching shell's value by reference, never by copy.
        out[f"env.{key}"] = value if eq else {"from_env": key}
    return out


def build_mapping(
    file_data: dict[str, Any] | None, flags: LaunchFlags, words: list[str]
) -> dict[str, Any]:
    """The spec mapping: file keys, then flag overrides, then the trailing words."""
    data = apply_overrides(file_data or {}, overrides_from_flags(flags))
    if words:
        if "entrypoint" in data:
            data["args"] = [*_as_list(data.get("args")), *words]
        else:
            data["entrypoint"], extra = entrypoint_from_words(words)
            data["args"] = [*_as_list(data.get("args")), *extra]
    if "name" not in data and isinstance(data.get("entrypoint"), dict):
        data["name"] = default_name(data["entrypoint"])
    return data


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else []


_PYTHON_NAMES = frozenset({"python", "python3"})


def entrypoint_from_words(words: list[str]) -> tuple[dict[str, Any], list[str]]:
    """(entrypoint mapping, args) for a command given after ``--``.

    ``train.py ...``, ``python train.py ...`` and ``python -m pkg.mod ...`` become script
    and module entrypoints run by the Python that runs scalectl (the one with torch
    installed, whether or not its virtual environment is activated); anything else is a
    command run as given.
    """
    first = words[0]
    if first.endswith(".py"):
        return {"script": first}, words[1:]
    if first in _PYTHON_NAMES and len(words) > 1:
        if words[1].endswith(".py"):
            return {"script": words[1]}, words[2:]
        if words[1] == "-m" and len(words) > 2:
            return {"module": words[2]}, words[3:]
    return {"command": [first]}, words[1:]


def default_name(entrypoint: dict[str, Any]) -> str:
    """A job name from the entrypoint: module's last part, script stem, command name."""
    raw = ""
    if entrypoint.get("module"):
        raw = str(entrypoint["module"]).rsplit(".", 1)[-1]
        if raw == "train" and str(entrypoint["module"]).startswith("runtime."):
            raw = "trainer"
    elif entrypoint.get("script"):
        raw = Path(str(entrypoint["script"])).stem
    elif entrypoint.get("command"):
        command = entrypoint["command"]
        raw = Path(str(command[0])).name if isinstance(command, list) and command else ""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", raw).strip("-._")[:63]
    return name or "job"


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``data`` with dotted keys (``local.nodes``) set to the given values."""
    result: dict[str, Any] = {**data}
    for dotted, value in overrides.items():
        target = result
        parts = dotted.split(".")
        for part in parts[:-1]:
            child = target.get(part)
            child = {**child} if isinstance(child, dict) else {}
            target[part] = child
            target = child
        target[parts[-1]] = value
    return result
