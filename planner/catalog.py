"""The catalogs: accelerators (data/gpus.yaml), model presets (data/models.yaml) and the
software constants (data/constants.yaml). Read once, on first use.

Unknown names raise :class:`~planner.errors.PlanInputError` with the closest matches
(difflib), so ``--gpu H10`` answers "did you mean H100-SXM-80GB, H100-PCIe?".
"""

from __future__ import annotations

import difflib
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

from planner.accelerator_spec import AcceleratorSpec
from planner.errors import PlanInputError, first_invalid
from planner.model_spec import ModelSpec


def _read(name: str) -> Any:
    text = resources.files("planner").joinpath("data", name).read_text(encoding="utf-8")
    return yaml.safe_load(text)


@lru_cache(maxsize=8)
def read_data(name: str) -> dict[str, Any]:
    """The raw mapping of data file ``name`` (e.g. ``reliability.yaml``), read once."""
    data: dict[str, Any] = _read(name)
    return data


@lru_cache(maxsize=1)
def constants_data() -> dict[str, Any]:
    """The raw mapping of data/constants.yaml."""
    data: dict[str, Any] = _read("constants.yaml")
    return data


@lru_cache(maxsize=1)
def _gpus() -> dict[str, AcceleratorSpec]:
    return {entry["name"]: AcceleratorSpec(**entry) for entry in _read("gpus.yaml")["gpus"]}


@lru_cache(maxsize=1)
def _gpu_index() -> dict[str, str]:
    index: dict[str, str] = {}
    for name, spec in _gpus().items():
        for key in (name, *spec.aliases):
            index[key.lower()] = name
            index[key] = name
    return index


@lru_cache(maxsize=1)
def _models() -> dict[str, ModelSpec]:
    return {entry["name"]: ModelSpec(**entry) for entry in _read("models.yaml")["models"]}


def _suggest(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
    if not close:
        close = difflib.get_close_matches(name.lower(), [c.lower() for c in choices], n=3)
    return f"did you mean {', '.join(close)}?" if close else f"known: {', '.join(choices)}."


def list_gpus() -> list[AcceleratorSpec]:
    """Every catalog accelerator, in file order."""
    return list(_gpus().values())


def list_models() -> list[ModelSpec]:
    """Every model preset, in file order."""
    return list(_models().values())


def get_gpu(name: str) -> AcceleratorSpec:
    """The catalog accelerator called ``name`` (case-insensitive; aliases accepted)."""
    found = _gpu_index().get(name)
    if found is not None:
        return _gpus()[found]
    key = _gpu_index().get(name.strip().lower())
    if key is None:
        names = list(_gpus())
        aliases = [alias for spec in _gpus().values() for alias in spec.aliases]
        raise PlanInputError(
            f"unknown GPU {name!r}; {_suggest(name, names + aliases)} "
            "(see `scalectl plan gpus`, or pass --gpu-spec FILE.yaml)"
        )
    return _gpus()[key]


def get_model(name: str) -> ModelSpec:
    """The model preset called ``name`` (case-insensitive)."""
    models = _models()
    for key, spec in models.items():
        if key.lower() == name.strip().lower():
            return spec
    raise PlanInputError(
        f"unknown model preset {name!r}; {_suggest(name.lower(), list(models))} "
        "(see `scalectl plan models`, or pass a config.json path)"
    )


def load_gpu_spec(path: str) -> AcceleratorSpec:
    """An AcceleratorSpec from a YAML (or JSON) file, for accelerators not in the catalog."""
    data = read_yaml_mapping(path, "--gpu-spec", "a mapping of AcceleratorSpec fields")
    return AcceleratorSpec(**data)


def load_model_spec(path: str) -> ModelSpec:
    """A ModelSpec from a YAML (or JSON) file of its fields, for a model neither a preset
    nor a config.json family the planner reads; ``name`` defaults to the file's stem."""
    from pathlib import Path

    from pydantic import ValidationError

    data = read_yaml_mapping(path, "--model", "a mapping of ModelSpec fields")
    try:
        return ModelSpec(**{"name": Path(path).stem, **data})
    except ValidationError as exc:
        where, message = first_invalid(exc)
        raise PlanInputError(
            f"--model {path}: {where}: {message} (the fields are ModelSpec's, as in a preset "
            "of planner/data/models.yaml)."
        ) from None


def read_yaml_mapping(path: str, flag: str, expected: str, missing_fix: str = "") -> dict[str, Any]:
    """The mapping in the YAML (or JSON) file ``path`` given to ``flag``; a missing file, bad
    YAML or another shape raises PlanInputError naming the flag (``expected`` names the
    mapping, ``missing_fix`` is appended to the missing-file message)."""
    from pathlib import Path

    file = Path(path)
    if not file.is_file():
        raise PlanInputError(f"{flag}: no such file {path!r}{missing_fix}.")
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise PlanInputError(f"{flag} {path}: not valid YAML ({exc}).") from exc
    if not isinstance(data, dict):
        raise PlanInputError(f"{flag} {path}: expected {expected}.")
    return data
