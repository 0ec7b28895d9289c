"""scripts/gpu_check.py without a GPU: ``--cpu-dry-run`` runs its whole path (plan, launch by
``launch --plan``'s path with ``--compile`` and the chunked loss, measure, compare, MFU
ratios, JSON) on a tiny model, so the script cannot rot between the GPU runs."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from polling import run_to_end

REPO = Path(__file__).resolve().parents[2]


def test_the_mfu_config_plans_compile_and_chunks_its_loss() -> None:
    sys.path.insert(0, str(REPO / "scripts"))
    import gpu_check

    (config,) = [c for c in gpu_check.CONFIGS if c["name"] in gpu_check.DEFAULT]
    plan = gpu_check.plan_for(config, "H100")
    assert plan.training.compile is True and plan.training.precision == "bf16"
    assert plan.model.hidden_size == 4096 and plan.model.ffn_hidden_size == 14336
    assert plan.estimate.memory_gib.total < 80  # fits one H100, by the plan
    spec = gpu_check.job_spec(config, plan)
    assert spec.plan is not None and spec.plan["training"]["compile"] is True
    assert "--loss-chunks" in spec.args and "--no-final-checkpoint" in spec.args


@pytest.mark.slow
def test_cpu_dry_run_goes_the_gpu_path_and_writes_its_figures(
    scalectl_home: Path, tmp_path: Path
) -> None:
    env = {**os.environ, "SCALECTL_HOME": str(scalectl_home), "PYTHONPATH": str(REPO)}
    out = tmp_path / "out"
    run = run_to_end(
        [
            sys.executable,
            str(REPO / "scripts" / "gpu_check.py"),
            "--cpu-dry-run",
            "--out",
            str(out),
        ],
        env=env,
        cwd=REPO,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "cpu-dry-run: measured MFU" in run.stdout and "plan" in run.stdout
    results = json.loads((out / "gpu_check.json").read_text())
    assert results["dry_run"] is True and results["torchtitan_mfu"] == [0.33, 0.39]
    (entry,) = results["runs"].values()
    measured, compare = entry["measured"], entry["compare"]
    assert measured["state"] == "COMPLETED" and measured["steps_reported"] == 4
    applied = measured["applied_layout"]
    assert applied["compile"] is False and applied["loss_chunks"] == 8  # eager on the CPU
    assert applied["precision"] == "fp32" and applied["world_size"] == 1
    mfu = compare["measured_mfu"]
    assert mfu is not None and mfu > 0
    assert compare["mfu_ratio_measured_over_plan"] == pytest.approx(
        mfu / compare["predicted_mfu"], rel=1e-2
    )
    low, high = compare["mfu_ratio_over_torchtitan"]
    assert low == pytest.approx(mfu / 0.33, rel=1e-2) and high == pytest.approx(
        mfu / 0.39, rel=1e-2
    )
    # The final checkpoint is not written (--no-final-checkpoint): no multi-GB write on a GPU.
    (job_dir,) = (scalectl_home / "jobs").iterdir()
    assert not any((job_dir / "checkpoints").glob("*"))
