"""Command lines and rank environments (pure functions every backend shares)."""

from __future__ import annotations

from pathlib import Path

from launcher.commands import (
    Rendezvous,
    agent_stop_grace_s,
    entrypoint_argv,
    node_command,
    omp_threads,
    rank_environment,
    torchrun_argv,
)
from launcher.spec import spec_from_mapping

JOB_DIR = Path("/jobs/20260101-000000-abcd")


def make(**overrides: object):
    return spec_from_mapping({"name": "t", "entrypoint": {"module": "runtime.train"}, **overrides})


def test_node_command_is_the_agent_around_an_elastic_torchrun_through_rank_exec() -> None:
    spec = make(nodes="1:3", procs_per_node=2, max_restarts=4, args=["--steps", "9"])
    rdzv = Rendezvous("127.0.0.1:29400", "job-1", {"last_call_timeout": 2})
    assert node_command(spec, JOB_DIR, rdzv, "/py", backend_grace_s=60) == [
        "/py", "-m", "scalectl", "agent", f"--job-dir={JOB_DIR}", "--restarts=4",
        "--stop-grace-s=55", "--",
        "--nnodes=1:3", "--nproc-per-node=2", "--rdzv-backend=c10d",
        "--rdzv-endpoint=127.0.0.1:29400", "--rdzv-id=job-1",
        "--monitor-interval=0.1", "--rdzv-conf=last_call_timeout=2",
        "-m", "runtime.rank_exec", "--", "/py", "-m", "runtime.train", "--steps", "9",
    ]  # fmt: skip


def test_the_agent_stops_before_the_backend_kills() -> None:
    # 5 s before the backend's kill, but never less than half its grace.
    assert [agent_stop_grace_s(g) for g in (120, 60, 8, 2, 0)] == [115, 55, 4, 1, 0]


def test_plain_torchrun_argv_keeps_the_restart_budget() -> None:
    spec = make(max_restarts=4)
    rdzv = Rendezvous("127.0.0.1:29400", "job-1")
    argv = torchrun_argv(spec, ["/py", "t.py"], rdzv, "/py")
    assert argv[:4] == ["/py", "-m", "torch.distributed.run", "--max-restarts=4"]


def test_reference_trainer_gets_policy_flags_unless_given() -> None:
    spec = make(checkpoint={"every_steps": 7, "keep_last": 2}, plan={"layout": {}})
    argv = entrypoint_argv(spec, JOB_DIR, "/py")
    assert argv[3:] == ["--ckpt-every", "7", "--keep-checkpoints", "2",
                        "--plan", str(JOB_DIR / "plan.json")]  # fmt: skip
    spec = make(checkpoint={"every_steps": 7}, args=["--ckpt-every=3"])
    assert entrypoint_argv(spec, JOB_DIR, "/py")[3:] == ["--ckpt-every=3"]


def test_user_scripts_are_not_given_trainer_flags() -> None:
    spec = spec_from_mapping({"name": "t", "entrypoint": {"script": "train.py"},
                              "checkpoint": {"every_steps": 7}, "args": ["a"]})  # fmt: skip
    assert entrypoint_argv(spec, JOB_DIR, "/py") == ["/py", "train.py", "a"]
    spec = spec_from_mapping(
        {"name": "t", "entrypoint": {"command": ["bash", "-c"]}, "args": ["x"]}
    )
    assert entrypoint_argv(spec, JOB_DIR, "/py") == ["bash", "-c", "x"]


def test_rank_environment_marks_the_job_and_never_holds_references() -> None:
    spec = make(env={"A": "1", "OMP_NUM_THREADS": "3", "T": {"from_env": "TOKEN"}},
                checkpoint={"every_steps": 5}, plan={"x": 1})  # fmt: skip
    env = rank_environment(spec, "job-1", JOB_DIR, "node0", node_cpus=8)
    assert env["SCALECTL_JOB_ID"] == "job-1" and env["SCALECTL_NODE"] == "node0"
    assert env["SCALECTL_JOB_DIR"] == str(JOB_DIR)
    assert env["A"] == "1" and env["OMP_NUM_THREADS"] == "3"  # the user's value wins
    assert "T" not in env and "TOKEN" not in env
    assert env["SCALECTL_CKPT_EVERY_STEPS"] == "5"
    assert env["SCALECTL_PLAN_FILE"] == str(JOB_DIR / "plan.json")


def test_omp_threads_split_the_cpus_between_ranks() -> None:
    assert omp_threads(make(procs_per_node=2), node_cpus=2) == 1
    assert omp_threads(make(procs_per_node=2), node_cpus=16) == 8
    assert omp_threads(make(procs_per_node=4), node_cpus=2) == 1
    assert omp_threads(make(procs_per_node=2, cpus_per_node=6), node_cpus=64) == 3
