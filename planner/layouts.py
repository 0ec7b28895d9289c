"""Every valid layout of a planning problem, as numpy arrays in a tree of levels.

The layout search does not loop over layouts in Python: it builds them level by level,
each level repeating the rows of the one before for each option of its knobs::

    level 0  shape       gpus, tp, cp, pp, dp      (dp·tp·pp·cp = gpus)
    level 1  kernels     sp, micro_batch, ep
    level 2  schedule    interleave, uneven
    level 3  sharding    sharding, hsdp_shard
    level 4  recompute   recompute, offload

A row of level k has a parent row in level k-1 (``parents[k]``); the candidates are the
rows of the last level. Keeping the levels apart lets the vectorised cost model
(:mod:`planner.vector`) compute what depends only on the shape once per shape, what
depends on the micro-batch once per kernel row, and so on (a GEMM's time does not
depend on the sharding mode), instead of once per candidate.

What is enumerated (every layout the checks accept, with these policies):

* tp: divisors of the GPUs per node (tensor parallelism stays inside a node) that divide
  the heads, KV heads and FFN width; cp: divisors of the sequence length; pp: 1 .. layers
  (uneven stages allowed: the last stages get fewer layers); dp: divisors of the global
  batch; their product is the GPU count;
* sequence parallelism on and off when tp > 1 (it changes nothing at tp = 1);
* micro-batch: every divisor of the per-replica batch;
* expert parallelism (MoE): divisors of the expert count that divide dp·cp;
* interleave: 1, and v > 1 when pp > 1 and pp·v divides the layers (Megatron-LM requires
  whole layers per virtual stage); uneven stages (first and last stage one layer fewer,
  Llama 3 Sec. 3.3.2) when pp > 1 and pp·v divides the layers + 2;
* sharding: none when dp·cp = 1 (the others would be the same layout); otherwise none,
  ZeRO-1, ZeRO-2, ZeRO-3/FSDP and HSDP with every shard group size h, 1 < h < dp, that
  divides dp (h = dp is ZeRO-3);
* recompute: none, selective, full; and activation offload of :data:`OFFLOAD_OPTIONS`
  of each layer's saved activations without recomputation.

A pinned knob (``pinned``) takes only its given value, which need only pass the checks
(:data:`planner.checks.RULES`, applied here to every level as soon as its fields exist).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from planner.checks import RULES, problem_of, rules_ok
from planner.inputs import RECOMPUTE_CODES, SHARDING_CODES
from planner.knobs import (
    OFFLOAD_OPTIONS,
    PINNABLE,
    layout_from_values,
    pinned_values,
)
from planner.specs import ClusterSpec, Layout, ModelSpec, TrainingSpec

__all__ = [
    "LEVELS",
    "OFFLOAD_OPTIONS",
    "PINNABLE",
    "CandidateTree",
    "divisors",
    "enumerate_layouts",
    "layout_from_values",
    "pinned_values",
]

LEVELS: tuple[tuple[str, ...], ...] = (
    ("gpus", "tp", "cp", "pp", "dp"),
    ("sp", "micro_batch", "ep", "etp", "cp_allgather"),
    ("interleave", "uneven", "gpipe", "mb_group", "keep_outputs"),
    ("sharding", "hsdp_shard"),
    ("recompute", "offload"),
)
"""The knobs each level adds (Inputs names; ``gpus`` is the GPU count of the candidate)."""


def divisors(n: int) -> list[int]:
    """Positive divisors of ``n``, ascending."""
    small = [d for d in range(1, int(n**0.5) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))


@dataclass
class CandidateTree:
    """Candidates as levels of numpy arrays (see the module docstring)."""

    levels: list[dict[str, np.ndarray]]
    """Per level, its knobs' values (float64 arrays, one entry per row)."""
    parents: list[np.ndarray | None]
    """Per level, the row of the previous level each row extends (None for level 0)."""
    _maps: dict[tuple[int, int], np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def size(self) -> int:
        """Number of candidates (rows of the last level)."""
        return len(next(iter(self.levels[-1].values())))

    def rows(self, level: int) -> int:
        """Rows of ``level``."""
        return len(next(iter(self.levels[level].values())))

    def index_map(self, source: int, target: int) -> np.ndarray:
        """For each row of level ``target``, its ancestor row in level ``source``."""
        key = (source, target)
        found = self._maps.get(key)
        if found is None:
            parent = self.parents[target]
            assert parent is not None and source < target
            found = parent if source == target - 1 else self.index_map(source, target - 1)[parent]
            self._maps[key] = found
        return found

    def column(self, name: str, level: int | None = None) -> np.ndarray:
        """Values of knob ``name`` for every row of ``level`` (default: the candidates)."""
        target = len(self.levels) - 1 if level is None else level
        for source, values in enumerate(self.levels):
            if name in values:
                if source == target:
                    return values[name]
                return values[name][self.index_map(source, target)]
        raise KeyError(name)

    def columns(self) -> dict[str, np.ndarray]:
        """Every knob at the candidate level."""
        return {name: self.column(name) for names in LEVELS for name in names}

    def select(self, rows: np.ndarray) -> CandidateTree:
        """The tree restricted to these candidates (an index array or a boolean mask of the
        last level; they stay in ascending order), ancestors no candidate uses dropped."""
        rows = np.flatnonzero(rows) if rows.dtype == bool else np.unique(rows).astype(np.intp)
        last = len(self.levels) - 1
        levels = list(self.levels)
        parents = list(self.parents)
        keep = rows
        for level in range(last, -1, -1):
            levels[level] = {name: values[keep] for name, values in self.levels[level].items()}
            parent = self.parents[level]
            if parent is None:
                break
            # Parents are non-decreasing (rows are generated in order), so the distinct
            # ancestors are where the value changes: no sort needed.
            used = parent[keep]
            change = np.empty(len(used), dtype=bool)
            change[:1] = True
            np.not_equal(used[1:], used[:-1], out=change[1:])
            parents[level] = np.cumsum(change) - 1
            keep = used[change]
        return CandidateTree(levels, parents)

    def layout(self, index: int) -> Layout:
        """Candidate ``index`` as a :class:`~planner.specs.Layout`."""
        values = {name: float(self.column_at(name, index)) for names in LEVELS for name in names}
        return layout_from_values(values)

    def column_at(self, name: str, index: int) -> float:
        """One candidate's value of knob ``name`` (without building the whole column)."""
        last = len(self.levels) - 1
        for source, values in enumerate(self.levels):
            if name in values:
                row = index if source == last else int(self.index_map(source, last)[index])
                return float(values[name][row])
        raise KeyError(name)


def _expand(
    tree_levels: list[dict[str, np.ndarray]],
    parents: list[np.ndarray | None],
    mask: np.ndarray,
    new: dict[str, np.ndarray],
    into_new_level: bool,
) -> None:
    """Grow the tree by the options ``new`` (one column per option) where ``mask`` (rows x
    options) is true: as a new level, or folded into the current last level."""
    n, k = mask.shape
    if mask.all():  # every row takes every option: no need to search the mask
        rows = np.repeat(np.arange(n, dtype=np.intp), k)
        values = {
            name: np.tile(t[0], n) if t.shape[0] == 1 else np.broadcast_to(t, (n, k)).reshape(-1)
            for name, t in new.items()
        }
    else:
        rows, options = np.nonzero(mask)
        values = {name: np.broadcast_to(t, (n, k))[rows, options] for name, t in new.items()}
    if into_new_level:
        tree_levels.append(values)
        parents.append(rows.astype(np.intp, copy=False))
        return
    last = tree_levels[-1]
    tree_levels[-1] = {name: column[rows] for name, column in last.items()} | values
    parent = parents[-1]
    if parent is not None:
        parents[-1] = parent[rows]


def _options(name: str, default: Sequence[float], pins: Mapping[str, float]) -> np.ndarray:
    return np.asarray([pins[name]] if name in pins else default, dtype=float)


def enumerate_layouts(
    model: ModelSpec,
    cluster: ClusterSpec,
    training: TrainingSpec,
    gpu_counts: Sequence[int],
    pinned: Mapping[str, Any] | None = None,
) -> CandidateTree:
    """Every valid layout for each GPU count in ``gpu_counts`` (see the module docstring).

    Raises PlanInputError for a pinned value of an unknown knob; a pinned value that no
    layout can use simply yields an empty tree.
    """
    pins = pinned_values(pinned)
    problem = problem_of(model, training)
    per_node = cluster.gpus_per_node
    layers, batch, seq = model.num_layers, training.global_batch_seqs, training.seq_len
    counts = np.asarray(sorted(set(int(g) for g in gpu_counts)), dtype=float)
    # A degree must divide some GPU count: the grid below holds only such values.
    factors = set().union(*(divisors(int(c)) for c in counts))

    # --- level 0: shapes -----------------------------------------------------------------
    tp = _options("tp", [float(d) for d in divisors(per_node) if d in factors], pins)
    cp = _options("cp", [float(d) for d in divisors(seq) if d in factors], pins)
    pp = _options("pp", [float(p) for p in sorted(factors) if p <= layers], pins)
    dp = _options("dp", [float(d) for d in divisors(batch) if d in factors], pins)
    grid = np.meshgrid(tp, cp, pp, dp, indexing="ij")
    shape = {name: g.ravel() for name, g in zip(("tp", "cp", "pp", "dp"), grid, strict=True)}
    shape["gpus"] = shape["tp"] * shape["cp"] * shape["pp"] * shape["dp"]
    keep = np.isin(shape["gpus"], counts) & rules_ok(shape, problem, set(shape))
    levels: list[dict[str, np.ndarray]] = [{k: v[keep] for k, v in shape.items()}]
    parents: list[np.ndarray | None] = [None]

    def fields() -> set[str]:
        return {name for level in levels for name in level}

    def column(name: str) -> np.ndarray:
        return CandidateTree(levels, parents).column(name)

    def finish_rules(new_fields: set[str]) -> None:
        """Apply the rules that became checkable with ``new_fields``."""
        known = fields()
        pending = [r for r in RULES if set(r.fields) <= known and set(r.fields) & new_fields]
        if not pending:
            return
        values = {name: column(name) for r in pending for name in r.fields}
        ok = np.ones(len(next(iter(levels[-1].values()))), dtype=bool)
        for rule in pending:
            ok &= np.broadcast_to(rule.ok(values, problem), ok.shape)
        if not ok.all():
            _expand(levels, parents, ok[:, None], {}, into_new_level=False)

    # --- level 1: sequence parallelism, micro-batch, expert parallelism --------------------
    tp1 = levels[0]["tp"][:, None]
    sp_table = _options("sp", [0.0, 1.0], pins)[None, :]
    # SP changes nothing at tp = 1, so only "off" is enumerated there (unless pinned).
    sp_mask = np.ones((len(tp1), 1), bool) if "sp" in pins else (tp1 > 1) | (sp_table == 0)
    _expand(levels, parents, np.broadcast_to(sp_mask, (len(tp1), sp_table.shape[1])),
            {"sp": sp_table}, into_new_level=True)  # fmt: skip
    micro = _options("micro_batch", [float(d) for d in divisors(batch)], pins)[None, :]
    per_replica = batch / column("dp")[:, None]
    _expand(levels, parents, per_replica % micro == 0, {"micro_batch": micro}, False)
    if model.is_moe:
        ep_table = _options("ep", [float(d) for d in divisors(model.num_experts)], pins)[None, :]
        dp_cp = (column("dp") * column("cp"))[:, None]
        _expand(levels, parents, dp_cp % ep_table == 0, {"ep": ep_table}, False)
    else:
        ep_table = _options("ep", [1.0], pins)[None, :]
        _expand(levels, parents, np.ones((len(levels[-1]["sp"]), 1), bool), {"ep": ep_table},
                False)  # fmt: skip
    # Expert tensor parallelism apart from tp only when pinned (default: tp).
    etp = np.full(len(levels[-1]["sp"]), pins.get("etp", 0.0))
    levels[-1]["etp"] = etp
    # The all-gather context parallelism only when pinned (ring hides its traffic).
    levels[-1]["cp_allgather"] = np.full(len(etp), pins.get("cp_allgather", 0.0))
    finish_rules({"sp", "micro_batch", "ep", "etp", "cp_allgather"})

    # --- level 2: interleaved pipeline, uneven first and last stages -----------------------
    pp2 = column("pp")[:, None]
    if "interleave" in pins:
        v_options = [pins["interleave"]]
    else:
        v_options = [float(v) for v in sorted(set(divisors(layers)) | set(divisors(layers + 2)))]
    u_options = [pins["uneven"]] if "uneven" in pins else [0.0, 1.0]
    table = np.asarray([v for _ in u_options for v in v_options])[None, :]
    uneven = np.asarray([u for u in u_options for _ in v_options])[None, :]
    # Whole layers per virtual stage (Megatron-LM); uneven: the first and the last stage
    # one layer fewer, so pp·v divides layers + 2. A pinned interleave needs only pp > 1.
    if "interleave" in pins:
        even_ok = (table == 1) | (pp2 > 1)
        uneven_ok = pp2 > 1
    else:
        even_ok = (table == 1) | ((pp2 > 1) & (layers % (pp2 * table) == 0))
        uneven_ok = (pp2 > 1) & ((layers + 2) % (pp2 * table) == 0)
    mask = np.where(uneven > 0, uneven_ok, even_ok)
    # GPipe and micro-batch groups only when pinned: never faster than 1F1B's defaults.
    gpipe = np.full_like(table, pins.get("gpipe", 0.0))
    group = np.full_like(table, pins.get("mb_group", 0.0))
    keep = np.full_like(table, pins.get("keep_outputs", 0.0))
    mask = mask & ((gpipe == 0) | ((table == 1) & (pp2 > 1))) & ((group == 0) | (table > 1))
    _expand(levels, parents, np.broadcast_to(mask, (len(pp2), table.shape[1])),
            {"interleave": table, "uneven": uneven, "gpipe": gpipe, "mb_group": group,
             "keep_outputs": keep}, True)  # fmt: skip
    finish_rules({"interleave", "uneven"})

    # --- level 3: data-parallel sharding ----------------------------------------------------
    dp3 = column("dp")[:, None]
    dp_cp3 = dp3 * column("cp")[:, None]
    hsdp = SHARDING_CODES["hsdp"]
    plain = [SHARDING_CODES[n] for n in ("none", "zero1", "zero2", "zero3")]
    sizes = [float(d) for d in divisors(batch) if d > 1]
    codes = np.asarray(plain + [hsdp] * len(sizes))[None, :]
    shard = np.asarray([1.0] * len(plain) + sizes)[None, :]
    is_hsdp = codes == hsdp
    if "sharding" not in pins:
        mask = np.where(is_hsdp, (dp3 % shard == 0) & (shard < dp3), (dp_cp3 > 1) | (codes == 0))
    elif pins["sharding"] == hsdp:
        mask = is_hsdp & (dp3 % shard == 0) & (shard <= dp3)
        if "hsdp_shard" in pins:
            mask &= shard == pins["hsdp_shard"]
    else:  # a pinned mode is kept even where it equals another (dp·cp = 1)
        mask = np.broadcast_to(codes == pins["sharding"], (len(dp3), codes.shape[1]))
    _expand(levels, parents, mask, {"sharding": codes, "hsdp_shard": shard}, True)

    # --- level 4: activation recomputation and offload -----------------------------------
    none = RECOMPUTE_CODES["none"]
    pairs = [(code, 0.0) for code in sorted(RECOMPUTE_CODES.values())]
    pairs += [(none, f) for f in OFFLOAD_OPTIONS]
    if "offload" in pins:
        pairs = [(code, pins["offload"]) for code in sorted(RECOMPUTE_CODES.values())]
    if "recompute" in pins:
        pairs = [(code, f) for code, f in pairs if code == pins["recompute"]]
    recompute = np.asarray([code for code, _ in pairs])[None, :]
    offload = np.asarray([f for _, f in pairs])[None, :]
    n3 = len(levels[-1]["sharding"])
    _expand(levels, parents, np.ones((n3, recompute.shape[1]), bool),
            {"recompute": recompute, "offload": offload}, True)  # fmt: skip
    return CandidateTree(levels, parents)
