"""Re-splitting pairs of territories along shortest-path distances from their homes.

Balancing by boundary moves (:mod:`~patchmap.partition.balance`) passes weight only where
a territory can give up the units on one side while keeping its locked units (a rep's
home) joined; homes crowded in one metro with surplus far away leave chains of
territories where every such move is blocked. :func:`resplit` redraws two neighbouring
territories at once, in the spirit of the recombination step of ReCom (DeFord, Duchin
and Solomon 2021): their union's units are ordered by the difference of their distances
from each territory's locked units and cut at the threshold closest to the wanted total,
so both parts are connected and keep their locked units for every threshold.
:func:`give` hands a neighbour the giver's units next to it one at a time, taking along
any piece the unit would cut off from the giver's home (a territory whose home sits at
the end of a narrow neck cannot pass weight through it). The balancing steps built on
them are in :mod:`~patchmap.partition.flows`, the relocation of territories in
:mod:`~patchmap.partition.relocate`."""

from __future__ import annotations

import heapq

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import connected_components, dijkstra

from patchmap.partition.state import SearchState

__all__ = ["TRIES", "give", "resplit"]

TRIES = 6  # orderings tried per re-split (plain distances, then stretched edges)
CHECKS = 40  # units give may pass over (their removal would cut the giver) before it stops


def resplit(
    s: SearchState, p: int | list[int], q: int, want_q: float, rng: np.random.Generator,
    tries: int = TRIES, window: float = 0.0,
) -> bool:  # fmt: skip
    """Redraw territories p and q so that q's primary total comes close to ``want_q``,
    each keeping its locked units, both connected; True when the labels changed.

    Within the pair's units, ``key = d_q - d_p`` (shortest-path distances from each
    territory's locked units, edges as long as the distance between unit centres) orders
    the units from q's home outwards; q takes the units with key below a threshold.
    Both parts are connected for every threshold (a unit's predecessor on the path from
    its own side's home has a key at least as far on that side), so sliding the
    threshold reaches q totals one unit at a time. The first try uses the plain
    distances, the others randomly stretched edges (other boundaries); the cut closest
    to the wanted total wins (within ``window`` of it: the one cutting fewest edges).
    With a list of territories for ``p``, q is cut from their union (which must stay
    connected) and the units q gives up go to the first of them.
    """
    group = [p] if isinstance(p, int) else list(p)
    in_p = np.isin(s.labn, group)
    idx = np.flatnonzero(in_p | (s.labn == q))
    lab = s.labn[idx]
    locked = s.lockn[idx]
    in_p = in_p[idx]
    src_p = np.flatnonzero(locked & in_p)
    src_q = np.flatnonzero(locked & (lab == q))
    if len(idx) < 3 or len(src_p) == 0 or len(src_q) == 0:
        return False
    m = sparse.triu(s.g.matrix[idx][:, idx], k=1).tocoo()
    ei, ej = m.row, m.col
    xy = s.xy[idx]
    length = np.hypot(*(xy[ei] - xy[ej]).T) + 1e-6
    w = s.W[idx, 0]
    n = len(idx)
    multi = len(src_p) > 1 or len(src_q) > 1  # several locks a side: check they stay joined
    best = None
    for t in range(tries):
        ln = length if t == 0 else length * rng.uniform(0.3, 1.7, len(length))
        g = sparse.csr_matrix((np.r_[ln, ln], (np.r_[ei, ej], np.r_[ej, ei])), shape=(n, n))
        d = dijkstra(g, indices=np.r_[src_p, src_q], min_only=False)
        dp, dq = d[: len(src_p)].min(axis=0), d[len(src_p) :].min(axis=0)
        if not (np.isfinite(dp).all() and np.isfinite(dq).all()):
            return False
        key = dq - dp
        order = np.argsort(key, kind="stable")
        ks = key[order]
        cum = np.cumsum(w[order])
        # cuts between distinct keys (ties within rounding stay together): q takes
        # order[:c]
        eps = 1e-9 * (np.abs(ks).max() + 1.0)
        c = np.flatnonzero(ks[1:] - ks[:-1] > eps) + 1
        # q's locked units inside its part, p's outside
        c = c[(ks[c - 1] >= key[src_q].max() - eps) & (ks[c] <= key[src_p].min() + eps)]
        if len(c) == 0:
            continue
        err = np.abs(cum[c - 1] - want_q)
        near = np.flatnonzero(err <= max(window, err.min()))
        for i in near[np.argsort(err[near])][:4].tolist():
            inq = np.zeros(n, dtype=bool)
            inq[order[: c[i]]] = True
            if multi and not _whole(inq, ei, ej, src_p, src_q):
                continue
            cut = int((inq[ei] != inq[ej]).sum())
            key_i = (max(err[i], window), cut)
            if best is None or key_i < best[0]:
                best = (key_i, inq)
        if best is not None and best[0][0] <= window:
            break
    if best is None:
        return False
    new = np.where(best[1], q, np.where(in_p, lab, group[0]))
    changed = np.flatnonzero(new != lab)
    if len(changed) == 0:
        return False
    for i in changed.tolist():
        s.move(int(idx[i]), int(lab[i]), int(new[i]))
    return True


def give(
    s: SearchState, p: int, q: int, amount: float, window: float = 0.0,
    checks: int = CHECKS,
) -> bool:  # fmt: skip
    """Pass about ``amount`` of the primary column from territory p to its neighbour q,
    one unit of p at a time along their boundary; True when units moved.

    The units of p next to q go first that are furthest from p's locked units and
    nearest q (``key = d_q - d_p``, shortest-path distances through the pair from q's
    units and within p from p's locked units); a unit whose removal cuts p takes along
    the pieces it cuts off from p's locked units (a tentacle of p reaching along q goes
    whole), and one that would separate p's locked units is passed over. Every unit
    joins q next to it or next to a unit joining with it, so both stay connected. It
    stops once q has gained the amount (within ``window``) or no unit can go without
    overshooting more than it gains. Unlike :func:`resplit`, q keeps all it has, so the
    pair's other boundaries stay put.
    """
    if amount <= 0:
        return False
    in_pair = (s.labn == p) | (s.labn == q)
    idx = np.flatnonzero(in_pair)
    is_p = s.labn[idx] == p
    locked = s.lockn[idx] & is_p
    if not locked.any() or not is_p.any() or is_p.all():
        return False
    n = len(idx)
    m = s.g.matrix[idx][:, idx].tocsr()
    mc = m.tocoo()
    length = np.hypot(*(s.xy[idx][mc.row] - s.xy[idx][mc.col]).T) + 1e-6
    g = sparse.csr_matrix((length, (mc.row, mc.col)), shape=(n, n))
    dq = dijkstra(g, indices=np.flatnonzero(~is_p), min_only=True)
    inside = is_p[mc.row] & is_p[mc.col]
    gp = sparse.csr_matrix((length[inside], (mc.row[inside], mc.col[inside])), shape=(n, n))
    dp = dijkstra(gp, indices=np.flatnonzero(locked), min_only=True)
    key = dq - dp
    w = s.W[idx, 0]
    mine = is_p.copy()  # p's units left
    got, moved, bad = 0.0, [], 0
    heap = sorted(
        (float(key[i]), i) for i in np.flatnonzero(is_p & ~locked).tolist()
        if (~is_p[m.indices[m.indptr[i] : m.indptr[i + 1]]]).any()
    )  # fmt: skip
    skipped: set[int] = set()
    heapq.heapify(heap)
    while heap and got < amount - window:
        _, i = heapq.heappop(heap)
        if not mine[i] or i in skipped:
            continue
        mine[i] = False
        rest = np.flatnonzero(mine)
        _, comp = connected_components(m[rest][:, rest], directed=False)
        home = np.unique(comp[locked[rest]])
        take = np.r_[i, rest[comp != home[0]]] if len(home) == 1 else None
        if take is None or got + w[take].sum() - amount > amount - got:
            # cuts p's locked units apart, or overshoots more than it gains
            mine[i] = True
            skipped.add(i)
            bad += 1
            if bad > checks:
                break
            continue
        mine[take] = False
        got += float(w[take].sum())
        moved.extend(take.tolist())
        for u in take.tolist():
            for j in m.indices[m.indptr[u] : m.indptr[u + 1]].tolist():
                if mine[j] and not locked[j]:
                    skipped.discard(j)
                    heapq.heappush(heap, (float(key[j]), j))
    for i in moved:
        s.move(int(idx[i]), p, q)
    return bool(moved)


def _whole(inq: np.ndarray, ei: np.ndarray, ej: np.ndarray, src_p, src_q) -> bool:
    """Both parts of a split are connected (``inq``: q's units)."""
    n = len(inq)
    same = inq[ei] == inq[ej]
    sub = sparse.coo_matrix((np.ones(int(same.sum())), (ei[same], ej[same])), shape=(n, n))
    _, comp = connected_components(sub, directed=False)
    return len(np.unique(comp[inq])) == 1 and len(np.unique(comp[~inq])) == 1
