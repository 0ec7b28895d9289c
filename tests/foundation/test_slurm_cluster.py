"""The local cluster is real: sbatch runs a step on both nodes and sacct reports it."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

import pytest
from polling import wait_for

pytestmark = pytest.mark.slurm


def _sacct_state(job_id: str) -> str:
    result = subprocess.run(
        ["sacct", "-j", job_id, "-X", "-n", "-P", "-o", "State"],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


def test_sbatch_runs_on_both_nodes_and_sacct_reads_it(tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    script = tmp_path / "job.sh"
    script.write_text(
        "#!/bin/bash\n"
        f"#SBATCH --nodes=2 --ntasks-per-node=1 --output={out} --job-name=foundation-check\n"
        "srun bash -c 'echo \"node=$SLURMD_NODENAME rank=$SLURM_PROCID\"'\n"
    )
    job_id = (
        subprocess.run(
            ["sbatch", "--parsable", str(script)], capture_output=True, text=True, check=True
        )
        .stdout.strip()
        .split(";")[0]
    )
    ended = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL"}
    with contextlib.suppress(AssertionError):  # the assertion below shows the output
        wait_for(lambda: _sacct_state(job_id) in ended, poll_s=0.5)
    state = _sacct_state(job_id)
    output = out.read_text() if out.exists() else ""
    assert state == "COMPLETED", f"job {job_id} ended {state!r}: {output}"
    lines = sorted(out.read_text().split())
    assert "node=node1" in lines and "node=node2" in lines
    steps = subprocess.run(
        ["sacct", "-j", job_id, "-n", "-P", "-o", "JobID,State,NodeList"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"{job_id}.0|COMPLETED|node[1-2]" in steps


def test_script_refuses_unknown_command() -> None:
    script = Path(__file__).resolve().parents[2] / "scripts" / "slurm-local.sh"
    result = subprocess.run([str(script), "sideways"], capture_output=True, text=True)
    assert result.returncode == 2
    assert "usage" in result.stderr


@pytest.mark.skipif(
    subprocess.run(["id", "-u"], capture_output=True, text=True).stdout.strip() != "0",
    reason="needs root to check the idempotent `up`",
)
def test_up_is_idempotent() -> None:
    script = Path(__file__).resolve().parents[2] / "scripts" / "slurm-local.sh"
    before = subprocess.run([str(script), "status"], capture_output=True, text=True).stdout
    result = subprocess.run([str(script), "up"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "starting" not in result.stdout, "a second `up` must not start daemons again"
    after = subprocess.run([str(script), "status"], capture_output=True, text=True).stdout
    assert before == after


@pytest.mark.skipif(
    subprocess.run(["id", "-u"], capture_output=True, text=True).stdout.strip() != "0",
    reason="needs root to run the script as an unprivileged user",
)
def test_not_root_exits_2_with_a_sentence() -> None:
    script = Path(__file__).resolve().parents[2] / "scripts" / "slurm-local.sh"
    result = subprocess.run(
        ["runuser", "-u", "nobody", "--", "bash", str(script), "up"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "must run as root" in result.stderr
