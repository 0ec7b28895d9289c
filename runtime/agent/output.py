"""torchrun's output as the agent reads it: copied line by line to the agent's own output,
with torchrun's worker-failure reports (``runtime.agent.torchrun.parse_failure``) handed
to a callback.

Why the agent can read it itself, not only a thread: torchrun logs the failure of a round
(``failed (exitcode: -9) local_rank: 1 (pid: ...)``) after it has stopped that round's
workers and before it starts the next round's (``torch.distributed.elastic``:
``SubprocessContext._poll`` logs, then ``SimpleElasticAgent._restart_workers``). So once a
scan of ``/proc`` has seen the restarted workers, the report is already in the pipe.
:meth:`TorchrunOutput.drain` reads everything the pipe holds at the moment it is called;
the agent calls it after every scan, so it handles a restart only after the failure that
caused it, however the copying thread happened to be scheduled. The thread keeps the
output flowing while the agent's loop is busy elsewhere (a stack dump, a back-off).
"""

from __future__ import annotations

import os
import select
import threading
from collections.abc import Callable
from typing import IO

from runtime.agent.torchrun import FailureReport, parse_failure

_CHUNK_BYTES = 65536
"""One read; a pipe holds 64 KiB by default on Linux (pipe(7))."""
_IDLE_WAIT_S = 0.5
"""How long the thread waits for output before it looks again (it also wakes on output)."""


class TorchrunOutput:
    """Reads torchrun's merged stdout/stderr pipe (see the module docstring)."""

    def __init__(
        self,
        pipe: IO[bytes],
        out: IO[str],
        on_failure: Callable[[FailureReport], None],
    ) -> None:
        self._pipe = pipe  # kept referenced: its descriptor must stay open while we read it
        self._fd = pipe.fileno()
        os.set_blocking(self._fd, False)
        self._out = out
        self._on_failure = on_failure
        self._partial = b""
        self._eof = False
        self._lock = threading.Lock()
        """Held while a read and the handling of what it returned happen, so a caller of
        :meth:`drain` never returns while another holds bytes not yet handled."""
        self._thread = threading.Thread(target=self._follow, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def drain(self) -> bool:
        """Read and handle everything in the pipe now; False once torchrun's end of the
        pipe is closed (every line handled, the last one even without a newline)."""
        with self._lock:
            while not self._eof:
                try:
                    data = os.read(self._fd, _CHUNK_BYTES)
                except BlockingIOError:
                    return True
                except OSError:
                    data = b""
                if not data:
                    self._eof = True
                    if self._partial:
                        self._line(self._partial)
                        self._partial = b""
                    break
                *lines, self._partial = (self._partial + data).split(b"\n")
                for raw in lines:
                    self._line(raw + b"\n")
            return False

    def finish(self, timeout_s: float) -> None:
        """After torchrun exited: handle all it wrote, then give the thread ``timeout_s``
        to copy what its leftover children (which inherited the pipe) still write."""
        self.drain()
        self._thread.join(timeout=timeout_s)

    def _follow(self) -> None:
        while True:
            try:
                select.select([self._fd], [], [], _IDLE_WAIT_S)
            except (OSError, ValueError):
                return
            if not self.drain():
                return

    def _line(self, raw: bytes) -> None:
        line = raw.decode("utf-8", errors="replace")
        self._out.write(line)
        self._out.flush()
        report = parse_failure(line)
        if report is not None:
            self._on_failure(report)
