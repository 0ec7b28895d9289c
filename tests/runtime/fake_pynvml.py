"""A stand-in for the ``pynvml`` module (nvidia-ml-py), shaped like its API.

It has NVMLError with one subclass per return code (built the way pynvml builds them,
``NVMLError_NotSupported`` ...), the constants the sampler uses, and every query the
sampler makes, answering from :class:`FakeGpu` records. Tests steer it:

* ``FakeNvml(gpus, init_error=LIBRARY_NOT_FOUND)``: nvmlInit fails;
* ``nv.fail("nvmlDeviceGetPowerUsage", NOT_SUPPORTED, gpu=0)``: a call raises that code
  (``gpu=None``: on every GPU) until ``nv.heal(...)``;
* ``nv.lose(1)``: GPU 1 falls off the bus (every call on it raises GpuIsLost);
* ``nv.emit_xid(2, 79)``: an XID critical-error event for GPU 2 waits in the event set;
* ``nv.remove("nvmlDeviceGetCurrentClocksEventReasons")``: the bindings lack a function.

``nv.calls`` counts calls per function name.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

# nvmlReturn_t (nvml.h)
SUCCESS = 0
UNINITIALIZED = 1
INVALID_ARGUMENT = 2
NOT_SUPPORTED = 3
NO_PERMISSION = 4
ALREADY_INITIALIZED = 5
NOT_FOUND = 6
DRIVER_NOT_LOADED = 9
TIMEOUT = 10
LIBRARY_NOT_FOUND = 12
FUNCTION_NOT_FOUND = 13
CORRUPTED_INFOROM = 14
GPU_IS_LOST = 15
RESET_REQUIRED = 16
UNKNOWN = 999

_NAMES = {
    UNINITIALIZED: ("Uninitialized", "Uninitialized"),
    INVALID_ARGUMENT: ("InvalidArgument", "Invalid Argument"),
    NOT_SUPPORTED: ("NotSupported", "Not Supported"),
    NO_PERMISSION: ("NoPermission", "Insufficient Permissions"),
    ALREADY_INITIALIZED: ("AlreadyInitialized", "Already Initialized"),
    NOT_FOUND: ("NotFound", "Not Found"),
    DRIVER_NOT_LOADED: ("DriverNotLoaded", "Driver Not Loaded"),
    TIMEOUT: ("Timeout", "Timeout"),
    LIBRARY_NOT_FOUND: ("LibraryNotFound", "NVML Shared Library Not Found"),
    FUNCTION_NOT_FOUND: ("FunctionNotFound", "Function Not Found"),
    CORRUPTED_INFOROM: ("CorruptedInforom", "Corrupted infoROM"),
    GPU_IS_LOST: ("GpuIsLost", "GPU is lost"),
    RESET_REQUIRED: ("ResetRequired", "GPU requires restart"),
    UNKNOWN: ("Unknown", "Unknown Error"),
}


class NVMLError(Exception):
    """Base class; ``NVMLError(code)`` returns the subclass for that code, as pynvml does."""

    _by_code: dict[int, type[NVMLError]] = {}  # noqa: RUF012 - filled once below
    value: int

    def __new__(cls, value: int = UNKNOWN) -> NVMLError:
        if cls is NVMLError:
            cls = NVMLError._by_code.get(value, NVMLError)
        obj = Exception.__new__(cls)
        obj.value = value
        return obj

    def __init__(self, value: int = UNKNOWN) -> None:
        super().__init__(value)

    def __str__(self) -> str:
        return _NAMES.get(self.value, ("", f"NVML error {self.value}"))[1]


def _make_error_classes() -> dict[str, type[NVMLError]]:
    made: dict[str, type[NVMLError]] = {}
    for code, (name, _) in _NAMES.items():

        def new(cls: type[NVMLError], *args: Any, _code: int = code) -> NVMLError:
            obj = Exception.__new__(cls)
            obj.value = _code
            return obj

        def init(self: NVMLError, *args: Any, _code: int = code) -> None:
            Exception.__init__(self, _code)

        cls = type(f"NVMLError_{name}", (NVMLError,), {"__new__": new, "__init__": init})
        NVMLError._by_code[code] = cls
        made[cls.__name__] = cls
    return made


_ERROR_CLASSES = _make_error_classes()
globals().update(_ERROR_CLASSES)
NVMLError_NotSupported = _ERROR_CLASSES["NVMLError_NotSupported"]
NVMLError_NoPermission = _ERROR_CLASSES["NVMLError_NoPermission"]
NVMLError_GpuIsLost = _ERROR_CLASSES["NVMLError_GpuIsLost"]
NVMLError_Unknown = _ERROR_CLASSES["NVMLError_Unknown"]
NVMLError_FunctionNotFound = _ERROR_CLASSES["NVMLError_FunctionNotFound"]
NVMLError_LibraryNotFound = _ERROR_CLASSES["NVMLError_LibraryNotFound"]
NVMLError_DriverNotLoaded = _ERROR_CLASSES["NVMLError_DriverNotLoaded"]
NVMLError_Timeout = _ERROR_CLASSES["NVMLError_Timeout"]

# Constants (values as in nvml.h / pynvml)
CONSTANTS: dict[str, int] = {
    "NVML_TEMPERATURE_GPU": 0,
    "NVML_CLOCK_GRAPHICS": 0,
    "NVML_CLOCK_SM": 1,
    "NVML_CLOCK_MEM": 2,
    "NVML_MEMORY_ERROR_TYPE_CORRECTED": 0,
    "NVML_MEMORY_ERROR_TYPE_UNCORRECTED": 1,
    "NVML_VOLATILE_ECC": 0,
    "NVML_AGGREGATE_ECC": 1,
    "NVML_PCIE_UTIL_TX_BYTES": 0,
    "NVML_PCIE_UTIL_RX_BYTES": 1,
    "nvmlEventTypeSingleBitEccError": 0x1,
    "nvmlEventTypeDoubleBitEccError": 0x2,
    "nvmlEventTypeXidCriticalError": 0x8,
    "nvmlClocksEventReasonGpuIdle": 0x1,
    "nvmlClocksEventReasonApplicationsClocksSetting": 0x2,
    "nvmlClocksEventReasonSwPowerCap": 0x4,
    "nvmlClocksEventReasonHwSlowdown": 0x8,
    "nvmlClocksEventReasonSyncBoost": 0x10,
    "nvmlClocksEventReasonSwThermalSlowdown": 0x20,
    "nvmlClocksEventReasonHwThermalSlowdown": 0x40,
    "nvmlClocksEventReasonHwPowerBrakeSlowdown": 0x80,
    "nvmlClocksEventReasonDisplayClockSetting": 0x100,
    "NVML_VALUE_TYPE_DOUBLE": 0,
    "NVML_VALUE_TYPE_UNSIGNED_LONG_LONG": 3,
    "NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX": 138,
    "NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX": 139,
    "NVML_FI_DEV_PCIE_COUNT_TX_BYTES": 197,
    "NVML_FI_DEV_PCIE_COUNT_RX_BYTES": 198,
}
globals().update(CONSTANTS)

ALL_LINKS = 0xFFFFFFFF


@dataclass
class FakeGpu:
    """What one fake GPU answers (in NVML's own units: bytes, mW, mJ, KB/s, KiB)."""

    name: str = "NVIDIA H100 80GB HBM3"
    uuid: str = "GPU-00000000-0000-0000-0000-000000000000"
    bus_id: str = "00000000:1B:00.0"
    util_gpu: int = 97
    util_memory: int = 41
    memory_total_b: int = 80 * 1024**3
    memory_used_b: int = 60 * 1024**3
    power_mw: int = 612_345
    power_limit_mw: int = 700_000
    energy_mj: int = 123_456_789
    temperature_c: int = 65
    sm_clock_mhz: int = 1980
    memory_clock_mhz: int = 2619
    clock_reasons: int = 0x4
    ecc_corrected: int = 2
    ecc_uncorrected: int = 0
    pcie_tx_kbps: int = 1000
    pcie_rx_kbps: int = 2000
    pcie_tx_bytes: int | None = None
    """Cumulative PCIe TX byte counter (field 197); None: field not supported."""
    pcie_rx_bytes: int | None = None
    nvlink_tx_kib: int | None = None
    """Cumulative NVLink TX KiB, all links (field 138, scope UINT_MAX); None: no NVLink."""
    nvlink_rx_kib: int | None = None
    lost: bool = False


@dataclass
class FakeHandle:
    index: int


@dataclass
class FakeUtilization:
    gpu: int
    memory: int


@dataclass
class FakeMemory:
    total: int
    free: int
    used: int


@dataclass
class FakePciInfo:
    busId: bytes


@dataclass
class FakeValue:
    dVal: float = 0.0
    ullVal: int = 0


@dataclass
class FakeFieldValue:
    fieldId: int
    scopeId: int
    nvmlReturn: int
    valueType: int = 3
    value: FakeValue = field(default_factory=FakeValue)


@dataclass
class FakeEventData:
    device: Any
    eventType: int
    eventData: int
    gpuInstanceId: int = 0xFFFFFFFF
    computeInstanceId: int = 0xFFFFFFFF


@dataclass
class FakeEventSet:
    registered: dict[int, int] = field(default_factory=dict)
    queue: list[FakeEventData] = field(default_factory=list)
    freed: bool = False


class FakeNvml:
    """Instances stand in for the ``pynvml`` module."""

    NVMLError = NVMLError
    _removed: frozenset[str] | set[str] = frozenset()

    def __init__(
        self,
        gpus: list[FakeGpu] | int = 1,
        init_error: int | None = None,
        driver_version: str = "550.54.15",
        xid_supported: bool = True,
    ) -> None:
        if isinstance(gpus, int):
            gpus = [
                FakeGpu(
                    uuid=f"GPU-{i:08x}-0000-0000-0000-000000000000",
                    bus_id=f"00000000:{0x18 + i:02X}:00.0",
                )
                for i in range(gpus)
            ]
        self.gpus = gpus
        self.init_error = init_error
        self.driver_version = driver_version
        self.xid_supported = xid_supported
        self.initialised = 0
        self.calls: Counter[str] = Counter()
        self._failures: dict[tuple[str, int | None], int] = {}
        self._removed: set[str] = set()
        self.event_sets: list[FakeEventSet] = []
        for name, cls in _ERROR_CLASSES.items():
            setattr(self, name, cls)
        for name, value in CONSTANTS.items():
            setattr(self, name, value)

    # -- steering -----------------------------------------------------------------------

    def fail(self, fn: str, code: int, gpu: int | None = None) -> None:
        """Make ``fn`` raise NVMLError(code) on one GPU (or on all) until healed."""
        self._failures[(fn, gpu)] = code

    def heal(self, fn: str, gpu: int | None = None) -> None:
        self._failures.pop((fn, gpu), None)

    def lose(self, index: int) -> None:
        self.gpus[index].lost = True

    def remove(self, fn: str) -> None:
        self._removed.add(fn)

    def emit_xid(self, index: int, xid: int, handle: Any = None) -> None:
        for event_set in self.event_sets:
            if event_set.registered.get(index, 0) & CONSTANTS["nvmlEventTypeXidCriticalError"]:
                event_set.queue.append(
                    FakeEventData(
                        device=handle if handle is not None else FakeHandle(index),
                        eventType=CONSTANTS["nvmlEventTypeXidCriticalError"],
                        eventData=xid,
                    )
                )

    def __getattribute__(self, name: str) -> Any:
        if name in object.__getattribute__(self, "_removed"):
            raise AttributeError(name)
        return object.__getattribute__(self, name)

    def _enter(self, fn: str, handle: FakeHandle | None = None) -> FakeGpu | None:
        self.calls[fn] += 1
        if not self.initialised:
            raise NVMLError(UNINITIALIZED)
        gpu = None
        if handle is not None:
            if not 0 <= handle.index < len(self.gpus):
                raise NVMLError(INVALID_ARGUMENT)
            gpu = self.gpus[handle.index]
            if gpu.lost:
                raise NVMLError(GPU_IS_LOST)
        for key in ((fn, handle.index if handle is not None else None), (fn, None)):
            code = self._failures.get(key)
            if code is not None:
                raise NVMLError(code)
        return gpu

    @staticmethod
    def _gpu(gpu: FakeGpu | None) -> FakeGpu:
        assert gpu is not None
        return gpu

    # -- library ----------------------------------------------------------------------

    def nvmlInit(self) -> None:
        self.calls["nvmlInit"] += 1
        if self.init_error is not None:
            raise NVMLError(self.init_error)
        self.initialised += 1

    def nvmlShutdown(self) -> None:
        self._enter("nvmlShutdown")
        self.initialised -= 1

    def nvmlSystemGetDriverVersion(self) -> str:
        self._enter("nvmlSystemGetDriverVersion")
        return self.driver_version

    def nvmlDeviceGetCount(self) -> int:
        self._enter("nvmlDeviceGetCount")
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeHandle:
        self._enter("nvmlDeviceGetHandleByIndex")
        if not 0 <= index < len(self.gpus):
            raise NVMLError(INVALID_ARGUMENT)
        if self.gpus[index].lost:
            raise NVMLError(GPU_IS_LOST)
        return FakeHandle(index)

    # -- identity ---------------------------------------------------------------------

    def nvmlDeviceGetName(self, handle: FakeHandle) -> str:
        return self._gpu(self._enter("nvmlDeviceGetName", handle)).name

    def nvmlDeviceGetUUID(self, handle: FakeHandle) -> str:
        return self._gpu(self._enter("nvmlDeviceGetUUID", handle)).uuid

    def nvmlDeviceGetPciInfo(self, handle: FakeHandle) -> FakePciInfo:
        gpu = self._gpu(self._enter("nvmlDeviceGetPciInfo", handle))
        return FakePciInfo(busId=gpu.bus_id.encode())

    # -- queries ----------------------------------------------------------------------

    def nvmlDeviceGetUtilizationRates(self, handle: FakeHandle) -> FakeUtilization:
        gpu = self._gpu(self._enter("nvmlDeviceGetUtilizationRates", handle))
        return FakeUtilization(gpu=gpu.util_gpu, memory=gpu.util_memory)

    def nvmlDeviceGetMemoryInfo(self, handle: FakeHandle) -> FakeMemory:
        gpu = self._gpu(self._enter("nvmlDeviceGetMemoryInfo", handle))
        return FakeMemory(
            total=gpu.memory_total_b,
            free=gpu.memory_total_b - gpu.memory_used_b,
            used=gpu.memory_used_b,
        )

    def nvmlDeviceGetPowerUsage(self, handle: FakeHandle) -> int:
        return self._gpu(self._enter("nvmlDeviceGetPowerUsage", handle)).power_mw

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: FakeHandle) -> int:
        return self._gpu(self._enter("nvmlDeviceGetEnforcedPowerLimit", handle)).power_limit_mw

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: FakeHandle) -> int:
        return self._gpu(self._enter("nvmlDeviceGetTotalEnergyConsumption", handle)).energy_mj

    def nvmlDeviceGetTemperature(self, handle: FakeHandle, sensor: int) -> int:
        gpu = self._gpu(self._enter("nvmlDeviceGetTemperature", handle))
        if sensor != CONSTANTS["NVML_TEMPERATURE_GPU"]:
            raise NVMLError(INVALID_ARGUMENT)
        return gpu.temperature_c

    def nvmlDeviceGetClockInfo(self, handle: FakeHandle, clock_type: int) -> int:
        gpu = self._gpu(self._enter("nvmlDeviceGetClockInfo", handle))
        if clock_type == CONSTANTS["NVML_CLOCK_SM"]:
            return gpu.sm_clock_mhz
        if clock_type == CONSTANTS["NVML_CLOCK_MEM"]:
            return gpu.memory_clock_mhz
        raise NVMLError(INVALID_ARGUMENT)

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: FakeHandle) -> int:
        return self._gpu(
            self._enter("nvmlDeviceGetCurrentClocksEventReasons", handle)
        ).clock_reasons

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, handle: FakeHandle) -> int:
        gpu = self._enter("nvmlDeviceGetCurrentClocksThrottleReasons", handle)
        return self._gpu(gpu).clock_reasons

    def nvmlDeviceGetTotalEccErrors(
        self, handle: FakeHandle, error_type: int, counter_type: int
    ) -> int:
        gpu = self._gpu(self._enter("nvmlDeviceGetTotalEccErrors", handle))
        if counter_type != CONSTANTS["NVML_VOLATILE_ECC"]:
            raise NVMLError(INVALID_ARGUMENT)
        if error_type == CONSTANTS["NVML_MEMORY_ERROR_TYPE_CORRECTED"]:
            return gpu.ecc_corrected
        return gpu.ecc_uncorrected

    def nvmlDeviceGetPcieThroughput(self, handle: FakeHandle, counter: int) -> int:
        gpu = self._gpu(self._enter("nvmlDeviceGetPcieThroughput", handle))
        if counter == CONSTANTS["NVML_PCIE_UTIL_TX_BYTES"]:
            return gpu.pcie_tx_kbps
        return gpu.pcie_rx_kbps

    def nvmlDeviceGetFieldValues(
        self, handle: FakeHandle, field_ids: list[Any]
    ) -> list[FakeFieldValue]:
        gpu = self._gpu(self._enter("nvmlDeviceGetFieldValues", handle))
        sources = {
            (CONSTANTS["NVML_FI_DEV_PCIE_COUNT_TX_BYTES"], 0): gpu.pcie_tx_bytes,
            (CONSTANTS["NVML_FI_DEV_PCIE_COUNT_RX_BYTES"], 0): gpu.pcie_rx_bytes,
            (CONSTANTS["NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX"], ALL_LINKS): gpu.nvlink_tx_kib,
            (CONSTANTS["NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX"], ALL_LINKS): gpu.nvlink_rx_kib,
        }
        out = []
        for item in field_ids:
            field_id, scope = item if isinstance(item, tuple) else (item, 0)
            value = sources.get((field_id, scope))
            if value is None:
                out.append(FakeFieldValue(field_id, scope, NOT_SUPPORTED))
            else:
                out.append(FakeFieldValue(field_id, scope, SUCCESS, 3, FakeValue(ullVal=value)))
        return out

    # -- events -----------------------------------------------------------------------

    def nvmlEventSetCreate(self) -> FakeEventSet:
        self._enter("nvmlEventSetCreate")
        event_set = FakeEventSet()
        self.event_sets.append(event_set)
        return event_set

    def nvmlDeviceRegisterEvents(
        self, handle: FakeHandle, event_types: int, event_set: FakeEventSet
    ) -> None:
        self._enter("nvmlDeviceRegisterEvents", handle)
        if not self.xid_supported:
            raise NVMLError(NOT_SUPPORTED)
        event_set.registered[handle.index] = event_set.registered.get(handle.index, 0) | event_types

    def nvmlEventSetWait(self, event_set: FakeEventSet, timeout_ms: int) -> FakeEventData:
        self._enter("nvmlEventSetWait")
        if timeout_ms != 0:
            raise AssertionError("the sampler must poll with a 0 ms timeout")
        if not event_set.queue:
            raise NVMLError(TIMEOUT)
        return event_set.queue.pop(0)

    def nvmlEventSetFree(self, event_set: FakeEventSet) -> None:
        self._enter("nvmlEventSetFree")
        event_set.freed = True
