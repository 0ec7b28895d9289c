"""The projections a LoRA/QLoRA fine-tune puts adapters on: one vocabulary for the
planner's ``--lora-targets`` and the trainer's, so a plan runs what it priced."""

from __future__ import annotations

ATTENTION_TARGETS = ("q", "k", "v", "o")
"""Query, key, value and output projections of the attention."""
MLP_TARGETS = ("gate", "up", "down")
"""Gate (SwiGLU only), up and down projections of the feed-forward."""
TARGET_GROUPS = {
    "attn": ATTENTION_TARGETS,
    "mlp": MLP_TARGETS,
    "all": (*ATTENTION_TARGETS, *MLP_TARGETS),
}
"""Names ``--lora-targets`` accepts for groups of projections."""
DEFAULT_TARGETS = "all"
"""QLoRA (Dettmers et al. 2023), Sec. 4: adapters on every linear layer of a block are
needed to match full fine-tuning (Figure 2), so that is the default."""


class TargetsError(ValueError):
    """``--lora-targets`` names something that is not a projection."""


def resolve_targets(text: str | None) -> tuple[str, ...]:
    """The projections ``--lora-targets`` names (groups expanded, order kept, no repeats)."""
    names: list[str] = []
    for raw in (text or DEFAULT_TARGETS).split(","):
        name = raw.strip().lower()
        group = TARGET_GROUPS.get(name)
        if group is None and name not in TARGET_GROUPS["all"]:
            raise TargetsError(
                f"--lora-targets: unknown target {name!r}; use attn, mlp, all or a comma "
                "list of q,k,v,o,gate,up,down."
            )
        names.extend(n for n in (group or (name,)) if n not in names)
    return tuple(names)
