"""Reading and following a job's logs (``scalectl logs``), for any backend.

The follower keeps a byte offset per file and only ever hands out complete lines, so
a line being written is never split; new files (a rank that joined after a resize, a
restart on another node) are picked up on the next poll.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from launcher.backends.base import LogFile
from launcher.errors import LaunchInputError

_READ_LIMIT = 1 << 20


@dataclass(frozen=True)
class LogLine:
    source: LogFile
    text: str
    """The line without its newline."""


def select_logs(logs: list[LogFile], rank: str | None, node: str | None) -> list[LogFile]:
    """Logs matching ``rank`` (a number or a service name) and ``node`` (None: any)."""
    return [
        log
        for log in logs
        if (rank is None or log.rank == rank) and (node is None or log.node == node)
    ]


def check_selection(logs: list[LogFile], rank: str | None, node: str | None) -> None:
    """Refuse a ``--rank``/``--node`` that names no log of the job (exit 2 listing the
    ones it has), rather than printing nothing and exiting 0. A job with no logs yet is
    not refused: its ranks have not started."""
    if rank is not None and not (rank.isdigit() or rank.isidentifier()):
        raise LaunchInputError(
            f"--rank {rank}: give a rank number (0, 1, ...) or a service name "
            "(torchrun, supervisor)"
        )
    if not logs or select_logs(logs, rank, node):
        return
    ranks = sorted({log.rank for log in logs}, key=lambda r: (not r.isdigit(), r.zfill(9)))
    nodes = sorted({log.node for log in logs})
    if node is not None and all(log.node != node for log in logs):
        raise LaunchInputError(f"--node {node}: this job has logs on {', '.join(nodes)}")
    raise LaunchInputError(
        f"--rank {rank}: this job has logs for {', '.join(ranks)}"
        + (f" on node {node}" if node is not None else "")
    )


def tail_offset(path: Path, lines: int) -> int:
    """Byte offset where the last ``lines`` complete lines of ``path`` start."""
    if lines <= 0:
        try:
            return path.stat().st_size
        except OSError:
            return 0
    try:
        with open(path, "rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            start = max(0, size - _READ_LIMIT)
            handle.seek(start)
            data = handle.read()
    except OSError:
        return 0
    end = data.rfind(b"\n")
    if end < 0:
        return start
    cut = end
    for _ in range(lines):
        cut = data.rfind(b"\n", 0, cut)
        if cut < 0:
            return start
    return start + cut + 1


@dataclass
class LogFollower:
    """Hands out new complete lines of a changing set of log files."""

    list_logs: Callable[[], list[LogFile]]
    """Returns the logs to read now (already filtered)."""
    last_lines: int | None = None
    """Start each file this many lines from its end (None: from the beginning)."""
    offsets: dict[Path, int] = field(default_factory=dict)
    partial: dict[Path, bytes] = field(default_factory=dict)

    def poll(self, *, flush: bool = False) -> list[LogLine]:
        """New complete lines from every log; ``flush`` also returns unterminated tails."""
        out: list[LogLine] = []
        for log in self.list_logs():
            if log.path not in self.offsets:
                self.offsets[log.path] = (
                    0 if self.last_lines is None else tail_offset(log.path, self.last_lines)
                )
            out.extend(self._read(log, flush))
        return out

    def _read(self, log: LogFile, flush: bool) -> list[LogLine]:
        offset = self.offsets[log.path]
        try:
            with open(log.path, "rb") as handle:
                handle.seek(offset)
                data = handle.read(_READ_LIMIT)
        except OSError:
            return []
        if not data:
            return []
        end = data.rfind(b"\n")
        if end < 0 and not flush:
            return []
        usable = data if flush else data[: end + 1]
        self.offsets[log.path] = offset + len(usable)
        text = usable.decode("utf-8", errors="replace")
        return [LogLine(log, line) for line in text.splitlines()]


def follow(
    follower: LogFollower,
    is_done: Callable[[], bool],
    *,
    poll_s: float = 0.25,
    done_check_s: float = 1.0,
) -> Iterator[LogLine]:
    """Yield lines as they appear until ``is_done()``, then the rest of every file."""
    next_check = 0.0
    while True:
        lines = follower.poll()
        yield from lines
        now = time.monotonic()
        if now >= next_check:
            next_check = now + done_check_s
            if is_done():
                yield from follower.poll(flush=True)
                return
        if not lines:
            time.sleep(poll_s)
