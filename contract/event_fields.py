"""The fields each event kind carries (the schema table of ``events.jsonl``).

tests/contract checks that every kind a writer uses is here with its keywords
(:data:`EVENT_FIELDS`) and that every kind is written somewhere. Standard library only
(every rank imports it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from contract.event_kinds import EventKind


@dataclass(frozen=True)
class EventSpec:
    """What one kind means, who writes it and the fields it carries (beyond ``ts``/``event``)."""

    writer: str
    """Who writes it (module, and ``source`` on the record)."""
    meaning: str
    fields: Mapping[str, str]
    """Field name → meaning (units in the name or here). Any field may be null."""


SLURM_TAGS: Mapping[str, str] = {
    "node": "the node's name",
    "slurm_job_id": "Slurm's job id (SLURM_JOB_ID)",
    "restart": "Slurm's restart count of the allocation (SLURM_RESTART_COUNT)",
}
"""Fields the Slurm side (the agent's Slurm policy, the end helper) adds to each of its events."""

_AGENT = {"source": "'agent'", "job_id": "the job's id", "node": "the agent's node"}
_INCIDENT = {
    "cause": "classified cause: rank_crash, oom, signal, hang, peer_failure, node_lost, "
    "torchrun_exit, bad_input, unknown, ...",
    "detail": "one line for people",
    "fault_ts": "when the fault happened (hang: the last step seen), seconds",
    "detected_ts": "when the agent saw it, seconds",
}
_LAUNCHER = {"source": "'launcher' (absent on some Slurm records)", "job_id": "the job's id"}

EVENT_FIELDS: Mapping[EventKind, EventSpec] = {
    EventKind.SUBMITTED: EventSpec(
        "launcher.api, launcher.sweep",
        "the job was registered and handed to its backend",
        {
            **_LAUNCHER,
            "backend": "local, slurm or kubernetes",
            "name": "the spec's name",
            "sweep": "sweep id (sweeps only)",
            "index": "run index in the sweep",
            "values": "the sweep values of this run",
        },
    ),
    EventKind.SLURM_SUBMITTED: EventSpec(
        "launcher.backends.slurm",
        "sbatch accepted the script",
        {
            "job_id": "the job's id",
            "slurm_job_id": "Slurm's job id",
            "script": "path of the submitted script",
            "array_index": "index in an array job",
        },
    ),
    EventKind.STARTED: EventSpec(
        "local supervisor, node agent's Slurm policy (first node), reference trainer (rank 0)",
        "the job's processes (launcher) or a fresh training run (trainer) started",
        {
            **_LAUNCHER,
            **SLURM_TAGS,
            "supervisor_pid": "local supervisor's pid",
            "agents": "node → agent pid (local)",
            "rdzv_endpoint": "host:port",
            "command": "argv of each node's agent (local), of torchrun (Slurm)",
            "backend": "'slurm'",
            "nodelist": "SLURM_JOB_NODELIST",
            "step": "0 (trainer)",
            "world_size": "ranks",
            "params": "model parameters",
            "finetune": "fine-tuning only: full, lora or qlora",
            "trained_params": "fine-tuning only: parameters the optimizer updates",
            "lora_rank": "lora/qlora only: adapter rank r",
            "lora_targets": "lora/qlora only: projections with adapters",
            "base_format": "qlora only: storage of the frozen weights",
            "tokens_per_step": "tokens per optimiser step",
            "corpus": "corpus fingerprint",
            "eval_loss": "held-out loss before training",
            "rank": "writer's rank (trainer)",
        },
    ),
    EventKind.FAILED: EventSpec(
        "launcher.api, launcher.sweep, local supervisor",
        "the job failed before or while starting (submit error, spawn error)",
        {**_LAUNCHER, "state": "'FAILED'", "reason": "why", "exit_code": "null"},
    ),
    EventKind.CANCELLED: EventSpec(
        "launcher.api (scalectl cancel)",
        "the user cancelled; the local supervisor reads grace_s from it",
        {**_LAUNCHER, "by": "user name", "grace_s": "seconds the ranks get to stop"},
    ),
    EventKind.REQUEUE_REQUESTED: EventSpec(
        "launcher.api (scalectl requeue)",
        "the user asked the scheduler to requeue the job",
        {**_LAUNCHER, "by": "user name"},
    ),
    EventKind.REQUEUED: EventSpec(
        "the batch script's end helper (launcher/backends/slurm_task.py end)",
        "the allocation ended preempted and the job was requeued",
        {
            **_LAUNCHER,
            **SLURM_TAGS,
            "reason": "why",
            "count": "requeues used, this one included",
            "max_requeues": "the spec's budget",
        },
    ),
    EventKind.STOPPING: EventSpec(
        "local supervisor",
        "the supervisor stops the node agents",
        {**_LAUNCHER, "reason": "why", "grace_s": "seconds the agents get"},
    ),
    EventKind.NODE_RETURNED: EventSpec(
        "local supervisor",
        "a lost node's agent was started again",
        {**_LAUNCHER, "node": "the node", "lost_exit_code": "its agent's exit code when lost"},
    ),
    EventKind.FINISHED: EventSpec(
        "local supervisor, the Slurm batch script's end helper",
        "the job ended; its final state",
        {
            **_LAUNCHER,
            **SLURM_TAGS,
            "state": "final JobState value",
            "reason": "why",
            "exit_code": "the job's exit code",
        },
    ),
    EventKind.SLURM_NODE_STARTED: EventSpec(
        "node agent (Slurm policy: the agent is srun's task)",
        "the node agent started on a node",
        {
            "job_id": "the job's id",
            **SLURM_TAGS,
            "pid": "the node agent's pid",
            "rdzv_endpoint": "host:port",
            "nodes": "nodes in the allocation",
        },
    ),
    EventKind.SLURM_SIGNAL: EventSpec(
        "node agent (Slurm policy)",
        "Slurm signalled the node agent",
        {"job_id": "the job's id", **SLURM_TAGS, "signal": "signal name"},
    ),
    EventKind.SLURM_NODE_ENDED: EventSpec(
        "node agent (Slurm policy)",
        "the node agent ended on a node",
        {
            "job_id": "the job's id",
            **SLURM_TAGS,
            "outcome": "completed, preempted, stopped, lost or failed",
            "node_command_exit": "the agent's exit code",
            "signal": "signal that stopped it",
            "leftovers_killed": "processes the agent started, killed after torchrun ended",
        },
    ),
    EventKind.NODE_LOST: EventSpec(
        "node agent (Slurm policy)",
        "the node left the job (its torchrun was killed from outside)",
        {"job_id": "the job's id", **SLURM_TAGS, "reason": "why"},
    ),
    EventKind.AGENT_STARTED: EventSpec(
        "runtime.agent",
        "the node agent started",
        {
            **_AGENT,
            "pid": "agent pid",
            "restarts": "restart budget",
            "restart_mode": "torchrun or agent",
            "hang_floor_s": "least hang timeout, seconds",
            "torchrun_args": "torchrun's argv",
            "policy": "backend policy: local, slurm or kubernetes",
        },
    ),
    EventKind.TELEMETRY_UNAVAILABLE: EventSpec(
        "runtime.agent",
        "the telemetry sampler could not start; the job runs without it",
        {**_AGENT, "error": "exception type and message"},
    ),
    EventKind.RANK_FAILED: EventSpec(
        "runtime.agent",
        "a rank exited with an error",
        {
            **_AGENT,
            **_INCIDENT,
            "rank": "global rank",
            "local_rank": "rank on the node",
            "pid": "its pid",
            "exit_code": "its exit code",
            "signal": "signal name that ended it",
            "attempt": "torchrun's restart count",
        },
    ),
    EventKind.RESTARTED: EventSpec(
        "runtime.agent; runtime.rank_exec when no agent runs the ranks",
        "the workers run again after an incident",
        {
            **_AGENT,
            **_INCIDENT,
            "source": "'agent', or 'launcher' (rank_exec)",
            "by": "agent or torchrun",
            "attempt": "restart number",
            "backoff_s": "seconds waited",
            "restarts_left": "budget left",
            "world_size": "ranks after the restart",
            "nodes": "nodes after the restart",
        },
    ),
    EventKind.RESIZED: EventSpec(
        "runtime.agent",
        "the elastic job changed world size",
        {
            **_AGENT,
            "world_size_then": "ranks before",
            "world_size": "ranks now",
            "nodes": "nodes now",
            "cause": "node_lost or node_joined",
        },
    ),
    EventKind.HANG_DETECTED: EventSpec(
        "runtime.agent",
        "ranks stopped making progress; they are killed and restarted",
        {
            **_AGENT,
            "ranks": "the silent ranks",
            "last_steps": "rank → last step",
            "silent_s": "longest silence, seconds",
            "timeout_s": "allowed silence, seconds",
            "stopped_ranks": "ranks already exited",
            "stacks": "rank → stack dump path",
        },
    ),
    EventKind.STRAGGLER_DETECTED: EventSpec(
        "runtime.agent",
        "a rank's step time is well above the others'",
        {
            **_AGENT,
            "rank": "the rank",
            "ratio": "its median step time over the job's",
            "median_s": "its median step time, seconds",
            "window": "steps compared",
            "threshold": "ratio that flags it",
        },
    ),
    EventKind.STRAGGLER_CLEARED: EventSpec(
        "runtime.agent",
        "a straggler caught up",
        {**_AGENT, "rank": "the rank", "median_s": "its median step time, seconds"},
    ),
    EventKind.STOP_REQUESTED: EventSpec(
        "runtime.agent",
        "the agent got a stop signal (preemption, cancel)",
        {
            **_AGENT,
            "signal": "signal name received",
            "sent": "signal sent to the ranks, or null when the scheduler already reached them",
            "rank_pids": "the ranks' pids",
            "grace_s": "seconds they get",
        },
    ),
    EventKind.STOPPED: EventSpec(
        "runtime.agent",
        "the ranks stopped after a stop signal",
        {
            **_AGENT,
            **_INCIDENT,
            "signal": "signal name",
            "torchrun_exit_code": "its exit code",
            "checkpointed": "the trainer saved on the way out",
            "checkpoint_step": "newest checkpoint's step",
            "seconds": "time to stop",
        },
    ),
    EventKind.GAVE_UP: EventSpec(
        "runtime.agent",
        "the restart budget is spent (or the input is bad): the node fails",
        {**_AGENT, **_INCIDENT, "restarts_used": "restarts spent"},
    ),
    EventKind.AGENT_FINISHED: EventSpec(
        "runtime.agent",
        "the node agent ended",
        {**_AGENT, "exit_code": "its exit code", "restarts_used": "restarts spent"},
    ),
    EventKind.RESUMED: EventSpec(
        "reference trainer (rank 0)",
        "training resumed from a checkpoint",
        {
            "source": "'trainer'",
            "rank": "0",
            "step": "step resumed at",
            "checkpoint": "its path",
            "world_size_then": "ranks that saved it",
            "world_size": "ranks now",
            "tokens": "tokens trained so far",
            "corpus_changed": "the corpus differs from the checkpoint's",
        },
    ),
    EventKind.CHECKPOINT_SAVED: EventSpec(
        "reference trainer (rank 0)",
        "a checkpoint was committed",
        {
            "source": "'trainer'",
            "rank": "0",
            "step": "its step",
            "path": "its directory",
            "seconds": "time to save",
            "reason": "interval, final or signal",
            "world_size": "ranks",
        },
    ),
    EventKind.LAYOUT_APPLIED: EventSpec(
        "reference trainer (rank 0)",
        "the parallel layout the trainer applied, at every (re)start, before resuming",
        {
            "source": "'trainer'",
            "rank": "0",
            "dp_replicate": "data-parallel replicas (HSDP's replicate group; dp under none)",
            "dp_shard": "data-parallel ranks sharding parameters and optimizer state",
            "tp": "tensor-parallel degree",
            "pp": "pipeline stages",
            "interleave": "virtual pipeline stages per pipeline rank",
            "schedule": "pipeline schedule: 1f1b (interleaved above interleave 1) or gpipe",
            "uneven_stages": "first and last pipeline stage one block lighter",
            "cp": "context-parallel degree",
            "cp_impl": "context parallelism: allgather (Llama 3 sec. 3.3.2) or ring",
            "ep": "expert-parallel degree (data-parallel ranks splitting each MoE layer's experts)",
            "experts": "routed experts per MoE layer (1: a dense model)",
            "moe_capacity_factor": "expert capacity, x an even share of a micro-batch; 0: dropless",
            "sequence_parallel": "norms and residual stream split along the sequence",
            "recompute": "none, selective or full",
            "sharding": "none, zero1, zero2, zero3 or hsdp",
            "precision": "fp32, bf16 (mixed), bf16-pure or fp8",
            "world_size": "ranks",
            "global_batch_tokens": "tokens per optimiser step, the whole job",
            "micro_batch": "sequences per micro-step per data-parallel rank",
            "grad_accum": "micro-steps per optimiser step",
            "elastic_dp": "dp and grad_accum followed the world size (a planned node range)",
            "compile": "whether each transformer block runs torch.compile'd",
            "loss_chunks": "sequence chunks of the output projection and cross-entropy",
        },
    ),
    EventKind.TRAINING_COMPLETE: EventSpec(
        "reference trainer (rank 0)",
        "the last step is done (before process-group teardown)",
        {
            "source": "'trainer'",
            "rank": "0",
            "step": "last step",
            "tokens": "tokens trained",
            "loss": "last training loss",
            "eval_loss": "held-out loss",
            "wall_s": "training wall time, seconds",
            "export": "fine-tuning only: the directory holding merged/ (the Hugging Face "
            "model) and, for LoRA/QLoRA, adapter/",
        },
    ),
    EventKind.PREEMPTED: EventSpec(
        "reference trainer (rank 0)",
        "the trainer stopped on a signal after checkpointing",
        {
            "source": "'trainer'",
            "rank": "0",
            "step": "last step",
            "signal": "signal name",
            "exit_code": "128 + signal",
        },
    ),
    EventKind.FAULT_INJECTED: EventSpec(
        "runtime.faults",
        "an injected fault fired (tests, drills)",
        {
            "kind": "crash, exit, kill, hang, signal, ...",
            "step": "step it fired at",
            "rank": "the rank",
            "spec": "the SCALECTL_FAULTS entry",
            "target": "rank, agent or node",
        },
    ),
}
"""The fields of every kind. tests/contract checks each writer's keywords against it."""
