"""Compile :func:`planner.core.evaluate` into numpy code that runs level by level.

The layout search's candidates form a tree (:mod:`planner.layouts`): each level adds knobs
to the rows of the level before. Most of the cost model depends on few knobs: a layer's
GEMM time depends on tp, cp, the micro-batch and sequence parallelism, not on the
sharding mode or the recompute mode, so it need not be computed once per candidate.

We trace ``evaluate`` once on symbols (:class:`planner.trace.Tracer`, as the scalar
compiler does), give every node the level of the deepest knob it depends on, and emit one
Python function per level:

* level -1 (``prepare``): everything that depends only on the model, accelerator,
  cluster and training spec, as Python floats, once per problem;
* level k: the nodes whose deepest knob is at level k, as numpy expressions over that
  level's rows; a value from a shallower level is first gathered to this level's rows
  (``np.take`` with the tree's index map), once per stage, and only if used.

Only the nodes the requested outputs need are emitted (a memory-only pass is a small
fraction of the model), identical sub-expressions are shared, a ``where`` whose condition
is fixed per problem (flash attention or not, FP8 or not) keeps only one side, and a
``where`` on a knob becomes ``np.where``. The numbers equal the scalar path's
(``tests/planner/test_search_paths.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from planner.core import Outputs, evaluate
from planner.inputs import Inputs, constants
from planner.trace import Sym, Tracer, minmax_text

_MAX_INLINE_DEPTH = 24


def _lift(value: Any, index: np.ndarray) -> Any:
    """``value`` (one entry per row of a shallower level) gathered to a deeper level."""
    if np.ndim(value) == 0:
        return value
    return value.take(index)


_RUNTIME: dict[str, Any] = {
    "_lift": _lift,
    "_where": np.where,
    "_max": np.maximum,
    "_min": np.minimum,
    "_ceil": lambda v: float(math.ceil(v)),
    "_log2": math.log2,
    "_ceil_np": np.ceil,
    "_log2_np": np.log2,
    "_sqrt": math.sqrt,
    "_exp": math.exp,
    "_expm1": math.expm1,
    "_sqrt_np": np.sqrt,
    "_exp_np": np.exp,
    "_expm1_np": np.expm1,
}


@dataclass(frozen=True)
class LevelProgram:
    """The compiled stages; see :meth:`run`."""

    prepare: Callable[[dict[str, float]], dict[str, Any]]
    """Level -1: static values (by Inputs name) -> the environment of later stages."""
    stages: tuple[Callable[..., Any], ...]
    """One function per level: ``stage(env, fields, maps)``; the last returns the outputs."""
    outputs: tuple[str, ...]
    """Names of the outputs the last stage returns, in order."""
    source: str
    """The generated source, for inspection."""

    def run_last(
        self, env: dict[str, Any], fields: dict[str, np.ndarray], maps: dict[int, np.ndarray]
    ) -> tuple[Any, ...]:
        """The last stage on some rows of the last level (``maps[j]``: their ancestors)."""
        result: tuple[Any, ...] = self.stages[-1](env, fields, maps)
        return result


def _levels_of(fields: Sequence[str], level_fields: Sequence[Sequence[str]]) -> list[int]:
    by_name = {name: k for k, names in enumerate(level_fields) for name in names}
    return [by_name.get(name, -1) for name in fields]


@lru_cache(maxsize=32)
def compile_levels(
    fixed: tuple[tuple[str, float], ...],
    level_fields: tuple[tuple[str, ...], ...],
    outputs: tuple[str, ...],
) -> LevelProgram:
    """``evaluate`` compiled per level (see the module docstring).

    ``fixed``: inputs given a constant value for this compilation (categorical choices of
    the problem); ``level_fields``: the Inputs names each level adds; ``outputs``: the
    Outputs fields wanted.
    """
    fields: tuple[str, ...] = Inputs._fields
    tracer, traced = _trace(fixed)
    wanted = [getattr(traced, name) for name in outputs]
    source = _emit(tracer, fields, _levels_of(fields, level_fields), wanted, len(level_fields))
    namespace = dict(_RUNTIME)
    exec(compile(source, "<planner.levels>", "exec"), namespace)
    stages = tuple(namespace[f"stage_{k}"] for k in range(len(level_fields)))
    return LevelProgram(namespace["prepare"], stages, outputs, source)


@lru_cache(maxsize=8)
def _trace(fixed: tuple[tuple[str, float], ...]) -> tuple[Tracer, Outputs]:
    """``evaluate`` traced on symbols once per set of fixed inputs (emission only reads the
    graph, so programs with different outputs share it)."""
    fixed_values = dict(fixed)
    tracer = Tracer()
    symbols = Inputs(
        *(
            float(fixed_values[name]) if name in fixed_values else tracer.node("input", i)
            for i, name in enumerate(Inputs._fields)
        )
    )
    return tracer, evaluate(symbols, constants())


def _emit(
    tracer: Tracer,
    fields: Sequence[str],
    input_levels: Sequence[int],
    outputs: Sequence[Any],
    nlevels: int,
) -> str:
    nodes = tracer.nodes
    count = len(nodes)
    last = nlevels - 1
    live = [False] * count
    for out in outputs:
        if isinstance(out, Sym):
            live[out.index] = True
    for index in range(count - 1, -1, -1):
        if live[index]:
            for arg in nodes[index][1]:
                if isinstance(arg, Sym):
                    live[arg.index] = True
    level = [-1] * count
    for index, (kind, args) in enumerate(nodes):
        if kind == "input":
            level[index] = input_levels[int(args[0])]
        else:
            level[index] = max([-1] + [level[a.index] for a in args if isinstance(a, Sym)])
    uses = [0] * count
    exported = [False] * count  # needed by a later stage, by name
    for index, (kind, args) in enumerate(nodes):
        if not live[index] or kind == "input":
            continue
        for arg in args:
            if isinstance(arg, Sym):
                uses[arg.index] += 1
                if level[arg.index] < level[index]:
                    exported[arg.index] = True
    for out in outputs:
        if isinstance(out, Sym):
            exported[out.index] = True

    names: dict[int, str] = {}
    inline: dict[int, tuple[str, int]] = {}
    stages: dict[int, list[str]] = {k: [] for k in range(-1, nlevels)}
    lifts: dict[int, dict[int, str]] = {k: {} for k in range(nlevels)}

    def ref(arg: Any, at: int) -> tuple[str, int]:
        if not isinstance(arg, Sym):
            return repr(float(arg)), 0
        source = level[arg.index]
        if source == at or source == -1:
            if arg.index in names:
                return names[arg.index], 0
            return inline[arg.index]
        lifted = lifts[at].get(arg.index)
        if lifted is None:
            lifted = lifts[at][arg.index] = f"{names[arg.index]}_l{at}"
        return lifted, 0

    for index, (kind, args) in enumerate(nodes):
        at = level[index]
        if kind == "input":
            names[index] = f"i_{fields[int(args[0])]}"
            continue
        if not live[index]:
            continue
        dynamic = at >= 0
        if kind == "bin":
            op = args[0]
            (a, da), (b, db) = ref(args[1], at), ref(args[2], at)
            if op == "and" and dynamic:
                op = "&"
            text, depth = f"({a} {op} {b})", 1 + max(da, db)
        elif kind == "where":
            cond = args[0]
            (c, dc), (a, da), (b, db) = ref(cond, at), ref(args[1], at), ref(args[2], at)
            if isinstance(cond, Sym) and level[cond.index] >= 0:
                text = f"_where({c}, {a}, {b})"
            else:
                text = f"({a} if {c} else {b})"
            depth = 1 + max(dc, da, db)
        elif kind in ("max", "min"):
            (a, da), (b, db) = ref(args[0], at), ref(args[1], at)
            text = f"_{kind}({a}, {b})" if dynamic else minmax_text(kind, index, a, da, b, db)
            depth = 1 + max(da, db)
        else:  # call
            (a, da) = ref(args[1], at)
            function = f"{args[0]}_np" if dynamic else args[0]
            text, depth = f"{function}({a})", 1 + da
        if uses[index] >= 2 or exported[index] or depth > _MAX_INLINE_DEPTH:
            name = f"v{index}"
            stages[at].append(f"    {name} = {text}")
            names[index] = name
            if exported[index]:
                stages[at].append(f"    env[{name!r}] = {name}")
        else:
            inline[index] = (text, depth)

    returned = []
    for out in outputs:
        if isinstance(out, Sym):
            returned.append(ref(out, last)[0] if level[out.index] >= 0 else names[out.index])
        else:
            returned.append(repr(float(out)))

    live_inputs = {
        int(args[0]): index
        for index, (kind, args) in enumerate(nodes)
        if kind == "input" and live[index]
    }
    static_inputs = [
        f"    i_{fields[i]} = values[{fields[i]!r}]" for i in live_inputs if input_levels[i] == -1
    ]
    static_inputs += [
        f"    env['i_{fields[i]}'] = i_{fields[i]}"
        for i, node in live_inputs.items()
        if input_levels[i] == -1 and exported[node]
    ]
    lines = ["def prepare(values):", "    env = {}", *static_inputs, *stages[-1], "    return env"]
    for k in range(nlevels):
        body = stages[k]
        needed = {n for line in body + (returned if k == last else []) for n in _identifiers(line)}
        head = []
        for i, node in live_inputs.items():
            if input_levels[i] == k:
                head.append(f"    i_{fields[i]} = fields[{fields[i]!r}]")
                if exported[node] and k != last:
                    head.append(f"    env['i_{fields[i]}'] = i_{fields[i]}")
        loads = sorted(
            {
                names[i]
                for i in range(count)
                if live[i] and exported[i] and level[i] != k and names.get(i) in needed
            }
        )
        head += [f"    {name} = env[{name!r}]" for name in loads]
        head += [
            f"    {lifted} = _lift(env[{names[i]!r}], maps[{level[i]}])"
            for i, lifted in lifts[k].items()
        ]
        if k == last:
            body = [line for line in body if not line.lstrip().startswith("env[")]
            tail = [f"    return ({', '.join(returned)},)"]
        else:
            tail = []
        lines += ["", "", f"def stage_{k}(env, fields, maps):", *head, *body, *tail, "    pass"]
    return "\n".join(lines) + "\n"


def _identifiers(line: str) -> set[str]:
    out: set[str] = set()
    word = []
    for ch in line + " ":
        if ch.isalnum() or ch == "_":
            word.append(ch)
        elif word:
            out.add("".join(word))
            word = []
    return out


OUTPUTS: tuple[str, ...] = Outputs._fields
"""Every output of the cost model."""
