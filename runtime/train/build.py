"""Building the model a run trains: the whole model on every rank from one seed, then
this rank's share of it under the planned layout (pipeline stages, tensor parallelism,
recomputation, compile, data-parallel sharding; an MoE model's experts split over ep
ranks and sharded over the rest, ``runtime.train.moe``), in torchtitan's order."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from runtime.train import context, finetune, kernels, moe, parallel, pipeline
from runtime.train.model import Transformer, count_parameters


class ModelBuilder:
    """The Trainer's model building (a mixin: the attributes are the Trainer's)."""

    cfg: Any
    dims: parallel.ParallelDims
    device: torch.device
    rank: int
    precision: str
    _evaluating: bool
    _loss_context: Callable[[], contextlib.AbstractContextManager[None]]

    def build_model(self) -> None:
        """``self.model`` (the whole model, or this rank's pipeline stages as one module),
        ``self.mesh``, ``self.dp_rank``, ``self.pipeline``, ``self.cp`` and
        ``self.n_params``."""
        cfg = self.cfg
        torch.manual_seed(cfg.seed)  # same initial weights on every rank before sharding
        if cfg.finetune:
            self.model = finetune.make_model(cfg, self.device)
            if cfg.finetune == "qlora":
                from runtime.train.lora_nf4 import check_nf4_layout

                check_nf4_layout(self.model, tp=self.dims.tp, dp_shard=self.dims.dp_shard)
        else:
            with torch.device(self.device):
                self.model = Transformer(cfg.model_config())
        if self.precision == "bf16-pure":
            to_pure_bf16(self.model)
        self.n_params = count_parameters(self.model)
        self.n_trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        if self.precision == "fp8":
            kernels.apply_float8(self.model)  # before any parallelism, as torchtitan does
        self.mesh = self.dims.mesh(self.device.type)
        self.dp_shard_cp = self.dims.dp_shard_cp(self.mesh)
        # Mesh order (pp, dp_replicate, dp_shard, cp, tp): tensor-parallel ranks are
        # neighbours, then the context-parallel ranks of one sample.
        self.dp_rank = self.dims.dp_rank(self.rank)
        self.cp: context.ContextParallel | None = None
        if self.dims.cp > 1:
            self.cp = context.ContextParallel(
                self.mesh["cp"], cfg.seq_len, cfg.cp_impl, self.device
            )
        self.pipeline: pipeline.Pipeline | None = None
        # The auxiliary loss gets the gradient the language-model loss gets per micro-batch.
        moe.AuxLossScaler.scale = 1.0 / cfg.grad_accum
        self.expert_mesh = None
        if self.dims.ep > 1:
            dims = self.dims
            self.expert_mesh = moe.expert_mesh(
                self.device.type, pp=dims.pp, dp_replicate=dims.dp_replicate,
                dp_shard=dims.dp_shard, tp=dims.tp, ep=dims.ep,
            )  # fmt: skip
            moe.apply_ep(self.model, self.expert_mesh)
        if self.dims.pp > 1:
            self.pipeline = pipeline.build_pipeline(
                self.model,
                self.mesh["pp"],
                interleave=cfg.interleave,
                schedule=cfg.schedule,
                uneven=cfg.uneven_stages,
                micro_batches=cfg.grad_accum,
                device=self.device,
                loss_fn=self._micro_loss,
                prepare=self._prepare,
            )
            self.model = pipeline.StageGroup(self.pipeline.modules())  # type: ignore[assignment]
        else:
            self._prepare(self.model)

    def _prepare(self, module: torch.nn.Module) -> None:
        """Context parallelism, tensor parallelism, recomputation and data-parallel
        sharding of the whole model or of one pipeline stage, in torchtitan's order."""
        cfg = self.cfg
        if self.cp is not None:
            context.apply_cp(module, self.cp)
        if self.dims.tp > 1:
            parallel.apply_tp(module, self.mesh["tp"], cfg.sequence_parallel)
            if cfg.tied_embeddings:
                # Both vocabulary-sharded the same way (Shard(0) over tp): tie them again.
                module.output.weight = module.embed.weight  # type: ignore[union-attr]
        parallel.apply_recompute(module, cfg.recompute)
        if cfg.compile:
            kernels.apply_compile(module)
        mp_policy = parallel.mixed_precision(self.precision, self.device)
        if self.expert_mesh is not None:
            moe.apply_expert_sharding(
                module, self.expert_mesh, cfg.sharding, mp_policy, self.dims.dp
            )
        parallel.apply_sharding(module, self.mesh, cfg.sharding, mp_policy, self.dp_shard_cp)

    def _inputs(
        self, tokens: torch.Tensor, targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and targets [B, T]; under context parallelism this rank's load-balanced
        chunks of them (``context.ContextParallel.shard``)."""
        if self.cp is None:
            return tokens, targets
        return self.cp.shard(tokens), self.cp.shard(targets)

    def _micro_loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """A micro-batch's mean token loss (the pipeline's last stage calls it); during
        evaluation the sum over the tokens that are not padding (targets -100)."""
        flat = logits.float().flatten(0, 1)
        if self._evaluating:
            return F.cross_entropy(flat, targets.flatten(), reduction="sum", ignore_index=-100)
        return F.cross_entropy(flat, targets.flatten())

    def _evaluate_pipelined(self, mine: tuple[np.ndarray, np.ndarray], per_rank: int) -> float:
        assert self.pipeline is not None
        cfg = self.cfg
        self._evaluating = True
        try:
            totals = pipeline.eval_totals(
                self.pipeline, mine, per_rank, cfg.micro_batch, cfg.grad_accum,
                self.device, self._loss_context,
            )  # fmt: skip
        finally:
            self._evaluating = False
        dist.all_reduce(totals)
        self.model.train()
        return float(totals[0] / totals[1])

    def _pipeline_fields(self) -> dict[str, float]:
        """The measured pipeline bubble of this rank's last step (pipelines only)."""
        bubble = self.pipeline.bubble_fraction if self.pipeline is not None else None
        return {} if bubble is None else {"bubble_fraction": round(bubble, 4)}


def to_pure_bf16(model: torch.nn.Module) -> None:
    """Precision bf16-pure: every fp32 parameter becomes bf16 before any parallelism, so
    the gradients and the AdamW states (torch.optim keeps them in the parameter's dtype)
    are bf16 too and no fp32 copy exists: torchtune's ``dtype: bf16``, Lightning's
    ``bf16-true``. Buffers (rotary tables) stay fp32; quantised (NF4) and float8
    parameters are left as they are."""
    for param in model.parameters():
        if param.dtype == torch.float32:
            param.data = param.data.to(torch.bfloat16)
