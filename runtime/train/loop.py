"""The training loop: steps, evaluation, signals, progress (resume and checkpoints:
``runtime.train.resume``).

Exit codes of ``python -m runtime.train``:

* 0: the job reached ``--steps`` (or had already reached it) and left a final checkpoint
  (unless ``--no-final-checkpoint``);
* 1: an unhandled exception (including an injected ``crash``);
* 2: bad input: flags, Plan, ``SCALECTL_FAULTS``, corpus, job directory, or a checkpoint
  written for a different model shape (one ``error:`` line on stderr);
* 128 + signum (143 for SIGTERM, 140 for SIGUSR2): stopped by that signal after
  finishing the current step and committing a checkpoint of it. A second signal while
  that is under way exits at once with the same code.

Signals are handled at step boundaries and agreed on by all ranks: each step ends with
one all-reduce that carries the loss, the gradient norm and a per-signal flag, so a
signal delivered to any one rank stops every rank after the same step.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.distributed.tensor.parallel import loss_parallel

from contract import env
from contract.events import EventKind
from contract.jobdir import JobDir
from runtime import faults, progress
from runtime.train import (
    batches,
    context,
    data,
    distributed,
    finetune,
    kernels,
    moe,
    parallel,
    pipeline,
)  # fmt: skip
from runtime.train.build import ModelBuilder
from runtime.train.config import ConfigError, TrainConfig
from runtime.train.evaluation import Evaluation, _local
from runtime.train.hf_checkpoint import CheckpointError
from runtime.train.lora import LoRAError
from runtime.train.loss import LossChunksError, resolve_loss_chunks
from runtime.train.measure import Measurements
from runtime.train.resume import Checkpointing
from runtime.train.schedule import lr_at

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR2)
"""Signals that mean "checkpoint at the next step boundary, then exit 128 + signum"."""

SOURCE = "trainer"
"""``source`` field of the trainer's events (the launcher and agent write events too)."""


@dataclass(frozen=True)
class StepResult:
    """What one optimizer step measured."""

    loss: float
    """Mean training loss over the global batch."""
    grad_norm: float
    """Global gradient 2-norm before clipping."""
    step_time_s: float
    """This rank's wall time for the step, data to synchronised optimizer update."""
    stop_signal: int
    """A stop signal any rank received by the end of the step, else 0."""
    compute_s: float = 0.0
    """This rank's forward compute time in the step, outside collectives (see
    ``Trainer._time_compute``): what straggler detection compares across ranks."""


class Trainer(ModelBuilder, Checkpointing, Measurements, Evaluation):
    """One rank of the reference trainer; ``run`` returns the process exit code."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.job = JobDir(Path(cfg.job_dir).absolute()) if cfg.job_dir else None
        self._pending_signal = 0
        self._stopping = False
        self.step = 0
        self.tokens = 0
        self.last_checkpoint_step = -1
        self._evaluating = False

    # ---- setup -------------------------------------------------------------------------

    def setup(self) -> None:
        cfg = self.cfg
        injector_faults = faults.parse(env.faults())
        # Input checks first, so bad input leaves no file behind.
        world_size = distributed.launched_world_size()
        context.check_cp(cfg.cp, cfg.cp_impl, distributed.planned_device(cfg.device).type)
        if cfg.elastic_dp:
            dp, accum = parallel.elastic_dp(
                world_size, dp=cfg.dp, tp=cfg.tp, pp=cfg.pp, cp=cfg.cp,
                grad_accum=cfg.grad_accum, micro_batch=cfg.micro_batch,
                hsdp_shard_size=cfg.hsdp_shard_size, ep=cfg.ep,
            )  # fmt: skip
            self.cfg = cfg = replace(cfg, dp=dp, grad_accum=accum)
        self.dims = parallel.parallel_dims(
            world_size=world_size,
            dp=cfg.dp,
            tp=cfg.tp,
            sharding=cfg.sharding,
            hsdp_shard_size=cfg.hsdp_shard_size,
            pp=cfg.pp,
            cp=cfg.cp,
            ep=cfg.ep,
        )
        if cfg.pp > 1:
            pipeline.stage_layer_counts(cfg.layers, cfg.pp * cfg.interleave, cfg.uneven_stages)
        parallel.check_heads(self.dims, cfg.heads, cfg.kv_heads)
        planned = distributed.planned_device(cfg.device)
        self.precision = parallel.resolve_precision(cfg.precision, planned, self.dims.tp)
        if cfg.compile:
            kernels.check_compile(planned.type, self.dims.tp)
        # Under context parallelism a rank's loss covers its seq_len / cp tokens.
        self.loss_chunks = resolve_loss_chunks(
            cfg.loss_chunks, self.dims.tp, cfg.seq_len // self.dims.cp
        )
        self.batches = batches.build_batches(
            cfg.data, seq_len=cfg.seq_len, seed=cfg.seed, micro_batch=cfg.micro_batch,
            tokenizer_dir=cfg.init_from if cfg.finetune else "",
        )  # fmt: skip
        finetune.check_vocab(cfg, self.batches)
        if self.job is not None:
            try:
                self.job.create()
            except OSError as exc:
                raise ConfigError(
                    f"--job-dir {cfg.job_dir}: cannot create it ({exc.strerror}); "
                    "pass a writable directory"
                ) from None
        self.dist = distributed.init(cfg.device, cfg.dist_timeout_s)
        self.rank, self.world_size, self.device = (
            self.dist.rank,
            self.dist.world_size,
            self.dist.device,
        )
        self.injector = faults.Injector(
            injector_faults, self.rank, self.job.root if self.job else None
        )
        progress.configure(self.job.root if self.job else None, self.rank, self.world_size)

        if distributed.broadcast(self.batches.fingerprint) != self.batches.fingerprint:
            raise data.DataError(
                f"--data {cfg.data}: rank {self.rank} built a different corpus than rank 0 "
                "(different Python versions on the nodes?); pass --data PATH to a shared file"
            )
        self.eval_set = self.batches.held_out(cfg.eval_sequences)

        self.build_model()
        # Fine-tuning with adapters trains only them: frozen weights get no optimizer state.
        trained = [p for p in self.model.parameters() if p.requires_grad]
        decay = [p for p in trained if p.dim() >= 2]
        no_decay = [p for p in trained if p.dim() < 2]
        self.optimizer = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": cfg.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=cfg.lr,
            betas=(0.9, 0.95),
            eps=1e-8,
        )
        # Tokens per step are the plan's global batch: tp and cp ranks read the same
        # samples (cp ranks keep their own chunks of them).
        self.tokens_per_step = self.dims.dp * cfg.grad_accum * cfg.micro_batch * cfg.seq_len
        self._time_compute(parallel.blocks(self.model))
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._on_signal)
        progress.enable_stack_dumps()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._stopping or self._pending_signal:
            # Second signal: the graceful stop is taking too long for the sender.
            os._exit(128 + signum)
        self._pending_signal = signum

    def log(self, message: str) -> None:
        if self.rank == 0:
            print(f"[train] {message}", flush=True)

    def event(self, name: EventKind, **fields: Any) -> None:
        if self.rank == 0:
            progress.event(name, source=SOURCE, **fields)

    # ---- one step ----------------------------------------------------------------------

    def train_step(self, step: int) -> StepResult:
        cfg = self.cfg
        start = time.perf_counter()
        lr = self.lr(step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self._compute_s = 0.0
        self._slow_s = self.injector.slowdown_s(step) / cfg.grad_accum
        self.model.train()
        loss_sum = torch.zeros((), device=self.device)
        if self.pipeline is not None:
            # The step's micro-batches in one tensor: the schedule splits it again.
            parts = [self._batch(step, micro) for micro in range(cfg.grad_accum)]
            tokens = torch.from_numpy(np.concatenate([t for t, _ in parts])).to(self.device)
            targets = torch.from_numpy(np.concatenate([t for _, t in parts])).to(self.device)
            with self._loss_context():
                loss_sum = self.pipeline.step(tokens, targets)
        for micro in range(cfg.grad_accum if self.pipeline is None else 0):
            tokens, targets = (
                torch.from_numpy(part).to(self.device, non_blocking=True)
                for part in self._batch(step, micro)
            )
            if cfg.grad_accum > 1:
                # Reduce-scatter gradients only on the last micro-step.
                self.model.set_requires_gradient_sync(micro == cfg.grad_accum - 1)  # type: ignore[operator]
            # Context-parallel ranks hold different numbers of loss tokens when targets are
            # masked (fine-tuning): each takes its sum over the micro-batch's count, times
            # cp as the gradient average over the cp ranks divides it again.
            counted = int((targets != batches.IGNORE_INDEX).sum()) if self.dims.cp > 1 else 0
            tokens, targets = self._inputs(tokens, targets)
            with self._loss_context():
                if counted:
                    summed = self.model(tokens, targets, self.loss_chunks, "sum")
                    loss = summed * (self.dims.cp / counted)
                else:
                    loss = self.model(tokens, targets, self.loss_chunks)
                (loss / cfg.grad_accum).backward()
            loss_sum += _local(loss.detach())
        max_norm = cfg.clip_grad_norm if cfg.clip_grad_norm > 0 else math.inf
        pp_mesh = self.mesh["pp"] if self.dims.pp > 1 else None
        norm = parallel.clip_grad_norm(list(self.model.parameters()), max_norm, pp_mesh)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        signum = self._pending_signal
        stats = torch.stack(
            [
                loss_sum / cfg.grad_accum,
                norm.to(loss_sum.dtype),
                *(torch.tensor(float(signum == s), device=self.device) for s in STOP_SIGNALS),
            ]
        )
        dist.all_reduce(stats)  # one collective: loss, norm and stop flags of every rank
        values = stats.tolist()
        stop = next((int(s) for s, n in zip(STOP_SIGNALS, values[2:], strict=True) if n > 0), 0)
        # The loss is on the last pipeline stage's ranks only: world / pp of them. Each
        # cp rank's loss is the mean over as many tokens: their mean is the sequence's.
        return StepResult(
            loss=values[0] / (self.world_size // self.dims.pp),
            grad_norm=values[1] / self.world_size,
            step_time_s=time.perf_counter() - start,
            stop_signal=stop,
            compute_s=self._compute_s,
        )

    def _batch(self, step: int, micro: int) -> batches.Batch:
        """This data-parallel rank's (tokens, targets) of ``micro`` in ``step``."""
        return self.batches.train(
            step=step, micro_step=micro, rank=self.dp_rank, world_size=self.dims.dp
        )

    def lr(self, step: int) -> float:
        cfg = self.cfg
        return lr_at(
            step, lr=cfg.lr, min_lr=cfg.min_lr, warmup_steps=cfg.warmup_steps, total_steps=cfg.steps
        )

    def _loss_context(self) -> contextlib.AbstractContextManager[None]:
        """Under tensor parallelism the logits stay sharded over the vocabulary and the
        cross-entropy is computed on the shards (torch's ``loss_parallel``); under ring
        context parallelism the forward and backward run inside torch's
        ``context_parallel`` (``runtime.train.context``)."""
        stack = contextlib.ExitStack()
        if self.dims.tp > 1:
            stack.enter_context(loss_parallel())
        if self.cp is not None:
            stack.enter_context(self.cp.context())
        return stack  # type: ignore[return-value]

    # ---- the loop ----------------------------------------------------------------------

    def advance(self) -> tuple[StepResult, float | None]:
        """Run the next step, evaluate if due, report progress and log; no checkpointing."""
        cfg = self.cfg
        step = self.step + 1
        self.injector.fire(faults.STEP, step)
        result = self.train_step(step)
        routing = moe.step_stats(self.model, self.device)  # before evaluation's forwards
        self.step, self.tokens = step, self.tokens + self.tokens_per_step
        eval_now = cfg.eval_every > 0 and (step % cfg.eval_every == 0 or step == cfg.steps)
        eval_loss = self.evaluate() if eval_now else None
        tokens_per_s = self.tokens_per_step / result.step_time_s
        progress.report(
            step=step,
            loss=result.loss,
            tokens=self.tokens,
            step_time_s=result.step_time_s,
            lr=self.lr(step),
            grad_norm=result.grad_norm,
            tokens_per_s=tokens_per_s,
            compute_s=round(result.compute_s, 6),
            **self._pipeline_fields(),
            **self.memory_fields(),
            **routing,
            **({"eval_loss": eval_loss} if eval_loss is not None else {}),
        )
        if self.rank == 0 and (step % cfg.log_every == 0 or step == cfg.steps or eval_now):
            self.log(
                f"step {step}/{cfg.steps} loss {result.loss:.4f} lr {self.lr(step):.2e} "
                f"grad_norm {result.grad_norm:.3f} tok/s {tokens_per_s:,.0f} "
                f"step {result.step_time_s * 1000:.1f}ms"
                + (f" held-out loss {eval_loss:.4f}" if eval_loss is not None else "")
            )
        return result, eval_loss

    def run(self) -> int:
        cfg = self.cfg
        self.setup()
        self.event(EventKind.LAYOUT_APPLIED, **self.layout_fields())
        self.resume()
        wall_start = time.perf_counter()
        last: StepResult | None = None
        eval_loss: float | None = None
        exported: str | None = None
        if self.step >= cfg.steps:
            self.log(f"already at step {self.step} of {cfg.steps}: nothing to do")
        while self.step < cfg.steps:
            step = self.step + 1
            last, eval_loss = self.advance()
            if last.stop_signal and step < cfg.steps:
                return self._stop(last.stop_signal)
            if step == cfg.steps:
                if cfg.final_checkpoint:
                    self.save("final")
                    exported = self.export_finetuned()
            elif cfg.ckpt_every and step % cfg.ckpt_every == 0:
                self.save("interval")
        self.event(
            EventKind.TRAINING_COMPLETE,
            step=self.step,
            tokens=self.tokens,
            loss=last.loss if last else None,
            eval_loss=eval_loss,
            wall_s=round(time.perf_counter() - wall_start, 3),
            **({"export": exported} if exported else {}),
        )
        self.log(f"training complete at step {self.step}")
        return 0

    def _stop(self, signum: int) -> int:
        self._stopping = True
        name = signal.Signals(signum).name
        self.log(f"{name} received: checkpointing step {self.step}, then exiting")
        if self.last_checkpoint_step != self.step:
            self.save("signal")
        code = 128 + signum
        self.event(EventKind.PREEMPTED, step=self.step, signal=name, exit_code=code)
        # Nobody exits before rank 0 has recorded the event: torchrun stops the other
        # ranks as soon as the first one exits with a non-zero code.
        distributed.barrier(self.dist)
        return code


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m runtime.train``: returns 2 on bad input; otherwise the
    process ends inside (``distributed.leave``) with ``Trainer.run``'s exit code."""
    from runtime.train.config import parse_config

    try:
        cfg = parse_config(argv)
        faults.parse(env.faults())
        trainer = Trainer(cfg)
        code = trainer.run()
    except (ConfigError, parallel.LayoutError, kernels.KernelError, LossChunksError,
            faults.FaultSpecError, data.DataError, CheckpointError, LoRAError) as exc:  # fmt: skip
        print(f"error: {exc}", file=sys.stderr, flush=True)
        if not dist.is_initialized():
            return 2
        # The other ranks may not have met the error (they may wait in a collective for
        # this one): no barrier, but no teardown either, so the status stays 2.
        distributed.leave(2)
    except Exception as exc:
        from runtime.agent.classify import is_secondary

        if not dist.is_initialized() or is_secondary(f"{type(exc).__name__}: {exc}"):
            # A peer went away: this rank leaves as it always did, after the peer, whose
            # failure torchrun must report as the root cause.
            raise
        # This rank's own crash must end as the crash (status 1, the traceback in its log,
        # where the agent classifies it): left to the interpreter, gloo's teardown race
        # turns about one in twenty into a SIGABRT, which reads as a killed rank.
        traceback.print_exc()
        distributed.leave(1)
    progress.close()
    distributed.leave(code, trainer.dist)
