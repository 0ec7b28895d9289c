"""``scalectl export JOB``: a fine-tuned job's checkpoint as Hugging Face directories."""

from __future__ import annotations

from pathlib import Path

import typer

from launcher.errors import LaunchInputError
from launcher.store import Store


def export(
    job: str = typer.Argument(..., help="Job id, unique id prefix/suffix, or name."),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Directory to write (default: the job directory's export/)."
    ),
    step: int | None = typer.Option(
        None, "--step", help="Checkpoint step to export (default: the newest complete one)."
    ),
) -> None:
    """Write a fine-tuned job's checkpoint as Hugging Face directories: merged/ (the base
    model with the adapters folded in, or the fully fine-tuned weights), which
    transformers loads, and adapter/ (LoRA/QLoRA: the adapters alone, PEFT's format)."""
    from contract.jobdir import JobDir

    with Store(create=False) as store:
        record = store.resolve(job)
    job_dir = JobDir(Path(record.job_dir))
    checkpoints = dict(job_dir.complete_checkpoints())
    if not checkpoints:
        raise LaunchInputError(
            f"job {record.id} ({record.name}) has no complete checkpoint in {job_dir.root}; "
            "export a job once it has committed one"
        )
    chosen = max(checkpoints) if step is None else step
    if chosen not in checkpoints:
        have = ", ".join(str(s) for s in sorted(checkpoints))
        raise LaunchInputError(f"--step {step}: job {record.id} has checkpoints of steps {have}")
    from runtime.train.export import export_checkpoint

    done = export_checkpoint(checkpoints[chosen], out or job_dir.root / "export")
    typer.echo(f"step {done.step}: merged Hugging Face model in {done.merged_dir}")
    if done.adapter_dir is not None:
        typer.echo(f"step {done.step}: adapters (PEFT format) in {done.adapter_dir}")
