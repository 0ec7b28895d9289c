"""The NVML sampler against a stand-in shaped like pynvml: values, each error class, lost
GPUs, missing NVML, XID events, clock-event reasons and throughput counters."""

from __future__ import annotations

import sys

import fake_pynvml as fake
import pytest
from fake_pynvml import FakeGpu, FakeNvml

from runtime.telemetry import NvmlSampler, NvmlUnavailable, decode_clock_event_reasons

FIELDS_BY_FUNCTION = {
    "nvmlDeviceGetUtilizationRates": ("utilization_gpu_percent", "utilization_memory_percent"),
    "nvmlDeviceGetMemoryInfo": ("memory_used_mib", "memory_free_mib", "memory_total_mib"),
    "nvmlDeviceGetPowerUsage": ("power_w",),
    "nvmlDeviceGetEnforcedPowerLimit": ("power_limit_w",),
    "nvmlDeviceGetTotalEnergyConsumption": ("energy_j",),
    "nvmlDeviceGetTemperature": ("temperature_c",),
    "nvmlDeviceGetClockInfo": ("sm_clock_mhz", "memory_clock_mhz"),
    "nvmlDeviceGetTotalEccErrors": ("ecc_volatile_corrected", "ecc_volatile_uncorrected"),
    "nvmlDeviceGetPcieThroughput": ("pcie_tx_kb_per_s", "pcie_rx_kb_per_s"),
}
ALL_VALUE_FIELDS = sorted({f for fields in FIELDS_BY_FUNCTION.values() for f in fields})
TRANSIENT = [fake.NO_PERMISSION, fake.UNKNOWN, fake.TIMEOUT, fake.CORRUPTED_INFOROM]
PERMANENT = [fake.NOT_SUPPORTED, fake.FUNCTION_NOT_FOUND]


def open_sampler(nv: FakeNvml) -> NvmlSampler:
    return NvmlSampler.open(nv)


def test_every_field_is_read_and_converted_to_its_unit() -> None:
    nv = FakeNvml(8)
    sampler = open_sampler(nv)
    gpus = sampler.sample(0.0)
    assert [g.index for g in gpus] == list(range(8))
    g = gpus[3]
    assert g.uuid == "GPU-00000003-0000-0000-0000-000000000000"
    assert g.bus_id == "00000000:1B:00.0"
    assert g.name == "NVIDIA H100 80GB HBM3"
    assert (g.utilization_gpu_percent, g.utilization_memory_percent) == (97, 41)
    assert g.memory_total_mib == 80 * 1024
    assert g.memory_used_mib == 60 * 1024
    assert g.memory_free_mib == 20 * 1024
    assert g.power_w == pytest.approx(612.35)
    assert g.power_limit_w == 700.0
    assert g.energy_j == pytest.approx(123456.789)
    assert g.temperature_c == 65
    assert (g.sm_clock_mhz, g.memory_clock_mhz) == (1980, 2619)
    assert g.clock_event_reasons == ("sw_power_cap",)
    assert g.clock_event_reasons_mask == 0x4
    assert (g.ecc_volatile_corrected, g.ecc_volatile_uncorrected) == (2, 0)
    assert (g.pcie_tx_kb_per_s, g.pcie_rx_kb_per_s) == (1000.0, 2000.0)
    assert g.nvlink_tx_kb_per_s is None  # this fake GPU has no NVLink
    assert g.xid_events == () and g.last_xid is None and g.xid_total == 0
    assert g.errors is None and g.error is None
    assert sampler.driver_version == "550.54.15"
    sampler.close()


@pytest.mark.parametrize("code", PERMANENT + TRANSIENT)
@pytest.mark.parametrize("function", sorted(FIELDS_BY_FUNCTION))
def test_a_failing_call_blanks_only_its_own_fields(function: str, code: int) -> None:
    nv = FakeNvml(2)
    nv.fail(function, code, gpu=0)
    sampler = open_sampler(nv)
    broken, healthy = sampler.sample(0.0)
    for name in ALL_VALUE_FIELDS:
        if name in FIELDS_BY_FUNCTION[function]:
            assert getattr(broken, name) is None, name
        else:
            assert getattr(broken, name) is not None, name
        assert getattr(healthy, name) is not None, name
    assert broken.error is None  # the GPU is still there
    if code in PERMANENT:
        assert broken.errors is None  # "not supported" is normal, not an error
        calls = nv.calls[function]
        sampler.sample(1.0)
        # asked again for the healthy GPU only: a field NVML cannot give is not re-queried
        assert nv.calls[function] - calls == calls // 2
    else:
        assert broken.errors is not None
        reason = next(iter(broken.errors.values()))
        assert reason.startswith(type(fake.NVMLError(code)).__name__.removeprefix("NVMLError_"))
        nv.heal(function, gpu=0)
        assert getattr(sampler.sample(1.0)[0], FIELDS_BY_FUNCTION[function][0]) is not None


def test_non_nvml_exceptions_are_contained_too() -> None:
    nv = FakeNvml(1)
    sampler = open_sampler(nv)

    def broken(handle: object) -> int:
        raise OSError("ioctl failed")

    nv.nvmlDeviceGetPowerUsage = broken  # type: ignore[method-assign]
    (gpu,) = sampler.sample(0.0)
    assert gpu.power_w is None
    assert gpu.errors == {"power_w": "OSError: ioctl failed"}
    assert gpu.temperature_c == 65


def test_functions_missing_from_old_bindings_are_n_a() -> None:
    nv = FakeNvml(1)
    nv.remove("nvmlDeviceGetTotalEnergyConsumption")
    nv.remove("nvmlDeviceGetFieldValues")
    nv.remove("nvmlEventSetCreate")
    sampler = open_sampler(nv)
    (gpu,) = sampler.sample(0.0)
    assert gpu.energy_j is None
    assert gpu.xid_events is None and gpu.xid_total is None
    assert gpu.pcie_tx_kb_per_s == 1000.0  # the blocking query still works
    assert gpu.errors is None


def test_clock_event_reasons_fall_back_to_the_throttle_reasons_name() -> None:
    nv = FakeNvml([FakeGpu(clock_reasons=0x4 | 0x40 | 0x1000)])
    nv.fail("nvmlDeviceGetCurrentClocksEventReasons", fake.FUNCTION_NOT_FOUND)
    sampler = open_sampler(nv)
    for t in (0.0, 1.0):
        (gpu,) = sampler.sample(t)
        assert gpu.clock_event_reasons == ("sw_power_cap", "hw_thermal_slowdown", "bit_0x1000")
    assert nv.calls["nvmlDeviceGetCurrentClocksEventReasons"] == 1
    assert nv.calls["nvmlDeviceGetCurrentClocksThrottleReasons"] == 2


def test_clock_event_reasons_missing_from_both_names() -> None:
    nv = FakeNvml(1)
    nv.fail("nvmlDeviceGetCurrentClocksEventReasons", fake.NOT_SUPPORTED)
    nv.fail("nvmlDeviceGetCurrentClocksThrottleReasons", fake.NOT_SUPPORTED)
    (gpu,) = open_sampler(nv).sample(0.0)
    assert gpu.clock_event_reasons is None and gpu.clock_event_reasons_mask is None


def test_decode_clock_event_reasons() -> None:
    assert decode_clock_event_reasons(0) == ()
    assert decode_clock_event_reasons(0x1 | 0x80 | 0x100) == (
        "gpu_idle",
        "hw_power_brake_slowdown",
        "display_clock_setting",
    )
    assert decode_clock_event_reasons(0x8 | 0x400) == ("hw_slowdown", "bit_0x400")


def test_gpu_lost_mid_run_becomes_an_error_sample() -> None:
    nv = FakeNvml(4)
    sampler = open_sampler(nv)
    assert all(g.error is None for g in sampler.sample(0.0))
    nv.lose(2)
    gpus = sampler.sample(1.0)
    lost = gpus[2]
    assert lost.error is not None and lost.error.startswith("gpu_lost: GpuIsLost")
    assert lost.uuid == "GPU-00000002-0000-0000-0000-000000000000"  # identity is kept
    assert all(getattr(lost, name) is None for name in ALL_VALUE_FIELDS)
    assert [g.error for i, g in enumerate(gpus) if i != 2] == [None, None, None]
    assert gpus[3].power_w is not None
    # and it stays an error, without crashing, on later samples
    assert sampler.sample(2.0)[2].error == lost.error


def test_gpu_lost_before_start_is_an_error_sample_not_a_crash() -> None:
    nv = FakeNvml(2)
    nv.lose(1)
    sampler = open_sampler(nv)
    gpus = sampler.sample(0.0)
    assert gpus[0].error is None
    assert gpus[1].error is not None and "GpuIsLost" in gpus[1].error
    assert gpus[1].uuid is None


@pytest.mark.parametrize(
    "code", [fake.LIBRARY_NOT_FOUND, fake.DRIVER_NOT_LOADED, fake.NO_PERMISSION, fake.UNKNOWN]
)
def test_no_nvml_at_init_gives_a_one_line_notice(code: int) -> None:
    nv = FakeNvml(1, init_error=code)
    with pytest.raises(NvmlUnavailable) as info:
        NvmlSampler.open(nv)
    message = str(info.value)
    assert "\n" not in message
    assert "sampling host only" in message
    assert type(fake.NVMLError(code)).__name__.removeprefix("NVMLError_") in message


def test_missing_pynvml_module_gives_a_notice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml -> ImportError
    with pytest.raises(NvmlUnavailable, match="not installed"):
        NvmlSampler.open()


def test_no_gpus_gives_a_notice_and_shuts_nvml_down() -> None:
    nv = FakeNvml([])
    with pytest.raises(NvmlUnavailable, match="no GPU"):
        NvmlSampler.open(nv)
    assert nv.initialised == 0


def test_real_pynvml_without_a_gpu_is_host_only() -> None:
    try:
        sampler = NvmlSampler.open()
    except NvmlUnavailable as exc:
        assert "\n" not in str(exc)
        return
    sampler.close()
    pytest.skip("NVML works on this machine; the GPU test covers it")


def test_xid_events_are_captured_once_and_the_last_one_sticks() -> None:
    nv = FakeNvml(4)
    sampler = open_sampler(nv)
    assert nv.calls["nvmlDeviceRegisterEvents"] == 4
    sampler.sample(0.0)
    nv.emit_xid(2, 79)
    nv.emit_xid(2, 48)
    nv.emit_xid(0, 13)
    gpus = sampler.sample(1.0)
    assert gpus[2].xid_events == (79, 48)
    assert gpus[2].last_xid == 48 and gpus[2].xid_total == 2
    assert gpus[0].xid_events == (13,)
    assert gpus[1].xid_events == () and gpus[1].last_xid is None
    later = sampler.sample(2.0)
    assert later[2].xid_events == () and later[2].last_xid == 48 and later[2].xid_total == 2


def test_xid_unsupported_is_n_a_not_zero() -> None:
    nv = FakeNvml(1, xid_supported=False)
    (gpu,) = open_sampler(nv).sample(0.0)
    assert gpu.xid_events is None and gpu.last_xid is None and gpu.xid_total is None


def test_throughput_from_counters_does_not_use_the_blocking_query() -> None:
    gpu = FakeGpu(pcie_tx_bytes=0, pcie_rx_bytes=0, nvlink_tx_kib=0, nvlink_rx_kib=0)
    nv = FakeNvml([gpu])
    sampler = open_sampler(nv)
    first = sampler.sample(10.0)[0]
    assert first.pcie_tx_kb_per_s is None and first.nvlink_tx_kb_per_s is None  # no delta yet
    gpu.pcie_tx_bytes = 2 * 1024 * 1024  # 2 MiB in 2 s -> 1024 KB/s
    gpu.pcie_rx_bytes = 4 * 1024 * 1024
    gpu.nvlink_tx_kib = 6_000  # KiB in 2 s -> 3000 KB/s
    gpu.nvlink_rx_kib = 1_000
    second = sampler.sample(12.0)[0]
    assert (second.pcie_tx_kb_per_s, second.pcie_rx_kb_per_s) == (1024.0, 2048.0)
    assert (second.nvlink_tx_kb_per_s, second.nvlink_rx_kb_per_s) == (3000.0, 500.0)
    assert nv.calls["nvmlDeviceGetPcieThroughput"] == 0
    gpu.pcie_tx_bytes = 0  # counter reset (driver reload): no negative rate
    assert sampler.sample(13.0)[0].pcie_tx_kb_per_s is None


def test_blocking_pcie_fallback_can_be_switched_off() -> None:
    nv = FakeNvml(1)
    sampler = NvmlSampler.open(nv, pcie_blocking_fallback=False)
    (gpu,) = sampler.sample(0.0)
    assert gpu.pcie_tx_kb_per_s is None
    assert nv.calls["nvmlDeviceGetPcieThroughput"] == 0


def test_close_frees_events_and_shuts_down_once() -> None:
    nv = FakeNvml(2)
    sampler = open_sampler(nv)
    sampler.close()
    sampler.close()
    assert nv.initialised == 0
    assert nv.event_sets[0].freed
    assert nv.calls["nvmlShutdown"] == 1
