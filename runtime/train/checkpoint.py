"""Sharded checkpoints with torch.distributed.checkpoint (DCP), committed atomically.

Layout under ``<job_dir>/checkpoints/``:

* ``step_<n>/``: a complete checkpoint: DCP shard files (``__<rank>_<i>.distcp``), DCP's
  ``.metadata``, and ``trainer_state.json`` (step, tokens, world size, config, corpus).
* ``tmp-step_<n>/``: being written. Every rank writes its shards there; after DCP's
  final collective (the coordinator has written ``.metadata``) and a barrier, rank 0
  writes ``trainer_state.json`` (fsync'd), renames the directory to ``step_<n>``, fsyncs
  the parent, prunes old checkpoints, and a last barrier keeps every rank from exiting
  before the rename. A crash at any earlier point leaves only a ``tmp-`` directory,
  which no reader loads and the next start deletes.
* ``.trash-step_<n>/``: a pruned checkpoint being deleted (renamed first, so a deletion
  cut short never leaves a half-deleted ``step_<n>``).

Resume: the newest ``step_<n>`` that holds both ``.metadata`` and ``trainer_state.json``.
Model and optimizer go through ``torch.distributed.checkpoint.state_dict``
(``get_state_dict``/``set_state_dict``), which handles FSDP2's DTensor shards, so DCP
reshards on load when the world size has changed. The learning-rate schedule and the data
order are pure functions of the step (see ``schedule`` and ``data``), so the step restores
both.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.filesystem import FileSystemWriter
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_state_dict,
    set_state_dict,
)

from contract.jobdir import CHECKPOINT_PREFIX, JobDir, write_json_atomic

TMP_PREFIX = "tmp-" + CHECKPOINT_PREFIX
TRASH_PREFIX = ".trash-" + CHECKPOINT_PREFIX
STATE_FILE = "trainer_state.json"
DCP_METADATA = ".metadata"


class _HookedWriter(FileSystemWriter):
    """FileSystemWriter that calls ``after_shards`` once this rank's shard files are written.

    The hook runs before the coordinator writes ``.metadata``: the fault injector uses it
    to kill a rank in the middle of a checkpoint.
    """

    def __init__(self, path: Path, after_shards: Callable[[], None]) -> None:
        super().__init__(path)
        self._after_shards = after_shards

    def write_data(self, plan: Any, planner: Any) -> Any:
        future = super().write_data(plan, planner)
        future.wait()
        self._after_shards()
        return future


def is_complete(path: Path) -> bool:
    """A committed checkpoint directory with DCP metadata and the trainer state."""
    return (path / DCP_METADATA).is_file() and (path / STATE_FILE).is_file()


def find_latest(job: JobDir) -> tuple[int, Path] | None:
    """Newest complete checkpoint; committed directories lacking files are skipped."""
    for step, path in reversed(job.complete_checkpoints()):
        if is_complete(path):
            return step, path
    return None


def clean_stale(job: JobDir) -> list[str]:
    """Delete leftovers of interrupted writes and deletions; returns their names (rank 0 only)."""
    removed: list[str] = []
    if not job.checkpoints_dir.is_dir():
        return removed
    for entry in sorted(job.checkpoints_dir.iterdir()):
        if entry.name.startswith((TMP_PREFIX, TRASH_PREFIX)):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry.name)
    return removed


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _delete(job: JobDir, path: Path) -> None:
    trash = job.checkpoints_dir / (TRASH_PREFIX + path.name[len(CHECKPOINT_PREFIX) :])
    os.rename(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def prune(job: JobDir, keep: int) -> list[int]:
    """Delete all but the newest ``keep`` committed checkpoints; returns deleted steps."""
    committed = job.complete_checkpoints()
    doomed = committed[: max(0, len(committed) - keep)]
    for _, path in doomed:
        _delete(job, path)
    return [step for step, _ in doomed]


def save(
    job: JobDir,
    step: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    trainer_state: dict[str, Any],
    keep: int,
    after_shards: Callable[[], None] = lambda: None,
    options: StateDictOptions | None = None,
) -> Path:
    """Write checkpoint ``step`` collectively (every rank calls this); returns its final path."""
    rank = dist.get_rank()
    tmp = job.checkpoints_dir / f"{TMP_PREFIX}{step}"
    final = job.checkpoint_dir(step)
    # options: adapter fine-tuning saves only the trained parameters (the frozen base is
    # the --from checkpoint, read again at every start).
    model_state, optim_state = get_state_dict(model, optimizer, options=options)
    dcp.save(
        {"model": model_state, "optim": optim_state},
        storage_writer=_HookedWriter(tmp, after_shards),
    )
    dist.barrier()
    if rank == 0:
        write_json_atomic(tmp / STATE_FILE, trainer_state)
        _fsync_dir(tmp)
        if final.exists():  # a checkpoint of this step from an earlier life of the job
            _delete(job, final)
        os.rename(tmp, final)
        _fsync_dir(job.checkpoints_dir)
        prune(job, keep)
    dist.barrier()
    return final


def read_trainer_state(path: Path) -> dict[str, Any]:
    with open(path / STATE_FILE, encoding="utf-8") as handle:
        state: dict[str, Any] = json.load(handle)
    return state


def load(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    options: StateDictOptions | None = None,
) -> dict[str, Any]:
    """Load model and optimizer (resharding as needed) from ``path``; returns the trainer
    state. ``options`` as the checkpoint was saved with."""
    model_state, optim_state = get_state_dict(model, optimizer, options=options)
    # DCP loads in place into the tensors of these dicts (resharding from the saved layout).
    dcp.load({"model": model_state, "optim": optim_state}, checkpoint_id=path)
    set_state_dict(
        model,
        optimizer,
        model_state_dict=model_state,
        optim_state_dict=optim_state,
        options=options,
    )
    return read_trainer_state(path)


def load_model_single_process(path: Path, model: nn.Module) -> None:
    """Load the model weights of a checkpoint into a plain (unsharded) model, no process group.

    For export, inspection and tests: DCP reads each full tensor from the shards of however
    many ranks wrote it.
    """
    state = model.state_dict()
    with warnings.catch_warnings():
        # DCP warns that it assumes a single process; that is the point here.
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        dcp.load({"model": state}, checkpoint_id=path, no_dist=True)
    model.load_state_dict(state)
