"""``scalectl manifests`` and the checked-in examples: written, valid, and not drifted."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from k8s_specs import EXAMPLE_JOB_ID, EXAMPLE_SPEC, REPO
from k8s_validation import KUBERNETES_VERSIONS, validate_objects

from launcher.render.k8s import FLAVORS, render
from launcher.spec import load_spec_file

EXAMPLES = REPO / "manifests" / "llama3-8b"
SPEC_ARG = str(EXAMPLE_SPEC.relative_to(REPO))


def validate_cli() -> str:
    """The kubernetes-validate command of the Python running the tests (the venv's)."""
    exe = shutil.which("kubernetes-validate", path=str(Path(sys.executable).parent))
    exe = exe or shutil.which("kubernetes-validate")
    assert exe is not None, "kubernetes-validate is a dev dependency; install .[dev]"
    return exe


def test_make_target_uses_the_same_arguments_as_this_test() -> None:
    recipe = (REPO / "Makefile").read_text().split("\nmanifests:", 1)[1].split("\n\n", 1)[0]
    words = recipe.replace("\\\n", " ").split()
    assert SPEC_ARG in words
    assert words[words.index("-o") + 1] == "manifests/llama3-8b"
    assert words[words.index("--k8s-flavor") + 1] == "all"
    assert words[words.index("--job-id") + 1] == EXAMPLE_JOB_ID


def test_checked_in_manifests_have_not_drifted(
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO)
    out = tmp_path / "regenerated"
    result = cli(
        "manifests", SPEC_ARG, "-o", str(out), "--k8s-flavor", "all", "--job-id", EXAMPLE_JOB_ID
    )
    assert result.code == 0, result.err
    for flavor in FLAVORS:
        fresh = (out / f"{flavor}.yaml").read_text()
        committed = (EXAMPLES / f"{flavor}.yaml").read_text()
        assert fresh == committed, (
            f"manifests/llama3-8b/{flavor}.yaml is stale; run `make manifests` and commit"
        )
    assert sorted(p.name for p in EXAMPLES.iterdir()) == sorted(f"{f}.yaml" for f in FLAVORS)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_checked_in_manifests_are_what_render_gives_and_validate(flavor: str) -> None:
    documents = list(yaml.safe_load_all((EXAMPLES / f"{flavor}.yaml").read_text()))
    spec = load_spec_file(EXAMPLE_SPEC)
    assert documents == render(spec, EXAMPLE_JOB_ID, flavor)
    validate_objects(documents)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_kubernetes_validate_cli_strict_passes_on_the_files(version: str) -> None:
    """The real `kubernetes-validate --strict` command, as a user would run it."""
    exe = validate_cli()
    files = sorted(str(p) for p in EXAMPLES.glob("*.yaml"))
    result = subprocess.run(
        [exe, "--strict", "-k", version, *files], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    passed = [line for line in result.stdout.splitlines() if " passed for resource " in line]
    # indexed-job: ConfigMap, Service, Job; jobset and pytorchjob: the ConfigMap (their
    # CRD kinds are checked against tests/k8s/schemas instead).
    assert len(passed) == 5, result.stdout
    for line in result.stdout.splitlines():
        assert line.startswith("INFO") or "Couldn't find schema for kind" in line, line


def test_kubernetes_validate_cli_fails_on_a_broken_file(tmp_path: Path) -> None:
    exe = validate_cli()
    text = (EXAMPLES / "indexed-job.yaml").read_text()
    broken = tmp_path / "broken.yaml"
    extra = "completionMode: Indexed\n  bogusField: 1"
    broken.write_text(text.replace("completionMode: Indexed", extra))
    result = subprocess.run(
        [exe, "--strict", "-k", "1.29", str(broken)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0 and "bogusField" in result.stdout + result.stderr


def test_manifests_writes_one_file_for_the_spec_flavour(cli, tmp_path: Path) -> None:
    result = cli("manifests", str(EXAMPLE_SPEC), "-o", str(tmp_path / "out"))
    assert result.code == 0, result.err
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["pytorchjob.yaml"]
    documents = list(yaml.safe_load_all((tmp_path / "out" / "pytorchjob.yaml").read_text()))
    assert [d["kind"] for d in documents] == ["ConfigMap", "PyTorchJob"]


def _one_line_error(result, fragment: str) -> None:
    assert result.code == 2, (result.code, result.out, result.err)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.err
    assert fragment in lines[0], lines[0]
    assert "Traceback" not in result.err + result.out


@pytest.mark.parametrize(
    ("extra_yaml", "args", "fragment"),
    [
        ("", ["--k8s-flavor", "mpijob"], "--k8s-flavor 'mpijob'"),
        ("", ["--job-id", "not-an-id"], "--job-id 'not-an-id'"),
        ("env: {HF_TOKEN: hf_abcdefghijklmnopqrstuv}\n", [], "env.HF_TOKEN looks like a"),
        ("env: {DB_PASSWORD: 'hunter2'}\n", [], "env.DB_PASSWORD looks like a secret"),
        ("env: {T: {from_env: HOME}}\n", [], "never written into a manifest"),
        ("kubernetes: {image: img, pvc: Shared_Data}\n", [], "kubernetes.pvc 'Shared_Data'"),
        ("kubernetes: {pvc: data}\n", [], "kubernetes.image is required"),
        ("kubernetes: {image: img, pvc: data, namespace: My_NS}\n", [], "kubernetes.namespace"),
        ("name: 'my run'\n", [], "is not a job name"),
    ],
)
def test_bad_input_is_one_line_and_exit_2_and_writes_nothing(
    cli, tmp_path: Path, extra_yaml: str, args: list[str], fragment: str
) -> None:
    base = "name: run\nentrypoint: {module: runtime.train}\n"
    if "kubernetes:" not in extra_yaml:
        base += "kubernetes: {image: img, pvc: data}\n"
    if extra_yaml.startswith("name:"):
        base = base.replace("name: run\n", "")
    spec = tmp_path / "job.yaml"
    spec.write_text(base + extra_yaml)
    out = tmp_path / "out"
    _one_line_error(cli("manifests", str(spec), "-o", str(out), *args), fragment)
    assert not out.exists()
