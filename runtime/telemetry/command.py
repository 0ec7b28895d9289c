"""``scalectl telemetry sample``: print samples of this machine (a debugging aid)."""

from __future__ import annotations

import json
import sys
import time
from typing import TextIO

from runtime.telemetry.errors import TelemetryInputError, check_interval, check_port
from runtime.telemetry.exporter import MetricsServer, start_metrics_server
from runtime.telemetry.sampler import Sampler
from runtime.telemetry.text import format_record


def sample_command(
    interval_s: float = 1.0,
    count: int | None = None,
    json_output: bool = False,
    per_core: bool = False,
    metrics_port: int | None = None,
    metrics_addr: str = "127.0.0.1",
    out: TextIO | None = None,
    err: TextIO | None = None,
    sampler: Sampler | None = None,
) -> int:
    """Print ``count`` samples (or until Ctrl-C), one interval apart; return how many.

    The first sample comes one interval after start, so its rates are real. The NVML
    notice, if any, goes to ``err`` once; with ``--json`` it is also in the first record.
    """
    out = out or sys.stdout
    err = err or sys.stderr
    check_interval(interval_s, "--interval")
    if count is not None and count < 1:
        raise TelemetryInputError(f"--count must be 1 or more (got {count}); omit it to run on.")
    if metrics_port is not None:
        check_port(metrics_port, "--metrics-port")

    def notice(message: str) -> None:
        print(f"notice: {message}", file=err, flush=True)

    if sampler is None:
        sampler = Sampler(interval_s=interval_s, per_core=per_core, on_notice=notice)
    server: MetricsServer | None = None
    taken = 0
    try:
        sampler.open()
        if metrics_port is not None:
            server = start_metrics_server(sampler, metrics_port, metrics_addr)
            print(f"serving metrics on {server.url}", file=err, flush=True)
        next_t = time.monotonic() + interval_s
        while count is None or taken < count:
            time.sleep(max(0.0, next_t - time.monotonic()))
            next_t += interval_s
            record = sampler.sample_once()
            if json_output:
                print(json.dumps(record, separators=(",", ":")), file=out, flush=True)
            else:
                print("\n".join(format_record(record)), file=out, flush=True)
            taken += 1
    except KeyboardInterrupt:
        pass
    finally:
        if server is not None:
            server.close()
        sampler.stop()
    return taken
