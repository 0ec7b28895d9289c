"""The Prometheus exporter: dcgm-exporter names, units and labels, served on 127.0.0.1."""

from __future__ import annotations

import socket
from typing import Any
from urllib.request import urlopen

import pytest
from fake_pynvml import FakeGpu, FakeNvml
from prometheus_client.parser import text_string_to_metric_families

from runtime.telemetry import Sampler, TelemetryInputError, start_metrics_server
from runtime.telemetry.exporter import GPU_GAUGES, HOST_GAUGES, make_registry


def scrape(url: str) -> dict[str, list[Any]]:
    with urlopen(url, timeout=5) as response:
        assert response.status == 200
        text = response.read().decode()
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def by_gpu(samples: list[Any]) -> dict[str, float]:
    return {s.labels["gpu"]: s.value for s in samples}


@pytest.fixture
def sampler() -> Any:
    gpus = [
        FakeGpu(uuid="GPU-aaaa", bus_id="00000000:18:00.0", nvlink_tx_kib=0, nvlink_rx_kib=0),
        FakeGpu(uuid="GPU-bbbb", bus_id="00000000:19:00.0", power_mw=250_500, temperature_c=40),
    ]
    nv = FakeNvml(gpus)
    s = Sampler("node-a", 1.0, nvml_module=nv)
    s.fake = nv  # type: ignore[attr-defined]
    yield s
    s.stop()


def test_metrics_over_http_follow_dcgm_exporter(sampler: Sampler) -> None:
    server = start_metrics_server(sampler, 0)
    try:
        assert server.addr == "127.0.0.1" and server.port > 0
        assert scrape(server.url) == {}  # no sample yet: nothing to report
        sampler.sample_once()
        metrics = scrape(server.url)
    finally:
        server.close()

    util = metrics["DCGM_FI_DEV_GPU_UTIL"]
    assert by_gpu(util) == {"0": 97.0, "1": 97.0}
    assert util[0].labels == {
        "gpu": "0",
        "UUID": "GPU-aaaa",
        "pci_bus_id": "00000000:18:00.0",
        "device": "nvidia0",
        "modelName": "NVIDIA H100 80GB HBM3",
        "Hostname": "node-a",
        "DCGM_FI_DRIVER_VERSION": "550.54.15",
    }
    assert by_gpu(metrics["DCGM_FI_DEV_POWER_USAGE"]) == {"0": 612.35, "1": 250.5}  # W
    assert by_gpu(metrics["DCGM_FI_DEV_FB_USED"])["0"] == 60 * 1024  # MiB
    assert by_gpu(metrics["DCGM_FI_DEV_FB_FREE"])["0"] == 20 * 1024
    assert by_gpu(metrics["DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"])["0"] == 123_456_789  # mJ
    assert by_gpu(metrics["DCGM_FI_DEV_GPU_TEMP"])["1"] == 40
    assert by_gpu(metrics["DCGM_FI_DEV_SM_CLOCK"])["0"] == 1980
    assert by_gpu(metrics["DCGM_FI_DEV_MEM_CLOCK"])["0"] == 2619
    assert by_gpu(metrics["DCGM_FI_DEV_CLOCKS_EVENT_REASONS"])["0"] == 4
    assert by_gpu(metrics["DCGM_FI_DEV_ECC_SBE_VOL_TOTAL"])["0"] == 2
    assert by_gpu(metrics["DCGM_FI_DEV_ECC_DBE_VOL_TOTAL"])["0"] == 0
    assert by_gpu(metrics["DCGM_FI_DEV_XID_ERRORS"]) == {"0": 0.0, "1": 0.0}
    assert by_gpu(metrics["DCGM_FI_PROF_PCIE_TX_BYTES"])["0"] == 1000 * 1024  # bytes/s
    # NVLink needs two samples for a rate: n/a values are left out, not exported as 0
    assert metrics["DCGM_FI_PROF_NVLINK_TX_BYTES"] == []
    host = {s.name: s for s in metrics["scalectl_host_memory_total_bytes"]}
    assert host["scalectl_host_memory_total_bytes"].labels == {"Hostname": "node-a"}
    assert host["scalectl_host_memory_total_bytes"].value > 0
    loads = {s.labels["period"] for s in metrics["scalectl_host_load_average"]}
    assert loads == {"1m", "5m", "15m"}
    assert metrics["scalectl_telemetry_nvml_available"][0].value == 1.0
    assert metrics["scalectl_telemetry_gpus"][0].value == 2.0
    for name, *_ in GPU_GAUGES + HOST_GAUGES:
        assert name in metrics, name


def test_xid_and_lost_gpu_metrics(sampler: Sampler) -> None:
    sampler.sample_once()
    sampler.fake.emit_xid(1, 79)  # type: ignore[attr-defined]
    sampler.fake.lose(0)  # type: ignore[attr-defined]
    sampler.sample_once()
    from prometheus_client import generate_latest

    text = generate_latest(make_registry(sampler)).decode()
    metrics = {f.name: f.samples for f in text_string_to_metric_families(text)}
    assert by_gpu(metrics["DCGM_FI_DEV_XID_ERRORS"])["1"] == 79
    assert by_gpu(metrics["scalectl_gpu_xid_events"])["1"] == 1
    assert by_gpu(metrics["scalectl_gpu_unavailable"]) == {"0": 1.0, "1": 0.0}
    assert "0" not in by_gpu(metrics["DCGM_FI_DEV_POWER_USAGE"])


def test_host_only_sample_exports_host_metrics_and_no_gpu_values() -> None:
    s = Sampler("h", 1.0, gpus=False)
    s.sample_once()
    s.sample_once()
    from prometheus_client import generate_latest

    text = generate_latest(make_registry(s)).decode()
    s.stop()
    metrics = {f.name: f.samples for f in text_string_to_metric_families(text)}
    assert metrics["DCGM_FI_DEV_GPU_UTIL"] == []
    assert metrics["scalectl_telemetry_nvml_available"][0].value == 0.0
    assert metrics["scalectl_host_memory_used_bytes"][0].value > 0
    assert metrics["scalectl_host_processes"][0].value > 0


def test_default_registry_is_left_alone(sampler: Sampler) -> None:
    from prometheus_client import REGISTRY, generate_latest

    server = start_metrics_server(sampler, 0)
    server.close()
    assert b"DCGM_FI_DEV_GPU_UTIL" not in generate_latest(REGISTRY)


def test_server_binds_loopback_only_and_frees_the_port(sampler: Sampler) -> None:
    server = start_metrics_server(sampler, 0)
    port = server.port
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
        bound = server._httpd.server_address[0]
        assert bound == "127.0.0.1"
    finally:
        server.close()
    with socket.socket() as probe:  # nothing listens there any more
        # SO_REUSEADDR: a closed connection may leave the port in TIME_WAIT, which is fine
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))
        probe.listen()


def test_port_in_use_is_a_user_error(sampler: Sampler) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(TelemetryInputError, match=f"metrics port {port} on 127.0.0.1"):
            start_metrics_server(sampler, port)


@pytest.mark.parametrize("port", [-1, 65536, True])
def test_bad_port_is_a_user_error(sampler: Sampler, port: int) -> None:
    with pytest.raises(TelemetryInputError, match="from 0 to 65535"):
        start_metrics_server(sampler, port)
