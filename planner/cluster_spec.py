"""The hardware a plan runs on: which accelerator and how many, in how many nodes."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from planner.accelerator_spec import AcceleratorSpec
from planner.catalog import get_gpu
from planner.errors import PlanInputError

_FROZEN = ConfigDict(extra="forbid", frozen=True)


class ClusterSpec(BaseModel):
    """Where the run happens: which accelerator, how many, and the site's energy facts.

    Give ``num_gpus`` or ``num_nodes`` (or both, consistent); the other is filled in.
    """

    model_config = _FROZEN

    gpu: str | AcceleratorSpec
    """A catalog name (see ``scalectl plan gpus``) or an inline AcceleratorSpec."""
    num_gpus: int = Field(default=0, ge=0)
    """Accelerators in the job (derived from num_nodes when omitted)."""
    num_nodes: int = Field(default=0, ge=0)
    """Nodes (servers) in the job; GPUs fill nodes in order (derived when omitted)."""
    gpus_per_node: int = Field(default=8, gt=0)
    """Accelerators per node sharing the fast intra-node link."""
    pue: float | None = Field(default=None, ge=1.0)
    """Data-centre power usage effectiveness; None means the catalog default."""
    grid_kg_co2_per_kwh: float | None = Field(default=None, ge=0)
    """Grid carbon intensity, kg CO2 per kWh; None means the catalog default."""
    price_usd_per_gpu_hour: float | None = Field(default=None, ge=0)
    """Overrides the accelerator's list price."""
    node_overhead_w: float | None = Field(default=None, ge=0)
    """Overrides the accelerator's per-node host power."""
    mtbf_gpu_hours: float | None = Field(default=None, gt=0)
    """Mean time between job-interrupting failures per GPU, hours (the job's MTBF is this
    over the GPU count); None means the catalog default (data/reliability.yaml)."""
    checkpoint_gb_s_per_node: float | None = Field(default=None, gt=0)
    """Checkpoint write (and reload) bandwidth each node reaches to shared storage, GB/s;
    None means the catalog default."""
    checkpoint_gb_s_max: float | None = Field(default=None, gt=0)
    """The storage system's aggregate bandwidth, GB/s (caps nodes x per-node); None means
    the catalog default."""
    restart_min: float | None = Field(default=None, ge=0)
    """Minutes from an interruption to training again, before reloading the checkpoint
    (detection, rescheduling, process-group start-up); None means the catalog default."""
    co2_basis: Literal["estimated", "tdp"] = "estimated"
    """Energy that co2_t is computed from: 'estimated' (utilisation, host, PUE) or 'tdp'
    (GPU-hours x TDP, the convention of model cards such as Llama 2's)."""

    @model_validator(mode="before")
    @classmethod
    def _fill_counts(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        gpus, nodes = data.get("num_gpus"), data.get("num_nodes")
        per_node = data.get("gpus_per_node", 8)
        if gpus is None and nodes is None:
            raise PlanInputError("cluster: give num_gpus or num_nodes.")
        if not isinstance(per_node, int) or per_node <= 0:
            return data  # field validation reports it
        if gpus is None and isinstance(nodes, int):
            data = {**data, "num_gpus": nodes * per_node}
        elif nodes is None and isinstance(gpus, int) and gpus > 0:
            data = {**data, "num_nodes": -(-gpus // per_node)}
        elif (
            isinstance(gpus, int)
            and isinstance(nodes, int)
            and gpus > 0
            and nodes > 0
            and not (nodes - 1) * per_node < gpus <= nodes * per_node
        ):
            raise PlanInputError(
                f"cluster: {gpus} GPUs do not fill {nodes} nodes of {per_node}; "
                "fix num_gpus, num_nodes or gpus_per_node."
            )
        return data

    @model_validator(mode="after")
    def _counts_positive(self) -> ClusterSpec:
        if self.num_gpus <= 0 or self.num_nodes <= 0:
            raise PlanInputError("cluster: num_gpus and num_nodes must be positive.")
        return self

    def accelerator(self) -> AcceleratorSpec:
        """The AcceleratorSpec, resolving a catalog name (close matches on a typo)."""
        if isinstance(self.gpu, AcceleratorSpec):
            return self.gpu
        return get_gpu(self.gpu)  # cached lookup; raises PlanInputError when unknown
