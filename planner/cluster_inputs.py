"""The cluster's part of the planner's numeric inputs (planner.inputs.Inputs): size,
power and carbon figures, and the reliability figures behind goodput."""

from __future__ import annotations

from planner.specs import ClusterSpec
from planner.units import GIGA


def cluster_inputs(cluster: ClusterSpec) -> dict[str, float]:
    """The cluster's fields of :class:`Inputs` (catalog defaults for PUE, grid and the
    reliability figures)."""
    from planner.catalog import constants_data, read_data

    data = constants_data()
    rel = read_data("reliability.yaml")
    pue = cluster.pue if cluster.pue is not None else data["default_pue"]
    grid = cluster.grid_kg_co2_per_kwh

    def pick(value: float | None, default: float) -> float:
        return float(default if value is None else value)

    default_mtbf_h = rel["llama3_days"] * 24.0 * rel["llama3_gpus"] / rel["llama3_interruptions"]
    return {
        "gpus": float(cluster.num_gpus),
        "gpus_per_node": float(cluster.gpus_per_node),
        "pue": float(pue),
        "grid_kg_per_kwh": float(grid if grid is not None else data["default_grid_kg_co2_per_kwh"]),
        "co2_tdp_basis": 1.0 if cluster.co2_basis == "tdp" else 0.0,
        "mtbf_gpu_s": pick(cluster.mtbf_gpu_hours, default_mtbf_h) * 3600.0,
        "ckpt_node_bytes_s": pick(cluster.checkpoint_gb_s_per_node,
                                  rel["checkpoint_gb_s_per_node"]) * GIGA,
        "ckpt_max_bytes_s": pick(cluster.checkpoint_gb_s_max, rel["checkpoint_gb_s_max"]) * GIGA,
        "restart_s": pick(cluster.restart_min, rel["restart_min"]) * 60.0,
    }  # fmt: skip
