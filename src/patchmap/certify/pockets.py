"""A proof that rep homes cap the balance: units that can only reach some homes.

A territory is connected, holds its rep's home and no other rep's home. So a unit u can
join territory h only along a path from h's home to u that passes no other home, and
the territory then holds that whole path: at least ``D[h, u]``, the lightest such path
(both ends counted, Dijkstra on the map without the other homes). A home walled in by
other reps' homes (Suffolk County, NY, behind a rep living in Nassau) can gain nothing;
a heavy unit far from every home but one (Los Angeles County with no rep in it) drags
a long path into that territory.

For a deviation ``e``, let unit u join h only when ``D[h, u] <= goal_h (1 + e)``; if
not even a fractional assignment of the units to the homes so allowed (a transport
problem, one maximum flow) puts every territory within ``goal (1 +- e)``, no plan with
these homes deviates by ``e`` or less. :func:`pocket_bound` finds the smallest such
``e`` by bisection; the bound holds whatever the search, and it is 0 when the
programme is feasible at 0 (which proves nothing either way).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import dijkstra, maximum_flow

__all__ = ["PocketBound", "home_paths", "pocket_bound"]

BISECTIONS = 20  # halvings of the bracket on the deviation (about 1e-8 of a share)


@dataclass
class PocketBound:
    """``deviation``: no plan with these homes deviates less (largest |total / goal - 1|
    of the primary); ``home``: the territory whose reach alone proves it (-1 when only
    the whole assignment does); ``reach``: that territory's reachable total over its
    goal; ``walls``: the other homes next to its reach (unit indices)."""

    deviation: float = 0.0
    home: int = -1
    reach: float = 0.0
    walls: tuple[int, ...] = ()

    def sentence(self, ids=None, names=None) -> str:
        """The proof in one sentence (unit ids from ``ids``, territory names from
        ``names`` when given)."""
        if self.deviation <= 0:
            return "every unit reaches enough homes: no pocket limits the balance"
        if self.home >= 0:
            who = str(names[self.home]) if names is not None else f"territory {self.home}"
            wall = ", ".join(str(ids[u]) if ids is not None else str(u) for u in self.walls[:8])
            return (
                f"{who}'s home is walled in by other reps' homes ({wall}): every unit its "
                f"territory can reach holds {self.reach:.2f} of its share, so it is at least "
                f"{self.deviation:.2%} short"
            )
        return (
            "a unit can join a territory only along a path from its rep's home that crosses "
            "no other home (and the territory holds that path): no assignment of the units "
            f"to homes so reachable keeps every territory within {self.deviation:.2%} of its "
            "share"
        )


def home_paths(matrix: sparse.spmatrix, w: np.ndarray, homes: np.ndarray) -> np.ndarray:
    """``D[i, u]``: the lightest connected path from home ``homes[i]`` to unit u that
    passes no other home, both ends counted (inf when there is none)."""
    m = sparse.csr_matrix(matrix).tocoo()
    n, k = m.shape[0], len(homes)
    w = np.asarray(w, dtype=float)
    ishome = np.zeros(n, dtype=bool)
    ishome[homes] = True
    # a path's weight is the weights of the units it enters; a tiny step keeps zero
    # weights positive (dijkstra drops explicit zeros)
    step = 1e-9 * max(float(w.max(initial=0.0)), 1.0)
    d = np.full((k, n), np.inf)
    for i, h in enumerate(np.asarray(homes).tolist()):
        block = ishome.copy()
        block[h] = False
        keep = ~block[m.row] & ~block[m.col]
        g = sparse.csr_matrix((w[m.col[keep]] + step, (m.row[keep], m.col[keep])), shape=(n, n))
        d[i] = dijkstra(g, indices=h) + w[h]
    return d


def _feasible(d: np.ndarray, w: np.ndarray, homes: np.ndarray, goal: np.ndarray,
              free: np.ndarray, e: float) -> bool:  # fmt: skip
    """Whether the units of ``free`` can be shared (fractionally) among the homes they
    reach within ``goal (1 + e)`` with every territory within ``goal (1 +- e)``: a
    transport with lower bounds, checked as one maximum flow (the usual reduction:
    source S' feeds each arc's lower bound at its head, its tail drains it to T').

    Capacities are integers (scipy), so the weights are scaled to about 2^28 in all;
    every bound is widened by one per unit, so rounding never turns feasible into not
    (the bound stays a bound)."""
    k, nf = len(homes), len(free)
    if (goal * (1 + e) < w[homes]).any():
        return False
    allowed = d[:, free] <= (goal * (1 + e))[:, None]
    if not allowed.any(axis=0).all():
        return False
    scale = 2.0**28 / max(float(w.sum()), 1e-300)
    wf = np.rint(w[free] * scale).astype(np.int64)
    slack = nf + 1
    lo = np.maximum(np.floor((goal * (1 - e) - w[homes]) * scale) - slack, 0).astype(np.int64)
    hi = np.maximum(np.ceil((goal * (1 + e) - w[homes]) * scale) + slack, lo).astype(np.int64)
    big = int(2**30)
    # nodes: free units 0..nf-1, homes nf..nf+k-1, s, t, S', T'
    s_, t_, s2, t2 = nf + k, nf + k + 1, nf + k + 2, nf + k + 3
    ti, fi = np.nonzero(allowed)
    rows = np.concatenate([fi, nf + np.arange(k), [t_], np.full(nf, s2), [s_],
                           [s2], nf + np.arange(k)])  # fmt: skip
    cols = np.concatenate([nf + ti, np.full(k, t_), [s_], np.arange(nf), [t2],
                           [t_], np.full(k, t2)])  # fmt: skip
    cap = np.concatenate([np.full(len(ti), big), hi - lo, [big], wf, [wf.sum()],
                          [lo.sum()], lo])  # fmt: skip
    keep = cap > 0
    n = nf + k + 4
    g = sparse.csr_matrix((cap[keep].astype(np.int32), (rows[keep], cols[keep])), shape=(n, n))
    g.sum_duplicates()
    need = int(wf.sum() + lo.sum())
    return int(maximum_flow(g, s2, t2).flow_value) >= need


def pocket_bound(
    matrix: sparse.spmatrix, w: np.ndarray, homes: np.ndarray,
    shares: np.ndarray | None = None,
) -> PocketBound:  # fmt: skip
    """The smallest deviation the homes' reach allows (see the module docstring), with
    the territory whose reach alone proves it when one does.

    ``matrix``: the units' adjacency; ``w``: the primary column; ``homes``: each
    territory's home unit; ``shares``: target fractions (equal by default).
    """
    w = np.asarray(w, dtype=float)
    homes = np.asarray(homes, dtype=np.int64)
    n, k = len(w), len(homes)
    share = np.full(k, 1.0 / k) if shares is None else np.asarray(shares, dtype=float)
    goal = share * w.sum()
    d = home_paths(matrix, w, homes)
    free = np.setdiff1d(np.arange(n), homes)
    if _feasible(d, w, homes, goal, free, 0.0):
        return PocketBound()
    lo, hi = 0.0, 0.01
    while not _feasible(d, w, homes, goal, free, hi):
        lo, hi = hi, 2 * hi
        if hi > 1e3:  # some unit reaches no home at all: nothing to bound with
            return PocketBound()
    for _ in range(BISECTIONS):
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if _feasible(d, w, homes, goal, free, mid) else (mid, hi)
    return _witness(matrix, d, w, homes, goal, lo)


def _witness(matrix, d: np.ndarray, w: np.ndarray, homes: np.ndarray, goal: np.ndarray,
             e: float) -> PocketBound:  # fmt: skip
    """The bound ``e`` with the territory whose reachable total alone falls short by
    about ``e`` (a walled-in home), when there is one."""
    reach = np.where(np.isfinite(d), w[None, :], 0.0)
    reach[:, homes] = 0.0
    reach = reach.sum(axis=1) + w[homes]
    short = 1 - reach / goal
    i = int(np.argmax(short))
    if short[i] < e - 1e-3:
        return PocketBound(float(e))
    m = sparse.csr_matrix(matrix)
    inside = np.flatnonzero(np.isfinite(d[i]))
    touch = np.unique(m[inside].indices)
    walls = tuple(int(u) for u in np.intersect1d(touch, np.delete(homes, i)).tolist())
    return PocketBound(float(e), i, float(reach[i] / goal[i]), walls)
