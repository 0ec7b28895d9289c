"""Ranking and the Pareto front, on numpy arrays of candidate metrics (no Python loops)."""

from __future__ import annotations

import numpy as np


def pareto_front(time: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """Indices of the candidates no other candidate beats on both ``time`` and ``cost``
    (lower is better), ordered by time; of equal points, the first index is kept.

    Sort by time (then cost); walking in that order, a point is on the front when it is
    cheaper than every point before it (Kung, Luccio & Preparata 1975, the 2-D maxima).
    """
    if len(time) == 0:
        return np.zeros(0, dtype=np.intp)
    # Only points at least as fast as the cheapest and as cheap as the fastest can be on
    # the front: sort those alone.
    fastest, cheapest = int(np.argmin(time)), int(np.argmin(cost))
    maybe = np.flatnonzero((time <= time[cheapest]) & (cost <= cost[fastest]))
    order = maybe[np.lexsort((maybe, cost[maybe], time[maybe]))]
    sorted_cost = cost[order]
    best_before = np.minimum.accumulate(np.concatenate(([np.inf], sorted_cost[:-1])))
    return order[sorted_cost < best_before]


def rank(keys: list[np.ndarray], top_k: int) -> np.ndarray:
    """Indices of the ``top_k`` smallest rows by ``keys`` (first key first, later keys
    break ties; the row index breaks the rest), in order."""
    n = len(keys[0])
    if n == 0 or top_k <= 0:
        return np.zeros(0, dtype=np.intp)
    candidates = np.arange(n)
    if top_k < n:
        # Rows tied with the k-th value of the first key may be needed for tie-breaking.
        kth = np.partition(keys[0], top_k - 1)[top_k - 1]
        candidates = np.flatnonzero(keys[0] <= kth)
    order = np.lexsort((candidates, *(key[candidates] for key in reversed(keys))))
    return candidates[order[:top_k]]
