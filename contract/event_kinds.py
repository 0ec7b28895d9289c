"""The event kinds of ``events.jsonl`` (the fields each carries: contract.event_fields).

contract.events writes and reads them; this module only names them (standard library
only: every rank imports it).
"""

from __future__ import annotations

import enum


class EventKind(str, enum.Enum):
    """The kinds of event; the value is what ``event`` holds on disk."""

    # launcher (scalectl launch/cancel, the local supervisor, the Slurm backend)
    SUBMITTED = "submitted"
    SLURM_SUBMITTED = "slurm_submitted"
    STARTED = "started"
    FAILED = "failed"
    CANCELLED = "cancelled"
    REQUEUE_REQUESTED = "requeue_requested"
    REQUEUED = "requeued"
    STOPPING = "stopping"
    NODE_RETURNED = "node_returned"
    FINISHED = "finished"
    # the node agent under the Slurm policy (and the batch script's end helper)
    SLURM_NODE_STARTED = "slurm_node_started"
    SLURM_SIGNAL = "slurm_signal"
    SLURM_NODE_ENDED = "slurm_node_ended"
    NODE_LOST = "node_lost"
    # the node agent
    AGENT_STARTED = "agent_started"
    TELEMETRY_UNAVAILABLE = "telemetry_unavailable"
    RANK_FAILED = "rank_failed"
    RESTARTED = "restarted"
    RESIZED = "resized"
    HANG_DETECTED = "hang_detected"
    STRAGGLER_DETECTED = "straggler_detected"
    STRAGGLER_CLEARED = "straggler_cleared"
    STOP_REQUESTED = "stop_requested"
    STOPPED = "stopped"
    GAVE_UP = "gave_up"
    AGENT_FINISHED = "agent_finished"
    # the ranks (the reference trainer, fault injection)
    LAYOUT_APPLIED = "layout_applied"
    RESUMED = "resumed"
    CHECKPOINT_SAVED = "checkpoint_saved"
    TRAINING_COMPLETE = "training_complete"
    PREEMPTED = "preempted"
    FAULT_INJECTED = "fault_injected"

    def __str__(self) -> str:
        return self.value
