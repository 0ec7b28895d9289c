"""Env in pods: plain values inline (escaped), secrets only as secretKeyRef, never inlined."""

from __future__ import annotations

import pytest
import yaml
from k8s_specs import JOB_ID, make_spec
from k8s_validation import validate_objects

from launcher.errors import LaunchInputError
from launcher.render.k8s import FLAVORS, make_target, render, to_yaml
from launcher.render.k8s_env import looks_like_secret_name, looks_like_secret_value


def container(objects: list[dict]) -> dict:
    owner = objects[-1]
    if owner["kind"] == "PyTorchJob":
        pod = owner["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]
    elif owner["kind"] == "JobSet":
        pod = owner["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]
    else:
        pod = owner["spec"]["template"]
    return pod["spec"]["containers"][0]


def env_of(objects: list[dict]) -> dict[str, dict]:
    return {e["name"]: e for e in container(objects)["env"]}


@pytest.mark.parametrize(
    "name",
    [
        "HF_TOKEN",
        "HUGGING_FACE_HUB_TOKEN",
        "WANDB_API_KEY",
        "OPENAI_API_KEY",
        "AWS_SECRET_ACCESS_KEY",
        "DB_PASSWORD",
        "MY_SECRET_THING",
        "GITHUB_PAT",
        "SSH_KEY",
        "token",
    ],
)
def test_secret_like_names(name: str) -> None:
    assert looks_like_secret_name(name)


@pytest.mark.parametrize(
    "name", ["NCCL_DEBUG", "TOKENIZERS_PARALLELISM", "HF_TOKEN_PATH", "MONKEY", "KEYBOARD", "X"]
)
def test_ordinary_names(name: str) -> None:
    assert not looks_like_secret_name(name)


@pytest.mark.parametrize(
    "value",
    [
        "hf_" + "a1B2" * 8,
        "ghp_" + "Z9" * 15,
        "sk-" + "proj_abc123" * 3,
        "AKIAIOSFODNN7EXAMPLE",
        "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----",
    ],
)
def test_secret_shaped_values(value: str) -> None:
    assert looks_like_secret_value(value)


@pytest.mark.parametrize("value", ["WARN", "1", "/data/corpus", "sk-short", "hf_transfer"])
def test_ordinary_values(value: str) -> None:
    assert not looks_like_secret_value(value)


def test_a_secret_passed_as_plain_env_is_refused_with_the_fix() -> None:
    spec = make_spec(env={"HF_TOKEN": "hf_" + "x" * 30})
    with pytest.raises(LaunchInputError) as info:
        make_target(spec, JOB_ID)
    message = str(info.value)
    assert "env.HF_TOKEN looks like a secret" in message
    assert "{secret: SECRET_NAME, key: KEY}" in message
    assert "hf_" not in message, "the refused value must not be echoed"


def test_a_secret_value_under_an_innocent_name_is_refused() -> None:
    with pytest.raises(LaunchInputError, match=r"env.CONFIG looks like a secret"):
        make_target(make_spec(env={"CONFIG": "ghp_" + "a" * 36}), JOB_ID)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_secret_refs_become_secret_key_refs(flavor: str) -> None:
    spec = make_spec(env={"HF_TOKEN": {"secret": "hf-token", "key": "token"}})
    env = env_of(render(spec, JOB_ID, flavor))
    assert env["HF_TOKEN"] == {
        "name": "HF_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "token"}},
    }


def test_from_env_is_refused_without_env_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_API_KEY", "super-secret-value")
    spec = make_spec(env={"WANDB_API_KEY": {"from_env": "WANDB_API_KEY"}})
    with pytest.raises(LaunchInputError) as info:
        make_target(spec, JOB_ID)
    assert "never written into a manifest" in str(info.value)
    assert "kubernetes.env_secret" in str(info.value)


def test_from_env_with_env_secret_is_a_reference_and_the_value_never_appears(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WANDB_API_KEY", "super-secret-value")
    spec = make_spec(
        env={"WANDB_API_KEY": {"from_env": "WANDB_API_KEY"}},
        kubernetes={"env_secret": "run-env"},
    )
    for flavor in FLAVORS:
        objects = render(spec, JOB_ID, flavor)
        assert env_of(objects)["WANDB_API_KEY"]["valueFrom"] == {
            "secretKeyRef": {"name": "run-env", "key": "WANDB_API_KEY"}
        }
        assert "super-secret-value" not in to_yaml(objects)


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"T": {"secret": "Bad_Secret", "key": "k"}}, "env.T.secret 'Bad_Secret'"),
        ({"T": {"secret": "ok", "key": "bad/key"}}, "env.T.key 'bad/key'"),
    ],
)
def test_bad_secret_references_are_refused(env: dict, fragment: str) -> None:
    with pytest.raises(LaunchInputError, match=fragment):
        make_target(make_spec(env=env), JOB_ID)


HOSTILE = {
    "QUOTES": "it's \"quoted\" and 'single'",
    "NEWLINES": "line one\nline two\n\ttabbed",
    "YAMLISH": "key: value # not a comment\n- item\n---\n...",
    "DOLLARS": "$(HOME) and $$ and ${PATH} and $",
    "UNICODE": "naïve – ✓",
}


@pytest.mark.parametrize("flavor", FLAVORS)
def test_hostile_values_survive_yaml_and_kubernetes_expansion(flavor: str) -> None:
    spec = make_spec(env=HOSTILE, args=["--note", "a \"b\" 'c'\n$(RANK) $HOME"])
    objects = render(spec, JOB_ID, flavor)
    validate_objects(objects)
    back = list(yaml.safe_load_all(to_yaml(objects)))
    assert back == objects, "YAML round trip must give the same objects"
    env = env_of(back)
    for key, value in HOSTILE.items():
        # Kubernetes reads `$$` as `$`, so doubling every `$` delivers the text unchanged.
        assert env[key]["value"] == value.replace("$", "$$")
        assert unexpand(env[key]["value"]) == value
    command = container(back)["command"]
    assert unexpand(command[-1]) == "a \"b\" 'c'\n$(RANK) $HOME"


def unexpand(text: str) -> str:
    """What the kubelet makes of a value with no variables to expand: `$$` → `$`."""
    return text.replace("$$", "$")
