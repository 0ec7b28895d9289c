"""``runtime.progress``: the tiny API a training script calls to report its progress.

Usage, in any training script (ours or a user's)::

    from runtime import progress

    progress.report(step=step, loss=loss, tokens=tokens_seen, step_time_s=dt, lr=lr)
    progress.event("checkpoint_saved", step=step, path=str(path))

Where records go:

* ``report`` appends one JSON object a line to ``<job_dir>/progress/<rank>.jsonl``;
* ``event`` appends one to ``<job_dir>/events.jsonl`` (the job's lifecycle log).

The job directory comes from ``SCALECTL_JOB_DIR`` and the rank from ``RANK`` (default 0),
world size from ``WORLD_SIZE`` (default 1), read once at the first call; ``configure``
sets them explicitly instead. Without a job directory every call returns at once and
writes nothing, so a script keeps working outside scalectl.

Record fields (``report``): ``ts`` (seconds since the epoch), ``rank``, ``step``, then
``loss``, ``tokens``, ``step_time_s`` when given, ``world_size``, then every extra keyword
(``lr``, ``grad_norm``, ``tokens_per_s``, ``eval_loss``, ...; an MoE model's
``moe_tokens_per_expert``, the routed assignments each expert processed in the step over
all ranks, summed over the MoE layers, ``moe_dropped_tokens``, the assignments dropped for
capacity, and ``moe_aux_loss``, the load-balancing loss per micro-batch summed over the
layers). By convention, which the
reference trainer follows, ``step`` counts completed optimizer steps since the start of the
job (continuing across restarts), ``tokens`` is the cumulative number of tokens processed
by *all* ranks together since step 0 (so every rank reports the same value, and it stays
meaningful when the world size changes), and ``step_time_s`` is this rank's wall time for
the step. Non-finite floats are written as the JSON extensions ``NaN``/``Infinity``, which
Python's ``json`` (and so ``contract.jobdir.read_jsonl``) reads back.

Writing: the progress file is opened once with ``O_APPEND`` and kept open; each record is
one ``write()`` of one whole line, so concurrent writers never interleave within a line
and readers see at most a torn last line (which ``contract.jobdir`` readers skip). A
reporting failure (unwritable directory, full disk) prints one warning to stderr and
turns reporting off: telemetry must never stop training.

Standard library only: this module must not import torch.
"""

from __future__ import annotations

import faulthandler
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from contract import env
from contract.events import EventKind, event_record
from contract.jobdir import EVENTS_FILE, PROGRESS_DIR, append_jsonl

STACK_DUMP_SIGNAL = signal.SIGUSR1
"""Signal on which a rank that called :func:`enable_stack_dumps` writes the Python stacks
of all its threads to stderr (its rank log). Not a stop signal: SIGTERM and SIGUSR2 mean
"checkpoint and exit" (``runtime.train``; Slurm's ``--signal``), so USR1 is free."""


def enable_stack_dumps() -> None:
    """Dump every thread's Python stack to stderr on :data:`STACK_DUMP_SIGNAL`.

    faulthandler's handler is C code that runs in the signal handler itself, so it works
    while the main thread is blocked inside a collective (a hang). The node agent uses it
    when py-spy is not installed; it sends the signal only to processes whose
    ``/proc/<pid>/status`` shows the signal as caught, so a script that never called
    this is never killed by it.
    """
    faulthandler.register(STACK_DUMP_SIGNAL, file=sys.stderr, all_threads=True, chain=False)


class _Reporter:
    """Where this process reports to; ``fd`` is opened lazily at the first record."""

    __slots__ = ("enabled", "events_path", "fd", "progress_path", "rank", "world_size")

    def __init__(self, job_dir: Path | None, rank: int, world_size: int) -> None:
        self.enabled = job_dir is not None
        self.rank = rank
        self.world_size = world_size
        self.fd = -1
        if job_dir is None:
            self.progress_path = self.events_path = Path()
        else:
            self.progress_path = job_dir / PROGRESS_DIR / f"{rank}.jsonl"
            self.events_path = job_dir / EVENTS_FILE


_reporter: _Reporter | None = None


def _int_env(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def _from_env() -> _Reporter:
    global _reporter
    _reporter = _Reporter(env.job_dir(), _int_env("RANK", 0), _int_env("WORLD_SIZE", 1))
    return _reporter


def configure(
    job_dir: str | os.PathLike[str] | None = None,
    rank: int | None = None,
    world_size: int | None = None,
) -> bool:
    """Set where reports go, overriding the environment; returns whether reporting is on.

    ``job_dir=None`` falls back to ``SCALECTL_JOB_DIR`` (and so may turn reporting off);
    ``rank``/``world_size`` of ``None`` fall back to ``RANK``/``WORLD_SIZE``.
    """
    global _reporter
    close()
    env_dir = env.job_dir()
    chosen = job_dir if job_dir is not None else env_dir
    _reporter = _Reporter(
        Path(chosen) if chosen is not None else None,
        _int_env("RANK", 0) if rank is None else int(rank),
        _int_env("WORLD_SIZE", 1) if world_size is None else int(world_size),
    )
    return _reporter.enabled


def set_enabled(enabled: bool) -> None:
    """Pause or resume reporting without forgetting the configuration (used by benches)."""
    reporter = _reporter or _from_env()
    reporter.enabled = enabled and reporter.progress_path != Path()


def is_enabled() -> bool:
    """Whether ``report``/``event`` currently write anything."""
    return (_reporter or _from_env()).enabled


def close() -> None:
    """Close the kept-open progress file (reopened at the next ``report``)."""
    if _reporter is not None and _reporter.fd >= 0:
        try:
            os.close(_reporter.fd)
        finally:
            _reporter.fd = -1


def report(
    step: int,
    loss: float | None = None,
    tokens: int | None = None,
    step_time_s: float | None = None,
    **extra: Any,
) -> None:
    """Append one progress record for ``step`` to ``progress/<rank>.jsonl``.

    Fields left as ``None`` are omitted. ``extra`` values should be JSON values (numbers,
    strings, lists, dicts); objects with ``.item()`` (one-element tensors, NumPy scalars)
    are converted, and anything else is written as ``str(value)``.
    """
    reporter = _reporter or _from_env()
    if not reporter.enabled:
        return
    record: dict[str, Any] = {"ts": time.time(), "rank": reporter.rank, "step": step}
    if loss is not None:
        record["loss"] = loss
    if tokens is not None:
        record["tokens"] = tokens
    if step_time_s is not None:
        record["step_time_s"] = step_time_s
    record["world_size"] = reporter.world_size
    if extra:
        record.update(extra)
    try:
        data = (json.dumps(record, separators=(",", ":"), default=_json_default) + "\n").encode()
        if reporter.fd < 0:
            reporter.progress_path.parent.mkdir(parents=True, exist_ok=True)
            reporter.fd = os.open(
                reporter.progress_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644
            )
        written = os.write(reporter.fd, data)
        if written != len(data):
            raise OSError(f"short write: {written} of {len(data)} bytes")
    except (OSError, TypeError, ValueError) as exc:
        _give_up(reporter, reporter.progress_path, exc)


def event(name: EventKind, **fields: Any) -> None:
    """Append one lifecycle event ``{"ts", "event": name, "rank", **fields}`` to events.jsonl.

    ``name`` is a ``contract.events.EventKind`` (an unknown kind raises ValueError).

    Events are rare, so each opens, appends one line with one ``write()``, and closes.
    """
    reporter = _reporter or _from_env()
    if not reporter.enabled:
        return
    record = event_record(name, rank=reporter.rank, **fields)
    try:
        append_jsonl(reporter.events_path, record)
    except (OSError, TypeError, ValueError) as exc:
        _give_up(reporter, reporter.events_path, exc)


def _give_up(reporter: _Reporter, path: Path, exc: Exception) -> None:
    reporter.enabled = False
    print(
        f"runtime.progress: cannot write {path} ({exc}); progress reporting is off",
        file=sys.stderr,
        flush=True,
    )


def _json_default(value: Any) -> Any:
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    item = getattr(value, "item", None)
    if callable(item):  # torch tensors and NumPy scalars
        return item()
    # A value we cannot represent is written as its text rather than dropping the record.
    return str(value)
