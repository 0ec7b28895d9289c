"""Mixture-of-experts feed-forward with expert parallelism, in plain torch.

One MoE layer (``MoE``) replaces a block's SwiGLU from layer ``dense_first_layers`` on:

* a router, a linear map to one score per expert: ``softmax`` (Switch Transformer,
  Fedus et al. 2021, eq. 1; DeepSeekMoE, Dai et al. 2024, eq. 5: the top-k probabilities
  are the gates, not renormalised) or ``sigmoid`` (DeepSeek-V3 report, Sec. 2.1.2,
  eq. 15-16: the top-k scores renormalised to sum 1);
* the Switch auxiliary load-balancing loss ``alpha * E * sum_i f_i * P_i`` (Fedus et al.
  2021, Sec. 2.2, eq. 4-6), with f_i the fraction of routed assignments that chose expert
  i and P_i the mean router probability of i over the tokens of the group;
* routed experts (SwiGLU of ``moe_ffn`` width, Shazeer 2020 eq. 6) and optional shared
  experts every token passes through (DeepSeekMoE, Sec. 3.2: one SwiGLU of their width
  together);
* a capacity factor: expert i takes at most ``ceil(cf * tokens * k / E)`` assignments of
  a group (Switch, Sec. 2.2; GShard, Lepikhin et al. 2020, Algorithm 1: all first choices
  before any second choice, each in token order); the rest are dropped and their token's
  residual passes through unchanged. ``cf`` 0 is dropless (Gale et al. 2022, MegaBlocks).

A group is the tokens of one forward call: one micro-batch of one data-parallel rank.
The capacity and the auxiliary loss are computed over it, before any token leaves the
rank (as Megatron-Core does), so they do not depend on the expert-parallel degree.

Expert parallelism (``apply_ep``): ep ranks of the data-parallel dimension each hold
``E / ep`` experts; a layer exchanges its per-expert counts with ``all_to_all_single``,
then the tokens (``all_to_all_single_autograd``: the backward is the reverse exchange),
runs its local experts and returns the outputs the same way. The experts keep the whole
model's names (``experts.<global index>``), so a checkpoint written at one ep loads at
any other. ``ep`` borrows from the sharded data-parallel ranks as in torchtitan
(torchtitan/distributed/parallel_dims.py, expert_parallel.py); the experts are then
FSDP-sharded over the data-parallel ranks that hold the same experts (``edp``), with the
gradient divided by the whole dp degree, as torchtitan's ``apply_fsdp`` does.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.distributed._functional_collectives import all_to_all_single_autograd
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

ROUTER_SCORES = ("softmax", "sigmoid")
"""Router score functions the layer applies."""

EXPERT_MESH_DIMS = ("pp", "edp_replicate", "edp_shard", "ep", "tp")
"""The expert mesh: the data-parallel ranks split into (edp, ep), ep innermost."""


class Expert(nn.Module):
    """FFN(x) = W2 (SiLU(W1 x) * W3 x)  (Shazeer 2020, eq. 6), of its own width."""

    def __init__(self, hidden: int, width: int) -> None:
        super().__init__()
        self.w1 = nn.Linear(hidden, width, bias=False)
        self.w3 = nn.Linear(hidden, width, bias=False)
        self.w2 = nn.Linear(width, hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Experts(nn.ModuleDict):
    """This rank's routed experts, keyed by their global index; ``forward`` runs each on
    its consecutive rows (an FSDP unit under expert parallelism)."""

    def forward(self, rows: torch.Tensor, counts: list[int]) -> torch.Tensor:
        # Every expert runs, on zero rows too: each then has a gradient (zeros), so FSDP
        # reduces the same parameters on every rank.
        parts = [
            expert(chunk) for expert, chunk in zip(self.values(), rows.split(counts), strict=True)
        ]
        return torch.cat(parts) if parts else rows


class AuxLossScaler(torch.autograd.Function):
    """Passes the layer's output through and, in the backward pass, feeds the auxiliary
    loss its gradient ``scale`` (1 / gradient-accumulation steps, as the language-model
    loss gets): the loss joins the objective without the loss plumbing
    (Megatron-Core's ``MoEAuxLossAutoScaler``)."""

    scale = 1.0

    @staticmethod
    def forward(ctx: Any, output: torch.Tensor, aux_loss: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(aux_loss)
        return output

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        (aux_loss,) = ctx.saved_tensors
        return grad, torch.full_like(aux_loss, AuxLossScaler.scale)


class MoE(nn.Module):
    """Router, routed experts and shared experts of one block (see the module doc)."""

    def __init__(
        self,
        hidden: int,
        *,
        experts: int,
        top_k: int,
        width: int,
        shared_width: int,
        score: str,
        capacity_factor: float,
        aux_loss_coef: float,
    ) -> None:
        super().__init__()
        self.n_experts, self.top_k, self.score = experts, top_k, score
        self.capacity_factor, self.aux_loss_coef = capacity_factor, aux_loss_coef
        self.router = nn.Linear(hidden, experts, bias=False)
        self.experts = Experts({str(i): Expert(hidden, width) for i in range(experts)})
        self.shared = Expert(hidden, shared_width) if shared_width else None
        self.ep_group: dist.ProcessGroup | None = None
        self.ep = 1
        # [tokens per expert..., dropped, aux loss sum, groups], summed until read.
        self.stats: torch.Tensor
        self.register_buffer("stats", torch.zeros(experts + 3, dtype=torch.float64), False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.reshape(-1, x.shape[-1])
        n, k, e = tokens.shape[0], self.top_k, self.n_experts
        scores = self.router(tokens).float()
        scores = scores.softmax(-1) if self.score == "softmax" else scores.sigmoid()
        top, chosen = scores.topk(k, dim=-1)  # [n, k]
        if self.score == "sigmoid":
            top = top / top.sum(-1, keepdim=True)
        probs = scores if self.score == "softmax" else scores / scores.sum(-1, keepdim=True)
        flat = chosen.reshape(-1)  # assignments, token-major
        chose = torch.bincount(flat, minlength=e)
        aux = self.aux_loss_coef * switch_aux_loss(probs, chose, n * k)
        keep = torch.ones_like(flat, dtype=torch.bool)
        if self.capacity_factor:
            capacity = math.ceil(self.capacity_factor * n * k / e)
            keep = within_capacity(chosen, e, capacity).reshape(-1)
        kept = keep.nonzero().squeeze(1)
        order = torch.argsort(flat[kept], stable=True)
        route = kept[order]  # kept assignments sorted by expert
        counts = torch.bincount(flat[route], minlength=e)
        rows = tokens[route // k]
        out_rows = (
            self._experts(rows, counts) if self.ep > 1 else self.experts(rows, counts.tolist())
        )
        gates = top.reshape(-1)[route].to(x.dtype).unsqueeze(1)
        out = torch.zeros_like(tokens).index_add(0, route // k, out_rows * gates)
        if self.shared is not None:
            out = out + self.shared(tokens)
        if self.training:
            with torch.no_grad():
                self.stats[:e] += counts.to(self.stats.dtype)
                self.stats[e] += flat.numel() - route.numel()
                self.stats[e + 1] += aux.detach().double()
                self.stats[e + 2] += 1
            if torch.is_grad_enabled():
                out = AuxLossScaler.apply(out, aux)
        return out.reshape(x.shape)

    def _experts(self, rows: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """Send each expert's rows to the rank that holds it, run the local experts on what
        arrives, and send the outputs back in the order the rows left."""
        group, ep = self.ep_group, self.ep
        assert group is not None  # apply_ep set it
        local = self.n_experts // ep
        received = torch.empty_like(counts)
        dist.all_to_all_single(received, counts, group=group)  # [source, local expert]
        send = counts.view(ep, local).sum(1).tolist()
        recv = received.view(ep, local).sum(1).tolist()
        arrived = all_to_all_single_autograd(rows, recv, send, group)
        expert_of_row = torch.arange(local, device=rows.device).repeat(ep)
        expert_of_row = expert_of_row.repeat_interleave(received)
        by_expert = torch.argsort(expert_of_row, stable=True)
        done = self.experts(arrived[by_expert], received.view(ep, local).sum(0).tolist())
        back = done[torch.argsort(by_expert)]
        return all_to_all_single_autograd(back, send, recv, group)


def switch_aux_loss(probs: torch.Tensor, chose: torch.Tensor, assignments: int) -> torch.Tensor:
    """E * sum_i f_i * P_i (Fedus et al. 2021, eq. 4-6): f_i = assignments to expert i /
    all assignments, P_i = mean router probability of i; 1 when perfectly balanced."""
    experts = probs.shape[-1]
    fraction = chose.to(probs.dtype) / assignments
    return experts * (fraction * probs.mean(0)).sum()


def within_capacity(chosen: torch.Tensor, experts: int, capacity: int) -> torch.Tensor:
    """[tokens, k] booleans: whether each assignment fits its expert's capacity, the
    first choices of all tokens taking places before any second choice (GShard,
    Algorithm 1), each choice in token order (Switch, Sec. 2.2)."""
    priority = chosen.t().reshape(-1)  # k-major
    one_hot = F.one_hot(priority, experts)
    position = (one_hot.cumsum(0) * one_hot).sum(1) - 1
    return (position < capacity).view(chosen.shape[1], chosen.shape[0]).t()


def moe_layers(model: nn.Module) -> list[MoE]:
    """The model's MoE layers, in block order."""
    return [module for module in model.modules() if isinstance(module, MoE)]


def expert_mesh(
    device_type: str, *, pp: int, dp_replicate: int, dp_shard: int, tp: int, ep: int
) -> DeviceMesh:
    """The expert mesh (``EXPERT_MESH_DIMS``): ep borrows from the sharded data-parallel
    ranks (from the replicas when nothing is sharded, sharding ``none``); the ranks'
    order is the job mesh's, so a data-parallel rank keeps its samples."""
    edp = (dp_replicate, dp_shard // ep) if dp_shard % ep == 0 else (dp_replicate // ep, 1)
    return init_device_mesh(device_type, (pp, *edp, ep, tp), mesh_dim_names=EXPERT_MESH_DIMS)


def apply_ep(model: nn.Module, mesh: DeviceMesh) -> None:
    """Keep this rank's ``E / ep`` experts of every MoE layer and give the layers the ep
    group they exchange tokens over."""
    ep_mesh = mesh["ep"]
    ep, rank = ep_mesh.size(), ep_mesh.get_local_rank()
    for layer in moe_layers(model):
        local = layer.n_experts // ep
        mine = {str(i) for i in range(rank * local, (rank + 1) * local)}
        for name in [name for name in layer.experts if name not in mine]:
            del layer.experts[name]
        layer.ep_group, layer.ep = ep_mesh.get_group(), ep


def apply_expert_sharding(
    model: nn.Module,
    mesh: DeviceMesh,
    sharding: str,
    mp_policy: MixedPrecisionPolicy | None,
    dp: int,
) -> None:
    """FSDP units of each layer's local experts over the ranks that hold the same experts,
    before the blocks' own units (torchtitan's order). An expert's gradient sums the
    contributions of every data-parallel rank's tokens (the all-to-all brings them), so
    it is divided by the whole dp degree, not by the expert mesh's size."""
    edp = mesh["edp_replicate", "edp_shard"] if sharding in ("hsdp", "none") else mesh["edp_shard"]
    kwargs: dict[str, Any] = {
        "mesh": edp,
        "reshard_after_forward": sharding not in ("zero1", "zero2"),
    }
    if mp_policy is not None:
        kwargs["mp_policy"] = mp_policy
    for layer in moe_layers(model):
        unit = fully_shard(layer.experts, **kwargs)
        unit.set_gradient_divide_factor(float(dp))
        # A sum then a division: the pre-multiplied sum FSDP would use is NCCL's only,
        # not gloo's.
        unit.set_force_sum_reduction_for_comms(True)


def step_stats(model: nn.Module, device: torch.device) -> dict[str, Any]:
    """Routing figures since the last call, over every rank (one all-reduce), for the
    progress record: tokens per expert (assignments each expert processed, summed over
    the MoE layers), assignments dropped for capacity, and the mean auxiliary loss per
    micro-batch (summed over the layers); then zeroes the counters."""
    layers = moe_layers(model)
    if not layers:
        return {}
    total = torch.stack([layer.stats for layer in layers]).sum(0).to(device)
    for layer in layers:
        layer.stats.zero_()
    if dist.is_initialized():
        dist.all_reduce(total)
    experts = layers[0].n_experts
    groups = max(total[experts + 2].item() / len(layers), 1.0)
    return {
        "moe_tokens_per_expert": [int(v) for v in total[:experts].tolist()],
        "moe_dropped_tokens": int(total[experts].item()),
        "moe_aux_loss": round(total[experts + 1].item() / groups, 6),
    }
