"""``--out plan.json`` of ``scalectl plan estimate`` and ``plan search``: the Plan written
through the contract's one Plan model (``contract.plan_layout.write_plan``), which
validates it and checks its layout as ``scalectl launch --plan`` will."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from contract.plan import PlanError
from contract.plan_layout import plan_document, resolve_layout, write_plan

from planner.errors import PlanInputError


def write_plan_file(plan: Any, out: str) -> None:
    """Write a planner ``Plan`` to ``out``; a plan the job could not run is exit 2."""
    try:
        written = write_plan(plan_document(plan.model_dump(mode="json")), Path(out))
    except PlanError as exc:
        raise PlanInputError(f"--out {exc}") from None
    except OSError as exc:
        raise PlanInputError(f"--out {out}: cannot write it ({exc.strerror})") from None
    print(f"plan written to {out}: {resolve_layout(written).text()}", file=sys.stderr)


def picked_plan(model: Any, cluster: Any, training: Any, ranked: list[Any], pick: int) -> Any:
    """The Plan of the ``pick``-th ranked layout (1 = the best), on as many GPUs as it uses."""
    from planner.result import Plan
    from planner.specs import ClusterSpec

    if not ranked:
        raise PlanInputError("--out: the search found no layout to write")
    if not 1 <= pick <= len(ranked):
        raise PlanInputError(
            f"--pick {pick}: the search ranked {len(ranked)} layouts; pick 1 to {len(ranked)}"
        )
    chosen = ranked[pick - 1]
    lay = chosen.layout
    gpus = lay.dp * lay.tp * lay.pp * lay.cp
    if cluster.num_gpus != gpus:  # --max-gpus: each layout has its own GPU count
        nodes = -(-gpus // cluster.gpus_per_node)
        fields = {**cluster.model_dump(), "num_gpus": gpus, "num_nodes": nodes}
        cluster = ClusterSpec.model_validate(fields)
    return Plan(
        model=model,
        cluster=cluster,
        training=training,
        layout=lay,
        estimate=chosen,
    )
