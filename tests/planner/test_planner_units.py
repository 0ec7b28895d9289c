"""Counts with suffixes: 15T, 1.5e12, 2k; bad counts are refused with the field named."""

from __future__ import annotations

import pytest

from planner.errors import PlanInputError
from planner.units import format_count, parse_count, parse_int_count


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("15T", 15e12),
        ("1.5e12", 1.5e12),
        ("2k", 2e3),
        ("350M", 350e6),
        ("7B", 7e9),
        (42, 42.0),
        (" 3 ", 3.0),
        ("0.5k", 500.0),
    ],
)
def test_decimal_counts(text: str, value: float) -> None:
    assert parse_count(text) == value


def test_binary_counts_for_sizes() -> None:
    assert parse_int_count("8k", "--seq-len") == 8192
    assert parse_int_count("4M", "--global-batch-tokens") == 4 * 2**20
    assert parse_int_count("16k", "--gpus") == 16384
    assert parse_int_count("1024", "--gpus") == 1024


@pytest.mark.parametrize("text", ["15Q", "abc", "", "1.2.3", "--5", "5kk", "1e"])
def test_malformed_counts(text: str) -> None:
    with pytest.raises(PlanInputError, match=r"--tokens: .* is not a count"):
        parse_count(text, "--tokens")


@pytest.mark.parametrize("text", ["0", "-8", "0k", float("nan"), float("inf"), -1])
def test_zero_negative_or_infinite(text: object) -> None:
    with pytest.raises(PlanInputError, match="--gpus"):
        parse_count(text, "--gpus")  # type: ignore[arg-type]


def test_whole_numbers_only_where_needed() -> None:
    with pytest.raises(PlanInputError, match="whole number"):
        parse_int_count("1.5", "--gpus")


def test_format_count_round_trips() -> None:
    assert format_count(1.5e12) == "1.5T"
    assert parse_count(format_count(8.03e9)) == pytest.approx(8.03e9)
