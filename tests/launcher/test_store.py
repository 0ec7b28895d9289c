"""The job registry: API, state transitions, migrations, corruption, concurrency."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
from pathlib import Path

import pytest
from polling import wait_for

from launcher.errors import JobNotFoundError, RegistryError
from launcher.ids import is_job_id, new_job_id
from launcher.states import JobState
from launcher.store import MIGRATIONS, JobIdTakenError, NewJob, Store


def new_job(job_id: str, name: str = "job", backend: str = "local") -> NewJob:
    return NewJob(
        id=job_id,
        name=name,
        backend=backend,
        job_dir=Path("/jobs") / job_id,
        nodes_min=1,
        nodes_max=2,
        procs_per_node=2,
        gpus_per_node=0,
        spec_json=json.dumps({"name": name}),
    )


@pytest.fixture
def store(tmp_path: Path):
    with Store(tmp_path / "registry.sqlite3") as opened:
        yield opened


def test_ids_are_sortable_and_shaped() -> None:
    early = new_job_id(1_700_000_000.0, "ffff")
    late = new_job_id(1_700_000_001.0, "0000")
    assert early == "20231114-221320-ffff" and is_job_id(early)
    assert early < late


def test_add_get_and_fields(store: Store) -> None:
    record = store.add(new_job("20260101-000000-aaaa", "llama"), now_s=100.0)
    assert record.state is JobState.PENDING and record.backend_job_id is None
    assert record.nodes == "1:2" and record.gpus == 0 and record.spec == {"name": "llama"}
    assert record.created_ts == record.updated_ts == 100.0
    with pytest.raises(JobIdTakenError):
        store.add(new_job("20260101-000000-aaaa"))
    store.set_backend_job_id(record.id, "4242")
    assert store.get(record.id).backend_job_id == "4242"  # type: ignore[union-attr]
    assert store.get("nope") is None


def test_wal_mode_and_schema_version(store: Store) -> None:
    conn = sqlite3.connect(store.path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    assert store.schema_version == max(v for v, _ in MIGRATIONS)


def test_transitions_are_compare_and_set_and_terminal_states_are_final(store: Store) -> None:
    job = store.add(new_job("20260101-000000-aaaa")).id
    assert store.transition(job, JobState.RUNNING, only_from=[JobState.PENDING], now_s=5.0)
    assert not store.transition(job, JobState.RUNNING, "again", only_from=[JobState.PENDING])
    assert store.transition(job, JobState.CANCELLED, "cancelled by user", now_s=9.0)
    assert not store.transition(job, JobState.FAILED, "late supervisor", exit_code=1)
    assert not store.transition(job, JobState.CANCELLED, "other reason")
    record = store.get(job)
    assert record is not None
    assert (record.state, record.reason) == (JobState.CANCELLED, "cancelled by user")
    assert (record.started_ts, record.ended_ts, record.exit_code) == (5.0, 9.0, None)
    assert not store.transition("missing", JobState.RUNNING)


def test_resolve_by_id_prefix_suffix_and_name(store: Store) -> None:
    store.add(new_job("20260101-000000-aaaa", "alpha"))
    store.add(new_job("20260101-000001-bbbb", "beta"))
    store.add(new_job("20260102-000000-cccc", "beta"))
    assert store.resolve("20260101-000000-aaaa").name == "alpha"
    assert store.resolve("20260102").id == "20260102-000000-cccc"
    assert store.resolve("bbbb").id == "20260101-000001-bbbb"
    assert store.resolve("alpha").id == "20260101-000000-aaaa"
    with pytest.raises(JobNotFoundError, match="matches several jobs"):
        store.resolve("20260101")
    # two jobs named beta, both active: ambiguous; once one ended, the active one wins
    with pytest.raises(JobNotFoundError, match="matches several jobs"):
        store.resolve("beta")
    store.transition("20260102-000000-cccc", JobState.COMPLETED)
    assert store.resolve("beta").id == "20260101-000001-bbbb"
    with pytest.raises(JobNotFoundError, match="no job matches 'zzz'"):
        store.resolve("zzz")
    with pytest.raises(JobNotFoundError):
        store.resolve("%")  # LIKE wildcards are escaped


def test_list_filters_sort_limit_and_count(store: Store) -> None:
    for i, (name, backend) in enumerate([("a", "local"), ("b", "slurm"), ("c", "local")]):
        store.add(new_job(f"20260101-00000{i}-000{i}", name, backend), now_s=float(i))
    store.transition("20260101-000001-0001", JobState.FAILED)
    assert [r.name for r in store.list_jobs()] == ["c", "b", "a"]
    assert [r.name for r in store.list_jobs(sort="name", descending=False)] == ["a", "b", "c"]
    assert [r.name for r in store.list_jobs(limit=1, offset=1)] == ["b"]
    assert [r.name for r in store.list_jobs(backends=["slurm"])] == ["b"]
    assert [r.name for r in store.list_jobs(states=[JobState.FAILED])] == ["b"]
    assert [r.name for r in store.list_jobs(active_only=True)] == ["c", "a"]
    assert [r.name for r in store.list_jobs(text="0002")] == ["c"]
    assert store.count_jobs(backends=["local"]) == 2 and store.count_jobs(states=[]) == 0
    with pytest.raises(ValueError):
        store.list_jobs(sort="bogus")  # type: ignore[arg-type]


def test_active_for_job_dir(store: Store) -> None:
    store.add(new_job("20260101-000000-aaaa"))
    assert store.active_for_job_dir(Path("/jobs/20260101-000000-aaaa")) is not None
    store.transition("20260101-000000-aaaa", JobState.COMPLETED)
    assert store.active_for_job_dir(Path("/jobs/20260101-000000-aaaa")) is None


def test_migrations_apply_in_order_once(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite3"
    with Store(path) as first:
        first.add(new_job("20260101-000000-aaaa"))
    extra = (2, ("ALTER TABLE jobs ADD COLUMN note TEXT DEFAULT 'x'",))
    with Store(path, migrations=(*MIGRATIONS, extra)) as upgraded:
        assert upgraded.schema_version == 2
        assert upgraded.get("20260101-000000-aaaa") is not None
    with Store(path, migrations=(*MIGRATIONS, extra)) as again:  # not applied twice
        assert again.schema_version == 2
    with pytest.raises(RegistryError, match="newer than this scalectl understands"):
        Store(path)


def test_a_failed_migration_leaves_the_old_schema(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite3"
    Store(path).close()
    broken = (2, ("ALTER TABLE jobs ADD COLUMN ok TEXT", "THIS IS NOT SQL"))
    with pytest.raises(RegistryError):
        Store(path, migrations=(*MIGRATIONS, broken))
    with Store(path) as store:
        assert store.schema_version == 1
        columns = [row[1] for row in sqlite3.connect(path).execute("PRAGMA table_info(jobs)")]
        assert "ok" not in columns and store.list_jobs() == []


def test_corrupt_registry_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "registry.sqlite3"
    path.write_bytes(b"this is not a database at all, just some text" * 100)
    with pytest.raises(RegistryError) as info:
        Store(path)
    message = str(info.value)
    assert str(path) in message and "unreadable" in message and "move it aside" in message


def test_unwritable_registry_directory_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(RegistryError, match="SCALECTL_HOME"):
        Store(blocker / "registry.sqlite3")


def _writer(path: str, worker: int, jobs: int) -> None:
    with Store(Path(path)) as store:
        for i in range(jobs):
            job_id = f"20260101-{worker:06d}-{i:04x}"
            store.add(new_job(job_id, f"w{worker}"))
            store.transition(job_id, JobState.RUNNING, only_from=[JobState.PENDING])
            store.transition(job_id, JobState.COMPLETED, "done")


def _reader(path: str, rounds: int, out: multiprocessing.Queue) -> None:
    seen = 0
    with Store(Path(path)) as store:
        for _ in range(rounds):
            records = store.list_jobs(limit=1000)
            # A reader never sees a half-made row: every row is whole and consistent.
            for record in records:
                assert record.state in (JobState.PENDING, JobState.RUNNING, JobState.COMPLETED)
                assert record.spec["name"] == record.name
            seen = max(seen, len(records))
    out.put(seen)


def test_several_writer_and_reader_processes(tmp_path: Path) -> None:
    path = str(tmp_path / "registry.sqlite3")
    Store(Path(path)).close()
    ctx = multiprocessing.get_context("fork")
    results: multiprocessing.Queue = ctx.Queue()
    writers = [ctx.Process(target=_writer, args=(path, w, 25)) for w in range(4)]
    readers = [ctx.Process(target=_reader, args=(path, 40, results)) for _ in range(2)]
    for proc in writers + readers:
        proc.start()
    everyone = writers + readers
    wait_for(
        lambda: not any(proc.is_alive() for proc in everyone),
        progress=lambda: sum(not proc.is_alive() for proc in everyone),
    )
    for proc in everyone:
        proc.join()
        assert proc.exitcode == 0, f"{proc.name} exited with {proc.exitcode}"
    assert all(results.get(timeout=5) <= 100 for _ in readers)
    with Store(Path(path)) as store:
        records = store.list_jobs()
        assert len(records) == 100
        assert {r.state for r in records} == {JobState.COMPLETED}
        assert store.count_jobs(text="w3") == 25
