"""Incremental readers of growing job files: each tick reads only the bytes added since.

A reader keeps a byte offset per file (``contract.jobdir.read_jsonl`` hands back the
offset just past the last complete line, so a torn last line is read on a later tick),
starts a long file near its end (the UI shows recent history, not a whole run), and
notices a file that was replaced or truncated (inode changed, or shorter than the
offset) and starts it again. Corrupt lines are counted, never raised.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contract.jobdir import read_jsonl

READ_LIMIT_BYTES = 4 << 20
"""Most bytes one poll reads from one file; a file further behind catches up next tick."""


def start_offset(path: Path, size: int, window_bytes: int) -> int:
    """Where to start reading the last ``window_bytes`` of a file: after a newline.

    The window's first line is almost always a fragment of a longer line, so the reader
    starts after the first newline inside the window (not counting it as corruption).
    """
    if size <= window_bytes:
        return 0
    start = size - window_bytes
    try:
        with open(path, "rb") as handle:
            handle.seek(start)
            while True:
                block = handle.read(64 * 1024)
                if not block:
                    return size
                cut = block.find(b"\n")
                if cut >= 0:
                    return start + cut + 1
                start += len(block)
    except OSError:
        return 0


@dataclass
class JsonlTail:
    """One JSON Lines file read incrementally (see module docstring)."""

    path: Path
    window_bytes: int = 1 << 20
    """On the first read (and after a reset), start this many bytes before the end."""
    offset: int = 0
    inode: int | None = None
    started: bool = False
    bad_lines: int = 0
    """Corrupt lines skipped so far."""
    exists: bool = False
    resets: int = 0
    """Times the file was replaced or truncated under us."""

    def poll(self, max_bytes: int = READ_LIMIT_BYTES) -> list[dict[str, Any]]:
        """New complete records since the last poll (empty when the file is missing)."""
        try:
            stat = os.stat(self.path)
        except OSError:
            self.exists = False
            return []
        self.exists = True
        if self.started and (stat.st_ino != self.inode or stat.st_size < self.offset):
            self.started = False
            self.resets += 1
        if not self.started:
            self.inode = stat.st_ino
            self.offset = start_offset(self.path, stat.st_size, self.window_bytes)
            self.started = True
        if stat.st_size <= self.offset:
            return []
        # Ask for what is there, not for max_bytes: a buffered read of n bytes allocates n
        # first, and 4 MiB per file per tick was most of the cost of following a file.
        chunk = read_jsonl(self.path, self.offset, min(max_bytes, stat.st_size - self.offset))
        self.offset = chunk.offset
        self.bad_lines += chunk.bad_lines
        if not chunk.records and chunk.offset < stat.st_size and not chunk.bad_lines:
            # One line longer than max_bytes: skip it rather than stall on it forever.
            self._skip_long_line(stat.st_size, max_bytes)
        return chunk.records

    def _skip_long_line(self, size: int, max_bytes: int) -> None:
        if size - self.offset < max_bytes:
            return  # only a torn last line: wait for its end
        self.offset = start_offset(self.path, size, size - self.offset - max_bytes)
        self.bad_lines += 1


@dataclass
class TailSet:
    """Several JSON Lines files of one directory read together (telemetry/<node>.jsonl)."""

    window_bytes: int = 1 << 20
    tails: dict[Path, JsonlTail] = field(default_factory=dict)

    def poll(self, paths: list[Path]) -> dict[Path, list[dict[str, Any]]]:
        found: dict[Path, list[dict[str, Any]]] = {}
        for path in paths:
            tail = self.tails.get(path)
            if tail is None:
                tail = self.tails[path] = JsonlTail(path, self.window_bytes)
            found[path] = tail.poll()
        return found

    @property
    def bad_lines(self) -> dict[Path, int]:
        return {path: tail.bad_lines for path, tail in self.tails.items() if tail.bad_lines}
