"""The launcher's public API is importable from the package, lazily."""

from __future__ import annotations

import subprocess
import sys

import launcher


def test_every_export_resolves() -> None:
    exported = vars(launcher).get("__all__")
    assert exported, (launcher.__file__, sorted(vars(launcher)), launcher.__spec__)
    for name in exported:
        assert getattr(launcher, name) is not None, name


def test_importing_the_job_dir_contract_stays_light() -> None:
    # Every rank imports contract.jobdir (via runtime.rank_exec); it must not pay for
    # pydantic, psutil or sqlite.
    code = (
        "import sys, contract.jobdir, runtime.rank_exec; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'pydantic', 'psutil', 'sqlite3', 'torch', 'typer'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
