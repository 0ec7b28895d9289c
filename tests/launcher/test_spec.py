"""JobSpec: parsing, validation messages, YAML, round trips (pure, fast)."""

from __future__ import annotations

from pathlib import Path

import pytest

from launcher.errors import LaunchInputError
from launcher.spec import (
    FromEnv,
    JobSpec,
    NodeRange,
    SecretRef,
    load_spec_file,
    parse_duration_s,
    spec_from_mapping,
)

BASE = {"name": "t", "entrypoint": {"module": "runtime.train"}}


def spec(**overrides: object) -> JobSpec:
    return spec_from_mapping({**BASE, **overrides})


def error_of(data: object) -> str:
    with pytest.raises(LaunchInputError) as info:
        spec_from_mapping(data)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1:2", (1, 2)),
        ("3", (3, 3)),
        (2, (2, 2)),
        ({"min": 1, "max": 4}, (1, 4)),
        (" 2:2 ", (2, 2)),
    ],
)
def test_nodes_forms(value: object, expected: tuple[int, int]) -> None:
    nodes = spec(nodes=value).nodes
    assert (nodes.min, nodes.max) == expected


@pytest.mark.parametrize("value", ["3:2", "0:1", "a:b", "1:2:3", True, ""])
def test_bad_nodes_name_the_field(value: object) -> None:
    assert error_of({**BASE, "nodes": value}).startswith("job spec: nodes")


def test_min_greater_than_max_says_how_to_fix() -> None:
    message = error_of({**BASE, "nodes": "3:2"})
    assert "min 3 is greater than max 2" in message and "MIN <= MAX" in message


def test_unknown_keys_are_named_with_their_path_and_the_known_keys() -> None:
    assert "unknown key 'bogus'" in error_of({**BASE, "bogus": 1})
    message = error_of({**BASE, "slurm": {"partitoin": "gpu"}})
    assert "unknown key 'slurm.partitoin'" in message and "partition" in message
    assert "unknown key 'checkpoint.every'" in error_of({**BASE, "checkpoint": {"every": 5}})
    assert "unknown key 'entrypoint.modul'" in error_of({**BASE, "entrypoint": {"modul": "x"}})
    tolerations = {"kubernetes": {"tolerations": [{"key": "a", "efect": "NoSchedule"}]}}
    assert "kubernetes.tolerations.0.efect" in error_of({**BASE, **tolerations})


def test_missing_and_ambiguous_entrypoint() -> None:
    message = error_of({"name": "x"})
    assert "entrypoint is missing" in message and "--module" in message
    assert "exactly one of module, script or command (found none)" in error_of(
        {"name": "x", "entrypoint": {}}
    )
    assert "found module, script" in error_of(
        {"name": "x", "entrypoint": {"module": "a", "script": "b.py"}}
    )
    assert "command is empty" in error_of({"name": "x", "entrypoint": {"command": []}})


def test_name_must_be_safe() -> None:
    assert "is not a job name" in error_of({**BASE, "name": "has space"})
    assert "is not a job name" in error_of({**BASE, "name": "x" * 64})
    assert spec(name="llama-3.8b_v2").name == "llama-3.8b_v2"


def test_env_values_and_references() -> None:
    s = spec(
        env={
            "A": "x",
            "N": 4,
            "F": 0.5,
            "T": {"from_env": "HF_TOKEN"},
            "S": {"secret": "s", "key": "k"},
        }
    )
    assert s.env_plain() == {"A": "x", "N": "4", "F": "0.5"}
    assert s.env_refs() == {"T": FromEnv(from_env="HF_TOKEN"), "S": SecretRef(secret="s", key="k")}


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"A": True}, "is a boolean; quote it"),
        ({"1A": "x"}, "not an environment variable name"),
        ({"RANK": "0"}, "RANK is set by scalectl"),
        ({"SCALECTL_JOB_ID": "x"}, "SCALECTL_JOB_ID is set by scalectl"),
        ({"A": {"from_env": "B", "default": "c"}}, "unknown key 'default'"),
        ({"A": {"secret": "s"}}, "key is missing"),
        ({"A": {"value": "s"}}, "{from_env: NAME}"),
        ({"A": {"from_env": "not a name"}}, "not an environment variable name"),
    ],
)
def test_bad_env(env: dict[str, object], fragment: str) -> None:
    message = error_of({**BASE, "env": env})
    assert message.startswith("job spec: env") and fragment in message


def test_args_numbers_become_text_but_booleans_are_refused() -> None:
    assert spec(args=["--steps", 50, "--lr", 1e-3]).args == ["--steps", "50", "--lr", "0.001"]
    assert "is a boolean" in error_of({**BASE, "args": ["--flag", True]})


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90),
        ("90s", 90),
        ("30m", 1800),
        ("2h", 7200),
        ("1d", 86400),
        ("1.5h", 5400),
        ("1:30:00", 5400),
        ("0:00:05", 5),
        ("1-02:00:00", 93600),
    ],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration_s(text) == seconds
    assert spec(time_limit_s=text).time_limit_s == seconds


def test_bad_duration() -> None:
    assert "is not a duration" in error_of({**BASE, "time_limit_s": "soon"})


def test_local_nodes_must_lie_in_the_range() -> None:
    assert spec(nodes="1:3", local={"nodes": 2}).local.nodes == 2
    assert "local.nodes 4 is outside nodes 1:3" in error_of(
        {**BASE, "nodes": "1:3", "local": {"nodes": 4}}
    )


def test_plan_accepts_a_model_object_without_importing_the_planner() -> None:
    class FakePlan:
        def model_dump(self, mode: str = "python") -> dict[str, object]:
            return {"layout": {"dp": 2}, "mode": mode}

    assert spec(plan=FakePlan()).plan == {"layout": {"dp": 2}, "mode": "json"}


def test_json_round_trip_is_exact() -> None:
    original = spec(
        nodes="1:2",
        env={"T": {"from_env": "X"}},
        checkpoint={"every_steps": 5, "keep_last": 2},
        slurm={"partition": "gpu", "extra_sbatch": ["--reservation=r"]},
        kubernetes={"tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}]},
        workdir="/w",
    )
    again = JobSpec.model_validate(original.to_json())
    assert again == original


def test_frozen() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        spec().name = "other"  # type: ignore[misc]


def test_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(
        "name: from-yaml\n"
        "entrypoint: {module: runtime.train}\n"
        "args: [--steps, 20]\n"
        "nodes: '1:2'\n"
        "procs_per_node: 2\n"
        "env:\n  HF_TOKEN: {from_env: HF_TOKEN}\n"
    )
    loaded = load_spec_file(path, {"procs_per_node": 3, "local.nodes": 1})
    assert loaded.name == "from-yaml" and loaded.args == ["--steps", "20"]
    assert loaded.nodes == NodeRange(min=1, max=2) and loaded.procs_per_node == 3
    assert loaded.local.nodes == 1


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("name: [unclosed\n", "not valid YAML at line"),
        ("- a\n- b\n", "expected a mapping"),
        ("name: x\nentrypoint: {module: m}\nnods: 2\n", "unknown key 'nods'"),
    ],
)
def test_bad_yaml_files(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(LaunchInputError) as info:
        load_spec_file(path)
    assert fragment in str(info.value) and str(path) in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(LaunchInputError, match="no such job spec file"):
        load_spec_file(tmp_path / "nope.yaml")
