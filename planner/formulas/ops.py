"""Branch-free helpers that work on Python scalars (fast path) and numpy arrays.

A scalar call costs well under a microsecond because it never touches numpy; an array
call dispatches to the matching numpy ufunc; a symbolic call (:class:`planner.trace.Sym`)
records code for the compiled scalar path. Both branches of :func:`where` are always
evaluated by the caller, exactly as with ``numpy.where``.
"""

from __future__ import annotations

import math
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


def ceil(x: Num) -> Num:
    """Element-wise ceiling, as float."""
    if type(x) in _SCALAR:
        return float(math.ceil(x))
    if isinstance(x, _Sym):
        return trace.traced_call("_ceil", x)
    return np.ceil(x)


def log2(x: Num) -> Num:
    """Element-wise base-2 logarithm (x > 0)."""
    if type(x) in _SCALAR:
        return math.log2(x)
    if isinstance(x, _Sym):
        return trace.traced_call("_log2", x)
    return np.log2(x)


def sqrt(x: Num) -> Num:
    """Element-wise square root (x >= 0)."""
    if type(x) in _SCALAR:
        return math.sqrt(x)
    if isinstance(x, _Sym):
        return trace.traced_call("_sqrt", x)
    return np.sqrt(x)


def exp(x: Num) -> Num:
    """Element-wise e**x."""
    if type(x) in _SCALAR:
        return math.exp(x)
    if isinstance(x, _Sym):
        return trace.traced_call("_exp", x)
    return np.exp(x)


def expm1(x: Num) -> Num:
    """Element-wise e**x - 1, accurate for small x."""
    if type(x) in _SCALAR:
        return math.expm1(x)
    if isinstance(x, _Sym):
        return trace.traced_call("_expm1", x)
    return np.expm1(x)
