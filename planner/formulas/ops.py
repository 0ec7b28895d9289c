"""Branch-free helpers that work on Python scalars (fast path) and numpy arrays.

A scalar call costs well under a microsecond because it never touches numpy; an array
call dispatches to the matching numpy ufunc; a symbolic call (:class:`planner.trace.Sym`)
records code for the compiled scalar path. Both branches of :func:`where` are always
evaluated by the caller, exactly as with ``numpy.where``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from planner import trace

_SCALAR = (float, int, bool)
_Sym = trace.Sym

Num = Any
"""A Python float/int or a numpy array (the formulas accept either)."""


def where(cond: Num, a: Num, b: Num) -> Num:
    """``a`` where ``cond`` is true, else ``b`` (numpy.where semantics)."""
    if type(cond) in _SCALAR and type(a) in _SCALAR and type(b) in _SCALAR:
        return a if cond else b
    if isinstance(cond, _Sym) or isinstance(a, _Sym) or isinstance(b, _Sym):
        if type(cond) in _SCALAR:  # a condition fixed at trace time: keep one side only
            return a if cond else b
        return trace.traced_where(cond, a, b)
    return np.where(cond, a, b)


def maximum(a: Num, b: Num) -> Num:
    """Element-wise maximum."""
    if type(a) in _SCALAR and type(b) in _SCALAR:
        return a if a >= b else b
    if isinstance(a, _Sym) or isinstance(b, _Sym):
        return trace.traced_maximum(a, b)
    return np.maximum(a, b)


def minimum(a: Num, b: Num) -> Num:
    """Element-wise minimum."""
    if type(a) in _SCALAR and type(b) in _SCALAR:
        return a if a <= b else b
    if isinstance(a, _Sym) or isinstance(b, _Sym):
        return trace.traced_minimum(a, b)
    return np.minimum(a, b)


def clip(x: Num, lo: Num, hi: Num) -> Num:
    """``x`` limited to [lo, hi]."""
    return minimum(maximum(x, lo), hi)


def _unary(
    name: str, scalar: Callable[[Any], float], array: Callable[[Any], Any], doc: str
) -> Callable[[Num], Num]:
    """Element-wise ``scalar``/``array`` function, traced as ``name`` on a symbol (the
    compiled code calls ``name``, see planner.levels)."""

    def function(x: Num) -> Num:
        if type(x) in _SCALAR:
            return scalar(x)
        if isinstance(x, _Sym):
            return trace.traced_call(name, x)
        return array(x)

    function.__name__ = function.__qualname__ = name.lstrip("_")
    function.__doc__ = doc
    return function


ceil = _unary("_ceil", lambda x: float(math.ceil(x)), np.ceil, "Element-wise ceiling, as float.")
log2 = _unary("_log2", math.log2, np.log2, "Element-wise base-2 logarithm (x > 0).")
sqrt = _unary("_sqrt", math.sqrt, np.sqrt, "Element-wise square root (x >= 0).")
exp = _unary("_exp", math.exp, np.exp, "Element-wise e**x.")
expm1 = _unary("_expm1", math.expm1, np.expm1, "Element-wise e**x - 1, accurate for small x.")
