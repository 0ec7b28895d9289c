"""Start-up time of `scalectl --help` against `python -c pass`, measured in the same run.

Target (issue 2): `scalectl --help` under 0.3 s on the 2-core dev machine. The ratio to a
bare interpreter start is printed so the figure can be compared across machines.

    .venv/bin/python bench/cli_startup.py [--repeat 15]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

TARGET_S = 0.3


def time_command(argv: list[str], repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        samples.append(time.perf_counter() - start)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    python = sys.executable
    # Warm the page cache and .pyc files so the first sample is not an outlier.
    time_command([python, "-m", "scalectl", "--help"], 2)
    baseline = time_command([python, "-c", "pass"], args.repeat)
    help_times = time_command([python, "-m", "scalectl", "--help"], args.repeat)
    version_times = time_command([python, "-m", "scalectl", "--version"], args.repeat)
    base_s = statistics.median(baseline)
    for label, samples in (("--help", help_times), ("--version", version_times)):
        median_s = statistics.median(samples)
        verdict = "meets" if median_s < TARGET_S else "MISSES"
        print(
            f"scalectl {label}: median {median_s * 1000:.0f} ms (min {min(samples) * 1000:.0f} ms)"
            f" | python -c pass: {base_s * 1000:.0f} ms | ratio {median_s / base_s:.1f}x"
            f" | {verdict} the {TARGET_S * 1000:.0f} ms target"
        )


if __name__ == "__main__":
    main()
