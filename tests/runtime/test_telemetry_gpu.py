"""The real NVML sampler on a real GPU; skipped, with the reason, where there is none."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from contract.jobdir import JobDir, read_jsonl
from runtime.telemetry import NvmlSampler, NvmlUnavailable, Sampler
from runtime.telemetry.snapshots import as_dict


@pytest.fixture
def nvml() -> NvmlSampler:
    try:
        sampler = NvmlSampler.open()
    except NvmlUnavailable as exc:
        pytest.skip(f"needs an NVIDIA GPU with NVML: {exc}")
    yield sampler
    sampler.close()


@pytest.mark.gpu
def test_real_gpus_give_plausible_values(nvml: NvmlSampler) -> None:
    first = nvml.sample(time.monotonic())
    time.sleep(0.2)
    gpus = nvml.sample(time.monotonic())
    assert len(gpus) == len(first) == nvml.gpu_count >= 1
    for gpu in gpus:
        print(json.dumps(as_dict(gpu)))  # the figures to note on the issue (pytest -s)
        assert gpu.error is None, gpu.error
        assert gpu.uuid is not None and gpu.uuid.startswith(("GPU-", "MIG-"))
        assert gpu.name and gpu.bus_id
        assert gpu.memory_total_mib is not None and gpu.memory_total_mib > 1024
        assert gpu.memory_used_mib is not None and 0 <= gpu.memory_used_mib <= gpu.memory_total_mib
        assert gpu.utilization_gpu_percent is None or 0 <= gpu.utilization_gpu_percent <= 100
        assert gpu.power_w is None or 0 < gpu.power_w < 2000
        assert gpu.temperature_c is None or 0 < gpu.temperature_c < 120
        assert gpu.sm_clock_mhz is None or gpu.sm_clock_mhz >= 0
        assert gpu.clock_event_reasons is None or isinstance(gpu.clock_event_reasons, tuple)
        if gpu.energy_j is not None and first[gpu.index].energy_j is not None:
            assert gpu.energy_j >= first[gpu.index].energy_j  # a monotonic counter


@pytest.mark.gpu
def test_real_sampler_writes_gpu_records(nvml: NvmlSampler, tmp_path: Path) -> None:
    sampler = Sampler("gpu-node", 0.1, tmp_path)
    for _ in range(3):
        sampler.sample_once()
    sampler.stop()
    records = read_jsonl(JobDir(tmp_path).telemetry_file("gpu-node")).records
    assert len(records) == 3 and records[0]["nvml"] is True and "notice" not in records[0]
    assert len(records[-1]["gpus"]) == nvml.gpu_count
    print(f"sample_cpu_s per sample: {[r['sample_cpu_s'] for r in records]}")
