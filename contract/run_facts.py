"""What a job measured set against its plan, for ``scalectl jobs --json`` and the TUI.

:func:`against_plan` is the ``plan`` object of ``scalectl jobs --json``: step time,
throughput and MFU (``contract.plan``'s arithmetic) and the reference trainer's newer
figures, which the TUI's detail pane takes from here too, so both show the same numbers:

* the parameter, gradient and optimizer state of the most loaded rank: progress records'
  ``state_mib`` (exact bytes of that rank's tensors) against the plan's
  ``estimate.memory_gib`` ``params + grads + optimizer`` (:func:`planned_state_mib`);
* the pipeline bubble: progress ``bubble_fraction`` against the plan's
  ``estimate.step.bubble_fraction`` (:func:`planned_bubble_fraction`, pipelines only);
* fine-tuning: the plan's ``training.finetune``, ``lora_rank``, ``lora_targets``,
  ``base_format``; the trainer's ``started`` event (``params``, and for a fine-tune
  ``finetune``, ``trained_params`` and the adapters as they ran) and the
  ``training_complete`` event's ``export``
  (:class:`TrainerEvents`, :func:`finetune_run`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from contract.event_kinds import EventKind
from contract.events import Event
from contract.jobdir import finite
from contract.plan import Plan, ratio

MIB_PER_GIB = 1024.0
TRAINER_SOURCE = "trainer"
"""``source`` of the events the reference trainer writes (the launcher writes ``started``
too)."""


def planned_state_mib(plan: Plan) -> float | None:
    """The plan's parameters + gradients + optimizer state per GPU (most loaded GPU), MiB;
    None when the plan lacks any of the three."""
    memory = plan.estimate.memory_gib
    if memory is None:
        return None
    terms = (memory.params, memory.grads, memory.optimizer)
    if any(term is None for term in terms):
        return None
    return sum(t for t in terms if t is not None) * MIB_PER_GIB


def pipelined(plan: Plan) -> bool:
    """The plan has more than one pipeline stage."""
    return (plan.layout.pp or 1) > 1


def planned_bubble_fraction(plan: Plan) -> float | None:
    """The planned share of a step the pipeline idles; None without a pipeline."""
    return plan.step.bubble_fraction if pipelined(plan) else None


def against_plan(
    plan: Plan,
    step_time_s: float | None,
    tokens_per_s: float | None,
    gpus_measured: int | None,
    bubble_fraction: float | None = None,
    state_mib: float | None = None,
) -> dict[str, float | None]:
    """The plan's step time, throughput and MFU beside the measured ones, with ratios
    (measured / planned): what ``scalectl jobs --json`` shows under ``plan``; for a
    pipeline, the planned bubble beside the one a rank measured; once a rank reported
    ``state_mib``, the planned state memory beside the largest rank's, with the ratio."""
    step = plan.step
    bubble: dict[str, float | None] = {}
    if pipelined(plan):
        bubble = {
            "bubble_fraction": step.bubble_fraction,
            "bubble_fraction_measured": bubble_fraction,
        }
    state: dict[str, float | None] = {}
    if state_mib is not None:
        planned = planned_state_mib(plan)
        state = {
            "state_mib": planned,
            "state_mib_measured": state_mib,
            "state_ratio": ratio(state_mib, planned),
        }
    return {
        **bubble,
        "step_time_s": step.time_s,
        "step_time_ratio": ratio(step_time_s, step.time_s),
        "tokens_per_s": step.tokens_per_s,
        "tokens_per_s_ratio": ratio(tokens_per_s, step.tokens_per_s),
        "mfu": step.mfu,
        "mfu_measured": plan.measured_mfu(tokens_per_s, gpus_measured),
        **state,
    }


@dataclass(frozen=True)
class TrainerEvents:
    """The trainer's events a reader keeps while following ``events.jsonl``."""

    started: dict[str, Any] | None = None
    """The newest trainer ``started`` event (a fresh run; a resume writes ``resumed``)."""
    export: str | None = None
    """``training_complete``'s ``export``: the directory holding merged/ and adapter/."""

    def fold(self, events: Iterable[Event]) -> TrainerEvents:
        """These facts updated with newer events (oldest first)."""
        started, export = self.started, self.export
        for event in events:
            if event.kind is EventKind.STARTED and event.source == TRAINER_SOURCE:
                started = event.record
            elif event.kind is EventKind.TRAINING_COMPLETE and event.get("export"):
                export = str(event.get("export"))
        if started is self.started and export == self.export:
            return self
        return TrainerEvents(started=started, export=export)


@dataclass(frozen=True)
class FinetuneRun:
    """A fine-tuning job as planned and as the trainer reported it."""

    mode: str
    """full, lora or qlora (the trainer's ``started`` event, else the plan's)."""
    lora_rank: int | None = None
    """Adapter rank r (the trainer's ``started`` event, else the plan's; None: a full
    fine-tune, or the plan left it to the planner's default)."""
    lora_targets: str | None = None
    """Projections with adapters (the event, else the plan)."""
    base_format: str | None = None
    """qlora: storage of the frozen weights (the event, else the plan)."""
    params: int | None = None
    """The model's parameters (trainer's ``started`` event)."""
    trained_params: int | None = None
    """Parameters the optimizer updates (trainer's ``started`` event)."""
    export: str | None = None
    """Where the export went, once training completed."""

    def json(self) -> dict[str, Any]:
        return {
            "finetune": self.mode,
            "lora_rank": self.lora_rank,
            "lora_targets": self.lora_targets,
            "base_format": self.base_format,
            "params": self.params,
            "trained_params": self.trained_params,
            "export": self.export,
        }


def finetune_run(plan: Plan | None, seen: TrainerEvents) -> FinetuneRun | None:
    """The fine-tuning facts of a job; None for pre-training (neither the plan nor the
    trainer's ``started`` event names a fine-tune)."""
    started = seen.started or {}
    training = plan.training if plan is not None else None
    mode = started.get("finetune") or (training.finetune if training else None)
    if not isinstance(mode, str) or not mode:
        return None

    def ran(name: str, applies: bool) -> Any:
        # What the trainer says it ran wins over what the plan asked for.
        planned = getattr(training, name) if training is not None else None
        value = started.get(name, planned)
        return value if applies else None

    adapters = mode != "full"
    rank = ran("lora_rank", adapters)
    targets, base = ran("lora_targets", adapters), ran("base_format", mode == "qlora")
    return FinetuneRun(
        mode=mode,
        lora_rank=_count(rank),
        lora_targets=str(targets) if targets else None,
        base_format=str(base) if base else None,
        params=_count(started.get("params")),
        trained_params=_count(started.get("trained_params")),
        export=seen.export,
    )


def _count(value: Any) -> int | None:
    number = finite(value)
    return int(number) if number is not None else None
