"""What the trainer measures and reports about itself, for ``Trainer`` (a mixin): the
layout it applied (the ``layout_applied`` event), its peak memory, and each rank's own
compute time per step (how the agent finds a straggler).
"""

from __future__ import annotations

import resource
import time
from typing import Any

import torch
from torch.distributed.tensor import DTensor

from runtime.train.config import TrainConfig
from runtime.train.parallel import ParallelDims


def tensor_bytes(tensor: torch.Tensor) -> int:
    """Bytes this rank holds for ``tensor``: a DTensor's local shard; a tensor subclass
    (torchao's NF4) by the plain tensors it is made of."""
    if isinstance(tensor, DTensor):
        tensor = tensor.to_local()
    if type(tensor) not in (torch.Tensor, torch.nn.Parameter) and hasattr(
        tensor, "__tensor_flatten__"
    ):
        names, _ = tensor.__tensor_flatten__()
        return sum(tensor_bytes(getattr(tensor, name)) for name in names)
    return tensor.numel() * tensor.element_size()


class Measurements:
    """Layout, memory and compute-time figures of ``Trainer`` (a mixin)."""

    cfg: TrainConfig
    dims: ParallelDims
    precision: str
    world_size: int
    tokens_per_step: int
    loss_chunks: int
    device: torch.device
    model: Any
    optimizer: torch.optim.Optimizer
    _compute_s: float
    _block_start: float
    _slow_s: float

    def _time_compute(self, blocks: list[torch.nn.Module]) -> None:
        """Time each block's forward between FSDP's unshard and its end: the rank's own
        compute, without the time spent waiting for others in collectives.

        In synchronous data parallelism every rank's step wall time is the same (the fast
        ranks wait for the slow one inside the collectives), so the step time cannot show
        which rank is slow; the forward compute time can (the per-kernel timing idea of
        NVIDIA's straggler detection, nvidia-resiliency-ext, applied to whole blocks).
        FSDP2 registers its pre-forward hook (all-gather and wait) with ``prepend=True``
        and its post-forward hook first, so these hooks, registered after sharding, bracket
        only computation. A ``slow`` fault adds its delay inside the bracket, where a
        throttled device would.
        """
        self._compute_s = 0.0
        self._block_start = 0.0
        self._slow_s = 0.0

        def begin(module: torch.nn.Module, args: Any) -> None:
            self._block_start = time.perf_counter()

        def end(module: torch.nn.Module, args: Any, output: Any) -> None:
            if self._slow_s and module is blocks[0]:
                time.sleep(self._slow_s)
            self._compute_s += time.perf_counter() - self._block_start

        for block in blocks:
            block.register_forward_pre_hook(begin)
            block.register_forward_hook(end)

    def layout_fields(self) -> dict[str, Any]:
        """The layout this run applies: the ``layout_applied`` event's fields."""
        cfg, dims = self.cfg, self.dims
        return {
            "dp_replicate": dims.dp_replicate,
            "dp_shard": dims.dp_shard,
            "tp": dims.tp,
            "pp": dims.pp,
            "interleave": cfg.interleave,
            "schedule": cfg.schedule,
            "uneven_stages": cfg.uneven_stages,
            "cp": dims.cp,
            "cp_impl": cfg.cp_impl,
            "ep": dims.ep,
            "experts": cfg.experts,
            "moe_capacity_factor": cfg.moe_capacity_factor,
            "sequence_parallel": cfg.sequence_parallel and dims.tp > 1,
            "recompute": cfg.recompute,
            "sharding": cfg.sharding,
            "precision": self.precision,
            "world_size": self.world_size,
            "global_batch_tokens": self.tokens_per_step,
            "micro_batch": cfg.micro_batch,
            "grad_accum": cfg.grad_accum,
            # dp and grad_accum above follow the world size (a node range allowed it).
            "elastic_dp": cfg.elastic_dp,
            "compile": cfg.compile,
            "loss_chunks": self.loss_chunks,
        }

    def state_mib(self) -> float:
        """This rank's share of the parameters (frozen ones in their storage format, e.g.
        NF4), their gradients and the optimizer states, MiB: what the planner's params,
        grads and optimizer terms predict per GPU. A trained parameter's gradient is
        counted at its shard's size (it exists from backward to ``zero_grad``, which runs
        before the step is reported). Constant after the first step (the optimizer creates
        its states there), so taken once then."""
        cached: float | None = getattr(self, "_state_mib", None)
        if cached is not None:
            return cached
        params = list(self.model.parameters())
        total = sum(tensor_bytes(p) * (2 if p.requires_grad else 1) for p in params)
        for state in self.optimizer.state.values():
            total += sum(tensor_bytes(v) for v in state.values() if isinstance(v, torch.Tensor))
        value = round(total / 2**20, 3)
        if self.optimizer.state:
            self._state_mib = value
        return value

    def memory_fields(self) -> dict[str, float]:
        """Peak memory so far: the process's resident set, and on a GPU what torch allocated.

        ``max_rss_mib`` is Linux's ``ru_maxrss`` (KiB); ``gpu_memory_peak_mib`` is
        ``torch.cuda.max_memory_allocated`` (tensors only, not the CUDA context or the
        allocator's cache: ``gpu_memory_reserved_peak_mib`` is what the cache held), the
        figures the planner's per-GPU memory is checked against.
        """
        fields = {
            "max_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "state_mib": self.state_mib(),
        }
        if self.device.type == "cuda":
            fields["gpu_memory_peak_mib"] = round(
                torch.cuda.max_memory_allocated(self.device) / 2**20, 1
            )
            fields["gpu_memory_reserved_peak_mib"] = round(
                torch.cuda.max_memory_reserved(self.device) / 2**20, 1
            )
        return fields
