"""Collectives under the alpha-beta model, and which link a process group runs on.

Cost of a collective on n ranks with message S bytes, bus bandwidth bw, per-step latency
alpha (Thakur, Rabenseifner & Gropp 2005; Chan et al. 2007; the NCCL bus-bandwidth
convention of nccl-tests/doc/PERFORMANCE.md):

* all-reduce: 2(n-1)/n · S/bw + 2·min(n-1, ceil(log2 n))·alpha — ring bandwidth term,
  latency of whichever of ring or double binary tree is shorter (NCCL picks per size);
* reduce-scatter / all-gather (S = the full, unsharded size): (n-1)/n · S/bw + (n-1)·alpha;
* all-to-all (S = bytes a rank sends in total): the share for peers inside the node over
  the intra-node link plus the share for other nodes over the NIC, + (n-1)·alpha;
* point-to-point: S/bw + alpha.

Placement (hierarchical bandwidth): ranks are ordered tp (innermost), cp, dp, pp, so a
group whose consecutive members are ``stride`` ranks apart has ``k = min(size,
gpus_per_node / stride)`` members per node (at least 1). A group inside one node runs at
the intra-node link rate; one spanning nodes is limited by the k NICs its members on a
node drive together (NCCL builds one ring per NIC), and never exceeds the intra-node rate.
"""

from __future__ import annotations

from planner.formulas.ops import Num, ceil, clip, log2, maximum, minimum, where


def members_per_node(size: Num, stride: Num, gpus_per_node: Num) -> Num:
    """Members of a process group that share a node."""
    return clip(gpus_per_node / stride, 1.0, size)


def group_link(
    size: Num,
    stride: Num,
    gpus_per_node: Num,
    intra_bw: Num,
    inter_bw: Num,
    alpha_intra: Num,
    alpha_inter: Num,
) -> tuple[Num, Num]:
    """(bus bandwidth B/s, per-step latency s) of a group; bandwidths already derated."""
    k = members_per_node(size, stride, gpus_per_node)
    spans = size > k
    bw = where(spans, minimum(intra_bw, k * inter_bw), intra_bw)
    alpha = where(spans, alpha_inter, alpha_intra)
    return bw, alpha


def all_reduce_time(size_bytes: Num, n: Num, bw: Num, alpha: Num) -> Num:
    """Seconds for an all-reduce of ``size_bytes`` over ``n`` ranks."""
    steps = minimum(n - 1, ceil(log2(maximum(n, 1.0))))
    return 2 * (n - 1) / n * size_bytes / bw + 2 * steps * alpha


def all_gather_time(size_bytes: Num, n: Num, bw: Num, alpha: Num) -> Num:
    """Seconds for an all-gather (or reduce-scatter) whose full result is ``size_bytes``."""
    return (n - 1) / n * size_bytes / bw + (n - 1) * alpha


def all_to_all_time(
    send_bytes: Num,
    n: Num,
    per_node: Num,
    intra_bw: Num,
    inter_bw: Num,
    alpha: Num,
) -> Num:
    """Seconds for an all-to-all where each rank sends ``send_bytes`` spread over ``n`` ranks."""
    intra_share = (per_node - 1) / n
    inter_share = (n - per_node) / n
    return send_bytes * (intra_share / intra_bw + inter_share / inter_bw) + (n - 1) * alpha


def p2p_time(size_bytes: Num, bw: Num, alpha: Num) -> Num:
    """Seconds for one point-to-point send."""
    return size_bytes / bw + alpha
