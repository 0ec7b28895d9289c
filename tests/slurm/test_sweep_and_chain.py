"""Sweep files (grid → runs → one array script) and ``--after`` references, without a cluster."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from launcher.chain import resolve_after, with_after
from launcher.errors import LaunchInputError
from launcher.store import NewJob, Store
from launcher.sweep import expand, split_sweep

BASE = {
    "name": "lr-sweep",
    "backend": "slurm",
    "entrypoint": {"module": "runtime.train"},
    "args": ["--steps", "20"],
    "env": {"A": "1"},
}


def runs_of(grid: dict[str, list[object]], **base: object):
    sweep, rest = split_sweep({**BASE, **base, "sweep": {"grid": grid}}, "sweep.yaml")
    return expand(rest, sweep, "sweep.yaml")


def test_grid_is_a_cartesian_product_in_file_order() -> None:
    runs = runs_of({"--lr": ["1e-3", 0.01], "env.SEED": [1, 2]})
    assert [r.values for r in runs] == [
        {"--lr": "1e-3", "env.SEED": "1"},
        {"--lr": "1e-3", "env.SEED": "2"},
        {"--lr": "0.01", "env.SEED": "1"},
        {"--lr": "0.01", "env.SEED": "2"},
    ]
    assert [r.spec.name for r in runs] == [f"lr-sweep-{i}" for i in range(4)]
    assert runs[2].spec.args == ["--steps", "20", "--lr", "0.01"]
    assert runs[3].spec.env == {"A": "1", "SEED": "2"}


@pytest.mark.parametrize(
    ("grid", "base", "fragment"),
    [
        ({"nodes": [1, 2]}, {}, "'nodes' cannot vary inside one job array"),
        ({"--lr": []}, {}, "--lr: give a non-empty list"),
        ({"--flag": [True]}, {}, "quote yes/no"),
        ({"--lr": ["1"]}, {"backend": "local"}, "sweeps run as one Slurm job array"),
        ({"--lr": ["1"]}, {"job_dir": "/tmp/x"}, "job_dir would be shared"),
        ({"env.SCALECTL_JOB_ID": ["1"]}, {}, "is set by scalectl"),
        ({"--a": list(range(40)), "--b": list(range(40))}, {}, "at most 1000"),
    ],
)
def test_bad_sweeps_are_refused_with_one_line(grid, base, fragment) -> None:
    with pytest.raises(LaunchInputError) as info:
        runs_of(grid, **base)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_unknown_sweep_key(tmp_path: Path) -> None:
    with pytest.raises(LaunchInputError) as info:
        split_sweep({**BASE, "sweep": {"grid": {"--lr": [1]}, "paralel": 2}}, "s.yaml")
    assert "unknown key 'paralel'" in str(info.value)


def test_sweep_dry_run_prints_one_array_script(cli, tmp_path: Path) -> None:
    path = tmp_path / "sweep.yaml"
    path.write_text(
        textwrap.dedent(
            f"""
            name: lr-sweep
            backend: slurm
            jobs_root: {tmp_path / "jobs"}
            entrypoint: {{module: runtime.train}}
            sweep:
              throttle: 2
              grid:
                --lr: [1e-3, 3e-3, 1e-2]
            """
        )
    )
    result = cli("launch", str(path), "--dry-run")
    assert result.code == 0, result.err
    assert result.out.count("#!/bin/bash") == 1
    assert "#SBATCH --array=0-2%2" in result.out
    assert "#SBATCH --job-name=lr-sweep\n" in result.out
    assert not (tmp_path / "jobs").exists()


def test_after_resolves_scalectl_jobs_and_raw_ids(scalectl_home: Path) -> None:
    with Store() as store:
        for job_id, backend, handle in (
            ("20250101-000000-aaaa", "slurm", "77"),
            ("20250101-000000-bbbb", "local", "123"),
            ("20250101-000000-cccc", "slurm", None),
        ):
            store.add(NewJob(job_id, f"n-{job_id[-4:]}", backend, Path("/x"), 1, 1, 1, 0, "{}"))
            if handle:
                store.set_backend_job_id(job_id, handle)
    assert resolve_after(["aaaa", "n-aaaa", "991", "12_3"]) == ["77", "77", "991", "12_3"]
    with pytest.raises(LaunchInputError, match="runs on local"):
        resolve_after(["bbbb"])
    with pytest.raises(LaunchInputError, match="has no Slurm job id"):
        resolve_after(["cccc"])
    with pytest.raises(LaunchInputError, match="no job matches"):
        resolve_after(["nope"])
    assert with_after({"slurm": {"after": ["1"]}}, ["2"]) == {"slurm": {"after": ["1", "2"]}}


def test_after_needs_the_slurm_backend(cli) -> None:
    result = cli("launch", "--after", "12", "--dry-run", "--", "python", "x.py")
    assert result.code == 2 and "--after links Slurm jobs" in result.err
    result = cli("launch", "--backend", "slurm", "--after", "12", "--dry-run", "--", "x")
    assert result.code == 0 and "#SBATCH --dependency=afterok:12" in result.out
