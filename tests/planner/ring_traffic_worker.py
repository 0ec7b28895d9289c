"""One rank of torch's ring attention on CPU (gloo), counting the bytes its code moves
outside the attention kernels (what ``planner.formulas.kernels.torch_ring_attention_bytes``
prices) and the peak of the tensors its backward allocates (what
``planner.formulas.memory.torch_ring_workspace_bytes`` holds). Run by
tests/planner/test_torch_ring_source.py under torchrun.

torch's own ``_templated_ring_attention`` and its backward run unchanged (the rotaters,
the FP32 merger, the dK/dV ring); only the attention op is ours (fp32 math in place of the
CUDA flash kernel, whose traffic the planner times separately), and a dispatch mode adds
up every other op's input and output bytes. Views move nothing and are not counted, nor
are collectives (the planner times those as communication), nor a factory's input (only
its shape is read).

    torchrun --nproc-per-node CP ring_traffic_worker.py SEQ_LOCAL OUT_DIR
"""

from __future__ import annotations

import json
import sys
import weakref
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.distributed.tensor.experimental._context_parallel import _attention as ring
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

FACTORIES = {"zeros_like", "empty_like", "ones_like", "full_like", "new_zeros", "new_empty"}
COMMUNICATION = {"_c10d_functional", "c10d"}


def _bytes(x: object) -> int:
    return x.numel() * x.element_size() if isinstance(x, torch.Tensor) else 0


class Traffic(TorchDispatchMode):
    """Bytes read and written by every op that is not a view, a collective or inside
    the attention op (``paused``)."""

    def __init__(self) -> None:
        super().__init__()
        self.bytes = 0
        self.paused = False

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        # A view returns an alias it does not write; an in-place op returns the one it wrote.
        view = func.is_view or any(
            r.alias_info is not None and not r.alias_info.is_write for r in func._schema.returns
        )
        if self.paused or func.namespace in COMMUNICATION or view:
            return out
        name = func.overloadpacket.__name__
        read = 0 if name in FACTORIES else sum(_bytes(t) for t in tree_leaves((args, kwargs)))
        self.bytes += read + sum(_bytes(t) for t in tree_leaves(out))
        return out


MODE = Traffic()


class Live(TorchDispatchMode):
    """Bytes of the storages the ops inside the mode allocate while any tensor on them is
    alive, and their peak; ``baseline`` storages (the caller's tensors) are not counted."""

    def __init__(self, baseline: set[int]) -> None:
        super().__init__()
        self.live = self.peak = 0
        self.refs: dict[int, list[int]] = {}
        """Storage address: [tensors alive on it, its bytes]."""
        self.baseline = baseline

    def _release(self, key: int) -> None:
        entry = self.refs[key]
        entry[0] -= 1
        if entry[0] == 0:
            self.live -= entry[1]
            del self.refs[key]

    def _track(self, t: object) -> None:
        if not isinstance(t, torch.Tensor):
            return
        storage = getattr(t, "elem", t).untyped_storage()  # a collective's result wraps it
        key = storage.data_ptr()
        if key in self.baseline:
            return
        entry = self.refs.get(key)
        if entry is None:
            entry = self.refs[key] = [0, storage.nbytes()]
            self.live += storage.nbytes()
            self.peak = max(self.peak, self.live)
        entry[0] += 1
        weakref.finalize(t, self._release, key)

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            self._track(t)
        return out


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, is_causal: bool = False,
              **_: Any) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Causal or full attention in fp32 math, returning (output, log-sum-exp) as flash."""
    MODE.paused = True
    try:
        scores = torch.einsum("bhqd,bhkd->bhqk", q.float(), k.float()) / q.shape[-1] ** 0.5
        if is_causal:
            above = torch.ones_like(scores, dtype=torch.bool).triu(1)
            scores = scores.masked_fill(above, float("-inf"))
        lse = torch.logsumexp(scores, dim=-1)
        out = torch.einsum("bhqk,bhkd->bhqd", torch.softmax(scores, -1), v.float())
        return out.to(q.dtype), lse
    finally:
        MODE.paused = False


def attention_backward(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                       **_: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """Gradients of the shapes and dtype flash returns (their values do not matter here)."""
    MODE.paused = True
    try:
        return torch.randn_like(query), torch.randn_like(key), torch.randn_like(value)
    finally:
        MODE.paused = False


def collectives_complete_at_once() -> None:
    """Each K/V and dK/dV exchange awaited as soon as it is issued, so that at most the
    previous dK/dV send outlives its step (gloo's thread may still hold it for a moment
    after the wait; on the GPU it can still be in flight). Traffic does not depend on it."""
    for rotater in (ring._AllToAllRotater, ring._AllGatherRotater):
        issue = rotater.exchange_buffers

        def exchange_and_wait(self: Any, curr_buffer: torch.Tensor, issue: Any = issue) -> None:
            issue(self, curr_buffer)
            for name in ("_buffer", "_aggregated_buffer"):
                if getattr(self, name, None) is not None:
                    setattr(self, name, ring._maybe_wait(getattr(self, name)))

        rotater.exchange_buffers = exchange_and_wait  # type: ignore[method-assign]


def main() -> None:
    collectives_complete_at_once()
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    seq_local, out_dir = int(sys.argv[1]), Path(sys.argv[2])
    torch.manual_seed(rank)
    # Query, key and value heads alike: the model repeats GQA heads before the ring.
    q = torch.randn(1, 4, seq_local, 64, dtype=torch.bfloat16)
    k, v = torch.randn_like(q), torch.randn_like(q)
    group = dist.group.WORLD
    with MODE:
        out, lse = ring._templated_ring_attention(group, 2, attention, q, k, v, is_causal=True)
    fwd, MODE.bytes = MODE.bytes, 0
    grad_out = torch.randn_like(out)
    with MODE:
        ring._templated_ring_attention_backward(
            group, 2, attention_backward, grad_out, "grad_out", q, k, v, out, lse, True
        )
    live = Live({x.untyped_storage().data_ptr() for x in (q, k, v, out, lse, grad_out)})
    with live:
        ring._templated_ring_attention_backward(
            group, 2, attention_backward, grad_out, "grad_out", q, k, v, out, lse, True
        )
    record = {"rank": rank, "q_bytes": _bytes(q), "kv_bytes": _bytes(k) + _bytes(v),
              "fwd_bytes": fwd, "bwd_bytes": MODE.bytes, "bwd_peak_bytes": live.peak}  # fmt: skip
    (out_dir / f"rank{rank}.json").write_text(json.dumps(record), encoding="utf-8")
    # Tear gloo down only once every rank is done with it: a rank that leaves first closes
    # the pairs the others' transport threads still read (std::terminate there).
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
