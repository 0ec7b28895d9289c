"""``scalectl plan calibrate`` and ``--profile`` through the root CLI, on job directories
written the way the launcher and ``runtime.progress`` write them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.planner.test_calibration import measured
from tests.planner.test_planner_cli import run


def job_dir(
    root: Path, hidden: int, micro_batch: int, steps: int = 20, schema_version: int | None = None
) -> Path:
    job = measured(hidden, micro_batch)
    path = root / job.job
    (path / "progress").mkdir(parents=True)
    document = job.plan.model_dump(mode="json")
    if schema_version is not None:  # as `plan --out` and `launch --plan` write plan.json
        document = {"schema_version": schema_version, **document}
    (path / "plan.json").write_text(json.dumps(document))
    lines = [
        json.dumps({"step": s, "loss": 1.0, "step_time_s": job.step_time_s * (3 if s < 4 else 1)})
        for s in range(1, steps + 1)
    ]
    (path / "progress" / "0.jsonl").write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCALECTL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "160")


def test_calibrate_writes_a_profile_that_estimate_and_search_use(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jobs = [job_dir(tmp_path, 64, 8), job_dir(tmp_path, 128, 8, schema_version=1)]
    out = tmp_path / "cluster.yaml"
    code, text, err = run(["plan", "calibrate", *map(str, jobs), "-o", str(out)], capsys)
    assert code == 0, err
    assert out.is_file()
    for fragment in ("h64 L4 dp2 mb8 zero3", "h128 L4 dp2 mb8 zero3", "fitted for test-cpu",
                     "per-step overhead", "fit residual"):  # fmt: skip
        assert fragment in text, fragment
    code, text, err = run(
        ["plan", "calibrate", str(jobs[0]), str(jobs[1]), "-o", str(out), "--json"], capsys
    )
    profile = json.loads(text)
    assert profile["schema_version"] == 1 and len(profile["jobs"]) == 2
    for job in profile["jobs"]:
        assert job["predicted_after_s"] == pytest.approx(job["measured_step_s"], rel=0.03)

    held_out = measured(96, 8)
    args = ["--model", str(tmp_path / "config.json"), "--seq-len", "128", "--gpus", "2",
            "--gpus-per-node", "2", "--global-batch", "16", "--precision", "fp32",
            "--profile", str(out)]  # fmt: skip
    (tmp_path / "config.json").write_text(
        json.dumps(
            {
                "model_type": "llama",
                "num_hidden_layers": 4,
                "hidden_size": 96,
                "num_attention_heads": 4,
                "num_key_value_heads": 2,
                "intermediate_size": 256,
                "vocab_size": 257,
            }
        )
    )
    code, text, err = run(
        ["plan", "estimate", *args, "--dp", "2", "--zero", "fsdp", "--micro-batch", "8",
         "--json"], capsys,
    )  # fmt: skip
    assert code == 0, err
    assert "--profile" in err and "test-cpu" in err
    predicted = json.loads(text)["step"]["time_s"]
    assert predicted == pytest.approx(held_out.step_time_s, rel=0.1)
    code, text, err = run(["plan", "search", *args, "--top", "3", "--json"], capsys)
    assert code == 0, err
    assert "--profile" in err and json.loads(text)


def test_bad_jobs_are_one_line_exit_2_and_nothing_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = job_dir(tmp_path, 64, 8)
    out = tmp_path / "cluster.yaml"
    no_plan = tmp_path / "no-plan"
    (no_plan / "progress").mkdir(parents=True)
    short = job_dir(tmp_path, 128, 8, steps=8)
    newer = job_dir(tmp_path / "newer", 128, 8, schema_version=9)
    cases = (
        (no_plan, "no-plan: no plan.json"),
        (newer, "plan.json schema_version 9: this scalectl reads version 1"),
        (short, "fewer than 5 steps with step_time_s after the first 5"),
        (tmp_path / "20991231-000000-zzzz", "20991231-000000-zzzz"),
    )
    for bad, message in cases:
        code, _, err = run(["plan", "calibrate", str(good), str(bad), "-o", str(out)], capsys)
        assert code == 2, err
        assert message in err and len(err.strip().splitlines()) == 1, err
        assert not out.exists()
    code, _, err = run(["plan", "calibrate", str(good), "-o", str(tmp_path / "p.json")], capsys)
    assert code == 2 and "*.yaml" in err


def test_profile_for_another_accelerator_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cluster.yaml"
    code, _, err = run(["plan", "calibrate", str(job_dir(tmp_path, 64, 8)), "-o", str(out)], capsys)
    assert code == 0, err
    code, _, err = run(
        ["plan", "estimate", "--model", "llama3-8b", "--gpu", "H100", "--gpus", "8",
         "--seq-len", "8k", "--global-batch", "8", "--profile", str(out)], capsys,
    )  # fmt: skip
    assert code == 2 and "fitted for 'test-cpu', not 'H100-SXM-80GB'" in err
    code, _, err = run(
        ["plan", "estimate", "--model", "llama3-8b", "--gpus", "8", "--seq-len", "8k",
         "--global-batch", "8", "--profile", str(tmp_path / "none.yaml")], capsys,
    )  # fmt: skip
    assert code == 2 and "--profile: no such file" in err
