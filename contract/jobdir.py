"""The job directory: the versioned contract between backends, the runtime and the UI.

Layout (see ARCHITECTURE.md, "The contract")::

    <jobs_root>/<job_id>/
      job.json                 JobSpec as submitted (+ schema_version; contract.job)
      plan.json                the Plan it was launched from, if any (contract.plan)
      events.jsonl             append-only lifecycle events (contract.events), one a line
      progress/<rank>.jsonl    step, loss, tokens, step_time_s (runtime.progress)
      telemetry/<node>.jsonl   one sample a line (runtime telemetry)
      logs/<node>.<rank>.log   stdout/stderr of each rank, appended across restarts
      checkpoints/step_<n>/    torch.distributed.checkpoint, committed by rename

This module is standard library only: the runtime (on every node), the launcher and
the TUI all import it, and none of them may pay for a heavy import to read a file.

Writers append one line with a single ``write()`` on an ``O_APPEND`` descriptor, so
concurrent writers never interleave within a line on a local or POSIX shared file
system. Readers tolerate a torn last line (a line without its newline is not consumed
yet) and count, rather than raise on, lines that are not valid JSON objects.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
"""Version of the job-directory layout and record shapes; bump with a migration note."""

JOB_FILE = "job.json"
PLAN_FILE = "plan.json"
EVENTS_FILE = "events.jsonl"
SUMMARY_FILE = "summary.json"
PROGRESS_DIR = "progress"
TELEMETRY_DIR = "telemetry"
LOGS_DIR = "logs"
CHECKPOINTS_DIR = "checkpoints"
STACKS_DIR = "stacks"
CHECKPOINT_PREFIX = "step_"

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\Z")


def _safe_component(value: str, what: str) -> str:
    if not _SAFE_NAME.match(value):
        raise ValueError(f"{what} {value!r} is not a safe file name (letters, digits, . _ -)")
    return value


@dataclass(frozen=True)
class JobDir:
    """Paths inside one job's directory. Pure: constructing one touches no file."""

    root: Path

    @property
    def job_json(self) -> Path:
        return self.root / JOB_FILE

    @property
    def plan_json(self) -> Path:
        return self.root / PLAN_FILE

    @property
    def events(self) -> Path:
        return self.root / EVENTS_FILE

    @property
    def summary_json(self) -> Path:
        return self.root / SUMMARY_FILE

    @property
    def progress_dir(self) -> Path:
        return self.root / PROGRESS_DIR

    @property
    def telemetry_dir(self) -> Path:
        return self.root / TELEMETRY_DIR

    @property
    def logs_dir(self) -> Path:
        return self.root / LOGS_DIR

    @property
    def checkpoints_dir(self) -> Path:
        return self.root / CHECKPOINTS_DIR

    @property
    def stacks_dir(self) -> Path:
        return self.root / STACKS_DIR

    def progress_file(self, rank: int) -> Path:
        return self.progress_dir / f"{int(rank)}.jsonl"

    def telemetry_file(self, node: str) -> Path:
        return self.telemetry_dir / f"{_safe_component(node, 'node name')}.jsonl"

    def log_file(self, node: str, rank: int | str) -> Path:
        return self.logs_dir / f"{_safe_component(node, 'node name')}.{rank}.log"

    def checkpoint_dir(self, step: int) -> Path:
        return self.checkpoints_dir / f"{CHECKPOINT_PREFIX}{int(step)}"

    def create(self) -> None:
        """Make the directory and its sub-directories (idempotent)."""
        for path in (self.root, self.progress_dir, self.telemetry_dir, self.logs_dir):
            path.mkdir(parents=True, exist_ok=True)
        self.checkpoints_dir.mkdir(exist_ok=True)

    def progress_files(self) -> list[Path]:
        """Progress files sorted by rank number."""
        return _sorted_by_stem_number(self.progress_dir.glob("*.jsonl"))

    def telemetry_files(self) -> list[Path]:
        return sorted(self.telemetry_dir.glob("*.jsonl"))

    def log_files(self) -> list[Path]:
        return sorted(self.logs_dir.glob("*.log"))

    def logs(self) -> list[LogFile]:
        """The job's logs named ``<node>.<rank>.log``: ranks in rank order, then the
        service logs (torchrun, supervisor, ...); empty when there is no logs/ yet."""
        try:
            names = os.listdir(self.logs_dir)
        except OSError:
            return []
        found = [parse_log_name(self.logs_dir / name) for name in names]
        return sorted((f for f in found if f is not None), key=_log_order)

    def complete_checkpoints(self) -> list[tuple[int, Path]]:
        """Committed checkpoints as (step, path), oldest first.

        A checkpoint is committed when its directory has been renamed to ``step_<n>``;
        temporary directories (any other name) are work in progress or debris.
        """
        found: list[tuple[int, Path]] = []
        if not self.checkpoints_dir.is_dir():
            return found
        for entry in self.checkpoints_dir.iterdir():
            name = entry.name
            if entry.is_dir() and name.startswith(CHECKPOINT_PREFIX):
                number = name[len(CHECKPOINT_PREFIX) :]
                if number.isdigit():
                    found.append((int(number), entry))
        found.sort()
        return found

    def latest_checkpoint(self) -> tuple[int, Path] | None:
        complete = self.complete_checkpoints()
        return complete[-1] if complete else None


@dataclass(frozen=True)
class LogFile:
    """One log of a job: a rank's stdout/stderr, or a service log (torchrun, supervisor)."""

    path: Path
    node: str
    rank: str
    """The rank number as text, or a service name (``torchrun``, ``supervisor``)."""

    @property
    def label(self) -> str:
        return f"{self.node}.{self.rank}"

    @property
    def is_rank(self) -> bool:
        return self.rank.isdigit()


def parse_log_name(path: Path) -> LogFile | None:
    """``logs/<node>.<rank>.log`` → LogFile; None for other files."""
    if path.suffix != ".log":
        return None
    node, dot, rank = path.stem.rpartition(".")
    if not dot or not node or not rank:
        return None
    return LogFile(path=path, node=node, rank=rank)


def _log_order(log: LogFile) -> tuple[int, int, str, str]:
    # Ranks (global numbers) in numeric order first, then the service logs.
    return (0 if log.is_rank else 1, int(log.rank) if log.is_rank else 0, log.node, log.rank)


def _sorted_by_stem_number(paths: Iterator[Path]) -> list[Path]:
    def key(path: Path) -> tuple[int, str]:
        stem = path.stem
        return (int(stem), stem) if stem.isdigit() else (1 << 62, stem)

    return sorted(paths, key=key)


def finite(value: object) -> float | None:
    """``value`` as a finite float, or None (bools, strings, NaN, None and integers too
    large for a float are not numbers)."""
    kind = type(value)
    # Exact float first: a telemetry record holds hundreds, and a refresh tick reads them all.
    if kind is float:
        return value if -math.inf < value < math.inf else None  # type: ignore[operator,return-value]
    if kind is bool or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def now_ts() -> float:
    """Wall-clock seconds since the epoch; every record's ``ts``."""
    return time.time()


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """Append one record as one line with a single write() (atomic w.r.t. other appenders)."""
    line = json.dumps(record, separators=(",", ":"), default=_json_default) + "\n"
    data = line.encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        written = os.write(fd, data)
        if written != len(data):  # pragma: no cover - only on a full disk
            raise OSError(f"short write to {path}: {written} of {len(data)} bytes")
    finally:
        os.close(fd)


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


@dataclass
class JsonlChunk:
    """What one incremental read of a JSON Lines file returned."""

    records: list[dict[str, Any]] = field(default_factory=list)
    offset: int = 0
    """Byte offset to pass to the next read: just past the last complete line."""
    bad_lines: int = 0
    """Complete lines that were not a JSON object (corruption), skipped."""


def read_jsonl(path: Path, offset: int = 0, max_bytes: int | None = None) -> JsonlChunk:
    """Read complete lines from ``offset``; a torn last line is left for the next read.

    A missing file reads as empty. ``max_bytes`` bounds one read so a UI tick stays cheap
    on a huge file; the caller keeps calling with the returned offset to catch up.
    """
    chunk = JsonlChunk(offset=offset)
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            data = handle.read() if max_bytes is None else handle.read(max_bytes)
    except FileNotFoundError:
        return chunk
    end = data.rfind(b"\n")
    if end < 0:
        return chunk
    for raw in data[: end + 1].splitlines():
        if not raw.strip():
            continue
        try:
            value = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            chunk.bad_lines += 1
            continue
        if isinstance(value, dict):
            chunk.records.append(value)
        else:
            chunk.bad_lines += 1
    chunk.offset = offset + end + 1
    return chunk


def read_all_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every complete record in a JSON Lines file (tolerant; see read_jsonl)."""
    return read_jsonl(path).records


def read_tail(path: Path, size_bytes: int) -> str:
    """The last ``size_bytes`` of a text file (a log), decoded leniently; "" if unreadable."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            end = handle.tell()
            handle.seek(max(0, end - size_bytes))
            return handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def tail_jsonl(path: Path, max_records: int, window_bytes: int = 1 << 20) -> list[dict[str, Any]]:
    """The last ``max_records`` complete records, reading at most ``window_bytes`` from the end."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return []
    start = max(0, size - window_bytes)
    chunk = read_jsonl(path, start)
    records = chunk.records
    if start > 0 and records:
        # The first line of the window is probably a fragment of a longer line.
        records = records[1:]
    return records[-max_records:] if max_records > 0 else []


def write_json_atomic(path: Path, value: Any) -> None:
    """Write a JSON document by writing a temporary file beside it and renaming it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(value, indent=2, sort_keys=False, default=_json_default) + "\n"
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)
