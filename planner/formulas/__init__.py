"""The planner's physics, written once for scalars and numpy arrays alike.

Every function here is plain arithmetic on its arguments. Called with Python floats it
returns a float (the scalar ``planner.estimate`` path, tens of microseconds); called with
numpy arrays of equal (or broadcastable) shape it returns arrays, one entry per candidate
layout (the vectorised ``planner.search`` path). There is no second copy of any formula.

Rules that keep both paths identical:

* no ``if`` on a value: choices go through :mod:`planner.formulas.ops` (``where``,
  ``maximum``, ``minimum``, ``ceil``, ``log2``), which take the fast Python path for
  scalars and the numpy path for arrays;
* both branches of a ``where`` are always evaluated, so each must be finite for every
  input (divide by ``maximum(x, 1)``, never by something that can be 0);
* categorical inputs (sharding mode, recompute mode, kernel kind) arrive as numbers
  (codes defined in :mod:`planner.inputs`), booleans as 0.0 / 1.0.

Modules: ``params`` (parameter counts), ``flops`` (model and hardware FLOPs),
``memory`` (bytes per GPU), ``kernels`` (GEMM, attention and element-wise times),
``comm`` (alpha-beta collectives and group placement), ``step`` (pipeline schedule,
communication overlap, GPU power). ``planner.core`` wires them together, and
``planner.trace`` compiles that wiring into flat scalar code.
"""
