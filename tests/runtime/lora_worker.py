"""Train a LoRA/QLoRA model in several layouts in one process group and record the losses.

``python -m torch.distributed.run --nproc-per-node N tests/runtime/lora_worker.py OUT
STEPS SPEC...`` (or plain ``python`` for one process): each SPEC is ``key=value`` words:
``mode`` lora|qlora, ``model`` (gpt: a GPT-style model), ``tp`` (default 1), ``sp`` 0|1,
``sharding`` (zero3), ``recompute`` (none), ``ckpt`` (0; n: save adapters and optimizer
with DCP after step n, build everything afresh with other adapter initial values, load,
go on), ``optim`` (1; 0: load the adapters but not AdamW's state, a control),
``precision`` (fp32; bf16: FSDP's mixed precision, ``parallel.mixed_precision``). Every spec
builds the model from the same seed, applies LoRA (then NF4 for qlora) before any
parallelism, as the trainer will, and applies the layout with ``runtime.train.parallel``'s
functions in the trainer's order (``build.py`` ``_prepare``: tp, recompute, sharding).
Each step reads the same global batch of ``GLOBAL_BATCH`` sequences; a data-parallel rank
takes its share. Rank 0 writes ``{spec: {"losses": [...], "trainable": n}}`` to OUT.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import (
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.tensor import DTensor
from torch.distributed.tensor.parallel import loss_parallel

from runtime.train import distributed, lora, parallel
from runtime.train.model import ModelConfig, Transformer

LORA_MODEL = ModelConfig(
    layers=2, hidden=128, heads=4, kv_heads=2, ffn_hidden=256, vocab=257, seq_len=32, tied=False
)
"""The LoRA parity model: 2 blocks, width 128, GQA 4 over 2 heads, 32 tokens."""
QLORA_MODEL = ModelConfig(
    layers=2, hidden=256, heads=4, kv_heads=4, ffn_hidden=512, vocab=257, seq_len=32, tied=False
)
"""QLoRA's: every block weight a multiple of 2 x 16384 elements, so each of 2 FSDP shards
holds whole NF4 double-quantisation blocks."""
GPT_MODEL = replace(LORA_MODEL, activation="gelu", norm="layernorm", bias=True, tied=True)
"""A GPT-style model: GELU MLP (targets up, down), LayerNorm, biases, tied embeddings."""
TARGETS = ("all",)
RANK, ALPHA = 8, 16.0
GLOBAL_BATCH = 4
POOL = 6
LR = 1e-2
SEED = 0


def tokens(step: int, cfg: ModelConfig) -> torch.Tensor:
    """The global batch of ``step``: [GLOBAL_BATCH, seq_len + 1] tokens, a step-dependent
    choice of ``POOL`` fixed random sequences, which the adapters can learn in a few steps
    (so the losses fall and the comparison is not of flat lines)."""
    pool = torch.randint(
        0, cfg.vocab, (POOL, cfg.seq_len + 1), generator=torch.Generator().manual_seed(7)
    )
    order = torch.randperm(POOL, generator=torch.Generator().manual_seed(1000 + step))
    return pool[order[:GLOBAL_BATCH]]


def _trainable_names(model: torch.nn.Module) -> list[str]:
    # The recompute wrapper's level is not part of a parameter's name (DCP drops it too).
    return [
        name.replace("_checkpoint_wrapped_module.", "")
        for name, param in model.named_parameters()
        if param.requires_grad
    ]


class Run:
    """One spec's model, optimizer and layout on this process group."""

    def __init__(self, text: str, world: int, adapter_seed: int) -> None:
        spec = dict(word.split("=", 1) for word in text.split())
        self.qlora = spec.get("mode", "lora") == "qlora"
        gpt = spec.get("model") == "gpt"
        self.cfg = QLORA_MODEL if self.qlora else GPT_MODEL if gpt else LORA_MODEL
        self.tp = int(spec.get("tp", "1"))
        self.load_optimizer = spec.get("optim", "1") == "1"
        torch.manual_seed(SEED)  # the same base weights on every rank and every build
        self.model = Transformer(self.cfg)
        torch.manual_seed(SEED + 1 + adapter_seed)
        self.trainable = lora.apply_lora(self.model, TARGETS, RANK, ALPHA)
        names = _trainable_names(self.model)
        if self.qlora:
            lora.quantize_base_nf4(self.model)
        sharding = spec.get("sharding", "zero3")
        self.dims = parallel.parallel_dims(
            world_size=world, dp=0, tp=self.tp, sharding=sharding, hsdp_shard_size=0
        )
        if self.qlora:
            lora.lora_nf4.check_nf4_layout(self.model, tp=self.tp, dp_shard=self.dims.dp_shard)
        mesh = self.dims.mesh("cpu")
        if self.tp > 1:
            parallel.apply_tp(self.model, mesh["tp"], spec.get("sp", "1") == "1")
            if self.cfg.tied:  # as build.py: both vocabulary-sharded alike, tied again
                self.model.output.weight = self.model.embed.weight
        parallel.apply_recompute(self.model, spec.get("recompute", "none"))
        mp_policy = parallel.mixed_precision(spec.get("precision", "fp32"), torch.device("cpu"))
        parallel.apply_sharding(self.model, mesh, sharding, mp_policy)
        if _trainable_names(self.model) != names:  # no layout may unfreeze the base
            raise AssertionError(
                f"{text}: trainable after the layout: {_trainable_names(self.model)}"
            )
        self.optimizer = torch.optim.AdamW(
            lora.trainable_parameters(self.model), lr=LR, betas=(0.9, 0.95), weight_decay=0.0
        )

    def step(self, step: int) -> float:
        rows = GLOBAL_BATCH // self.dims.dp
        first = self.dims.dp_rank(dist.get_rank()) * rows
        batch = tokens(step, self.cfg)[first : first + rows]
        context = loss_parallel() if self.tp > 1 else contextlib.nullcontext()
        with context:
            loss = self.model(batch[:, :-1], batch[:, 1:], 1)
            loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        local = loss.detach()
        total = (local.to_local() if isinstance(local, DTensor) else local).clone()
        dist.all_reduce(total)
        return float(total) / dist.get_world_size()

    def state(self) -> dict[str, Any]:
        options = lora.trainable_state_dict_options()
        return {
            "model": get_model_state_dict(self.model, options=options),
            "optim": get_optimizer_state_dict(self.model, self.optimizer, options=options),
        }

    def load(self, path: Path) -> None:
        state = self.state()
        if not self.load_optimizer:
            # The optimizer's state dict holds its own state tensors, which dcp.load
            # fills in place: the control leaves them out of the load altogether.
            del state["optim"]
        dcp.load(state, checkpoint_id=path)
        options = lora.trainable_state_dict_options()
        set_model_state_dict(self.model, state["model"], options=options)
        if self.load_optimizer:
            set_optimizer_state_dict(self.model, self.optimizer, state["optim"], options=options)


def train(text: str, steps: int, world: int, scratch: Path) -> dict[str, Any]:
    run = Run(text, world, adapter_seed=0)
    stop = int(dict(word.split("=", 1) for word in text.split()).get("ckpt", "0")) or steps
    losses = [run.step(step) for step in range(1, stop + 1)]
    if stop < steps:
        path = scratch / ("ckpt-" + re.sub(r"\W+", "_", text))
        dcp.save(run.state(), checkpoint_id=path)
        del run  # resume as a new process would: fresh base, other adapter values
        run = Run(text, world, adapter_seed=1)
        run.load(path)
        losses += [run.step(step) for step in range(stop + 1, steps + 1)]
    return {"losses": losses, "trainable": run.trainable}


def main(out: str, steps: int, specs: list[str]) -> None:
    info = distributed.init("cpu", 120.0)
    results = {text: train(text, steps, info.world_size, Path(out).parent) for text in specs}
    if info.rank == 0:
        Path(out).write_text(json.dumps(results), encoding="utf-8")
    distributed.leave(0, info)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3:])
