"""runtime.faults: parsing SCALECTL_FAULTS and firing faults once per job."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from contract.jobdir import JobDir, read_all_jsonl
from runtime import faults


def test_parse_the_documented_example() -> None:
    parsed = faults.parse(
        "crash@step=12,rank=1; hang@step=20,rank=0;exit@step=8;crash_in_checkpoint@step=10;"
        "signal@step=3,sig=usr2;exit@step=4,code=7;hang@step=5,secs=0.5;kill@step=6"
    )
    summary = [(f.kind, f.step, f.rank, f.point) for f in parsed]
    assert summary == [
        ("crash", 12, 1, "step"),
        ("hang", 20, 0, "step"),
        ("exit", 8, None, "step"),
        ("crash_in_checkpoint", 10, None, "checkpoint"),
        ("signal", 3, None, "step"),
        ("exit", 4, None, "step"),
        ("hang", 5, None, "step"),
        ("kill", 6, None, "step"),
    ]
    assert parsed[4].signum == signal.SIGUSR2
    assert parsed[5].code == 7
    assert parsed[6].secs == 0.5
    assert faults.parse("") == [] and faults.parse(" ; ") == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("explode@step=1", "unknown fault kind 'explode'"),
        ("crash", "missing '@step=N'"),
        ("crash@rank=1", "'step=N' is required"),
        ("crash@step=x", "step='x' must be a non-negative integer"),
        ("crash@step=1,rank=-1", "rank='-1' must be a non-negative integer"),
        ("crash@step=1,code=3", "key 'code' does not apply to crash"),
        ("exit@step=1,code=300", "code=300 is not an exit status"),
        ("signal@step=1,sig=NOPE", "sig='NOPE' is not a signal"),
        ("hang@step=1,secs=0", "secs='0' must be a positive number"),
        ("crash@step", "'step' is not key=value"),
    ],
)
def test_bad_specs_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(faults.FaultSpecError, match="SCALECTL_FAULTS entry") as info:
        faults.parse(text)
    assert message in str(info.value)
    assert faults.FaultSpecError.user_error


def test_fires_at_its_step_and_rank_only_once_per_job(tmp_path: Path) -> None:
    parsed = faults.parse("crash@step=3,rank=1")
    other_rank = faults.Injector(parsed, rank=0, job_dir=tmp_path)
    other_rank.fire(faults.STEP, 3)  # not this rank: nothing happens
    injector = faults.Injector(parsed, rank=1, job_dir=tmp_path)
    injector.fire(faults.STEP, 2)
    injector.fire(faults.CHECKPOINT, 3)
    with pytest.raises(faults.FaultInjected, match="crash at step 3 on rank 1"):
        injector.fire(faults.STEP, 3)
    # A new process of the same job (after the restart) sees the marker and goes on.
    faults.Injector(parsed, rank=1, job_dir=tmp_path).fire(faults.STEP, 3)
    (event,) = read_all_jsonl(JobDir(tmp_path).events)
    assert (event["event"], event["kind"], event["step"], event["rank"]) == (
        "fault_injected",
        "crash",
        3,
        1,
    )
    assert len(list((tmp_path / faults.FAULTS_DIR).iterdir())) == 1


def test_without_job_dir_a_fault_fires_once_per_process() -> None:
    injector = faults.Injector(faults.parse("crash@step=1"), rank=0, job_dir=None)
    with pytest.raises(faults.FaultInjected):
        injector.fire(faults.STEP, 1)
    injector.fire(faults.STEP, 1)


def test_hang_with_secs_stalls_then_returns(tmp_path: Path) -> None:
    injector = faults.Injector(faults.parse("hang@step=1,secs=0.2"), rank=0, job_dir=tmp_path)
    start = time.monotonic()
    injector.fire(faults.STEP, 1)
    assert time.monotonic() - start >= 0.2


@pytest.mark.parametrize(
    ("spec", "expected"),
    [("exit@step=2,code=7", 7), ("kill@step=2", -signal.SIGKILL), ("signal@step=2,sig=9", -9)],
)
def test_process_ending_faults(tmp_path: Path, spec: str, expected: int) -> None:
    script = (
        "import sys\nfrom pathlib import Path\nfrom runtime import faults\n"
        "inj = faults.Injector(faults.parse(sys.argv[1]), 0, Path(sys.argv[2]))\n"
        "for step in range(1, 4):\n    inj.fire(faults.STEP, step)\n"
        "print('survived')\n"
    )
    run = [sys.executable, "-c", script, spec, str(tmp_path)]
    first = subprocess.run(run, capture_output=True, text=True, timeout=60)
    assert first.returncode == expected, first.stderr
    assert "scalectl fault injection" in first.stderr
    second = subprocess.run(run, capture_output=True, text=True, timeout=60)
    assert (second.returncode, second.stdout.strip()) == (0, "survived")
