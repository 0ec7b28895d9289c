"""The plans scalectl's reference trainer (``runtime.train``) does not run.

One list, read by both sides of a launch: the trainer refuses such a plan at start
(``runtime/train/plan_fields.py``, exit 2), and ``scalectl launch`` refuses it before a
job directory exists (``launcher/plan_launch.py``), so a plan the trainer cannot run
never becomes a job that fails on every rank. Each refusal names the plan's field, why
the trainer differs, and the fix. Standard library and pydantic only.
"""

from __future__ import annotations

from contract.plan import Plan


def reference_trainer_refusal(plan: Plan) -> str | None:
    """Why the reference trainer would not run ``plan`` as planned (one line starting with
    the plan's field), or None when it runs it."""
    training, layout, model = plan.training, plan.layout, plan.model
    expert_tp = getattr(layout, "expert_tp", None)
    if expert_tp not in (None, 1):
        return (
            f"plan layout.expert_tp {expert_tp}: the reference trainer's experts run "
            "without tensor parallelism; plan expert_tp 1"
        )
    window, seq_len = model.sliding_window, training.seq_len
    if window is not None and (seq_len is None or window < seq_len):
        return (
            f"plan model.sliding_window {window}: the reference trainer attends to the "
            "whole sequence in every layer; export the plan to Megatron-LM (scalectl plan "
            "export PLAN --to megatron), or plan a model without a window"
        )
    policy = getattr(training, "selective_recompute", None)
    if layout.recompute == "selective" and policy not in (None, "attention"):
        return (
            f"plan training.selective_recompute {policy}: the reference trainer's "
            "selective recompute is the attention core; plan selective_recompute attention"
        )
    fsdp_version = getattr(training, "fsdp_version", None)
    if layout.sharding in ("zero3", "hsdp") and fsdp_version not in (None, 2):
        return (
            f"plan training.fsdp_version {fsdp_version}: the reference trainer shards "
            "with FSDP2 (fully_shard); plan fsdp_version 2"
        )
    loss_chunks = getattr(training, "loss_chunks", None)
    if loss_chunks not in (None, 1) and getattr(training, "kernels", None) != "eager":
        return (
            f"plan training.loss_chunks {loss_chunks}: the planner counts a compiled "
            "chunked loss that keeps only bf16 logits; the reference trainer's chunks keep "
            "their fp32 log-probabilities, which the planner counts with loss_chunks 1; "
            "plan with --loss-chunks 1 (the trainer still chunks: --loss-chunks 0)"
        )
    return None
