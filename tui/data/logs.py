"""Per-rank log tails from ``logs/<node>.<rank>.log`` (appended across restarts).

Logs are plain text with no time on each line. Every rank start writes a header,
``==== scalectl 2024-06-10T12:00:01 job=... rank=0 ... attempt=0 ... ====``
(``runtime.rank_exec``), so a line read when the log is opened is stamped with the start
of the attempt that wrote it, and a line read later with the time the TUI read it
(:attr:`LogLine.stamp_kind` says which).
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from contract.jobdir import JobDir, LogFile

READ_LIMIT_BYTES = 1 << 20
"""Most bytes read from a log per poll."""
OPEN_WINDOW_BYTES = 1 << 20
"""How much of the end of a log is shown when it is opened."""

_HEADER = re.compile(r"^==== scalectl (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d) ")


def list_logs(jobdir: JobDir) -> list[LogFile]:
    """The job's logs: ranks in rank order, then service logs (torchrun, supervisor)."""
    return jobdir.logs()


def header_time(line: str) -> float | None:
    """The start time in a rank header line, or None for any other line."""
    match = _HEADER.match(line)
    if match is None:
        return None
    try:
        return time.mktime(time.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S"))
    except (ValueError, OverflowError):
        return None


@dataclass(frozen=True)
class LogLine:
    text: str
    stamp: float | None
    stamp_kind: str
    """``"attempt"``: start of the attempt that wrote it; ``"read"``: when the TUI read it."""


@dataclass
class LogTail:
    """New complete lines of one log file, starting near its end."""

    path: Path
    offset: int = -1
    inode: int | None = None
    partial: bytes = b""
    attempt_stamp: float | None = None
    exists: bool = False
    resets: int = 0

    def poll(self, now_s: float, *, flush: bool = False) -> list[LogLine]:
        """Lines added since the last poll; ``flush`` also returns an unterminated tail."""
        try:
            stat = os.stat(self.path)
        except OSError:
            self.exists = False
            return []
        self.exists = True
        fresh = self.offset < 0
        if not fresh and (stat.st_ino != self.inode or stat.st_size < self.offset):
            self.resets += 1
            fresh = True
        if fresh:
            self.inode = stat.st_ino
            self.offset = max(0, stat.st_size - OPEN_WINDOW_BYTES)
            self.partial = b""
        if stat.st_size <= self.offset and not (flush and self.partial):
            return []
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                data = handle.read(READ_LIMIT_BYTES)
        except OSError:
            return []
        skip_first = fresh and self.offset > 0
        self.offset += len(data)
        data = self.partial + data
        end = data.rfind(b"\n")
        if end < 0 and not flush:
            self.partial = data
            return []
        usable, self.partial = (data, b"") if flush else (data[: end + 1], data[end + 1 :])
        lines = usable.decode("utf-8", errors="replace").splitlines()
        if skip_first and lines:
            lines = lines[1:]  # the window began inside a line
        out: list[LogLine] = []
        for text in lines:
            text = text.replace("\t", "    ")
            started = header_time(text)
            if started is not None:
                self.attempt_stamp = started
            if fresh:
                out.append(LogLine(text, self.attempt_stamp, "attempt"))
            else:
                out.append(LogLine(text, now_s, "read"))
        return out
