"""What the telemetry sampler costs: CPU seconds per sample, share of one core, RSS growth.

Runs, in this one process:
  host      host sampling only (psutil), the baseline;
  fake8     8 GPUs through the pynvml stand-in (tests/runtime/fake_pynvml.py) + host;
  fake8+io  the same, appending each record to telemetry/<node>.jsonl (what the agent does);
  thread    fake8+io in the background thread at --thread-interval, main thread asleep;
  scrape    rendering the Prometheus text of one 8-GPU record (what one scrape costs).

CPU time is process CPU (time.process_time) over back-to-back samples, so it includes
everything the sampler does. The stand-in answers in Python; real NVML calls are ioctls
into the driver and cost more (measure with a GPU: pytest -m gpu -s prints sample_cpu_s).

Usage: .venv/bin/python bench/telemetry_overhead.py [--samples 1000]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "runtime"))

from fake_pynvml import FakeGpu, FakeNvml  # noqa: E402

from contract.jobdir import JobDir, read_jsonl  # noqa: E402
from runtime.telemetry import Sampler  # noqa: E402


def eight_gpus() -> FakeNvml:
    gpus = [
        FakeGpu(
            uuid=f"GPU-{i:08x}-1111-2222-3333-444455556666",
            bus_id=f"00000000:{0x18 + i:02X}:00.0",
            pcie_tx_bytes=0,
            pcie_rx_bytes=0,
            nvlink_tx_kib=0,
            nvlink_rx_kib=0,
        )
        for i in range(8)
    ]
    return FakeNvml(gpus)


def measure(label: str, sampler: Sampler, samples: int, interval_s: float) -> float:
    """Run ``samples`` back-to-back samples; print and return CPU seconds per sample."""
    process = psutil.Process()
    for _ in range(200):  # warm-up: imports, caches, first-touch allocations
        sampler.sample_once()
    rss_before = process.memory_info().rss
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(samples):
        sampler.sample_once()
    cpu = time.process_time() - cpu0
    wall = time.perf_counter() - wall0
    rss_after = process.memory_info().rss
    per_sample = cpu / samples
    line = len(json.dumps(sampler.latest, separators=(",", ":"))) + 1
    print(
        f"{label:9s} cpu {per_sample * 1e3:7.3f} ms/sample  wall {wall / samples * 1e3:7.3f} ms"
        f"  = {per_sample / interval_s * 100:6.3f}% of one core at {interval_s:g} s"
        f"  rss {(rss_after - rss_before) / 1024:+8.0f} KiB over {samples} samples"
        f"  line {line} B"
    )
    return per_sample


def timed(fn: Callable[[], object], repeat: int) -> float:
    cpu0 = time.process_time()
    for _ in range(repeat):
        fn()
    return (time.process_time() - cpu0) / repeat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=1.0, help="interval for the %% figure")
    parser.add_argument("--thread-interval", type=float, default=0.05)
    parser.add_argument("--thread-seconds", type=float, default=3.0)
    args = parser.parse_args()
    n, interval = args.samples, args.interval
    print(
        f"telemetry_overhead: {n} samples each, python {sys.version.split()[0]}, "
        f"{psutil.cpu_count()} CPUs"
    )

    host = Sampler("bench", interval, gpus=False)
    base = measure("host", host, n, interval)
    host.stop()

    fake = Sampler("bench", interval, nvml_module=eight_gpus())
    gpu8 = measure("fake8", fake, n, interval)

    from prometheus_client import generate_latest

    from runtime.telemetry.exporter import make_registry

    registry = make_registry(fake)
    scrape = timed(lambda: generate_latest(registry), 200)
    fake.stop()

    with tempfile.TemporaryDirectory() as tmp:
        io = Sampler("bench", interval, tmp, nvml_module=eight_gpus())
        gpu8_io = measure("fake8+io", io, n, interval)
        io.stop()

        threaded = Sampler("bench", args.thread_interval, Path(tmp) / "t", nvml_module=eight_gpus())
        cpu0 = time.process_time()
        threaded.start()
        time.sleep(args.thread_seconds)
        threaded.stop()
        cpu = time.process_time() - cpu0
        written = len(read_jsonl(JobDir(Path(tmp) / "t").telemetry_file("bench")).records)
        per_sample = cpu / max(1, written)
        print(
            f"thread    cpu {per_sample * 1e3:7.3f} ms/sample  {written} samples in "
            f"{args.thread_seconds:g} s at {args.thread_interval:g} s"
            f"  = {per_sample / interval * 100:6.3f}% of one core at {interval:g} s"
        )

    print(f"scrape    cpu {scrape * 1e3:7.3f} ms per /metrics render of an 8-GPU sample")
    print(
        f"ratio     fake8/host {gpu8 / base:5.2f}x   fake8+io/fake8 {gpu8_io / gpu8:5.2f}x   "
        f"target < 2% of one core at 1 s: {'met' if gpu8_io / interval < 0.02 else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
