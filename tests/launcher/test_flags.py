"""``scalectl launch`` flags and trailing words → spec mapping (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from launcher.errors import LaunchInputError
from launcher.flags import LaunchFlags, build_mapping, entrypoint_from_words, split_words
from launcher.spec import spec_from_mapping


def test_spec_file_is_recognised_by_suffix() -> None:
    assert split_words(["job.yaml", "--steps", "5"]) == (Path("job.yaml"), ["--steps", "5"])
    assert split_words(["python", "train.py"]) == (None, ["python", "train.py"])


@pytest.mark.parametrize(
    ("words", "entrypoint", "args"),
    [
        (["train.py", "--lr", "1"], {"script": "train.py"}, ["--lr", "1"]),
        (["python", "train.py", "-x"], {"script": "train.py"}, ["-x"]),
        (["python3", "-m", "pkg.mod", "a"], {"module": "pkg.mod"}, ["a"]),
        (["bash", "-c", "echo hi"], {"command": ["bash"]}, ["-c", "echo hi"]),
        (["python", "-c", "print(1)"], {"command": ["python"]}, ["-c", "print(1)"]),
    ],
)
def test_words_become_an_entrypoint(words: list[str], entrypoint: dict, args: list[str]) -> None:
    assert entrypoint_from_words(words) == (entrypoint, args)


def test_flags_build_a_valid_spec_with_a_default_name() -> None:
    flags = LaunchFlags(
        backend="local",
        nodes="1:2",
        procs_per_node=2,
        module="runtime.train",
        env=["A=1", "HF_TOKEN"],
        ckpt_every=10,
        keep_last=2,
        time_limit="5m",
    )
    spec = spec_from_mapping(build_mapping(None, flags, ["--steps", "50"]))
    assert spec.name == "trainer"
    assert spec.entrypoint.module == "runtime.train" and spec.args == ["--steps", "50"]
    assert (spec.nodes.min, spec.nodes.max, spec.procs_per_node) == (1, 2, 2)
    assert spec.env_plain() == {"A": "1"}
    assert spec.env_refs()["HF_TOKEN"].from_env == "HF_TOKEN"  # type: ignore[union-attr]
    assert spec.checkpoint.every_steps == 10 and spec.checkpoint.keep_last == 2
    assert spec.time_limit_s == 300


def test_flags_override_the_file_and_words_append_to_its_args() -> None:
    file_data = {
        "name": "f",
        "entrypoint": {"module": "m"},
        "args": ["--steps", "5"],
        "nodes": 2,
        "local": {"stop_grace_s": 3},
    }
    mapping = build_mapping(file_data, LaunchFlags(nodes="1:2", local_nodes=1), ["--steps", "9"])
    spec = spec_from_mapping(mapping)
    assert spec.args == ["--steps", "5", "--steps", "9"]
    assert str(spec.nodes) == "1:2" and spec.local.nodes == 1 and spec.local.stop_grace_s == 3
    assert file_data["nodes"] == 2  # the file's mapping is not modified


def test_script_flag_and_name_from_script() -> None:
    spec = spec_from_mapping(build_mapping(None, LaunchFlags(script="dir/my_train.py"), []))
    assert spec.name == "my_train" and spec.entrypoint.script == Path("dir/my_train.py")


def test_conflicting_or_bad_flags() -> None:
    with pytest.raises(LaunchInputError, match="--module or --script, not both"):
        build_mapping(None, LaunchFlags(module="a", script="b.py"), [])
    with pytest.raises(LaunchInputError, match="--env"):
        build_mapping(None, LaunchFlags(module="a", env=["not valid=1"]), [])


def test_no_entrypoint_at_all_is_the_missing_entrypoint_error() -> None:
    with pytest.raises(LaunchInputError, match="entrypoint is missing"):
        spec_from_mapping(build_mapping(None, LaunchFlags(nodes="1"), []), source="launch flags")
