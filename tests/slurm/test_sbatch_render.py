"""The sbatch script is a pure function of the spec: golden files, quoting, refusals.

Regenerate the golden files after an intended change with
``UPDATE_GOLDEN=1 .venv/bin/pytest tests/slurm/test_sbatch_render.py`` and review the diff.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

from launcher.backends.sbatch_format import sbatch_script
from launcher.backends.slurm_script import (
    ArrayElement,
    ScriptRequest,
    check_slurm_spec,
    mem_request,
    rdzv_port,
    render_sbatch,
    sbatch_flags,
    slurm_signal_name,
    time_limit_minutes,
)
from launcher.errors import LaunchInputError
from launcher.spec import JobSpec, spec_from_mapping

GOLDEN = Path(__file__).resolve().parents[1] / "launcher" / "golden"
HOSTILE = "a b'c\"d$HOME`id`\\e\nf;g|h&i*"
"""Spaces, both quotes, a variable, a command substitution, a backslash, a newline and
shell operators: anything that breaks when quoting is wrong."""


@pytest.fixture(autouse=True)
def stable_node_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """The golden files pin this module's rendering, not ``launcher.commands.node_command``
    (the agent and torchrun flags there have tests of their own), so stand it in."""

    def node_command(spec, job_dir, rendezvous, python, **_):
        return [python, "<node_command>", rendezvous.endpoint, str(job_dir), *spec.args]

    monkeypatch.setattr("launcher.backends.slurm_script.node_command", node_command)


def full_spec(**overrides: object) -> JobSpec:
    data: dict[str, object] = {
        "name": "llama-pretrain",
        "entrypoint": {"module": "runtime.train"},
        "args": ["--steps", "1000", "--lr", "3e-4"],
        "env": {"NCCL_DEBUG": "WARN", "HF_TOKEN": {"from_env": "HF_TOKEN"}},
        "nodes": "2:4",
        "procs_per_node": 8,
        "gpus_per_node": 8,
        "cpus_per_node": 64,
        "mem_gib": 480.5,
        "time_limit_s": 4 * 3600,
        "max_restarts": 3,
        "checkpoint": {"every_steps": 200, "keep_last": 2},
        "workdir": "/shared/work",
        "backend": "slurm",
        "slurm": {
            "partition": "gpu",
            "account": "proj-42",
            "qos": "high",
            "constraint": "h100&ib",
            "exclusive": True,
            "extra_sbatch": ["--reservation=big", "--mail-type=END"],
            "setup": ["module load cuda/12.4", "source /shared/venv/bin/activate"],
            "container_image": "nvcr.io#nvidia/pytorch:24.05-py3",
            "container_mounts": ["/shared:/shared", "/scratch:/scratch:rw"],
            "signal": "SIGUSR2",
            "signal_before_end_s": 300,
            "max_requeues": 5,
            "after": ["1234", "1240_3"],
        },
    }
    data.update(overrides)
    return spec_from_mapping(data)


def single(spec: JobSpec, job_dir: str = "/shared/jobs/20250101-000000-abcd") -> ScriptRequest:
    return ScriptRequest(
        spec=spec,
        elements=(ArrayElement("20250101-000000-abcd", Path(job_dir)),),
        python="/opt/venv/bin/python",
    )


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"missing golden file {path}; run with UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"{name} differs from the golden file (UPDATE_GOLDEN=1)"


def test_full_job_matches_the_golden_file() -> None:
    text = render_sbatch(single(full_spec()))
    check_golden("slurm_sbatch_full.sh", text)
    # The things every Slurm job of ours must have, spelled out once more.
    for line in (
        "#SBATCH --nodes=4",
        "#SBATCH --ntasks-per-node=1",
        "#SBATCH --gpus-per-node=8",
        "#SBATCH --cpus-per-task=64",
        "#SBATCH --mem=492032M",
        "#SBATCH --time=240",
        "#SBATCH --signal=USR2@300",
        "#SBATCH --requeue",
        "#SBATCH --open-mode=append",
        "#SBATCH --exclusive",
        "#SBATCH --dependency=afterok:1234:1240_3",
        "#SBATCH --kill-on-invalid-dep=yes",
        "#SBATCH --reservation=big",
    ):
        assert line in text.splitlines(), line
    srun = next(line for line in text.splitlines() if line.startswith("srun "))
    assert "--kill-on-bad-exit=1" in srun and "--container-image=" in srun
    assert text.count("\nsrun ") == 1


def test_array_matches_the_golden_file() -> None:
    spec = full_spec(slurm={"partition": "gpu"}, nodes="1", gpus_per_node=1, workdir=None)
    elements = tuple(
        ArrayElement(f"20250101-000000-000{i}", Path(f"/shared/jobs/20250101-000000-000{i}"))
        for i in range(3)
    )
    request = ScriptRequest(
        spec=spec,
        elements=elements,
        python="/opt/venv/bin/python",
        array_dir=Path("/shared/jobs/sweeps/20250101-000000-ffff"),
        throttle=2,
        name="lr-sweep",
    )
    text = render_sbatch(request)
    check_golden("slurm_sbatch_array.sh", text)
    assert "#SBATCH --array=0-2%2" in text.splitlines()
    assert "#SBATCH --job-name=lr-sweep" in text.splitlines()


def test_rendering_is_pure() -> None:
    request = single(full_spec())
    assert render_sbatch(request) == render_sbatch(request)


def test_the_script_is_valid_bash() -> None:
    text = render_sbatch(single(full_spec(args=[HOSTILE])))
    result = subprocess.run(["bash", "-n"], input=text, text=True, capture_output=True)
    assert result.returncode == 0, result.stderr


def test_hostile_args_and_env_stay_out_of_executable_lines() -> None:
    spec = full_spec(args=["--tag", HOSTILE], env={"PLAIN": HOSTILE})
    text = render_sbatch(single(spec))
    # Args appear only in the documentation comment, where every physical line starts
    # with '#', so a newline in an argument cannot end the comment.
    command_block = text.split("# command\n", 1)[1].split("\nsrun ", 1)[0]
    for line in command_block.splitlines()[1:]:
        assert line.startswith("#"), line
    executable = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    assert not any("`id`" in ln or "HOME`" in ln for ln in executable)
    assert "PLAIN" not in text  # env values are read from job.json by the node agent


def test_env_references_are_never_in_the_script(cli, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("HF_TOKEN", "s3cr3t-value-xyz")
    result = cli(
        "launch", "--backend", "slurm", "--dry-run", "--env", "HF_TOKEN",
        "--jobs-root", str(tmp_path / "jobs"), "--", "python", "train.py",
    )  # fmt: skip
    assert result.code == 0, result.err
    assert "#SBATCH" in result.out and "HF_TOKEN" not in result.out
    assert "s3cr3t" not in result.out
    assert not (tmp_path / "jobs").exists()  # a dry run creates nothing


def test_hostile_job_dir_round_trips_through_bash(tmp_path) -> None:
    job_dir = str(tmp_path / "we ird'd\"$x`y` ;&|")
    text = render_sbatch(single(full_spec(workdir=None), job_dir=job_dir))
    identity = [ln for ln in text.splitlines() if ln.startswith("export SCALECTL_JOB_DIR=")]
    out = subprocess.run(
        ["bash", "-c", identity[0] + '\nprintf %s "$SCALECTL_JOB_DIR"'],
        capture_output=True,
        text=True,
    ).stdout
    assert out == job_dir
    output = next(ln for ln in text.splitlines() if ln.startswith("#SBATCH --output="))
    assert shlex.split(output.removeprefix("#SBATCH --output="))[0] == (
        f"{job_dir}/logs/batch.slurm.log"
    )


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ({"workdir": "/a\nb"}, "workdir '/a\\nb' contains a newline"),
        ({"job_dir": "/jobs/%j"}, "job_dir '/jobs/%j' contains '%'"),
        ({"slurm": {"signal": "BOGUS"}}, "slurm.signal 'BOGUS' is not a signal name"),
        ({"slurm": {"signal": "KILL"}}, "cannot be caught"),
        ({"slurm": {"extra_sbatch": ["reservation=big"]}}, "slurm.extra_sbatch[0]"),
        ({"slurm": {"extra_sbatch": ["--a\n--b"]}}, "one sbatch option on one line"),
        ({"slurm": {"partition": "gpu\nx"}}, "slurm.partition"),
        ({"slurm": {"after": ["abc"]}}, "slurm.after[0] 'abc' is not a Slurm job id"),
        ({"slurm": {"container_mounts": ["/a:/a,/b:/b"]}}, "slurm.container_mounts[0]"),
        (
            {"time_limit_s": 60, "slurm": {"signal_before_end_s": 120}},
            "signal_before_end_s (120) must be shorter than time_limit_s (60)",
        ),
    ],
)
def test_values_the_script_cannot_carry_are_refused(override, fragment) -> None:
    base = {"name": "j", "entrypoint": {"module": "runtime.train"}, "backend": "slurm"}
    spec = spec_from_mapping({**base, **override})
    with pytest.raises(LaunchInputError) as info:
        check_slurm_spec(spec)
    assert fragment in str(info.value)


def test_bad_slurm_spec_is_one_line_and_exit_2(cli, tmp_path) -> None:
    result = cli(
        "launch", "--backend", "slurm", "--jobs-root", str(tmp_path / "j%x"), "--",
        "python", "t.py",
    )  # fmt: skip
    assert result.code == 2
    assert result.err.startswith("error: jobs_root") and result.err.count("\n") == 1
    assert not (tmp_path / "j%x").exists()


def test_hostile_job_name_is_refused(cli) -> None:
    result = cli("launch", "--backend", "slurm", "--dry-run", "--name", "a b$c", "--", "x")
    assert result.code == 2 and "is not a job name" in result.err


def test_small_conversions() -> None:
    assert time_limit_minutes(1) == 1 and time_limit_minutes(61) == 2
    assert time_limit_minutes(3600) == 60
    assert mem_request(1) == "1024M" and mem_request(0.5) == "512M"
    assert slurm_signal_name("sigusr1") == "USR1" and slurm_signal_name("15") == "TERM"
    assert rdzv_port(123) == 20123 and rdzv_port(30123) == 20123


def test_no_container_means_the_host_python_and_no_pyxis_flags() -> None:
    spec = full_spec(slurm={"partition": "cpu"})
    text = render_sbatch(single(spec))
    assert "--container" not in text
    assert "/opt/venv/bin/python -u -m scalectl agent --policy=slurm" in text
    assert "--requeue" in text and "--no-requeue" not in text
    text = render_sbatch(single(full_spec(slurm={"requeue": False})))
    assert "#SBATCH --no-requeue" in text.splitlines()


def _array_request(throttle: int | None) -> ScriptRequest:
    spec = full_spec(slurm={"partition": "gpu"}, nodes="1", gpus_per_node=1, workdir=None)
    elements = tuple(
        ArrayElement(f"20250101-000000-000{i}", Path(f"/shared/jobs/20250101-000000-000{i}"))
        for i in range(3)
    )
    return ScriptRequest(
        spec=spec,
        elements=elements,
        python="/opt/venv/bin/python",
        array_dir=Path("/shared/jobs/sweeps/20250101-000000-ffff"),
        throttle=throttle,
        name="lr-sweep",
    )


@pytest.mark.parametrize(
    "request_",
    [
        single(full_spec(slurm={**full_spec().slurm.model_dump(), "extra_sbatch": []})),
        single(full_spec(slurm={"requeue": False}, time_limit_s=None, mem_gib=None)),
        single(spec_from_mapping({"name": "j", "entrypoint": {"module": "m"}})),
        _array_request(2),
        _array_request(None),
    ],
    ids=["full", "no-requeue-no-limits", "minimal", "array-throttled", "array"],
)
def test_the_layout_is_the_one_submitit_writes(request_: ScriptRequest) -> None:
    """Our script is byte for byte the one submitit's own renderer writes for the same
    flags (a test may call submitit's private function; product code does not)."""
    from submitit.slurm.slurm import _make_sbatch_string

    flags = sbatch_flags(request_)
    setup = ["echo setup", "module load x"]
    command = "# a comment\nsrun true\nscalectl_step_rc=$?"
    teardown = ["exec end"]
    theirs = _make_sbatch_string(
        command=command,
        folder="/unused",
        setup=setup,
        teardown=teardown,
        time=None,  # type: ignore[arg-type]
        wckey=None,  # type: ignore[arg-type]
        stderr_to_stdout=True,
        use_srun=False,
        additional_parameters={k: v for k, v in flags.items() if v is not None},
    )
    assert sbatch_script(flags, setup, command, teardown) == theirs


def test_the_array_flag_is_the_one_submitit_writes() -> None:
    """submitit spells a job array from a count and a parallelism; ours must agree."""
    from submitit.slurm.slurm import _make_sbatch_string

    for throttle in (None, 1, 2, 5):
        flags = sbatch_flags(_array_request(throttle))
        theirs = _make_sbatch_string(
            command="true", folder="/unused", map_count=3, array_parallelism=throttle or 3
        )
        assert f"#SBATCH --array={flags['array']}" in theirs.splitlines()
