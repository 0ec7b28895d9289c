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
from typing import Any

from runtime.telemetry.nvml_codes import (
    _ALL_LINKS,
    _CLOCK_REASON_FUNCTIONS,
    _DEFAULTS,
    _LOST,
    _MAX_EVENTS_PER_SAMPLE,
    _PERMANENT,
    NvmlUnavailable,
    _GpuLost,
    decode_clock_event_reasons,
    describe_nvml_error,
)
from runtime.telemetry.nvml_device import (
    _attr,
    _Device,
    _field_values,
    _int,
    _mib,
    _num,
    _quiet,
    _round,
    _to_str,
)
from runtime.telemetry.snapshots import GpuSample


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
