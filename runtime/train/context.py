"""Context parallelism: the sequence of every sample split over the ``cp`` ranks.

Two implementations, the plan's ``layout.cp_impl`` (``--cp-impl``):

* ``allgather`` (the default; runs on gloo/CPU and on GPUs): the variant of the Llama 3
  paper (Dubey et al. 2024, "The Llama 3 Herd of Models", section 3.3.2). Each rank keeps
  the queries of its own tokens; the keys and values of every layer are all-gathered over
  the cp group, and each rank attends its local queries to the whole sequence's keys and
  values under the causal mask of the tokens' global positions. The gather is
  ``all_gather_single_autograd`` (torch's functional collectives), whose backward is a
  reduce-scatter: the gradient of a rank's keys and values sums the contributions of every
  rank's queries. Key/value heads are gathered before GQA repeats them (less to send).
* ``ring`` (CUDA only): torch's ``context_parallel`` (ring attention, Liu et al. 2023,
  "Ring Attention with Blockwise Transformers"): keys and values pass from rank to rank
  while each attention block runs, inside ``torch.distributed.tensor.experimental
  .context_parallel``, which replaces ``scaled_dot_product_attention`` with its ring; it
  has no CPU sharding strategy in torch 2.13, so the trainer refuses it elsewhere.

Both load-balance the causal mask the same way (Llama 3, section 3.3.2; torch's
``_HeadTailLoadBalancer``): the sequence is cut into 2·cp chunks and rank i holds chunks
i and 2·cp−1−i, so every rank has as many early (cheap) as late (expensive) queries. The
tokens, the targets and the rotary positions of a rank are those chunks; each rank's loss
is the mean over its tokens, and FSDP's mean over ``dp_shard × cp`` (the ``dp_shard_cp``
mesh, torchtitan's) makes the gradient that of the mean over the whole sequence.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributed._functional_collectives import all_gather_single_autograd
from torch.distributed.device_mesh import DeviceMesh
from torch.nn.attention.bias import causal_lower_right

from contract.plan_layout import CP_IMPLS
from runtime.train.parallel import LayoutError, blocks

__all__ = ["CP_IMPLS", "AllGatherAttentionCore", "ContextParallel", "apply_cp", "check_cp"]


def check_cp(cp: int, cp_impl: str, device_type: str) -> None:
    """Refuse ring attention where torch's ``context_parallel`` cannot run (no CUDA)."""
    if cp > 1 and cp_impl == "ring" and device_type != "cuda":
        raise LayoutError(
            f"--cp-impl ring: torch's context_parallel (ring attention) runs on CUDA only, "
            f"this job runs on {device_type}; use --cp-impl allgather (a plan's "
            "layout.cp_impl sets it)"
        )


def load_balanced_positions(seq_len: int, cp: int, cp_rank: int) -> torch.Tensor:
    """Global positions of the tokens ``cp_rank`` holds: chunks ``cp_rank`` and
    ``2·cp − 1 − cp_rank`` of 2·cp equal chunks (``seq_len`` a multiple of 2·cp)."""
    chunk = seq_len // (2 * cp)
    first = torch.arange(cp_rank * chunk, (cp_rank + 1) * chunk)
    last = torch.arange((2 * cp - 1 - cp_rank) * chunk, (2 * cp - cp_rank) * chunk)
    return torch.cat([first, last])


class ContextParallel:
    """This rank's part of context parallelism: its positions, and the cp group."""

    def __init__(self, mesh: DeviceMesh, seq_len: int, impl: str, device: torch.device) -> None:
        self.mesh, self.impl, self.seq_len = mesh, impl, seq_len
        cp, rank = mesh.size(), mesh.get_local_rank()
        self.positions = load_balanced_positions(seq_len, cp, rank).to(device)
        """Global positions of this rank's tokens, in the order it holds them."""
        # The gathered keys come in rank order, each rank's chunks as it holds them.
        self.key_positions = torch.cat(
            [load_balanced_positions(seq_len, cp, r) for r in range(cp)]
        ).to(device)

    def shard(self, tokens: torch.Tensor) -> torch.Tensor:
        """This rank's tokens of ``tokens`` [B, T] (inputs or targets)."""
        return tokens.index_select(1, self.positions)

    def context(self) -> contextlib.AbstractContextManager[Any]:
        """Around a forward and its backward: ring attention for ``ring``; nothing for
        ``allgather``, whose gather is inside the attention core."""
        if self.impl != "ring":
            return contextlib.nullcontext()
        from torch.distributed.tensor.experimental import context_parallel

        # The inputs are already sharded (``shard``: the same head-tail chunks as torch's
        # _HeadTailLoadBalancer). context_parallel shards at least one buffer (it reads
        # the device and the sequence length off the first): a throwaway position row.
        row = torch.arange(self.seq_len, device=self.positions.device)[None]
        return context_parallel(
            self.mesh, buffers=[row], buffer_seq_dims=[1], no_restore_buffers={row}
        )


class AllGatherAttentionCore(nn.Module):
    """Causal attention of the local queries to the keys and values of the whole
    sequence, all-gathered over the cp group (Llama 3 paper, section 3.3.2). No
    parameters: replacing ``Attention.core`` changes no checkpoint key.

    Each of the rank's two chunks attends only the keys up to its own end (global chunk
    g of size c: the first (g + 1)·c keys), under a causal mask aligned to the lower
    right (``causal_lower_right``, which flash and memory-efficient kernels run without
    materialising it): no score of a masked block is computed, and no [T/cp, T] mask
    is ever held."""

    def __init__(self, cp: ContextParallel) -> None:
        super().__init__()
        self.mesh = cp.mesh
        # The gathered keys come in rank order; this permutation puts them in sequence.
        self.register_buffer("order", torch.argsort(cp.key_positions), persistent=False)
        size = cp.mesh.size()
        rank = cp.mesh.get_local_rank()
        self.chunks = (rank, 2 * size - 1 - rank)
        """The global chunk indices of the rank's first and second half."""

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        # [B, H, T/cp, D] → [B, H, T, D]: gathered along the sequence, then in order.
        order: torch.Tensor = self.order  # type: ignore[assignment]
        k = all_gather_single_autograd(k.contiguous(), gather_dim=2, group=self.mesh)
        v = all_gather_single_autograd(v.contiguous(), gather_dim=2, group=self.mesh)
        k, v = k.index_select(2, order), v.index_select(2, order)
        # GQA inside the kernel: the saved keys and values stay kv_heads wide (what the
        # planner counts), not repeated to the query heads.
        gqa = k.shape[1] != q.shape[1]
        chunk = q.shape[2] // 2
        outputs = []
        for part, index in zip(q.split(chunk, dim=2), self.chunks, strict=True):
            end = (index + 1) * chunk
            mask = causal_lower_right(chunk, end)
            outputs.append(
                F.scaled_dot_product_attention(
                    part, k[:, :, :end], v[:, :, :end], attn_mask=mask, enable_gqa=gqa
                )
            )
        return torch.cat(outputs, dim=2)


def apply_cp(model: nn.Module, cp: ContextParallel) -> None:
    """The model's rotary tables at this rank's positions, and under ``allgather`` each
    block's attention core replaced by ``AllGatherAttentionCore`` (before recomputation
    wraps the core, so selective recomputation recomputes the gathered attention)."""
    model.positions = cp.positions
    if cp.impl != "allgather":
        return
    for block in blocks(model):
        block.get_submodule("attn").core = AllGatherAttentionCore(cp)
