"""Defects a new user hit in the first hour (issue 20), each pinned by a test that failed
before its fix."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from launcher_helpers import job_id_from
from test_cli_errors import assert_nothing_created, assert_one_line_error

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["ab\n", "ab\n\n", "a b", "-ab"])
def test_a_job_name_with_a_newline_or_space_is_refused(cli, scalectl_home, name) -> None:
    result = cli("launch", "--name", name, "--backend", "slurm", "--dry-run", "--", "true")
    assert_one_line_error(result, "name")
    assert_nothing_created(scalectl_home)


def test_validators_anchor_at_the_very_end() -> None:
    """``$`` matches before a trailing newline, so ``^...$`` with ``re.match`` accepts
    ``"ab\\n"``; every validating pattern in product code ends in ``\\Z`` instead. Secret
    detection (k8s_env) keeps ``$`` on purpose: it should match *more*, not less."""
    allowed = {ROOT / "launcher" / "render" / "k8s_env.py"}
    not_validators = {
        # strips leading/trailing punctuation with re.sub; matches, validates nothing
        "launcher/render/k8s_names.py": "^[^A-Za-z0-9]+|[^A-Za-z0-9]+$",
        # finds an exception line in a traceback (re.MULTILINE search)
        "runtime/agent/classify.py": r"\b.*$",
    }
    offenders = []
    for package in ("contract", "launcher", "runtime", "planner", "tui", "scalectl"):
        for path in (ROOT / package).rglob("*.py"):
            if path in allowed:
                continue
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if (
                    isinstance(node, ast.Constant)
                    and isinstance(node.value, str)
                    and node.value.startswith("^")
                    and re.search(r"(?<!\\s\*)\$$", node.value)
                    and not node.value.endswith(
                        not_validators.get(str(path.relative_to(ROOT)), "\0")
                    )
                ):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value!r}")
    assert not offenders, offenders


def test_validator_scan_can_fail() -> None:
    assert re.search(r"(?<!\\s\*)\$$", r"^[a-z]+$")
    assert not re.search(r"(?<!\\s\*)\$$", r"^\s*[0-9]+\s*$")


@pytest.fixture
def finished_job(cli) -> str:
    result = cli("launch", "--name", "lg", "-f", "--", "python", "-c", "print('hello')")
    assert result.code == 0, result.out + result.err
    return job_id_from(result.out)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--rank", "99"), "--rank 99: this job has logs for 0, torchrun, supervisor"),
        (("--rank=-1",), "--rank -1: give a rank number"),
        (("--node", "elsewhere"), "--node elsewhere: this job has logs on"),
    ],
)
def test_logs_of_a_rank_or_node_the_job_does_not_have(cli, finished_job, args, fragment) -> None:
    assert_one_line_error(cli("logs", finished_job, *args), fragment)


def test_logs_of_a_real_rank_still_print(cli, finished_job) -> None:
    result = cli("logs", finished_job, "--rank", "0")
    assert result.code == 0 and "hello" in result.out


def test_summary_of_a_plain_script_says_no_steps_not_goodput_zero(cli, finished_job) -> None:
    out = cli("logs", finished_job).out
    assert "no training steps reported" in out
    assert "goodput 0.0%" not in out and "final step None" not in out


def test_jobs_filter_with_no_match_does_not_say_no_jobs_yet(cli, finished_job) -> None:
    for args in (("-a",), ("-s", "RUNNING"), ("--filter", "zzz")):
        result = cli("jobs", *args)
        assert result.code == 0
        assert "no jobs yet" not in result.out
        assert "no job matches" in result.out and "scalectl jobs" in result.out
    assert "no jobs yet" not in cli("jobs").out


def test_jobs_with_an_empty_registry_says_no_jobs_yet(cli) -> None:
    assert "no jobs yet" in cli("jobs", "-a").out


def test_a_bad_state_is_named_alone_not_as_a_python_list(cli) -> None:
    result = cli("jobs", "-s", "RUNNING", "-s", "bogus")
    assert_one_line_error(result, "--state bogus: choose from PENDING")
    assert "[" not in result.err


@pytest.mark.parametrize(
    ("entrypoint", "given", "expected"),
    [
        ({"module": "runtime.train"}, None, 3),
        ({"module": "runtime.train"}, 0, 0),
        ({"script": "train.py"}, None, 0),
        ({"command": ["true"]}, 2, 2),
    ],
)
def test_restart_budget_default_is_3_for_the_reference_trainer_only(
    entrypoint, given, expected
) -> None:
    from launcher.spec import spec_from_mapping

    data = {"name": "x", "entrypoint": entrypoint}
    if given is not None:
        data["max_restarts"] = given
    spec = spec_from_mapping(data)
    assert spec.max_restarts == expected
    assert spec_from_mapping(spec.to_json()).max_restarts == expected


def test_launch_help_states_the_restart_default(cli) -> None:
    out = " ".join(cli("launch", "--help").out.replace("│", " ").split())
    assert "default: 3 for the reference trainer" in out


def test_summary_lines_say_restart_causes_in_words() -> None:
    from runtime.agent.summary import format_summary

    summary = {
        "goodput": 0.5, "wall_s": 10.0, "productive_s": 5.0, "final_step": 8, "steps_lost": 2,
        "restarts": 1, "restarts_by_cause": {"signal": 1}, "faults": [], "energy": {},
    }  # fmt: skip
    text = format_summary(summary)
    assert "restarts 1 (signal 1)" in text and "{" not in text
