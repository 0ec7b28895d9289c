"""Learning-rate schedule: linear warm-up, then cosine decay to a floor.

A pure function of the step, so the scheduler has no state of its own to checkpoint:
resuming at step ``s`` resumes the schedule at ``s``.
"""

from __future__ import annotations

import math


def lr_at(step: int, *, lr: float, min_lr: float, warmup_steps: int, total_steps: int) -> float:
    """Learning rate for optimizer step ``step`` (1-based).

    Warm-up: ``lr * step / warmup_steps`` for ``step <= warmup_steps`` (Goyal et al. 2017,
    "Accurate, Large Minibatch SGD", section 2.2, gradual warm-up). After it, cosine decay
    from ``lr`` to ``min_lr`` over the remaining steps (Loshchilov & Hutter 2017, "SGDR",
    eq. 5, one cycle without restarts); ``min_lr`` after ``total_steps``.
    """
    if warmup_steps > 0 and step <= warmup_steps:
        return lr * step / warmup_steps
    if step >= total_steps:
        return min_lr
    # Here warmup_steps < step < total_steps, so the denominator is positive.
    progress = (step - warmup_steps) / (total_steps - warmup_steps)
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * progress))
