"""The root CLI: version, help, fast start (no heavy imports), one-line input errors."""

from __future__ import annotations

import subprocess
import sys

from scalectl import __version__
from scalectl.errors import format_validation_error, user_error_message

HEAVY_MODULES = (
    "torch", "kubernetes", "submitit", "textual", "numpy", "matplotlib", "markdown_it",
    "pygments",
)  # fmt: skip


def test_version() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "scalectl", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0
    assert result.stdout.strip() == f"scalectl {__version__}"


def test_help_lists_the_command_groups_without_heavy_imports() -> None:
    probe = (
        "import sys\n"
        "from scalectl.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        f"heavy = [m for m in {HEAVY_MODULES!r} if m in sys.modules]\n"
        "print('HEAVY=' + ','.join(heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env={"COLUMNS": "120"}
    )
    assert result.returncode == 0, result.stderr
    assert "HEAVY=\n" in result.stdout or result.stdout.rstrip().endswith("HEAVY=")
    assert "plan" in result.stdout


def test_user_errors_become_one_line() -> None:
    class BadSpec(ValueError):
        user_error = True

    assert user_error_message(BadSpec("nodes: min 3 is larger than\n max 2")) == (
        "nodes: min 3 is larger than max 2"
    )
    assert user_error_message(RuntimeError("a real bug")) is None


def test_pydantic_errors_name_the_field() -> None:
    from pydantic import BaseModel, ConfigDict, ValidationError

    class Spec(BaseModel):
        model_config = ConfigDict(extra="forbid")
        nodes: int

    try:
        Spec.model_validate({"nodes": 1, "nodse": 2})
    except ValidationError as exc:
        message = format_validation_error(exc)
        assert "nodse" in message and "unknown key" in message
        assert user_error_message(exc) == message
    else:  # pragma: no cover
        raise AssertionError("extra key accepted")


def test_the_stand_ins_build_the_real_classes_on_use() -> None:
    probe = (
        "import sys\n"
        "from scalectl.fast_help import defer_help_imports\n"
        "defer_help_imports()\n"
        "from rich.markdown import Markdown, Heading\n"
        "assert 'markdown_it' in sys.modules\n"  # Heading: a real attribute, loaded
        "import rich.markdown as real\n"
        "md = Markdown('# title')\n"
        "assert type(md) is real.Markdown and not getattr(real, '_scalectl_stand_in', False)\n"
        "from rich.console import Console\n"
        "Console(width=40).print(md)\n"
        "from rich.traceback import Traceback\n"
        "try:\n"
        "    1 / 0\n"
        "except ZeroDivisionError:\n"
        "    made = Traceback()\n"
        "import rich.traceback as tb\n"
        "assert type(made) is tb.Traceback\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "title" in result.stdout


def test_only_a_help_run_gets_the_stand_in() -> None:
    from scalectl.fast_help import wants_help

    assert wants_help([]) and wants_help(["--help"]) and wants_help(["plan", "search", "-h"])
    assert not wants_help(["launch", "--", "train.py", "--help"])
    assert not wants_help(["jobs"])
