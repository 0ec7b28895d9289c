"""The layout of an sbatch script: ``#SBATCH`` flags, then setup, command and teardown.

A pure function of its inputs. It writes the same text submitit 1.5's (private)
``_make_sbatch_string`` writes for the same flags with ``use_srun=False`` and
``stderr_to_stdout=True`` (flags sorted by their submitit names, values shell-quoted,
``SUBMITIT_EXECUTOR`` exported): scripts submitted before and after scalectl rendered
them itself are the same bytes. tests/slurm/test_sbatch_render.py holds it to that,
against the submitit installed, so a submitit upgrade that changes its layout shows up
there rather than on a cluster.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence


def sbatch_flag(key: str, value: object) -> str:
    """One ``#SBATCH`` line: ``True`` is a bare flag, anything else ``--key=<quoted>``.

    ``key`` may use ``_`` for ``-`` (``cpus_per_task``), as submitit's parameters do."""
    name = key.replace("_", "-")
    if value is True:
        return f"#SBATCH --{name}"
    return f"#SBATCH --{name}={shlex.quote(str(value))}"


def sbatch_script(
    flags: Mapping[str, object],
    setup: Sequence[str],
    command: str,
    teardown: Sequence[str],
) -> str:
    """The script: flags sorted by key (as given, before ``_`` becomes ``-``), ``None``
    values left out; ``setup`` and ``teardown`` lines and the ``command`` text verbatim."""
    lines = ["#!/bin/bash", "", "# Parameters"]
    lines += [sbatch_flag(key, flags[key]) for key in sorted(flags) if flags[key] is not None]
    lines += ["", "# setup", *setup]
    # submitit's marker, kept so the script stays the one submitit would have written.
    lines += ["", "# command", "export SUBMITIT_EXECUTOR=slurm", command, ""]
    lines += ["", "# teardown", *teardown]
    return "\n".join(lines)
