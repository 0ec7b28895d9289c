"""Checkpoints of the reference trainer: resume from the newest complete one (or start
fresh), save one (interval, final, on a stop signal), and the optional full-state dumps
that tests compare. Mixed into :class:`runtime.train.loop.Trainer`, which sets the state
declared here in ``Trainer.setup``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from contract import env
from contract.events import EventKind
from contract.jobdir import JobDir
from runtime import faults
from runtime.train import checkpoint, distributed, finetune
from runtime.train.batches import Batches
from runtime.train.config import MODEL_FIELDS, ConfigError, TrainConfig
from runtime.train.model import Transformer


class Checkpointing:
    """Resume and save for ``Trainer`` (a mixin)."""

    cfg: TrainConfig
    job: JobDir | None
    rank: int
    world_size: int
    batches: Batches
    model: Transformer
    optimizer: torch.optim.Optimizer
    injector: faults.Injector
    n_params: int
    n_trainable: int
    tokens_per_step: int
    step: int
    tokens: int
    last_checkpoint_step: int
    dist: distributed.DistInfo

    if TYPE_CHECKING:

        def log(self, message: str) -> None: ...
        def event(self, name: EventKind, **fields: Any) -> None: ...
        def evaluate(self) -> float: ...

    def resume(self) -> None:
        """Load the newest complete checkpoint, or start fresh; emits resumed/started."""
        found: tuple[int, str] | None = None
        if self.job is not None:
            if self.rank == 0:
                removed = checkpoint.clean_stale(self.job)
                if removed:
                    self.log(f"removed incomplete checkpoint debris: {', '.join(removed)}")
                latest = checkpoint.find_latest(self.job)
                found = (latest[0], str(latest[1])) if latest else None
            found = distributed.broadcast(found)
        if found is None:
            eval_loss = self.evaluate() if self.cfg.eval_every else None
            trained = (
                f" ({self.n_trainable:,} trained)" if self.n_trainable != self.n_params else ""
            )
            self.log(
                f"starting fresh: {self.n_params:,} parameters{trained}, world size "
                f"{self.world_size}, {self.tokens_per_step:,} tokens/step, "
                f"{self.batches.describe()}"
                + (f", held-out loss {eval_loss:.4f}" if eval_loss is not None else "")
            )
            self.event(
                EventKind.STARTED,
                step=0,
                world_size=self.world_size,
                params=self.n_params,
                tokens_per_step=self.tokens_per_step,
                corpus=self.batches.fingerprint,
                eval_loss=eval_loss,
                **finetune.started_fields(self.cfg, self.n_trainable),
            )
            return
        path = Path(found[1])
        saved = checkpoint.read_trainer_state(path)
        self._check_compatible(saved, path)
        start = time.perf_counter()
        checkpoint.load(path, self.model, self.optimizer, finetune.state_options(self.cfg))
        for group, decay in zip(
            self.optimizer.param_groups, (self.cfg.weight_decay, 0.0), strict=True
        ):
            group["weight_decay"] = decay  # flags of this run win over the saved ones
        self.step, self.tokens = int(saved["step"]), int(saved["tokens"])
        self.last_checkpoint_step = self.step
        then = int(saved["world_size"])
        corpus_changed = saved.get("corpus") != self.batches.fingerprint
        self.log(
            f"resumed from {path} at step {self.step} (world size {then} then, "
            f"{self.world_size} now; {time.perf_counter() - start:.2f}s to load)"
        )
        if corpus_changed:
            self.log("warning: the corpus differs from the one the checkpoint was trained on")
        self.event(
            EventKind.RESUMED,
            step=self.step,
            checkpoint=str(path),
            world_size_then=then,
            world_size=self.world_size,
            tokens=self.tokens,
            corpus_changed=corpus_changed,
        )
        self._maybe_dump("resumed")

    def _check_compatible(self, saved: dict[str, Any], path: Path) -> None:
        old = saved.get("config", {})
        for name in (*MODEL_FIELDS, *finetune.CHECKPOINT_FIELDS):
            if name in old and old[name] != getattr(self.cfg, name):
                flag = "--" + name.replace("_", "-")
                raise ConfigError(
                    f"checkpoint {path} holds a model with {name}={old[name]} but this run has "
                    f"{flag} {getattr(self.cfg, name)}; use the same model shape or a new --job-dir"
                )

    def save(self, reason: str) -> None:
        if self.job is None:
            return
        start = time.perf_counter()
        state = {
            "step": self.step,
            "tokens": self.tokens,
            "world_size": self.world_size,
            "reason": reason,
            "saved_ts": time.time(),
            "config": self.cfg.to_json(),
            "corpus": self.batches.fingerprint,
            "torch": torch.__version__,
        }
        step = self.step
        path = checkpoint.save(
            self.job,
            step,
            self.model,
            self.optimizer,
            state,
            keep=self.cfg.keep_checkpoints,
            options=finetune.state_options(self.cfg),
            after_shards=lambda: self.injector.fire(faults.CHECKPOINT, step),
        )
        self.last_checkpoint_step = step
        seconds = time.perf_counter() - start
        self.log(f"checkpoint step {step} saved to {path} in {seconds:.2f}s ({reason})")
        self.event(
            EventKind.CHECKPOINT_SAVED,
            step=step,
            path=str(path),
            seconds=round(seconds, 4),
            reason=reason,
            world_size=self.world_size,
        )
        self._maybe_dump("saved")

    def export_finetuned(self) -> str | None:
        """Fine-tuning: rank 0 writes the Hugging Face export of the checkpoint just
        committed (``runtime.train.export``) while the others wait; returns its directory."""
        if not self.cfg.finetune or self.job is None:
            return None
        out = self.job.root / "export"
        if self.rank == 0:
            from runtime.train.export import export_checkpoint

            start = time.perf_counter()
            done = export_checkpoint(self.job.checkpoint_dir(self.step), out)
            adapter = f", adapter in {done.adapter_dir}" if done.adapter_dir else ""
            self.log(
                f"exported step {done.step}: merged Hugging Face model in {done.merged_dir}"
                f"{adapter} ({time.perf_counter() - start:.2f}s)"
            )
        distributed.barrier(self.dist)
        return str(out)

    def _maybe_dump(self, kind: str) -> None:
        if not env.train_dump_state() or self.job is None:
            return
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        model_state, optim_state = get_state_dict(self.model, self.optimizer, options=options)
        if self.rank == 0:
            target = self.job.root / "debug" / f"{kind}_step_{self.step}.pt"
            target.parent.mkdir(exist_ok=True)
            torch.save({"model": model_state, "optim": optim_state}, target)
