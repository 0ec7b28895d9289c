"""Process group and device for the reference trainer (the layout: ``runtime.train.parallel``).

Under torchrun (``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` set) it joins the job's process
group; run alone it makes a one-process group over an in-memory store, so
``python -m runtime.train`` works without a launcher. CUDA → NCCL on ``cuda:LOCAL_RANK``;
otherwise gloo on the CPU. The training code is the same for both.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, NoReturn

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job."""

    rank: int
    """Global rank."""
    world_size: int
    """Number of training processes."""
    local_rank: int
    """Rank on this node (selects the GPU)."""
    device: torch.device
    """Device the model lives on."""


def planned_device(device_choice: str) -> torch.device:
    """The device type ``--device`` picks (its index is the local rank's, set by ``init``)."""
    use_cuda = device_choice == "cuda" or (device_choice == "auto" and torch.cuda.is_available())
    return torch.device("cuda" if use_cuda else "cpu")


def init(device_choice: str, timeout_s: float) -> DistInfo:
    """Initialise the default process group (idempotent) and pick the device."""
    use_cuda = planned_device(device_choice).type == "cuda"
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    backend = "nccl" if use_cuda else "gloo"
    if not dist.is_initialized():
        timeout = timedelta(seconds=timeout_s)
        if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
            dist.init_process_group(backend, timeout=timeout)
        else:
            dist.init_process_group(
                backend, store=dist.HashStore(), rank=0, world_size=1, timeout=timeout
            )
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, device)


def launched_world_size() -> int:
    """Processes of the job as the launcher (torchrun) set it; 1 when run alone."""
    return int(os.environ.get("WORLD_SIZE", "1")) if "RANK" in os.environ else 1


def broadcast(value: Any) -> Any:
    """Rank 0's ``value`` on every rank (a small picklable object)."""
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(info: DistInfo) -> None:
    if info.device.type == "cuda":
        dist.barrier(device_ids=[info.local_rank])
    else:
        dist.barrier()


def leave(code: int, info: DistInfo | None = None) -> NoReturn:
    """End this rank with ``code`` once its work is done, without tearing torch down.

    torch 2.13's gloo teardown (``destroy_process_group`` or the destructors that run at
    interpreter exit) aborts about one run in twenty with "terminate called without an
    active exception" (SIGABRT), after the rank has finished and recorded its work;
    torchrun would report that rank as failed, and the job as failed or restarted. So
    every rank first waits at a barrier (given ``info``) until all have finished (no peer
    is then inside a collective), flushes what Python buffers, and ends with
    ``os._exit``, which runs no destructors: the kernel closes the sockets and files.
    """
    if info is not None:
        barrier(info)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
