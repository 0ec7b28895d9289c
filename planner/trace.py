"""Compile :func:`planner.core.evaluate` into one flat Python function for scalars.

The physics is written once, branch-free, in :mod:`planner.formulas`. Evaluating it on
Python floats through ``ops.where``/``ops.maximum`` costs a function call per choice and
computes both sides of every ``where``: fine for arrays, too slow for the ~20,000 scalar
estimates per second the planner targets. So, once per process, we *trace*
``evaluate``: run it on symbolic numbers (:class:`Sym`) that record each operation as a
node of an expression graph instead of performing it, with the software constants
folded in as literals. The graph is emitted as Python source and compiled with ``exec``:

* identical sub-expressions are shared (common-subexpression elimination);
* a node used once is inlined into its consumer, so work that only feeds one side of a
  ``where`` (rendered as ``a if c else b``) runs only when that side is taken;
* nodes used more than once become local variables, in the order they were traced.

Nothing is written by hand twice: change a formula and the compiled function follows.
Tracing also enforces the branch-free rule: an ``if`` on a value raises
(``Sym.__bool__``). ``tests/planner/test_paths.py`` checks that the compiled path, the
plain scalar path and the numpy path agree.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

_MAX_INLINE_DEPTH = 24
"""Deeper inlined expressions are bound to a variable (the parser nests ~200 levels)."""

_IDENTITY = {
    ("*", False): 1.0,
    ("*", True): 1.0,
    ("/", False): 1.0,
    ("+", False): 0.0,
    ("+", True): 0.0,
    ("-", False): 0.0,
}
"""(operator, constant-on-the-left) -> the constant that leaves the other operand unchanged."""

Arg = Any
"""A node index (int) wrapped in a Sym, or a Python constant."""


class Tracer:
    """The expression graph of one trace: nodes in creation (topological) order."""

    def __init__(self) -> None:
        self.nodes: list[tuple[str, tuple[Any, ...]]] = []
        self._index: dict[tuple[str, tuple[Any, ...]], int] = {}

    def node(self, kind: str, *args: Any) -> Sym:
        """The Sym for ``kind(args)``, reusing an identical earlier node."""
        key = (kind, tuple(_key(a) for a in args))
        found = self._index.get(key)
        if found is None:
            found = len(self.nodes)
            self.nodes.append((kind, args))
            self._index[key] = found
        return Sym(self, found)


def _key(value: Any) -> Any:
    if isinstance(value, Sym):
        return ("n", value.index)
    if isinstance(value, str):
        return ("s", value)
    return ("c", float(value))


class Sym:
    """A symbolic scalar: arithmetic on it adds graph nodes instead of computing."""

    __slots__ = ("index", "tracer")

    def __init__(self, tracer: Tracer, index: int) -> None:
        self.tracer = tracer
        self.index = index

    def _bin(self, op: str, other: Any, reverse: bool = False) -> Sym:
        if not isinstance(other, (Sym, int, float, bool)):
            return NotImplemented
        # Exact identities only (x*1, x/1, x+0, x-0), so the compiled path stays bitwise
        # equal to the plain one.
        if not isinstance(other, Sym) and float(other) == _IDENTITY.get((op, reverse)):
            return self
        a, b = (other, self) if reverse else (self, other)
        return self.tracer.node("bin", op, a, b)

    def __add__(self, other: Any) -> Sym:
        return self._bin("+", other)

    def __radd__(self, other: Any) -> Sym:
        return self._bin("+", other, reverse=True)

    def __sub__(self, other: Any) -> Sym:
        return self._bin("-", other)

    def __rsub__(self, other: Any) -> Sym:
        return self._bin("-", other, reverse=True)

    def __mul__(self, other: Any) -> Sym:
        return self._bin("*", other)

    def __rmul__(self, other: Any) -> Sym:
        return self._bin("*", other, reverse=True)

    def __truediv__(self, other: Any) -> Sym:
        return self._bin("/", other)

    def __rtruediv__(self, other: Any) -> Sym:
        return self._bin("/", other, reverse=True)

    def __neg__(self) -> Sym:
        return self.tracer.node("bin", "-", 0.0, self)

    def __lt__(self, other: Any) -> Sym:
        return self._bin("<", other)

    def __le__(self, other: Any) -> Sym:
        return self._bin("<=", other)

    def __gt__(self, other: Any) -> Sym:
        return self._bin(">", other)

    def __ge__(self, other: Any) -> Sym:
        return self._bin(">=", other)

    def __eq__(self, other: Any) -> Sym:  # type: ignore[override]
        return self._bin("==", other)

    def __ne__(self, other: Any) -> Sym:  # type: ignore[override]
        return self._bin("!=", other)

    def __and__(self, other: Any) -> Any:
        if isinstance(other, (bool, int, float)):  # a condition fixed at trace time
            return self if other else False
        return self._bin("and", other)

    def __rand__(self, other: Any) -> Any:
        return self.__and__(other)

    __hash__ = None  # type: ignore[assignment]

    def __bool__(self) -> bool:
        raise TypeError(
            "a planner formula branched on a value (if/and/or on a number); use "
            "planner.formulas.ops.where so that scalars and arrays take the same path"
        )


def _tracer_of(*values: Any) -> Tracer:
    return next(v.tracer for v in values if isinstance(v, Sym))


def traced_where(cond: Any, a: Any, b: Any) -> Sym:
    """``where`` on symbols: a conditional expression."""
    return _tracer_of(cond, a, b).node("where", cond, a, b)


def traced_maximum(a: Any, b: Any) -> Sym:
    """``maximum`` on symbols."""
    return _tracer_of(a, b).node("max", a, b)


def traced_minimum(a: Any, b: Any) -> Sym:
    """``minimum`` on symbols."""
    return _tracer_of(a, b).node("min", a, b)


def traced_call(function: str, x: Sym) -> Sym:
    """A unary math function (``_ceil``, ``_log2``) on a symbol."""
    return x.tracer.node("call", function, x)


def minmax_text(kind: str, index: int, a: str, da: int, b: str, db: int) -> str:
    """Python source of scalar ``max``/``min`` node ``index`` of operands ``a`` and ``b``
    (expression depths ``da``, ``db``; depth 0 is a name or a constant).

    Each operand is needed twice: a computed operand is bound where it is computed
    (walrus), so an operand that only feeds one side of a where stays lazy."""
    cmp = ">=" if kind == "max" else "<="
    ta, bind_a = (a, a) if da == 0 else (f"m{index}a", f"(m{index}a := {a})")
    tb, bind_b = (b, b) if db == 0 else (f"m{index}b", f"(m{index}b := {b})")
    return f"({ta} if {bind_a} {cmp} {bind_b} else {tb})"


def _emit(
    tracer: Tracer, inputs: list[str], outputs: list[Any], static_inputs: int
) -> tuple[list[str], list[str], list[str], str]:
    """Source of the two stages: (static lines, exported names, dynamic lines, return).

    Nodes that depend only on the first ``static_inputs`` inputs form the static stage,
    computed once per combination of those inputs; the rest is the dynamic stage.
    """
    nodes = tracer.nodes
    live = [False] * len(nodes)
    for out in outputs:
        if isinstance(out, Sym):
            live[out.index] = True
    for index in range(len(nodes) - 1, -1, -1):
        if live[index]:
            for arg in nodes[index][1]:
                if isinstance(arg, Sym):
                    live[arg.index] = True
    static = [False] * len(nodes)
    uses = [0] * len(nodes)
    crossing = [False] * len(nodes)
    for index, (kind, args) in enumerate(nodes):
        if kind == "input":
            static[index] = int(args[0]) < static_inputs
            continue
        static[index] = all(static[a.index] for a in args if isinstance(a, Sym))
        if not live[index]:
            continue
        for arg in args:
            if isinstance(arg, Sym):
                uses[arg.index] += 1
                if static[arg.index] and not static[index]:
                    crossing[arg.index] = True
    for out in outputs:
        if isinstance(out, Sym):
            uses[out.index] += 2  # returned values are bound to names
            crossing[out.index] = static[out.index]
    for index, cross in enumerate(crossing):
        if cross:
            uses[index] += 2  # handed from the static to the dynamic stage by name
    names: dict[int, str] = {}
    inline: dict[int, tuple[str, int]] = {}
    lines: tuple[list[str], list[str]] = ([], [])
    exported: list[str] = []

    def ref(arg: Any) -> tuple[str, int]:
        if not isinstance(arg, Sym):
            return repr(float(arg)), 0
        if arg.index in names:
            return names[arg.index], 0
        return inline[arg.index]

    for index, (kind, args) in enumerate(nodes):
        if kind == "input":
            names[index] = inputs[int(args[0])]
            if crossing[index]:
                exported.append(names[index])
            continue
        if not live[index]:
            continue
        if kind == "bin":
            (a, da), (b, db) = ref(args[1]), ref(args[2])
            text, depth = f"({a} {args[0]} {b})", 1 + max(da, db)
        elif kind == "where":
            (c, dc), (a, da), (b, db) = ref(args[0]), ref(args[1]), ref(args[2])
            text, depth = f"({a} if {c} else {b})", 1 + max(dc, da, db)
        elif kind in ("max", "min"):
            (a, da), (b, db) = ref(args[0]), ref(args[1])
            text = minmax_text(kind, index, a, da, b, db)
            depth = 1 + max(da, db)
        else:  # call
            (a, da) = ref(args[1])
            text, depth = f"{args[0]}({a})", 1 + da
        if uses[index] >= 2 or depth > _MAX_INLINE_DEPTH:
            name = f"v{index}"
            lines[0 if static[index] else 1].append(f"    {name} = {text}")
            names[index] = name
            if crossing[index]:
                exported.append(name)
        else:
            inline[index] = (text, depth)
    returned = ", ".join(ref(out)[0] for out in outputs)
    return lines[0], exported, lines[1], f"    return ({returned},)"


class Compiled:
    """A traced function in two stages, plus a one-call convenience.

    ``prepare(static_values)`` computes everything that depends only on the first
    ``static_inputs`` inputs (the model, accelerator, cluster and training spec);
    ``finish(prepared, dynamic_values)`` the rest (the layout). ``__call__(values)``
    runs both on a full tuple.
    """

    def __init__(self, prepare: Any, finish: Any, static_inputs: int, source: str) -> None:
        self.prepare: Callable[[tuple[float, ...]], tuple[float, ...]] = prepare
        self.finish: Callable[[tuple[float, ...], tuple[float, ...]], tuple[Any, ...]] = finish
        self.static_inputs = static_inputs
        self.source = source

    def __call__(self, values: tuple[float, ...]) -> tuple[Any, ...]:
        """Outputs for a full tuple of input values."""
        cut = self.static_inputs
        return self.finish(self.prepare(tuple(values[:cut])), tuple(values[cut:]))


def compile_function(
    body: Callable[..., Any],
    inputs_type: Any,
    name: str,
    static_inputs: int,
    *args: Any,
    fixed: dict[str, float] | None = None,
) -> Compiled:
    """Trace ``body(inputs, *args)`` with symbolic ``inputs`` and compile the result.

    ``inputs_type`` is the NamedTuple class of the inputs; its first ``static_inputs``
    fields form the static stage (see :class:`Compiled`). ``fixed`` gives inputs a
    constant value for this compilation (categorical choices such as the sharding mode),
    so every ``where`` on them is decided while tracing and only one side is compiled;
    the compiled function then ignores those inputs. ``body`` must return a NamedTuple
    (or tuple) of symbols and plain numbers.
    """
    fields: tuple[str, ...] = inputs_type._fields
    fixed = fixed or {}
    tracer = Tracer()
    symbols = inputs_type(
        *(
            float(fixed[field]) if field in fixed else tracer.node("input", i)
            for i, field in enumerate(fields)
        )
    )
    outputs = list(body(symbols, *args))
    names = [f"i_{field}" for field in fields]
    static_lines, exported, dynamic_lines, returned = _emit(tracer, names, outputs, static_inputs)
    unpack_static = ", ".join(names[:static_inputs])
    unpack_dynamic = ", ".join(names[static_inputs:])
    prepare_src = "\n".join(
        [
            f"def {name}_prepare(values):",
            f"    ({unpack_static},) = values",
            *static_lines,
            f"    return ({', '.join(exported)},)",
        ]
    )
    finish_src = "\n".join(
        [
            f"def {name}_finish(prepared, values):",
            f"    ({', '.join(exported)},) = prepared",
            f"    ({unpack_dynamic},) = values",
            *dynamic_lines,
            returned,
        ]
    )
    source = prepare_src + "\n\n\n" + finish_src
    namespace: dict[str, Any] = {
        "_ceil": lambda v: float(math.ceil(v)),
        "_log2": math.log2,
        "_sqrt": math.sqrt,
        "_exp": math.exp,
        "_expm1": math.expm1,
    }
    exec(compile(source, f"<planner.trace:{name}>", "exec"), namespace)
    return Compiled(
        namespace[f"{name}_prepare"], namespace[f"{name}_finish"], static_inputs, source
    )
