"""Bad input through the real CLI: one line on stderr, exit 2, nothing registered or left."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from launcher.paths import default_jobs_root, registry_path


def assert_nothing_created(home: Path) -> None:
    jobs_root = default_jobs_root()
    assert not jobs_root.exists() or not any(jobs_root.iterdir()), list(jobs_root.iterdir())
    if registry_path().exists():
        from launcher.store import Store

        with Store() as store:
            assert store.list_jobs() == []


def assert_one_line_error(result, fragment: str) -> None:
    assert result.code == 2, (result.code, result.out, result.err)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.err
    assert fragment in lines[0], lines[0]
    assert "Traceback" not in result.err + result.out


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("yaml_text", "fragment"),
    [
        ("name: x\nentrypoint: {module: m}\nbogus_key: 1\n", "unknown key 'bogus_key'"),
        ("name: x\nentrypoint: {module: m}\nslurm: {partion: a}\n", "unknown key 'slurm.partion'"),
        ("name: x\nentrypoint: {module: m}\nnodes: '3:2'\n", "min 3 is greater than max 2"),
        ("name: x\nnodes: 1\n", "entrypoint is missing"),
        ("name: x\nentrypoint: {module: m, script: a.py}\n", "exactly one of module"),
        ("name: x\nentrypoint: {module: m}\nenv: {T: {from_env: SURELY_UNSET_VAR}}\n",
         "from_env SURELY_UNSET_VAR is not set"),
        ("name: x\nentrypoint: {module: m}\nenv: {T: {secret: s, key: k}}\n",
         "secret references need the kubernetes backend"),
        ("name: x\nentrypoint: {script: missing.py}\n", "missing.py does not exist"),
        ("name: x\nentrypoint: {module: m}\ngpus_per_node: 64\n", "gpus_per_node is 64"),
        ("name: x\nentrypoint: {module: m}\nbackend: nomad\n", "backend"),
        ("name: [x\n", "not valid YAML"),
    ],
)  # fmt: skip
def test_bad_spec_files(cli, tmp_path: Path, scalectl_home: Path, yaml_text: str, fragment: str):
    os.environ.pop("SURELY_UNSET_VAR", None)
    spec = write(tmp_path / "job.yaml", yaml_text)
    assert_one_line_error(cli("launch", str(spec)), fragment)
    assert_nothing_created(scalectl_home)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--nodes", "2:1", "--", "python", "x.py"], "min 2 is greater than max 1"),
        (["--nodes", "1"], "entrypoint is missing"),
        (["--module", "m", "--script", "x.py"], "--module or --script, not both"),
        (["--module", "m", "--time-limit", "forever"], "is not a duration"),
        (["--module", "m", "--env", "bad name=1"], "--env"),
        (["missing.yaml"], "no such job spec file"),
    ],
)
def test_bad_flags(cli, scalectl_home: Path, args: list[str], fragment: str) -> None:
    assert_one_line_error(cli("launch", *args), fragment)
    assert_nothing_created(scalectl_home)


def test_unwritable_job_dir(cli, tmp_path: Path, scalectl_home: Path) -> None:
    blocker = write(tmp_path / "a-file", "not a directory")
    result = cli("launch", "--job-dir", str(blocker / "job"), "--module", "m")
    assert_one_line_error(result, "job_dir")
    assert "not writable" in result.err or "cannot be created" in result.err
    assert_nothing_created(scalectl_home)
    assert blocker.read_text() == "not a directory"


def test_unwritable_jobs_root(cli, tmp_path: Path, scalectl_home: Path) -> None:
    blocker = write(tmp_path / "a-file", "x")
    result = cli("launch", "--jobs-root", str(blocker / "deeper" / "jobs"), "--module", "m")
    assert_one_line_error(result, "jobs_root")
    assert_nothing_created(scalectl_home)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through directory permissions")
def test_read_only_job_dir(cli, tmp_path: Path, scalectl_home: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        result = cli("launch", "--job-dir", str(locked / "job"), "--module", "m")
        assert_one_line_error(result, "not writable")
        assert not (locked / "job").exists()
    finally:
        locked.chmod(0o755)
    assert_nothing_created(scalectl_home)


def test_directories_made_for_a_launch_are_removed_when_registering_fails(
    cli, tmp_path: Path, scalectl_home: Path
) -> None:
    scalectl_home.mkdir(parents=True)
    registry_path().write_bytes(b"garbage, not sqlite" * 200)
    job_dir = tmp_path / "new" / "deeper" / "job"
    result = cli("launch", "--job-dir", str(job_dir), "--module", "m")
    assert_one_line_error(result, "unreadable")
    assert not (tmp_path / "new").exists()


def test_corrupt_registry_through_jobs_and_logs(cli, scalectl_home: Path) -> None:
    scalectl_home.mkdir(parents=True)
    registry_path().write_bytes(b"garbage, not sqlite" * 200)
    for args in (["jobs"], ["logs", "x"], ["cancel", "x"]):
        assert_one_line_error(cli(*args), "move it aside")


def test_unknown_job(cli) -> None:
    assert cli("jobs").code == 0  # an empty registry is fine
    assert_one_line_error(cli("logs", "nope"), "no job registry")
    from launcher.store import Store

    Store().close()
    assert_one_line_error(cli("logs", "nope"), "no job matches 'nope'")
    assert_one_line_error(cli("cancel", "nope"), "no job matches 'nope'")
    assert_one_line_error(cli("jobs", "--state", "sleeping"), "--state")


def test_dry_run_prints_the_command_and_creates_nothing(cli, scalectl_home: Path) -> None:
    result = cli("launch", "--dry-run", "--nproc-per-node", "2", "--module", "runtime.train",
                 "--", "--steps", "3")  # fmt: skip
    assert result.code == 0, result.err
    assert "--nproc-per-node=2" in result.out and "runtime.rank_exec" in result.out
    assert "SCALECTL_JOB_ID=" in result.out
    assert not scalectl_home.exists()


def test_requeue_is_refused_with_the_reason(cli, scalectl_home: Path) -> None:
    import sys

    from contract.jobdir import JobDir, read_all_jsonl
    from launcher import api, spec_from_mapping
    from launcher.store import Store

    assert_one_line_error(cli("requeue", "nope"), "no job registry")
    sleeper = {"command": [sys.executable, "-c", "import time; time.sleep(60)"]}
    spec = spec_from_mapping(
        {"name": "sleeper", "entrypoint": sleeper, "local": {"stop_grace_s": 1}}
    )
    with Store() as store:
        record = api.launch(spec, store)
    try:
        # A local job has no queue to go back to: refused, and the job runs on untouched.
        assert_one_line_error(cli("requeue", record.id), "has no queue to put it back in")
        with Store() as store:
            assert api.refresh(store, store.get(record.id) or record).state.value == "RUNNING"
    finally:
        assert cli("cancel", record.id).code == 0
    assert_one_line_error(cli("requeue", record.id), "only a running job can be requeued")
    events = [e["event"] for e in read_all_jsonl(JobDir(record.job_dir).events)]
    assert "requeue_requested" not in events
