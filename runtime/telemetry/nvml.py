"""GPU sampling through NVML (the ``nvidia-ml-py`` bindings, imported as ``pynvml``).

Every NVML call goes through one wrapper, so a failure never escapes:

* ``NotSupported`` / ``FunctionNotFound`` (or a binding too old to have the function):
  the field is n/a (``None``) now and is not asked again for that GPU;
* ``GpuIsLost`` / ``ResetRequired`` / ``GpuNotFound``: the GPU is gone; its sample keeps
  only its identity and an ``error`` (it is tried again next sample);
* anything else (``NoPermission``, ``Unknown``, ``Timeout``, a ctypes error ...): the
  field is n/a this time and the GPU's ``errors`` says why; other fields are still read.

``NvmlSampler.open`` raises :class:`NvmlUnavailable` (carrying the one-line notice) when
there is no NVML at all: module missing, library not found, driver not loaded, no GPU.

Throughput: PCIe and NVLink rates come from NVML's cumulative byte counters through one
``nvmlDeviceGetFieldValues`` call (non-blocking; rates from deltas between samples).
Where the PCIe counters are not supported, ``nvmlDeviceGetPcieThroughput`` is used
instead; it samples a 20 ms window per call, so it blocks ~40 ms of wall time per GPU
(almost no CPU) — pass ``pcie_blocking_fallback=False`` to skip it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from runtime.telemetry.snapshots import GpuSample

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


def _to_str(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(float(value), digits)


@dataclass
class _Device:
    """Per-GPU state the sampler keeps between samples."""

    index: int
    handle: Any
    uuid: str | None = None
    name: str | None = None
    bus_id: str | None = None
    unsupported: set[str] = field(default_factory=set)
    unavailable: str | None = None
    """Why the handle could not be had (then every sample of it carries this error)."""
    xid_watched: bool = False
    pending_xids: list[int] = field(default_factory=list)
    last_xid: int | None = None
    xid_total: int = 0
    counters: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Counter name -> (monotonic seconds, value) at the previous sample."""

    def rate(self, key: str, value: float | None, now_s: float, scale: float) -> float | None:
        """Per-second rate of a cumulative counter since the previous sample, times scale."""
        if value is None:
            self.counters.pop(key, None)
            return None
        previous = self.counters.get(key)
        self.counters[key] = (now_s, value)
        if previous is None:
            return None
        dt = now_s - previous[0]
        delta = value - previous[1]
        if dt <= 0 or delta < 0:  # clock did not move, or the counter wrapped/reset
            return None
        return delta / dt * scale


class NvmlSampler:
    """Reads every GPU NVML sees. Create with :meth:`open`; call :meth:`sample`; :meth:`close`."""

    def __init__(
        self,
        nvml: Any,
        devices: list[_Device],
        event_set: Any,
        driver_version: str | None,
        pcie_blocking_fallback: bool = True,
    ) -> None:
        self._nvml = nvml
        self._devices = devices
        self._event_set = event_set
        self.driver_version = driver_version
        self.pcie_blocking_fallback = pcie_blocking_fallback
        self._error_class: Any = getattr(nvml, "NVMLError", ())
        self._closed = False
        self._field_ids = [
            (self._const("NVML_FI_DEV_PCIE_COUNT_TX_BYTES"), 0),
            (self._const("NVML_FI_DEV_PCIE_COUNT_RX_BYTES"), 0),
            (self._const("NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX"), _ALL_LINKS),
            (self._const("NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX"), _ALL_LINKS),
        ]

    # -- life cycle -------------------------------------------------------------------

    @classmethod
    def open(cls, nvml: Any = None, pcie_blocking_fallback: bool = True) -> NvmlSampler:
        """Initialise NVML and find the GPUs, or raise NvmlUnavailable with the notice."""
        if nvml is None:
            try:
                import pynvml
            except ImportError:
                raise NvmlUnavailable(
                    "no GPU telemetry: nvidia-ml-py (pynvml) is not installed; sampling host only"
                ) from None
            nvml = pynvml
        try:
            nvml.nvmlInit()
        except Exception as exc:
            raise NvmlUnavailable(
                f"no GPU telemetry: NVML unavailable ({describe_nvml_error(exc)}); "
                "sampling host only"
            ) from None
        try:
            count = int(nvml.nvmlDeviceGetCount())
        except Exception as exc:
            _quiet(nvml.nvmlShutdown)
            raise NvmlUnavailable(
                f"no GPU telemetry: NVML cannot count GPUs ({describe_nvml_error(exc)}); "
                "sampling host only"
            ) from None
        if count <= 0:
            _quiet(nvml.nvmlShutdown)
            raise NvmlUnavailable("no GPU telemetry: NVML sees no GPU; sampling host only")
        driver = _to_str(_quiet(getattr(nvml, "nvmlSystemGetDriverVersion", None)))
        devices = [_Device(index=i, handle=None) for i in range(count)]
        sampler = cls(nvml, devices, None, driver, pcie_blocking_fallback)
        for device in devices:
            sampler._attach(device)
        sampler._watch_xids()
        return sampler

    def close(self) -> None:
        """Free the event set and shut NVML down (idempotent; never raises)."""
        if self._closed:
            return
        self._closed = True
        if self._event_set is not None:
            _quiet(getattr(self._nvml, "nvmlEventSetFree", None), self._event_set)
            self._event_set = None
        _quiet(getattr(self._nvml, "nvmlShutdown", None))

    @property
    def gpu_count(self) -> int:
        return len(self._devices)

    # -- sampling ---------------------------------------------------------------------

    def sample(self, now_s: float) -> list[GpuSample]:
        """One snapshot per GPU. ``now_s`` is a monotonic clock reading (for rates)."""
        self._drain_xid_events()
        return [self._sample_device(device, now_s) for device in self._devices]

    def _sample_device(self, dev: _Device, now_s: float) -> GpuSample:
        if dev.handle is None and not self._attach(dev):
            return self._identity(dev, error=dev.unavailable or "unavailable")
        errors: dict[str, str] = {}
        h = dev.handle
        try:
            util = self._call(dev, errors, "utilization", "nvmlDeviceGetUtilizationRates", h)
            memory = self._call(dev, errors, "memory", "nvmlDeviceGetMemoryInfo", h)
            power_mw = self._call(dev, errors, "power_w", "nvmlDeviceGetPowerUsage", h)
            limit_mw = self._call(
                dev, errors, "power_limit_w", "nvmlDeviceGetEnforcedPowerLimit", h
            )
            energy_mj = self._call(
                dev, errors, "energy_j", "nvmlDeviceGetTotalEnergyConsumption", h
            )
            temperature = self._call(
                dev,
                errors,
                "temperature_c",
                "nvmlDeviceGetTemperature",
                h,
                self._const("NVML_TEMPERATURE_GPU"),
            )
            sm_clock = self._call(
                dev,
                errors,
                "sm_clock_mhz",
                "nvmlDeviceGetClockInfo",
                h,
                self._const("NVML_CLOCK_SM"),
            )
            mem_clock = self._call(
                dev,
                errors,
                "memory_clock_mhz",
                "nvmlDeviceGetClockInfo",
                h,
                self._const("NVML_CLOCK_MEM"),
            )
            mask = self._clock_event_mask(dev, errors)
            ecc_corrected = self._ecc(dev, errors, "NVML_MEMORY_ERROR_TYPE_CORRECTED")
            ecc_uncorrected = self._ecc(dev, errors, "NVML_MEMORY_ERROR_TYPE_UNCORRECTED")
            pcie_tx, pcie_rx, nvlink_tx, nvlink_rx = self._throughput(dev, errors, now_s)
        except _GpuLost as lost:
            dev.counters.clear()
            return self._identity(dev, error=f"gpu_lost: {lost}")
        xids = self._take_xids(dev)
        return GpuSample(
            index=dev.index,
            uuid=dev.uuid,
            name=dev.name,
            bus_id=dev.bus_id,
            utilization_gpu_percent=_attr(util, "gpu"),
            utilization_memory_percent=_attr(util, "memory"),
            memory_used_mib=_round(_mib(_attr(memory, "used")), 1),
            memory_free_mib=_round(_mib(_attr(memory, "free")), 1),
            memory_total_mib=_round(_mib(_attr(memory, "total")), 1),
            power_w=_round(None if power_mw is None else power_mw / 1000.0, 2),
            power_limit_w=_round(None if limit_mw is None else limit_mw / 1000.0, 2),
            energy_j=_round(None if energy_mj is None else energy_mj / 1000.0, 3),
            temperature_c=_num(temperature),
            sm_clock_mhz=_num(sm_clock),
            memory_clock_mhz=_num(mem_clock),
            clock_event_reasons=None if mask is None else decode_clock_event_reasons(mask),
            clock_event_reasons_mask=mask,
            ecc_volatile_corrected=_int(ecc_corrected),
            ecc_volatile_uncorrected=_int(ecc_uncorrected),
            xid_events=xids,
            last_xid=dev.last_xid if dev.xid_watched else None,
            xid_total=dev.xid_total if dev.xid_watched else None,
            pcie_tx_kb_per_s=_round(pcie_tx, 1),
            pcie_rx_kb_per_s=_round(pcie_rx, 1),
            nvlink_tx_kb_per_s=_round(nvlink_tx, 1),
            nvlink_rx_kb_per_s=_round(nvlink_rx, 1),
            errors=errors or None,
        )

    def _identity(self, dev: _Device, error: str) -> GpuSample:
        return GpuSample(
            index=dev.index,
            uuid=dev.uuid,
            name=dev.name,
            bus_id=dev.bus_id,
            xid_events=self._take_xids(dev),
            last_xid=dev.last_xid if dev.xid_watched else None,
            xid_total=dev.xid_total if dev.xid_watched else None,
            error=error,
        )

    # -- the one wrapper every NVML call goes through ----------------------------------

    def _call(
        self, dev: _Device, errors: dict[str, str], field_name: str, fn_name: str, *args: Any
    ) -> Any:
        key = f"{field_name}:{fn_name}"
        if key in dev.unsupported:
            return None
        fn: Callable[..., Any] | None = getattr(self._nvml, fn_name, None)
        if fn is None:
            dev.unsupported.add(key)
            return None
        try:
            return fn(*args)
        except Exception as exc:
            code = self._code(exc)
            if code in _PERMANENT:
                dev.unsupported.add(key)
            elif code in _LOST:
                raise _GpuLost(describe_nvml_error(exc)) from None
            else:
                errors[field_name] = describe_nvml_error(exc)
            return None

    def _code(self, exc: BaseException) -> int | None:
        if isinstance(exc, self._error_class):
            value = getattr(exc, "value", None)
            return value if isinstance(value, int) else None
        return None

    def _const(self, name: str) -> int:
        value = getattr(self._nvml, name, None)
        return int(value) if isinstance(value, int) else _DEFAULTS[name]

    # -- fields needing more than one call --------------------------------------------

    def _clock_event_mask(self, dev: _Device, errors: dict[str, str]) -> int | None:
        for fn_name in _CLOCK_REASON_FUNCTIONS:
            key = f"clock_event_reasons:{fn_name}"
            if key in dev.unsupported:
                continue
            value = self._call(dev, errors, "clock_event_reasons", fn_name, dev.handle)
            if value is not None:
                return int(value)
            if key not in dev.unsupported:  # failed this time, not for good
                return None
        return None

    def _ecc(self, dev: _Device, errors: dict[str, str], error_type: str) -> Any:
        corrected = error_type == "NVML_MEMORY_ERROR_TYPE_CORRECTED"
        return self._call(
            dev,
            errors,
            "ecc_volatile_corrected" if corrected else "ecc_volatile_uncorrected",
            "nvmlDeviceGetTotalEccErrors",
            dev.handle,
            self._const(error_type),
            self._const("NVML_VOLATILE_ECC"),
        )

    def _throughput(
        self, dev: _Device, errors: dict[str, str], now_s: float
    ) -> tuple[float | None, float | None, float | None, float | None]:
        values = self._call(
            dev, errors, "throughput", "nvmlDeviceGetFieldValues", dev.handle, self._field_ids
        )
        counts = _field_values(values, len(self._field_ids))
        # PCIe counters are bytes, NVLink counters KiB; both reported as KB/s (1 KB = 1024 B).
        pcie_tx = dev.rate("pcie_tx", counts[0], now_s, 1 / 1024)
        pcie_rx = dev.rate("pcie_rx", counts[1], now_s, 1 / 1024)
        nvlink_tx = dev.rate("nvlink_tx", counts[2], now_s, 1.0)
        nvlink_rx = dev.rate("nvlink_rx", counts[3], now_s, 1.0)
        if counts[0] is None and counts[1] is None and self.pcie_blocking_fallback:
            fn = "nvmlDeviceGetPcieThroughput"
            tx = self._call(
                dev,
                errors,
                "pcie_tx_kb_per_s",
                fn,
                dev.handle,
                self._const("NVML_PCIE_UTIL_TX_BYTES"),
            )
            rx = self._call(
                dev,
                errors,
                "pcie_rx_kb_per_s",
                fn,
                dev.handle,
                self._const("NVML_PCIE_UTIL_RX_BYTES"),
            )
            pcie_tx = None if tx is None else float(tx)
            pcie_rx = None if rx is None else float(rx)
        return pcie_tx, pcie_rx, nvlink_tx, nvlink_rx

    # -- identity and XID events ------------------------------------------------------

    def _attach(self, dev: _Device) -> bool:
        """Get the device handle and its identity; False (with a reason) if NVML refuses."""
        try:
            dev.handle = self._nvml.nvmlDeviceGetHandleByIndex(dev.index)
        except Exception as exc:
            dev.handle = None
            dev.unavailable = f"unavailable: {describe_nvml_error(exc)}"
            return False
        scratch: dict[str, str] = {}
        try:
            dev.uuid = _to_str(self._call(dev, scratch, "uuid", "nvmlDeviceGetUUID", dev.handle))
            dev.name = _to_str(self._call(dev, scratch, "name", "nvmlDeviceGetName", dev.handle))
            pci = self._call(dev, scratch, "bus_id", "nvmlDeviceGetPciInfo", dev.handle)
        except _GpuLost as lost:
            dev.handle = None
            dev.unavailable = f"gpu_lost: {lost}"
            return False
        dev.bus_id = _to_str(_attr(pci, "busId"))
        dev.unavailable = None
        return True

    def _watch_xids(self) -> None:
        create = getattr(self._nvml, "nvmlEventSetCreate", None)
        register = getattr(self._nvml, "nvmlDeviceRegisterEvents", None)
        if create is None or register is None:
            return
        try:
            self._event_set = create()
        except Exception:
            self._event_set = None
            return
        xid = self._const("nvmlEventTypeXidCriticalError")
        for dev in self._devices:
            if dev.handle is None:
                continue
            try:
                register(dev.handle, xid, self._event_set)
                dev.xid_watched = True
            except Exception:
                dev.xid_watched = False

    def _drain_xid_events(self) -> None:
        wait = getattr(self._nvml, "nvmlEventSetWait", None)
        if self._event_set is None or wait is None:
            return
        xid = self._const("nvmlEventTypeXidCriticalError")
        for _ in range(_MAX_EVENTS_PER_SAMPLE):
            try:
                data = wait(self._event_set, 0)  # 0 ms: never block the sampler
            except Exception:
                return  # Timeout is the normal "no more events"; anything else: try later
            try:
                event_type = int(data.eventType)
                code = int(data.eventData)
            except Exception:
                continue
            if not event_type & xid:
                continue
            dev = self._device_of(data.device)
            if dev is not None:
                dev.pending_xids.append(code)
                dev.last_xid = code
                dev.xid_total += 1

    def _device_of(self, handle: Any) -> _Device | None:
        for dev in self._devices:
            if dev.handle is handle:
                return dev
        # ctypes hands back a new pointer object for the same device: match by UUID.
        uuid = _to_str(_quiet(getattr(self._nvml, "nvmlDeviceGetUUID", None), handle))
        for dev in self._devices:
            if uuid is not None and dev.uuid == uuid:
                return dev
        return None

    def _take_xids(self, dev: _Device) -> tuple[int, ...] | None:
        if not dev.xid_watched:
            return None
        taken = tuple(dev.pending_xids)
        dev.pending_xids.clear()
        return taken


def _field_values(values: Any, count: int) -> list[float | None]:
    """Values of an nvmlDeviceGetFieldValues answer; None where that field failed."""
    out: list[float | None] = [None] * count
    if values is None:
        return out
    members = ("dVal", "uiVal", "ulVal", "ullVal", "sllVal", "siVal", "usVal")
    try:
        for i in range(min(count, len(values))):
            item = values[i]
            if int(getattr(item, "nvmlReturn", 1)) != 0:
                continue
            value_type = int(getattr(item, "valueType", 3))
            member = members[value_type] if 0 <= value_type < len(members) else "ullVal"
            out[i] = float(getattr(item.value, member))
    except Exception:
        return [None] * count
    return out


def _quiet(fn: Callable[..., Any] | None, *args: Any) -> Any:
    if fn is None:
        return None
    try:
        return fn(*args)
    except Exception:
        return None


def _attr(obj: Any, name: str) -> Any:
    return None if obj is None else getattr(obj, name, None)


def _mib(value: Any) -> float | None:
    return None if value is None else float(value) / _MIB


def _num(value: Any) -> float | None:
    return None if value is None else value if isinstance(value, int) else float(value)


def _int(value: Any) -> int | None:
    return None if value is None else int(value)
