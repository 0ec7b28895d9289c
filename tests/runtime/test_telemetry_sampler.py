"""The Sampler: records, JSON Lines in the job dir, the one-time notice, the thread, the CLI."""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fake_pynvml as fake
import polling
import pytest
from fake_pynvml import FakeNvml

from contract.jobdir import JobDir, read_jsonl
from runtime.telemetry import RECORD_VERSION, Sampler, TelemetryInputError, run_sampler
from runtime.telemetry.command import sample_command
from runtime.telemetry.text import format_record

RECORD_KEYS = {
    "v",
    "ts",
    "node",
    "seq",
    "interval_s",
    "nvml",
    "driver_version",
    "sample_cpu_s",
    "host",
    "gpus",
}


def wait_for(predicate: Callable[[], Any]) -> Any:
    return polling.wait_for(predicate, timeout_s=10.0, poll_s=0.01)


def test_records_with_8_fake_gpus_are_written_as_json_lines(tmp_path: Path) -> None:
    job = JobDir(tmp_path / "job")
    nv = FakeNvml(8)
    sampler = Sampler("node-1", 1.0, job, nvml_module=nv)
    records = [sampler.sample_once() for _ in range(3)]
    sampler.stop()
    chunk = read_jsonl(job.telemetry_file("node-1"))
    assert chunk.bad_lines == 0
    assert chunk.records == json.loads(json.dumps(records))  # what is on disk is the record
    first = chunk.records[0]
    assert set(first) == RECORD_KEYS  # no notice when NVML works
    assert first["v"] == RECORD_VERSION and first["node"] == "node-1"
    assert [r["seq"] for r in chunk.records] == [0, 1, 2]
    assert first["nvml"] is True and first["driver_version"] == "550.54.15"
    assert len(first["gpus"]) == 8
    assert first["gpus"][5]["power_w"] == pytest.approx(612.35)
    assert first["gpus"][5]["clock_event_reasons"] == ["sw_power_cap"]
    assert first["host"]["memory_total_mib"] > 0
    assert first["sample_cpu_s"] >= 0
    assert sampler.latest is records[-1]
    assert nv.initialised == 0  # stop() shut NVML down


def test_no_nvml_gives_host_only_samples_and_exactly_one_notice(tmp_path: Path) -> None:
    notices: list[str] = []
    nv = FakeNvml(2, init_error=fake.LIBRARY_NOT_FOUND)
    sampler = Sampler("n1", 1.0, tmp_path, nvml_module=nv, on_notice=notices.append)
    for _ in range(25):
        sampler.sample_once()
    sampler.stop()
    assert len(notices) == 1 and "LibraryNotFound" in notices[0] and "\n" not in notices[0]
    records = read_jsonl(JobDir(tmp_path).telemetry_file("n1")).records
    assert len(records) == 25
    assert [r.get("notice") for r in records] == [notices[0]] + [None] * 24
    assert all(r["gpus"] == [] and r["nvml"] is False for r in records)
    assert nv.calls["nvmlInit"] == 1


def test_real_pynvml_here_samples_without_a_traceback(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="scalectl.telemetry")
    sampler = Sampler("here", 1.0)
    records = [sampler.sample_once() for _ in range(3)]
    sampler.stop()
    if records[0]["nvml"]:
        pytest.skip("NVML works on this machine; the GPU test covers it")
    assert "notice" in records[0] and all("notice" not in r for r in records[1:])
    warnings = [r for r in caplog.records if r.name == "scalectl.telemetry"]
    assert len(warnings) == 1 and warnings[0].exc_info is None
    assert "sampling host only" in warnings[0].getMessage()


def test_gpus_off_means_no_nvml_and_no_notice() -> None:
    notices: list[str] = []
    nv = FakeNvml(1)
    sampler = Sampler("n", 1.0, gpus=False, nvml_module=nv, on_notice=notices.append)
    record = sampler.sample_once()
    sampler.stop()
    assert record["gpus"] == [] and notices == [] and nv.calls["nvmlInit"] == 0


def test_background_thread_samples_at_the_interval_and_stops_cleanly(tmp_path: Path) -> None:
    nv = FakeNvml(2)
    sampler = Sampler("n", 0.05, tmp_path, nvml_module=nv).start()
    path = JobDir(tmp_path).telemetry_file("n")
    wait_for(lambda: len(read_jsonl(path).records) >= 4)
    assert sampler.running
    sampler.stop()
    assert not sampler.running
    count = len(read_jsonl(path).records)
    time.sleep(0.2)
    assert len(read_jsonl(path).records) == count  # nothing after stop
    assert nv.initialised == 0
    with pytest.raises(RuntimeError):
        sampler.sample_once()


def test_a_lost_gpu_mid_run_keeps_the_thread_alive(tmp_path: Path) -> None:
    nv = FakeNvml(2)
    path = JobDir(tmp_path).telemetry_file("n")
    with Sampler("n", 0.03, tmp_path, nvml_module=nv):
        wait_for(lambda: len(read_jsonl(path).records) >= 2)
        nv.lose(0)
        nv.emit_xid(1, 79)
        wait_for(lambda: read_jsonl(path).records[-1]["gpus"][0]["error"] is not None)
        n = len(read_jsonl(path).records)
        wait_for(lambda: len(read_jsonl(path).records) >= n + 2)
    records = read_jsonl(path).records
    assert records[-1]["gpus"][1]["error"] is None
    assert [x for r in records for x in r["gpus"][1]["xid_events"]] == [79]


def test_unwritable_file_is_counted_not_raised(tmp_path: Path) -> None:
    job = JobDir(tmp_path)
    job.telemetry_file("n").mkdir(parents=True)  # a directory where the file should be
    sampler = Sampler("n", 1.0, job, gpus=False)
    sampler.sample_once()
    sampler.sample_once()
    sampler.stop()
    assert sampler.write_errors == 2 and sampler.latest is not None


@pytest.mark.parametrize("interval", [0, -1, float("nan"), float("inf")])
def test_bad_interval_is_a_user_error(interval: float) -> None:
    with pytest.raises(TelemetryInputError, match="interval_s must be a positive"):
        Sampler("n", interval)


def test_bad_node_name_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(TelemetryInputError, match="node"):
        Sampler("../evil", 1.0, tmp_path)


def test_run_sampler_writes_and_serves(tmp_path: Path) -> None:
    from urllib.request import urlopen

    run = run_sampler(tmp_path, "agent-node", 0.05, metrics_port=0, nvml_module=FakeNvml(1))
    try:
        path = JobDir(tmp_path).telemetry_file("agent-node")
        wait_for(lambda: len(read_jsonl(path).records) >= 1)
        assert run.metrics_port is not None and run.metrics_port > 0
        with urlopen(f"http://127.0.0.1:{run.metrics_port}/metrics", timeout=5) as response:
            text = response.read().decode()
        assert "DCGM_FI_DEV_GPU_UTIL{" in text and 'Hostname="agent-node"' in text
    finally:
        run.stop()
    assert not run.sampler.running


def test_sample_command_prints_json_lines_and_one_notice() -> None:
    out, err = io.StringIO(), io.StringIO()
    notices: list[str] = []
    nv = FakeNvml(1, init_error=fake.DRIVER_NOT_LOADED)
    sampler = Sampler("cli", 0.02, nvml_module=nv, on_notice=notices.append)
    taken = sample_command(0.02, count=3, json_output=True, out=out, err=err, sampler=sampler)
    lines = out.getvalue().splitlines()
    assert taken == 3 and len(lines) == 3
    records = [json.loads(line) for line in lines]
    assert "DriverNotLoaded" in records[0]["notice"]
    assert len(notices) == 1


def test_sample_command_text_output() -> None:
    out = io.StringIO()
    sampler = Sampler("cli", 0.02, nvml_module=FakeNvml(2))
    sample_command(0.02, count=1, out=out, err=io.StringIO(), sampler=sampler)
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and " cli " in lines[0] and "cpu " in lines[0]
    assert lines[1].startswith("  gpu0 NVIDIA H100") and "clocks sw_power_cap" in lines[1]


def test_text_shows_n_a_and_gpu_errors() -> None:
    record = {
        "ts": 0.0,
        "node": "n",
        "host": {"cpu_percent": None},
        "gpus": [{"index": 3, "name": "X", "error": "gpu_lost: GpuIsLost: GPU is lost"}],
    }
    host, gpu = format_record(record)
    assert "cpu n/a" in host and "mem n/a" in host
    assert gpu == "  gpu3 X  error: gpu_lost: GpuIsLost: GPU is lost"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--interval", "0"], "--interval must be a positive"),
        (["--count", "0"], "--count must be 1 or more"),
        (["--count", "1", "--metrics-port", "70000"], "--metrics-port must be an integer"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from scalectl.cli import main

    with pytest.raises(SystemExit) as info:
        main(["telemetry", "sample", *args])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and message in err[-1]


def test_cli_samples_this_machine(capsys: pytest.CaptureFixture[str]) -> None:
    from scalectl.cli import main

    try:
        main(["telemetry", "sample", "--count", "2", "--interval", "0.05", "--json"])
    except SystemExit as exc:
        assert exc.code in (0, None)
    captured = capsys.readouterr()
    records = [json.loads(line) for line in captured.out.splitlines()]
    assert len(records) == 2
    notices = [line for line in captured.err.splitlines() if line.startswith("notice: ")]
    assert len(notices) == (0 if records[0]["nvml"] else 1)
    assert "Traceback" not in captured.err
