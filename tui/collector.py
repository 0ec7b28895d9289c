"""Garbage-collector settings for the long-lived TUI process.

After its first reads the TUI holds ~130k long-lived objects (2,000 jobs' registry
records, rows and progress facts), and each refresh tick makes and drops tens of
thousands of short-lived ones (parsed telemetry records, per-GPU views, strips).
With CPython's default thresholds (700, 10, 10) a tick ran about three young
collections, and the occasional full one walked every long-lived object: 2-5 ms of a
tick's CPU on average (``bench/tui_refresh.py``). Two standard remedies
(https://docs.python.org/3/library/gc.html):

* a higher young threshold, so collections run less often; objects that die within a
  tick (most of them) are freed by reference counting and never walked at all;
* ``gc.freeze()`` once the registry has been read, moving what exists then into the
  permanent generation, which collections skip (after one full collection, so no
  garbage is frozen with it).

Both are undone when the app exits, so an app run inside a test session leaves the
interpreter as it found it.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 10_000
"""Allocations (net of frees) between young collections; CPython's default is 700."""


class CollectorTuning:
    """``start`` when the app mounts, ``settle`` once the first reads are done, ``stop``
    when it exits."""

    def __init__(self) -> None:
        self._saved: tuple[int, ...] | None = None
        self.frozen = False

    def start(self) -> None:
        if self._saved is None:
            self._saved = gc.get_threshold()
            gen0, gen1, gen2 = self._saved
            gc.set_threshold(max(gen0, YOUNG_THRESHOLD), gen1, gen2)

    def settle(self) -> None:
        """Freeze what the first reads built (once)."""
        if self._saved is None or self.frozen:
            return
        gc.collect()
        gc.freeze()
        self.frozen = True

    def stop(self) -> None:
        if self.frozen:
            gc.unfreeze()
            self.frozen = False
        if self._saved is not None:
            gc.set_threshold(*self._saved)
            self._saved = None
