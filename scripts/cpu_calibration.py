"""Calibrate this machine as a planner accelerator, in a second or two, with torch.

The planner predicts from an ``AcceleratorSpec``'s rates; a catalog GPU has published
ones, this CPU does not, so we measure the rates one training rank will actually get:
with the thread count the launcher gives each rank, at the GEMM and attention shapes of
the model being planned.

* ``bf16_dense_tflops``: achieved matmul rate at the model's linear-layer shapes
  (2·M·N·K FLOPs per matmul, the standard count). On a CPU the reference trainer computes
  in fp32, so this is the fp32 rate: the field means "dense rate of the training
  precision", and ``gemm_efficiency`` is 1 because the rate is already an achieved one.
* ``attention_fwd_efficiency`` / ``attention_bwd_efficiency``: achieved rate of
  ``scaled_dot_product_attention`` at the model's shape (causal: 2·b·h·s²·d FLOPs
  forward, 2.5x that backward, as FlashAttention-2, Dao 2023, counts) over the GEMM rate.
* ``hbm_tb_s``: memory bandwidth of a large tensor copy (bytes read + written per second).
* ``intra_node_gb_s``: loopback TCP throughput between two sockets, the transport gloo
  uses between ranks on one host.
* ``hbm_gib``: this machine's memory divided between its ranks.

Power, price and carbon are not measured here; they are set to neutral values and the
main job reports neither energy nor cost.
"""

from __future__ import annotations

import os
import socket
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Calibration:
    """What was measured, with units."""

    threads: int
    gemm_tflops: float
    attention_fwd_tflops: float
    attention_bwd_tflops: float
    memory_gb_s: float
    loopback_gb_s: float
    memory_gib_per_rank: float
    baseline_rss_mib: float
    """Resident memory of this process once it has what every rank has before it builds a
    model: torch, torch.distributed with a gloo group, FSDP and DCP (the framework floor)."""
    seconds: float


def _best_time_s(fn: Callable[[], Any], min_total_s: float = 0.15, repeats: int = 5) -> float:
    """Fastest of ``repeats`` timings, each of enough calls to last ``min_total_s / repeats``."""
    fn()  # warm-up (allocations, kernel selection)
    start = time.perf_counter()
    fn()
    one = max(time.perf_counter() - start, 1e-6)
    calls = max(1, int(min_total_s / repeats / one))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - start) / calls)
    return best


def gemm_tflops(tokens: int, hidden: int, ffn_hidden: int) -> float:
    """Achieved matmul TFLOP/s over the model's two linear shapes (tokens x h x h, h x ffn)."""
    import torch

    rates = []
    for n in (hidden, ffn_hidden):
        a = torch.randn(tokens, hidden)
        b = torch.randn(hidden, n)
        seconds = _best_time_s(lambda a=a, b=b: torch.mm(a, b))
        rates.append(2.0 * tokens * hidden * n / seconds / 1e12)
    return statistics.fmean(rates)


def attention_tflops(batch: int, heads: int, seq_len: int, head_dim: int) -> tuple[float, float]:
    """Achieved causal SDPA TFLOP/s forward and backward at the model's shape."""
    import torch
    import torch.nn.functional as F

    q, k, v = (torch.randn(batch, heads, seq_len, head_dim, requires_grad=True) for _ in range(3))
    forward_flops = 2.0 * batch * heads * seq_len * seq_len * head_dim  # causal: half of 4bhs²d
    fwd_s = _best_time_s(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True))
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    grad = torch.ones_like(out)

    def fwd_bwd() -> None:
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        y.backward(grad)

    both_s = _best_time_s(fwd_bwd)
    bwd_s = max(both_s - fwd_s, 1e-9)
    return forward_flops / fwd_s / 1e12, 2.5 * forward_flops / bwd_s / 1e12


def memory_gb_s(mib: int = 64) -> float:
    """Copy bandwidth: bytes read plus bytes written per second, GB/s."""
    import torch

    src = torch.empty(mib * 1024 * 1024 // 4)
    src.fill_(1.0)
    dst = torch.empty_like(src)
    seconds = _best_time_s(lambda: dst.copy_(src), min_total_s=0.2)
    return 2.0 * src.numel() * 4 / seconds / 1e9


def loopback_gb_s(total_mib: int = 128) -> float:
    """TCP throughput through 127.0.0.1 (what gloo between local ranks runs on), GB/s."""
    chunk = b"\0" * (1 << 20)
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    received = [0]

    def sink() -> None:
        conn, _ = server.accept()
        with conn:
            while True:
                data = conn.recv(1 << 20)
                if not data:
                    break
                received[0] += len(data)

    thread = threading.Thread(target=sink, daemon=True)
    thread.start()
    with socket.create_connection(("127.0.0.1", port)) as client:
        start = time.perf_counter()
        for _ in range(total_mib):
            client.sendall(chunk)
        client.shutdown(socket.SHUT_WR)
        thread.join(timeout=30)
        seconds = time.perf_counter() - start
    server.close()
    return received[0] / seconds / 1e9


def rss_mib() -> float:
    """This process's resident memory, MiB."""
    import psutil

    return float(psutil.Process().memory_info().rss) / 2**20


def framework_floor_mib() -> float:
    """RSS after loading what a rank loads before its model: the part of a rank's memory
    that the planner's per-GPU terms (weights, grads, optimizer, activations) leave out."""
    from datetime import timedelta

    import torch.distributed as dist
    import torch.distributed.checkpoint
    import torch.distributed.fsdp  # noqa: F401

    if not dist.is_initialized():
        store = dist.HashStore()
        dist.init_process_group(
            "gloo", store=store, rank=0, world_size=1, timeout=timedelta(seconds=30)
        )
    floor = rss_mib()
    dist.destroy_process_group()
    return floor


def calibrate(
    *,
    threads: int,
    ranks: int,
    tokens: int,
    hidden: int,
    ffn_hidden: int,
    heads: int,
    seq_len: int,
    micro_batch: int,
    report: Callable[[str], None] | None = None,
) -> Calibration:
    """Measure everything above with ``threads`` torch threads (one rank's share);
    ``report`` gets one line as each measurement ends (on a busy machine the whole takes
    minutes, and a person, or a test waiting on output, should see it move)."""
    import psutil
    import torch

    say = report or (lambda line: None)
    start = time.perf_counter()
    baseline = framework_floor_mib()
    say(f"framework floor {baseline:,.0f} MiB")
    torch.set_num_threads(threads)
    gemm = gemm_tflops(tokens, hidden, ffn_hidden)
    say(f"matmul {gemm * 1000:,.1f} GFLOP/s")
    attn_fwd, attn_bwd = attention_tflops(micro_batch, heads, seq_len, hidden // heads)
    say(f"attention {attn_fwd * 1000:,.1f} / {attn_bwd * 1000:,.1f} GFLOP/s forward / backward")
    mem = memory_gb_s()
    say(f"memory copy {mem:,.1f} GB/s")
    net = loopback_gb_s()
    say(f"loopback {net:,.2f} GB/s")
    total_gib = psutil.virtual_memory().total / 2**30
    return Calibration(
        threads=threads,
        gemm_tflops=gemm,
        attention_fwd_tflops=attn_fwd,
        attention_bwd_tflops=attn_bwd,
        memory_gb_s=mem,
        loopback_gb_s=net,
        memory_gib_per_rank=total_gib / ranks,
        baseline_rss_mib=baseline,
        seconds=time.perf_counter() - start,
    )


def accelerator_fields(cal: Calibration) -> dict[str, Any]:
    """Keyword arguments of ``planner.AcceleratorSpec`` for this calibrated CPU."""
    return {
        "name": f"{_cpu_model()} x{cal.threads} thread(s) (calibrated)",
        "vendor": "this machine",
        "bf16_dense_tflops": cal.gemm_tflops,
        "fp32_dense_tflops": cal.gemm_tflops,  # the trainer's (fp32) rate: plans use fp32
        "gemm_efficiency": 1.0,
        "attention_fwd_efficiency": min(1.0, cal.attention_fwd_tflops / cal.gemm_tflops),
        "attention_bwd_efficiency": min(1.0, cal.attention_bwd_tflops / cal.gemm_tflops),
        "hbm_gib": cal.memory_gib_per_rank,
        "hbm_tb_s": cal.memory_gb_s / 1000.0,
        "hbm_efficiency": 1.0,
        "intra_node_gb_s": cal.loopback_gb_s,
        "intra_node_efficiency": 1.0,
        "inter_node_gb_s_per_gpu": cal.loopback_gb_s,
        "inter_node_efficiency": 1.0,
        # Not measured (see module docstring): neutral values, never reported.
        "tdp_w": 1.0,
        "idle_w": 0.0,
        "price_usd_per_gpu_hour": 0.0,
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return " ".join(line.split(":", 1)[1].split())[:40]
    except OSError:
        pass
    return os.uname().machine
