"""One rank of torch's ring attention on CPU (gloo), counting the bytes its code moves
outside the attention kernels: what ``planner.formulas.kernels.torch_ring_attention_bytes``
prices. Run by tests/planner/test_torch_ring_source.py under torchrun.

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


def main() -> None:
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
    record = {"rank": rank, "q_bytes": _bytes(q), "kv_bytes": _bytes(k) + _bytes(v),
              "fwd_bytes": fwd, "bwd_bytes": MODE.bytes}  # fmt: skip
    (out_dir / f"rank{rank}.json").write_text(json.dumps(record), encoding="utf-8")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
