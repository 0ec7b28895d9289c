"""contract.env: one definition and one typed accessor for every SCALECTL_* variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from contract import env


def test_every_name_is_defined_once_with_the_prefix_and_a_docstring() -> None:
    names = [value for key, value in vars(env).items() if key.endswith("_ENV")]
    assert sorted(names) == sorted(env.ALL)
    assert len(set(env.ALL)) == len(env.ALL)
    assert all(name.startswith(env.PREFIX) for name in env.ALL)
    source = Path(env.__file__).read_text(encoding="utf-8")
    for key in (k for k in vars(env) if k.endswith("_ENV")):
        # The attribute docstring sits right under each definition.
        after = source.split(f"\n{key} = ", 1)[1].split("\n", 2)[1]
        assert after.startswith('"""'), key


def test_unset_and_empty_read_as_none() -> None:
    empty = {name: "" for name in env.ALL}
    for environ in ({}, empty):
        assert env.job_id(environ) is None
        assert env.job_dir(environ) is None
        assert env.node(environ) is None
        assert env.home(environ) is None
        assert env.jobs_root(environ) is None
        assert env.node_index(environ) is None
        assert env.agent_pid(environ) is None
        assert env.restart_backoff(environ) is None
        assert env.signals_reach_all(environ) is False
        assert env.rdzv_endpoint(environ) is None
        assert env.faults(environ) == ""
        assert env.train_dump_state(environ) is False
        assert env.ckpt_every_steps(environ) is None
        assert env.ckpt_keep_last(environ) is None
        assert env.plan_file(environ) is None
        assert env.local_node_return_s(environ) is None


def test_values_are_typed() -> None:
    environ = {
        env.JOB_ID_ENV: "20250601-1",
        env.JOB_DIR_ENV: "/jobs/20250601-1",
        env.NODE_ENV: "node0",
        env.HOME_ENV: "~/state",
        env.JOBS_ROOT_ENV: "/shared/jobs",
        env.NODE_INDEX_ENV: "3",
        env.AGENT_PID_ENV: "4242",
        env.RESTART_BACKOFF_ENV: env.format_restart_backoff(0.5, 8.0),
        env.SIGNALS_REACH_ALL_ENV: "1",
        env.RDZV_ENDPOINT_ENV: "node0:29500",
        env.FAULTS_ENV: "crash@step=3",
        env.TRAIN_DUMP_STATE_ENV: "1",
        env.CKPT_EVERY_STEPS_ENV: "50",
        env.CKPT_KEEP_LAST_ENV: "2",
        env.PLAN_FILE_ENV: "/jobs/20250601-1/plan.json",
        env.LOCAL_NODE_RETURN_S_ENV: "0.25",
    }
    assert env.job_id(environ) == "20250601-1"
    assert env.job_dir(environ) == Path("/jobs/20250601-1")
    assert env.node(environ) == "node0"
    assert env.home(environ) == Path("~/state").expanduser()
    assert env.jobs_root(environ) == Path("/shared/jobs")
    assert env.node_index(environ) == 3
    assert env.agent_pid(environ) == 4242
    assert env.restart_backoff(environ) == (0.5, 8.0)
    assert env.signals_reach_all(environ) is True
    assert env.rdzv_endpoint(environ) == "node0:29500"
    assert env.faults(environ) == "crash@step=3"
    assert env.train_dump_state(environ) is True
    assert env.ckpt_every_steps(environ) == 50
    assert env.ckpt_keep_last(environ) == 2
    assert env.plan_file(environ) == Path("/jobs/20250601-1/plan.json")
    assert env.local_node_return_s(environ) == 0.25


def test_garbled_values() -> None:
    assert env.agent_pid({env.AGENT_PID_ENV: "abc"}) is None
    assert env.agent_pid({env.AGENT_PID_ENV: "-3"}) is None
    assert env.node_index({env.NODE_INDEX_ENV: "x"}) is None
    assert env.restart_backoff({env.RESTART_BACKOFF_ENV: "1"}) is None
    assert env.signals_reach_all({env.SIGNALS_REACH_ALL_ENV: "0"}) is False
    with pytest.raises(ValueError):
        env.local_node_return_s({env.LOCAL_NODE_RETURN_S_ENV: "soon"})


def test_accessors_read_the_process_environment_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(env.JOB_ID_ENV, "from-os")
    assert env.job_id() == "from-os"
    monkeypatch.delenv(env.JOB_ID_ENV)
    assert env.job_id() is None
