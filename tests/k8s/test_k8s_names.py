"""Kubernetes names: what we name is normalised, what the user names is checked."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from launcher.errors import LaunchInputError
from launcher.render.k8s_names import (
    check_absolute_path,
    check_config_key,
    check_dns1123_label,
    check_image,
    check_label_value,
    check_qualified_name,
    check_subdomain,
    is_dns1035_label,
    label_value,
    normalise_label,
    object_name,
)

JOB_ID = "20250601-120000-8b8b"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("llama3-8b", "llama3-8b"),
        ("My_Big.Run", "my-big-run"),
        ("UPPER", "upper"),
        ("a__b..c--d", "a-b-c-d"),
        ("-leading-and-trailing-", "leading-and-trailing"),
        ("8b-first", "j-8b-first"),
        ("run with spaces/and:colons", "run-with-spaces-and-colons"),
        ("Ünïcode-näme", "n-code-n-me"),
    ],
)
def test_normalise(text: str, expected: str) -> None:
    assert normalise_label(text) == expected


def test_too_long_is_cut_with_a_hash_of_the_whole_name() -> None:
    one = normalise_label("x" * 80 + "-one", 40)
    two = normalise_label("x" * 80 + "-two", 40)
    assert len(one) <= 40 and len(two) <= 40
    assert one != two, "names differing only after the cut must still differ"
    assert one == normalise_label("x" * 80 + "-one", 40), "same input, same name"
    assert is_dns1035_label(one) and is_dns1035_label(two)


def test_nothing_to_build_a_name_from_is_refused() -> None:
    with pytest.raises(LaunchInputError, match="no letter or digit"):
        normalise_label("___")
    with pytest.raises(LaunchInputError, match="fewer nodes or a shorter name"):
        normalise_label("abc", 5)


def test_object_name_keeps_the_job_id_and_cuts_the_name() -> None:
    assert object_name("Llama3_8B", JOB_ID) == f"llama3-8b-{JOB_ID}"
    long = object_name("a" * 63, JOB_ID, 45)
    assert long.endswith(f"-{JOB_ID}") and len(long) <= 45 and is_dns1035_label(long)


@given(st.text(min_size=1, max_size=120), st.integers(min_value=8, max_value=63))
def test_any_name_with_a_letter_or_digit_normalises_to_a_valid_label(text: str, budget: int):
    if not any(c in "abcdefghijklmnopqrstuvwxyz0123456789" for c in text.lower()):
        with pytest.raises(LaunchInputError):
            normalise_label(text, budget)
        return
    name = normalise_label(text, budget)
    assert is_dns1035_label(name) and len(name) <= budget


def test_label_value_is_made_valid() -> None:
    assert label_value("run.") == "run"
    assert label_value("a b") == "a-b"
    assert len(label_value("x" * 100)) == 63


@pytest.mark.parametrize(
    ("check", "value"),
    [
        (check_dns1123_label, "Team_A"),
        (check_dns1123_label, "a" * 64),
        (check_subdomain, "My_PVC"),
        (check_subdomain, "-pvc"),
        (check_label_value, "queue with space"),
        (check_label_value, "x" * 64),
        (check_qualified_name, "bad key"),
        (check_qualified_name, "UPPER_prefix.io/name"),
        (check_config_key, "key/with/slash"),
        (check_absolute_path, "relative/path"),
        (check_absolute_path, "/a/../etc"),
        (check_absolute_path, "/line\nbreak"),
    ],
)
def test_user_names_that_are_not_valid_are_refused_naming_the_field(check, value) -> None:
    with pytest.raises(LaunchInputError) as info:
        check(value, "kubernetes.field")
    message = str(info.value)
    assert "kubernetes.field" in message and "\n" not in message


def test_image_is_required_and_has_no_whitespace() -> None:
    with pytest.raises(LaunchInputError, match=r"kubernetes.image is required"):
        check_image(None)
    with pytest.raises(LaunchInputError, match="whitespace"):
        check_image("repo/img:1 --privileged")
    assert check_image("ghcr.io/org/img:1.0") == "ghcr.io/org/img:1.0"
