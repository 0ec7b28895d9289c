"""The planned layout in the trainer: one validated value object, one device mesh, and small
``apply_*`` functions on torch's own building blocks (no hand-written collectives).

:class:`ParallelDims` follows torchtitan's ``ParallelDims`` (torchtitan/distributed/
parallel_dims.py): the degrees multiply to the world size. The mesh's dimensions are
``("pp", "dp_replicate", "dp_shard", "cp", "tp")`` in that order (torchtitan's), so
tensor-parallel ranks are neighbours (consecutive global ranks, one node), then the
context-parallel ranks of one sample; a data-parallel rank is ``(rank // (tp x cp)) % dp``
and a pipeline rank ``rank // (dp x cp x tp)``. With cp > 1 the mesh also has torchtitan's
flattened ``dp_shard_cp`` (``dp_shard`` x ``cp``), over which FSDP shards parameters and
averages gradients. Pipelines are built by :mod:`runtime.train.pipeline`, context
parallelism by :mod:`runtime.train.context`; expert parallelism borrows ``ep`` of the
data-parallel ranks (:mod:`runtime.train.moe`, its own mesh over the same ranks).

The order of application is torchtitan's (models/llama3/infra/parallelize.py): tensor
parallelism, then activation recomputation, then data-parallel sharding (FSDP2's
``fully_shard``, per block and then the root).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import DTensor, Replicate, Shard
from torch.distributed.tensor.parallel import (
    ColwiseParallel,
    PrepareModuleInput,
    RowwiseParallel,
    SequenceParallel,
    parallelize_module,
)

from contract.plan import PlanError
from contract.plan_layout import RECOMPUTES, SHARDINGS, dp_at_world_size
from runtime.train import kernels, lora_nf4, lora_tp

MESH_DIMS = ("pp", "dp_replicate", "dp_shard", "cp", "tp")
"""Names of the device mesh's dimensions, outermost first."""


class LayoutError(ValueError):
    """A layout the trainer cannot run; the trainer prints it and exits 2."""

    user_error = True


@dataclass(frozen=True)
class ParallelDims:
    """Degrees of parallelism of one run; constructing it validates them."""

    dp_replicate: int
    """Data-parallel replicas (HSDP's replicate dimension; dp under sharding ``none``)."""
    dp_shard: int
    """Data-parallel ranks that shard parameters, gradients and optimizer state."""
    tp: int
    """Tensor-parallel degree (Megatron-style, Shoeybi et al. 2019, section 3)."""
    world_size: int
    """Processes of the job."""
    pp: int = 1
    """Pipeline stages (Huang et al. 2019; Narayanan et al. 2021)."""
    cp: int = 1
    """Context-parallel degree: ranks that split each sample's sequence."""
    ep: int = 1
    """Expert-parallel degree: ranks of the data-parallel dimension that split the
    experts (not a factor of the world size; ``runtime.train.moe``)."""

    def __post_init__(self) -> None:
        for name in ("dp_replicate", "dp_shard", "tp", "pp", "cp", "ep"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise LayoutError(f"--{name.replace('_', '-')} {value!r}: must be 1 or more")
        if (
            self.ep > 1
            and self.dp_shard % self.ep
            and (self.dp_shard > 1 or self.dp_replicate % self.ep)
        ):
            raise LayoutError(
                f"--ep {self.ep}: experts are split over the {self.dp_shard} data-parallel "
                f"ranks that shard (or the {self.dp_replicate} replicas under sharding none); "
                "plan an ep that divides them"
            )
        product = self.dp_replicate * self.dp_shard * self.tp * self.pp * self.cp
        if product != self.world_size:
            raise LayoutError(
                f"--dp x --tp: layout dp{self.dp} x tp{self.tp} x pp{self.pp} x cp{self.cp} "
                f"= {product} ranks but the job has world size {self.world_size}; "
                "launch as many processes as the layout's product"
            )

    @property
    def dp(self) -> int:
        """Data-parallel degree: ranks that read different samples."""
        return self.dp_replicate * self.dp_shard

    def dp_rank(self, rank: int) -> int:
        """The data-parallel rank of global ``rank`` (which samples it reads)."""
        return (rank // (self.tp * self.cp)) % self.dp

    def pp_rank(self, rank: int) -> int:
        """The pipeline rank of global ``rank``."""
        return rank // (self.dp * self.cp * self.tp)

    def mesh(self, device_type: str) -> DeviceMesh:
        """The job's one device mesh, ``MESH_DIMS`` in order (every rank calls it)."""
        return init_device_mesh(
            device_type,
            (self.pp, self.dp_replicate, self.dp_shard, self.cp, self.tp),
            mesh_dim_names=MESH_DIMS,
        )

    def dp_shard_cp(self, mesh: DeviceMesh) -> DeviceMesh | None:
        """With cp > 1: torchtitan's ``dp_shard_cp``, ``dp_shard`` x ``cp`` flattened (every
        rank calls it), the mesh FSDP shards parameters and averages gradients over."""
        return mesh["dp_shard", "cp"]._flatten("dp_shard_cp") if self.cp > 1 else None


def parallel_dims(
    *,
    world_size: int,
    dp: int,
    tp: int,
    sharding: str,
    hsdp_shard_size: int,
    pp: int = 1,
    cp: int = 1,
    ep: int = 1,
) -> ParallelDims:
    """ParallelDims from the planner's knobs; ``dp`` 0 means what the world size leaves.

    Sharding ``none`` replicates over all of dp; ``hsdp`` shards inside groups of
    ``hsdp_shard_size`` and replicates across them (Zhao et al. 2023, "PyTorch FSDP",
    section 3.2.2); the ZeRO stages shard over all of dp.
    """
    if sharding not in SHARDINGS:
        raise LayoutError(f"--sharding {sharding!r}: use one of {', '.join(SHARDINGS)}")
    if cp > 1 and (sharding == "none" or pp > 1):
        # torchtitan shards over dp_shard x cp whenever cp > 1 (no DDP with cp), and the
        # pipeline stages here pass no positions between them.
        knob = "--sharding none" if sharding == "none" else f"--pp {pp}"
        raise LayoutError(
            f"--cp {cp}: the reference trainer runs context parallelism with FSDP sharding "
            f"over dp_shard x cp and without pipeline stages, not with {knob}; plan "
            "sharding zero1/zero2/zero3/hsdp and pp 1, or cp 1"
        )
    if tp >= 1 and pp >= 1 and cp >= 1 and dp == 0:
        if world_size % (tp * pp * cp):
            raise LayoutError(
                f"--tp x --pp{' x --cp' * (cp > 1)} = {tp * pp * cp} does not divide the "
                f"world size {world_size}; launch a multiple of that many ranks"
            )
        dp = world_size // (tp * pp * cp)
    if sharding == "hsdp":
        if hsdp_shard_size < 2 or dp % hsdp_shard_size:
            raise LayoutError(
                f"--hsdp-shard-size {hsdp_shard_size}: with sharding hsdp it must be 2 or "
                f"more and divide dp {dp}"
            )
        replicate, shard = dp // hsdp_shard_size, hsdp_shard_size
    elif hsdp_shard_size:
        raise LayoutError(
            f"--hsdp-shard-size {hsdp_shard_size}: goes with --sharding hsdp only; drop it"
        )
    elif sharding == "none":
        replicate, shard = dp, 1
    else:
        replicate, shard = 1, dp
    return ParallelDims(replicate, shard, tp, world_size, pp=pp, cp=cp, ep=ep)


def elastic_dp(
    world_size: int,
    *,
    dp: int,
    tp: int,
    pp: int,
    cp: int,
    grad_accum: int,
    micro_batch: int,
    hsdp_shard_size: int,
    ep: int = 1,
) -> tuple[int, int]:
    """(dp, grad_accum) for this rendezvous round of an elastic planned job: tp, pp, cp,
    ep and the hsdp shard group stay, dp is what the world size leaves, and accumulation
    keeps the planned global batch ``dp * grad_accum * micro_batch`` sequences
    (``contract.plan_layout.dp_at_world_size``, the launcher's check of the range)."""
    try:
        new_dp, accum = dp_at_world_size(
            world_size,
            model_ranks=tp * pp * cp,
            global_batch_seqs=dp * grad_accum * micro_batch,
            micro_batch=micro_batch,
            hsdp_shard_size=hsdp_shard_size or None,
            ep=ep,
        )
    except PlanError as exc:
        raise LayoutError(
            f"--elastic-dp at world size {world_size}: {exc}; launch with a node range "
            "whose every count runs the layout"
        ) from None
    return new_dp, accum if accum is not None else grad_accum


def blocks(model: nn.Module) -> list[nn.Module]:
    """The transformer blocks of a model or of a pipeline stage (a ModuleDict keyed by the
    whole model's block index)."""
    layers = model.get_submodule("layers")
    if isinstance(layers, nn.ModuleDict):
        return list(layers.values())
    return list(layers)  # type: ignore[call-overload]


def check_heads(dims: ParallelDims, heads: int, kv_heads: int) -> None:
    """Tensor parallelism splits attention by heads: tp must divide both head counts."""
    if heads % dims.tp:
        raise LayoutError(f"--tp {dims.tp}: must divide the {heads} attention heads")
    if kv_heads % dims.tp:
        raise LayoutError(f"--tp {dims.tp}: must divide the {kv_heads} key/value heads")


def apply_tp(model: nn.Module, tp_mesh: DeviceMesh, sequence_parallel: bool) -> None:
    """Megatron tensor parallelism (Shoeybi et al. 2019, section 3): q/k/v and the MLP's
    first projections column-wise, the attention output and the MLP's last projection
    row-wise, the output projection column-wise with a vocabulary-parallel loss
    (``loss_parallel``). With sequence parallelism (Korthikanti et al. 2022, section 4.2.2)
    the norms and the residual stream between the blocks are split along the sequence."""
    # Without sequence parallelism the norms see the whole sequence on every rank and
    # stay plain (replicated) parameters.
    seq = Shard(1) if sequence_parallel else Replicate()
    frozen = lora_tp.frozen_names(model)  # LoRA's frozen base (none without adapters)
    root: dict[str, Any] = {
        "embed": RowwiseParallel(input_layouts=Replicate(), output_layouts=seq),
        "output": ColwiseParallel(
            input_layouts=seq, output_layouts=Shard(-1), use_local_output=False
        ),
    }
    if sequence_parallel:
        root["norm"] = SequenceParallel()
    # A pipeline stage holds the embedding only if first, the norm and output only if last.
    root = {name: style for name, style in root.items() if getattr(model, name) is not None}
    if root:
        parallelize_module(model, tp_mesh, root)
    for block in blocks(model):
        plan: dict[str, Any] = {
            "attn.wq": ColwiseParallel(),
            "attn.wk": ColwiseParallel(),
            "attn.wv": ColwiseParallel(),
            "attn.wo": RowwiseParallel(output_layouts=seq),
            "ffn.w1": ColwiseParallel(),
            "ffn.w2": RowwiseParallel(output_layouts=seq),
        }
        if hasattr(block.get_submodule("ffn"), "w3"):  # SwiGLU's gate
            plan["ffn.w3"] = ColwiseParallel()
        if sequence_parallel:
            plan["attn_norm"] = SequenceParallel()
            plan["ffn_norm"] = SequenceParallel()
            # The norms hand over sequence shards; attention and the MLP need it whole.
            plan["attn"] = PrepareModuleInput(
                input_layouts=(seq, None, None), desired_input_layouts=(Replicate(), None, None)
            )
            plan["ffn"] = PrepareModuleInput(
                input_layouts=(seq,), desired_input_layouts=(Replicate(),)
            )
        # LoRA layers (runtime.train.lora) split their adapters as their weight is.
        plan = lora_tp.lora_styles(block, plan, tp_mesh.size())
        parallelize_module(block, tp_mesh, plan)
    lora_tp.refreeze(model, frozen)


def apply_recompute(model: nn.Module, recompute: str) -> None:
    """Activation recomputation per block: ``full`` recomputes the whole block in the
    backward pass, ``selective`` only the attention core (softmax(QK^T)V), the part
    Korthikanti et al. 2022 (section 4.2, table 2) recompute and the planner counts."""
    if recompute not in RECOMPUTES:
        raise LayoutError(f"--recompute {recompute!r}: use one of {', '.join(RECOMPUTES)}")
    layers: nn.ModuleList | nn.ModuleDict = model.layers  # type: ignore[assignment]
    keys: list[Any] = (
        list(layers.keys()) if isinstance(layers, nn.ModuleDict) else list(range(len(layers)))
    )
    for index in keys:
        block = layers[index]
        if recompute == "full":
            layers[index] = checkpoint_wrapper(block, preserve_rng_state=False)
        elif recompute == "selective":
            attn = block.get_submodule("attn")
            attn.core = checkpoint_wrapper(attn.get_submodule("core"), preserve_rng_state=False)


def mixed_precision(precision: str, device: torch.device) -> MixedPrecisionPolicy | None:
    """fp32: none; bf16 (and fp8, whose GEMMs torchao runs in float8 from bf16 inputs):
    parameters gathered in bf16, gradients reduced in fp32 (the planner's "bf16 mixed
    precision" with fp32 master weights); bf16-pure: none, the parameters being bf16
    already (``build.to_pure_bf16``), so FSDP2 gathers them and reduces their gradients
    in bf16."""
    if precision in ("fp32", "bf16-pure"):
        return None
    if precision in ("bf16", "fp8"):
        return MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    raise LayoutError(f"--precision {precision!r}: use fp32, bf16, bf16-pure or fp8")


def apply_sharding(
    model: nn.Module,
    mesh: DeviceMesh,
    sharding: str,
    mp_policy: MixedPrecisionPolicy | None,
    dp_shard_cp: DeviceMesh | None = None,
) -> None:
    """Data-parallel sharding with FSDP2 (``fully_shard``), one unit per block, then the root.

    * ``zero3``: parameters, gradients and optimizer state sharded over dp; parameters are
      gathered for each block's forward and again for its backward (ZeRO-3, Rajbhandari
      et al. 2020, section 5);
    * ``zero2`` and ``zero1``: the same, but a block's gathered parameters stay from its
      forward to its backward (``reshard_after_forward=False``). FSDP2 always
      reduce-scatters gradients, so zero1 is run as zero2: its optimizer state is sharded
      as planned and its gradients use less memory than the planner counts for zero1;
    * ``hsdp``: zero3 inside ``dp_shard`` groups, replicated across ``dp_replicate``;
    * ``none``: replicated over dp (a ``dp_shard`` of 1), gradients all-reduced (DDP).

    The root unit holds the embedding, the final norm and the output projection (so a
    tied embedding/output weight lives in one unit). Under context parallelism
    (``dp_shard_cp``) the cp ranks join the shard group (torchtitan's parallelize.py).
    """
    dp_mesh = mesh["dp_replicate", "dp_shard"] if sharding in ("hsdp", "none") else mesh["dp_shard"]
    if dp_shard_cp is not None:
        # Context-parallel ranks hold the same parameters and the gradients of other
        # tokens: sharded and averaged over dp_shard x cp (no sharding "none" with cp).
        dp_mesh = mesh["dp_replicate", "dp_shard_cp"] if sharding == "hsdp" else dp_shard_cp
    kwargs: dict[str, Any] = {"mesh": dp_mesh}
    if mp_policy is not None:
        kwargs["mp_policy"] = mp_policy
    ignored = lora_nf4.unsharded_nf4(model, dp_mesh.shape[-1])  # QLoRA on one shard rank
    if ignored:
        kwargs["ignored_params"] = ignored
    reshard = sharding not in ("zero1", "zero2")
    for block in blocks(model):
        fully_shard(block, reshard_after_forward=reshard, **kwargs)
    fully_shard(model, reshard_after_forward=reshard, **kwargs)


def resolve_precision(precision: str, device: torch.device, tp: int = 1) -> str:
    """``auto`` → bf16 on CUDA, fp32 on the CPU; fp8 only where torchao's float8 training
    runs (``kernels.check_fp8``) and without tensor parallelism (torchao's float8 TP plans
    are not applied here)."""
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    if precision == "fp8":
        kernels.check_fp8(device)
        if tp > 1:
            raise LayoutError(
                f"--precision fp8: with --tp {tp} the trainer would need torchao's float8 "
                "tensor-parallel plans, which it does not apply; plan fp8 with tp 1 or bf16"
            )
    mixed_precision(precision, device)  # refuses what it cannot apply
    return precision


def clip_grad_norm(
    parameters: list[nn.Parameter], max_norm: float, pp_mesh: DeviceMesh | None = None
) -> torch.Tensor:
    """Clip the global gradient 2-norm to ``max_norm``; returns the norm before clipping.

    Without sequence parallelism the norms' weights are sharded over dp only and the rest
    over dp x tp: DTensors on different meshes, which ``clip_grad_norm_`` cannot stack.
    So the norm is taken per mesh (``full_tensor`` reduces each over its own mesh) and the
    parts combined as sqrt(sum of squares), as torchtitan's ``clip_grad_norm_`` does.
    """
    groups: dict[int, list[nn.Parameter]] = {}
    for param in parameters:
        if param.grad is not None:
            mesh = param.grad.device_mesh if isinstance(param.grad, DTensor) else None
            groups.setdefault(id(mesh), []).append(param)
    parts = []
    for params in groups.values():
        norm = torch.nn.utils.get_total_norm([p.grad for p in params], 2.0)  # type: ignore[misc]
        parts.append(norm.full_tensor() if isinstance(norm, DTensor) else norm)
    total = torch.linalg.vector_norm(torch.stack(parts)) if parts else torch.zeros(())
    if pp_mesh is not None and pp_mesh.size() > 1:
        # Each pipeline rank holds other layers: the global norm sums their squares.
        import torch.distributed as dist

        squared = total.pow(2)
        dist.all_reduce(squared, group=pp_mesh.get_group())
        total = squared.sqrt()
    for params in groups.values():
        torch.nn.utils.clip_grads_with_norm_(params, max_norm, total)
    return total
