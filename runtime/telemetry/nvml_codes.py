"""What NVML's numbers mean: ``nvmlReturn_t`` codes, enum values the bindings may lack,
clock-event reason bits, and the one-line description of an NVML error (nvml.h)."""

from __future__ import annotations

# nvmlReturn_t codes (nvml.h). The ABI fixes them; comparing codes rather than classes
# lets a stand-in module and every pynvml version be handled the same way.
_NOT_SUPPORTED = 3
_TIMEOUT = 10
_FUNCTION_NOT_FOUND = 13
_GPU_IS_LOST = 15
_RESET_REQUIRED = 16
_GPU_NOT_FOUND = 28
_PERMANENT = frozenset({_NOT_SUPPORTED, _FUNCTION_NOT_FOUND})
_LOST = frozenset({_GPU_IS_LOST, _RESET_REQUIRED, _GPU_NOT_FOUND})

# Enum values from nvml.h, used when the bindings lack the named constant.
_DEFAULTS: dict[str, int] = {
    "NVML_TEMPERATURE_GPU": 0,
    "NVML_CLOCK_SM": 1,
    "NVML_CLOCK_MEM": 2,
    "NVML_MEMORY_ERROR_TYPE_CORRECTED": 0,
    "NVML_MEMORY_ERROR_TYPE_UNCORRECTED": 1,
    "NVML_VOLATILE_ECC": 0,
    "NVML_PCIE_UTIL_TX_BYTES": 0,
    "NVML_PCIE_UTIL_RX_BYTES": 1,
    "nvmlEventTypeXidCriticalError": 0x8,
    "NVML_FI_DEV_PCIE_COUNT_TX_BYTES": 197,
    "NVML_FI_DEV_PCIE_COUNT_RX_BYTES": 198,
    "NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX": 138,
    "NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX": 139,
}

_ALL_LINKS = 0xFFFFFFFF
"""scopeId asking NVML for the sum over all NVLinks (nvml.h, NVLink throughput fields)."""

CLOCK_EVENT_REASONS: tuple[tuple[int, str], ...] = (
    (0x001, "gpu_idle"),
    (0x002, "applications_clocks_setting"),
    (0x004, "sw_power_cap"),
    (0x008, "hw_slowdown"),
    (0x010, "sync_boost"),
    (0x020, "sw_thermal_slowdown"),
    (0x040, "hw_thermal_slowdown"),
    (0x080, "hw_power_brake_slowdown"),
    (0x100, "display_clock_setting"),
)
"""Bits of nvmlClocksEventReason* (nvml.h; the same bits as the older ...ThrottleReason*)."""

_CLOCK_REASON_FUNCTIONS = (
    "nvmlDeviceGetCurrentClocksEventReasons",  # driver >= 535
    "nvmlDeviceGetCurrentClocksThrottleReasons",  # older name, same mask
)
_MAX_EVENTS_PER_SAMPLE = 256
_MIB = float(1 << 20)


def decode_clock_event_reasons(mask: int) -> tuple[str, ...]:
    """Names of the reasons set in an NVML clock-event mask; unknown bits as ``bit_0x...``."""
    names = [name for bit, name in CLOCK_EVENT_REASONS if mask & bit]
    known = 0
    for bit, _ in CLOCK_EVENT_REASONS:
        known |= bit
    rest = mask & ~known
    bit = 1
    while rest:
        if rest & bit:
            names.append(f"bit_{bit:#x}")
            rest &= ~bit
        bit <<= 1
    return tuple(names)


class NvmlUnavailable(Exception):
    """There is no usable NVML here; ``str()`` is the one-line notice to show once."""


class _GpuLost(Exception):
    pass


def describe_nvml_error(exc: BaseException) -> str:
    """``NoPermission: Insufficient Permissions`` for an NVMLError, ``Type: text`` otherwise."""
    kind = type(exc).__name__.removeprefix("NVMLError_")
    try:
        text = str(exc)
    except Exception:  # pynvml's __str__ may itself call into a missing library
        text = ""
    text = " ".join(text.split())
    return f"{kind}: {text}" if text and text != kind else kind
