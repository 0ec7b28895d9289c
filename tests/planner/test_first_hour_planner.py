"""Planner defects a new user hit in the first hour (issue 20)."""

from __future__ import annotations

import warnings
from pathlib import Path

ESTIMATE_70B_ON_8 = (
    "plan", "estimate", "--model", "llama3-70b", "--gpu", "H100", "--gpus", "8",
    "--seq-len", "8k", "--global-batch", "64", "--tp", "1", "--pp", "1",
)  # fmt: skip


def test_estimate_of_a_layout_that_does_not_fit_exits_2_and_writes_no_plan(
    cli, tmp_path: Path
) -> None:
    out = tmp_path / "plan.json"
    result = cli(*ESTIMATE_70B_ON_8, "--out", str(out))
    assert result.code == 2, result.err
    last = result.err.strip().splitlines()[-1]
    assert last.startswith("error: layout tp1 pp1") and "does not fit" in last, last
    assert f"{out} not written" in last
    assert not out.exists()
    assert "does not fit" in result.out  # the report still shows by how much


def test_estimate_json_of_a_layout_that_does_not_fit_also_exits_2(cli) -> None:
    result = cli(*ESTIMATE_70B_ON_8, "--json")
    assert result.code == 2 and '"fits": false' in result.out


def test_estimate_that_fits_exits_0(cli, tmp_path: Path) -> None:
    out = tmp_path / "plan.json"
    result = cli(
        "plan", "estimate", "--model", "llama3-8b", "--gpu", "H100", "--gpus", "8",
        "--seq-len", "8k", "--global-batch", "64", "--out", str(out),
    )  # fmt: skip
    assert result.code == 0, result.err
    assert out.exists()


def test_search_on_a_huge_cluster_leaks_no_numpy_warning(cli) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        result = cli(
            "plan", "search", "--model", "llama3-8b", "--gpu", "H100", "--max-gpus", "1e9",
            "--seq-len", "8k", "--global-batch-tokens", "4M", "--tokens", "2T",
        )  # fmt: skip
    assert result.code == 0, result.err
    assert "RuntimeWarning" not in result.err


def test_tp_refusal_suggests_only_valid_degrees(cli) -> None:
    result = cli(
        "plan", "estimate", "--model", "llama3-8b", "--gpu", "H100", "--gpus", "16",
        "--seq-len", "8k", "--global-batch", "64", "--tp", "16",
    )  # fmt: skip
    assert result.code == 2
    assert "choose tp from 1, 2, 4, 8" in result.err, result.err


def test_a_config_has_one_name_however_its_path_is_written(tmp_path: Path, monkeypatch) -> None:
    import json

    from planner.hf_config import load_hf_config

    folder = tmp_path / "tiny"
    folder.mkdir()
    cfg = {
        "model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 4, "intermediate_size": 128, "vocab_size": 100,
    }  # fmt: skip
    (folder / "config.json").write_text(json.dumps(cfg))
    monkeypatch.chdir(folder)
    names = {
        load_hf_config(p).name
        for p in ("config.json", "./config.json", str(folder / "config.json"), str(folder))
    }
    assert names == {"tiny"}
    (folder / "config.json").write_text(json.dumps({**cfg, "_name_or_path": "org/My-Model"}))
    assert load_hf_config("config.json").name == "My-Model"


def test_the_search_leaves_memory_headroom_by_default_and_says_why(cli) -> None:
    from planner.layout_search import SearchConstraints
    from planner.margins import DEFAULT_MEMORY_HEADROOM

    assert SearchConstraints().memory_headroom == DEFAULT_MEMORY_HEADROOM == 0.05
    help_text = " ".join(cli("plan", "search", "--help").out.replace("│", " ").split())
    assert "the default 5 % covers the allocator's fragmentation" in help_text
    # README's 405B example: the best layout keeps the 5 % free (76 of 80 GiB).
    import json

    result = cli(
        "plan", "search", "--model", "llama3-405b", "--gpu", "H100", "--gpus", "16k",
        "--seq-len", "8k", "--global-batch-tokens", "16M", "--tokens", "15.6T", "--json",
    )  # fmt: skip
    assert result.code == 0, result.err
    best = json.loads(result.out)[0]
    assert best["memory_gib"]["total"] <= 0.95 * best["memory_gib"]["capacity"]
