"""Why a rank failed, from its exit status and the tail of its log (pure functions).

The causes, checked in this order (the first that matches wins, because an OOM or a
collective timeout usually ends in a generic exception or a signal as well):

============== ===================================================================
``oom``         out of memory: CUDA/PyTorch OOM, ``std::bad_alloc``, ``MemoryError``
``collective_timeout`` NCCL watchdog or gloo timeout of a collective
``cuda_error``  CUDA error, illegal memory access, ECC error, XID
``peer_failure`` a collective failed because another rank went away (gloo
                "connection closed/reset by peer", NCCL remote error): a consequence
                of a failure elsewhere, not a cause of its own
``bad_input``   exit status 2, the reference trainer's "bad input" (restarting
                cannot help)
``exception``   an uncaught Python exception; the detail is its last line
``signal``      killed by a signal (exit status < 0 from Popen, or 128+N)
``exit``        any other non-zero exit status
============== ===================================================================
"""

from __future__ import annotations

import re
import signal
from dataclasses import dataclass

HEADER_PREFIX = "==== scalectl "
"""First line ``runtime.rank_exec`` writes on every start of a rank."""

RESTARTABLE = frozenset(
    {"oom", "collective_timeout", "cuda_error", "peer_failure", "exception", "signal", "exit",
     "hang", "node_lost"}
)  # fmt: skip
"""Causes the agent restarts for (within its budget); ``bad_input`` is not among them."""

_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "oom",
        re.compile(
            r"CUDA out of memory|OutOfMemoryError|std::bad_alloc|\bMemoryError\b"
            r"|Cannot allocate memory|out of memory",
            re.IGNORECASE,
        ),
    ),
    (
        "collective_timeout",
        re.compile(
            r"Watchdog caught collective operation timeout|NCCL.*[Tt]imeout|"
            r"[Gg]loo.*[Tt]imed? ?out|Timed out waiting .* for|DistBackendError.*[Tt]imeout"
        ),
    ),
    (
        "cuda_error",
        re.compile(
            r"CUDA error|illegal memory access|cudaError|uncorrectable ECC|ECC error|\bXid\b",
            re.IGNORECASE,
        ),
    ),
    (
        "peer_failure",
        re.compile(
            r"[Cc]onnection closed by peer|[Cc]onnection reset by peer|Broken pipe|"
            r"NCCL communicator was aborted|remote process exited|ProcessGroupGloo.*peer"
        ),
    ),
)

SECONDARY_CAUSES = ("peer_failure", "collective_timeout")
"""Causes that are another rank's failure seen from this one (its peer went away)."""


def is_secondary(error_text: str) -> bool:
    """Whether an error message reads as the failure of another rank (a peer's connection
    reset, a collective timing out), not this rank's own."""
    return any(cause in SECONDARY_CAUSES and pattern.search(error_text)
               for cause, pattern in _PATTERNS)  # fmt: skip


_RANK_PREFIX = re.compile(r"^\[rank\d+\]:\s*")
"""torch prefixes the uncaught exception's lines of a rank with ``[rank0]: ``."""
_EXCEPTION_LINE = re.compile(
    r"^(?:[A-Za-z_][\w.]*\.)?[A-Z]\w*(?:Error|Exception|Injected|Interrupt|Exit|Failure)\b.*$"
)


@dataclass(frozen=True)
class FailureCause:
    """What the agent concluded about one failed rank."""

    cause: str
    """One of the causes in the module docstring."""
    detail: str
    """One line for people: the exception line, the signal name, or the exit status."""
    exit_code: int | None
    """Exit status as torchrun reported it (negative: killed by that signal); None: unknown."""

    @property
    def restartable(self) -> bool:
        return self.cause in RESTARTABLE


def signal_of(exit_code: int | None) -> int | None:
    """The signal number an exit status stands for (``-9`` or ``137``), else None."""
    if exit_code is None:
        return None
    if exit_code < 0:
        return -exit_code
    if 128 < exit_code < 128 + 65:
        return exit_code - 128
    return None


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def current_attempt(log_text: str, pid: int | None = None) -> str:
    """The part of a rank log written by one start of the rank: the one whose header
    names ``pid`` (up to the next header), else the last one.

    By the time a failure is read, torchrun may have restarted the rank and a new header
    follows the failed attempt's output.
    """
    if pid is not None:
        index = log_text.rfind(f" pid={pid} ")
        if index >= 0:
            start = log_text.rfind(HEADER_PREFIX, 0, index)
            end = log_text.find(HEADER_PREFIX, index)
            return log_text[max(0, start) : end if end >= 0 else len(log_text)]
    index = log_text.rfind(HEADER_PREFIX)
    return log_text if index < 0 else log_text[index:]


def exception_line(log_text: str) -> str | None:
    """The last line that looks like a Python exception (``ValueError: boom``)."""
    for line in reversed(log_text.splitlines()):
        text = _RANK_PREFIX.sub("", line.strip())
        if _EXCEPTION_LINE.match(text):
            return text[:300]
    return None


def classify(exit_code: int | None, log_tail: str, pid: int | None = None) -> FailureCause:
    """Classify one rank failure from its exit status and the tail of its log (the part
    written by process ``pid``, when given)."""
    text = current_attempt(log_tail, pid)
    for cause, pattern in _PATTERNS:
        match = pattern.search(text)
        if match is not None:
            line = _line_at(text, match.start())
            return FailureCause(cause, line, exit_code)
    if exit_code == 2:
        return FailureCause("bad_input", exception_line(text) or _last_line(text), exit_code)
    exc = exception_line(text)
    signum = signal_of(exit_code)
    if exc is not None and signum is None:
        return FailureCause("exception", exc, exit_code)
    if signum is not None:
        return FailureCause("signal", f"killed by {signal_name(signum)}", exit_code)
    if exc is not None:
        return FailureCause("exception", exc, exit_code)
    return FailureCause("exit", f"exited with code {exit_code}", exit_code)


def _line_at(text: str, index: int) -> str:
    start = text.rfind("\n", 0, index) + 1
    end = text.find("\n", index)
    return text[start : end if end >= 0 else len(text)].strip()[:300]


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""
