"""The sampler: GPUs and host every ``interval_s``, one JSON line a sample, latest in memory.

See the package docstring (``runtime/telemetry/__init__.py``) for the record schema.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contract.jobdir import JobDir, append_jsonl
from runtime.telemetry.errors import TelemetryInputError, check_interval
from runtime.telemetry.host import HostSampler
from runtime.telemetry.nvml import NvmlSampler, NvmlUnavailable
from runtime.telemetry.snapshots import GpuSample, HostSample, as_dict

if TYPE_CHECKING:
    from runtime.telemetry.exporter import MetricsServer

log = logging.getLogger("scalectl.telemetry")

RECORD_VERSION = 1
"""Version of the telemetry record shape (``"v"`` in every line); bump on incompatible change."""

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def default_node_name() -> str:
    """This machine's short host name, made safe for a file name."""
    name = socket.gethostname().split(".")[0]
    name = _UNSAFE.sub("-", name).strip("-._")
    return name or "localhost"


def build_record(
    *,
    ts: float,
    node: str,
    seq: int,
    interval_s: float,
    host: HostSample,
    gpus: list[GpuSample],
    nvml: bool,
    driver_version: str | None,
    sample_cpu_s: float | None,
    notice: str | None = None,
) -> dict[str, Any]:
    """The JSON-ready record of one sample (pure)."""
    record: dict[str, Any] = {
        "v": RECORD_VERSION,
        "ts": round(ts, 3),
        "node": node,
        "seq": seq,
        "interval_s": interval_s,
        "nvml": nvml,
        "driver_version": driver_version,
        "sample_cpu_s": sample_cpu_s,
        "host": as_dict(host),
        "gpus": [as_dict(gpu) for gpu in gpus],
    }
    if notice is not None:
        record["notice"] = notice
    return record


class Sampler:
    """Samples GPUs (NVML) and host (psutil) and appends one line a sample to
    ``<job_dir>/telemetry/<node>.jsonl``.

    Use :meth:`start`/:meth:`stop` for a background thread, or call :meth:`sample_once`
    from a loop of your own. :attr:`latest` is the newest record (treat it as read-only).
    """

    def __init__(
        self,
        node: str | None = None,
        interval_s: float = 1.0,
        job_dir: JobDir | Path | str | None = None,
        *,
        gpus: bool = True,
        per_core: bool = False,
        per_interface: bool = True,
        pcie_blocking_fallback: bool = True,
        nvml_module: Any = None,
        psutil_module: Any = None,
        on_notice: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.node = node or default_node_name()
        self.interval_s = check_interval(interval_s)
        self.path: Path | None = None
        if job_dir is not None:
            root = job_dir if isinstance(job_dir, JobDir) else JobDir(Path(job_dir))
            try:
                self.path = root.telemetry_file(self.node)
            except ValueError as exc:
                raise TelemetryInputError(f"node: {exc}; pass a plain host name.") from None
        self._gpus_wanted = gpus
        self._pcie_fallback = pcie_blocking_fallback
        self._nvml_module = nvml_module
        self._host = HostSampler(
            per_core=per_core, per_interface=per_interface, psutil_module=psutil_module
        )
        self._on_notice = on_notice or log.warning
        self._clock = clock
        self._wall_clock = wall_clock
        self._nvml: NvmlSampler | None = None
        self._opened = False
        self._closed = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seq = 0
        self._latest: dict[str, Any] | None = None
        self.notice: str | None = None
        """Why there is no GPU data (shown once, and put in the first record), or None."""
        self.write_errors = 0
        self.sample_errors = 0

    # -- life cycle -------------------------------------------------------------------

    def open(self) -> None:
        """Initialise NVML (or fall back to host only, with the notice) and prime rates."""
        with self._lock:
            self._open_locked()

    def _open_locked(self) -> None:
        if self._opened:
            return
        self._opened = True
        if self._gpus_wanted:
            try:
                self._nvml = NvmlSampler.open(self._nvml_module, self._pcie_fallback)
            except NvmlUnavailable as exc:
                self.notice = str(exc)
                self._on_notice(self.notice)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._host.prime(self._clock())

    def start(self) -> Sampler:
        """Sample every ``interval_s`` in a daemon thread, first sample one interval from now."""
        if self._closed:
            raise RuntimeError("this Sampler was closed; make a new one")
        if self._thread is not None and self._thread.is_alive():
            return self
        self.open()
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name=f"scalectl-telemetry-{self.node}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the thread (if any) and release NVML. Idempotent."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)
        self._thread = None
        with self._lock:
            if self._nvml is not None:
                self._nvml.close()
                self._nvml = None
            self._closed = True

    close = stop

    def __enter__(self) -> Sampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def latest(self) -> dict[str, Any] | None:
        """The newest record, or None before the first sample."""
        return self._latest

    @property
    def gpu_count(self) -> int:
        return 0 if self._nvml is None else self._nvml.gpu_count

    # -- sampling ---------------------------------------------------------------------

    def sample_once(self) -> dict[str, Any]:
        """Take one sample now, append it to the file (if any) and make it :attr:`latest`."""
        with self._lock:
            if self._closed:
                raise RuntimeError("this Sampler was closed; make a new one")
            self._open_locked()
            cpu_start = time.thread_time()
            now = self._clock()
            gpus = self._nvml.sample(now) if self._nvml is not None else []
            host = self._host.sample(now)
            record = build_record(
                ts=self._wall_clock(),
                node=self.node,
                seq=self._seq,
                interval_s=self.interval_s,
                host=host,
                gpus=gpus,
                nvml=self._nvml is not None,
                driver_version=self._nvml.driver_version if self._nvml is not None else None,
                sample_cpu_s=round(time.thread_time() - cpu_start, 6),
                notice=self.notice if self._seq == 0 else None,
            )
            self._seq += 1
            self._latest = record
            if self.path is not None:
                self._write(self.path, record)
            return record

    def _write(self, path: Path, record: dict[str, Any]) -> None:
        try:
            append_jsonl(path, record)
        except OSError as exc:
            self.write_errors += 1
            if self.write_errors == 1:  # once: a full disk would otherwise flood the log
                log.warning("telemetry: cannot append to %s (%s); will keep trying", path, exc)

    def _run(self) -> None:
        next_t = self._clock() + self.interval_s
        while not self._stop.wait(max(0.0, next_t - self._clock())):
            try:
                self.sample_once()
            except Exception as exc:  # keep the agent's telemetry alive through a bad sample
                self.sample_errors += 1
                if self.sample_errors == 1:
                    log.warning("telemetry: a sample failed (%s: %s)", type(exc).__name__, exc)
            next_t += self.interval_s
            now = self._clock()
            if next_t < now:  # fell behind (suspended, overloaded): skip, do not burst
                next_t = now + self.interval_s


class TelemetryRun:
    """A started sampler and, optionally, its metrics server; :meth:`stop` ends both."""

    def __init__(self, sampler: Sampler, server: MetricsServer | None) -> None:
        self.sampler = sampler
        self.server = server

    @property
    def metrics_port(self) -> int | None:
        return None if self.server is None else self.server.port

    def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        self.sampler.stop()

    def __enter__(self) -> TelemetryRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_sampler(
    job_dir: JobDir | Path | str,
    node: str | None = None,
    interval_s: float = 1.0,
    metrics_port: int | None = None,
    metrics_addr: str = "127.0.0.1",
    **sampler_options: Any,
) -> TelemetryRun:
    """Start sampling into ``<job_dir>/telemetry/<node>.jsonl`` (what the node agent calls).

    With ``metrics_port`` (0 picks a free port) the latest sample is also served in
    Prometheus format on ``metrics_addr`` (loopback unless told otherwise). Returns at
    once; call ``.stop()`` on the result (or use it as a context manager) to end.
    """
    sampler = Sampler(node, interval_s, job_dir, **sampler_options)
    server = None
    if metrics_port is not None:
        from runtime.telemetry.exporter import start_metrics_server

        server = start_metrics_server(sampler, metrics_port, metrics_addr)
    try:
        sampler.start()
    except BaseException:
        if server is not None:
            server.close()
        raise
    return TelemetryRun(sampler, server)
