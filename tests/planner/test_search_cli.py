"""``scalectl plan search`` through the root CLI: JSON, tables, pins, plots, exit codes."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from scalectl.cli import main
from tests.planner.test_planner_cli import run

BASE = ["plan", "search", "--model", "llama3-8b", "--gpu", "H100", "--gpus", "64",
        "--seq-len", "4k", "--global-batch", "256", "--tokens", "1T"]  # fmt: skip


def test_json_is_a_list_of_estimates_best_first(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run([*BASE, "--top", "5", "--json"], capsys)
    assert code == 0, err
    data = json.loads(out)
    assert isinstance(data, list) and len(data) == 5
    assert list(data[0]) == ["layout", "memory_gib", "fits", "step", "train", "error_band"]
    assert {"goodput", "checkpoint_interval_min", "expected_interruptions"} <= set(data[0]["train"])
    days = [d["train"]["days"] for d in data]
    assert days == sorted(days) and all(d["fits"] for d in data)


def test_layout_flags_pin_their_knobs(capsys: pytest.CaptureFixture[str]) -> None:
    flags = ["--tp", "4", "--zero", "fsdp", "--recompute", "selective", "--no-sequence-parallel"]
    code, out, err = run([*BASE, *flags, "--top", "20", "--json"], capsys)
    assert code == 0, err
    for item in json.loads(out):
        lo = item["layout"]
        assert (lo["tp"], lo["sharding"], lo["recompute"], lo["sequence_parallel"]) == (
            4, "zero3", "selective", False,
        )  # fmt: skip


def test_tables_show_why_each_layout_loses(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    code, out, err = run([*BASE, "--top", "4", "--objective", "cost"], capsys)
    assert code == 0, err
    for fragment in ("Top 4 layouts", "why it loses to #1", "best", "Pareto front",
                     "with failures", "goodput", "objective: cost"):  # fmt: skip
        assert fragment in out, fragment


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_plot_writes_a_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "front.png"
    code, _, err = run([*BASE, "--max-gpus", "128", "--plot", str(target)], capsys)
    assert code == 0, err
    width, height = _png_size(target)
    assert width >= 600 and height >= 400
    assert target.stat().st_size > 20_000  # points, front and labels, not a blank canvas


def test_infeasible_requests_exit_2_with_the_nearest_answer(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    big = ["plan", "search", "--model", "llama3-405b", "--gpu", "H100", "--gpus", "8",
           "--seq-len", "4k", "--global-batch", "8", "--tokens", "1T"]  # fmt: skip
    code, out, err = run(big, capsys)
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: no layout")
    assert "needs" in err and "Nearest answer" in out
    code, out, err = run([*BASE, "--deadline", "1h"], capsys)
    assert code == 2 and "deadline" in err and "the fastest" in err and "Nearest answer" in out
    code, out, err = run([*BASE, "--budget", "10$", "--json"], capsys)
    assert code == 2 and "budget" in err and "the cheapest" in err and out == ""


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--objective", "speed"], "--objective 'speed'"),
        (["--deadline", "3q"], "--deadline: '3q' is not a duration"),
        (["--budget", "lots"], "--budget: 'lots' is not an amount"),
        (["--top", "0"], "--top: must be a positive"),
        (["--headroom", "1.5"], "--headroom"),
        (["--zero", "7"], "--zero '7'"),
        (["--tp", "0"], "--tp: must be a positive"),
        (["--recompute", "some"], "--recompute 'some'"),
        (["--plot", "out.txt"], "--plot: 'out.txt' must name a .png"),
        (["--max-gpus", "12Q"], "--max-gpus"),
    ],
)
def test_bad_inputs_exit_2_with_one_line(
    extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run([*BASE, *extra], capsys)
    assert code == 2, (out, err)
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    assert "Traceback" not in err


def test_gpus_or_max_gpus_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [a for a in BASE if a not in ("--gpus", "64")]
    code, _, err = run(argv, capsys)
    assert code == 2 and "--gpus N" in err and "--max-gpus N" in err


def test_main_is_importable() -> None:
    assert callable(main)
