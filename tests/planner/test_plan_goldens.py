"""``scalectl plan estimate|search|models|gpus`` as a user sees them at 80 and 120
columns: golden files (tests/planner/golden, see tests/golden_text.py to regenerate)
and no line wider than the terminal. COLUMNS sets rich's width, as in a pipe."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from golden_text import WIDTHS, assert_fits, check_golden

from scalectl.cli import main

GOLDEN = Path(__file__).resolve().parent / "golden"
ESTIMATE = ["plan", "estimate", "--model", "llama3-8b", "--gpu", "H100", "--gpus", "8",
            "--seq-len", "8k", "--global-batch-tokens", "4M", "--tokens", "1T",
            "--tp", "2"]  # fmt: skip
SEARCH = ["plan", "search", "--model", "llama3-70b", "--gpu", "H100", "--gpus", "64",
          "--seq-len", "8k", "--global-batch-tokens", "4M", "--tokens", "1T"]  # fmt: skip


def render(argv: list[str], width: int, capsys: pytest.CaptureFixture[str],
           monkeypatch: pytest.MonkeyPatch) -> str:  # fmt: skip
    monkeypatch.setenv("COLUMNS", str(width))
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(name, raising=False)
    capsys.readouterr()
    try:
        main(argv)
    except SystemExit as exc:
        assert not exc.code, capsys.readouterr().err
    return capsys.readouterr().out


@pytest.fixture
def fixed_search_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """The search prints how long it took: fixed to 250 ms so the golden is the same on
    every machine."""
    from planner import layout_search

    real = layout_search.search

    def timed(*args: Any, **kwargs: Any) -> Any:
        return dataclasses.replace(real(*args, **kwargs), seconds=0.25)

    monkeypatch.setattr(layout_search, "search", timed)


@pytest.mark.parametrize("width", WIDTHS)
def test_plan_estimate(width: int, capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    out = render(ESTIMATE, width, capsys, monkeypatch)
    assert_fits(out, width)
    check_golden(GOLDEN, f"plan_estimate_{width}.txt", out)


@pytest.mark.parametrize("width", WIDTHS)
def test_plan_search(
    width: int, capsys: Any, monkeypatch: pytest.MonkeyPatch, fixed_search_time: None
) -> None:
    out = render(SEARCH, width, capsys, monkeypatch)
    assert_fits(out, width)
    words = " ".join(out.split())
    assert "assessed in 250 ms" in words
    # The layout column stays on one line; the codes it uses are explained under it.
    assert "tp4 pp4 cp1 dp4 zero1 mb1 v2 sp offload50%" in out
    assert "vN: N virtual stages per pipeline rank (interleave)" in words
    check_golden(GOLDEN, f"plan_search_{width}.txt", out)


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("listing", ["models", "gpus"])
def test_plan_catalogs(
    listing: str, width: int, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = render(["plan", listing], width, capsys, monkeypatch)
    assert_fits(out, width)
    header = out.splitlines()[1].split()
    assert all("…" not in word for word in header), "a header was cut"
    check_golden(GOLDEN, f"plan_{listing}_{width}.txt", out)


def test_models_at_80_columns_keep_whole_headers_and_abbreviate_numbers(
    capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 20 item 8: headers read 'pa…', 'ac…' and values '6.…' at 80 columns."""
    out = render(["plan", "models"], 80, capsys, monkeypatch)
    lines = out.splitlines()
    assert lines[1].split()[:4] == ["name", "params", "active", "layers"]
    llama = next(line for line in lines if line.startswith("llama3-8b "))
    assert "8.03B" in llama and "14.3k" in llama  # ffn 14336 abbreviated, not cut
    note = next(line for line in lines if line.startswith("not shown at 80 columns:"))
    assert "vocab" in note and "--json" in note


def test_plan_validate_fits_80_columns(capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    out = render(["plan", "validate"], 80, capsys, monkeypatch)
    assert_fits(out, 80)
    assert "median |error|" in out and "not shown at 80 columns" in out


def test_search_collapses_equivalent_layouts_and_json_keeps_them(
    capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 20 item 11: at pp2 with 32 layers even and uneven stages are the same layout
    (two adjacent ranks predict the same step time and memory): one row that says so."""
    import json

    argv = ["plan", "search", "--model", "llama3-8b", "--gpu", "H100", "--gpus", "8",
            "--seq-len", "4k", "--global-batch", "1024", "--tokens", "1T",
            "--top", "60"]  # fmt: skip
    out = render(argv, 120, capsys, monkeypatch)
    assert_fits(out, 120)
    rows = [line.split() for line in out.splitlines()]
    ranks = [row[0] for row in rows if row and row[0].isdigit() and len(row) > 5]
    pair = next(
        row for row in rows
        if row and row[1:7] == ["tp1", "pp2", "cp1", "dp4", "zero2", "mb2"] and "×2" in row
    )  # fmt: skip
    rank = int(pair[0])
    assert str(rank) in ranks and str(rank + 1) not in ranks
    assert "×N: N layouts with the same predicted step time and memory" in " ".join(out.split())
    listed = json.loads(render([*argv, "--json"], 120, capsys, monkeypatch))
    assert len(listed) == 60
    uneven = [e["layout"]["uneven_stages"] for e in listed[rank - 1 : rank + 1]]
    assert sorted(uneven) == [False, True]
