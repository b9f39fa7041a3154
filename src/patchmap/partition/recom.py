"""Re-splitting pairs of territories along shortest-path distances from their homes.

Balancing by boundary moves (:mod:`~patchmap.partition.balance`) passes weight only where
a territory can give up the units on one side while keeping its locked units (a rep's
home) joined; homes crowded in one metro with surplus far away leave chains of
territories where every such move is blocked. :func:`resplit` redraws two neighbouring
territories at once, in the spirit of the recombination step of ReCom (DeFord, Duchin
and Solomon 2021): their union's units are ordered by the difference of their distances
from each territory's locked units and cut at the threshold closest to the wanted total,
so both parts are connected and keep their locked units for every threshold.
:func:`chain_balance` passes weight along paths of territories this way, from the
territory furthest over its goal to the nearest one under (or the reverse), one pair at
a time from the receiving end."""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import connected_components, dijkstra

from patchmap.partition.balance import pick_step
from patchmap.partition.objective import imbalance
from patchmap.partition.state import SearchState

__all__ = ["TRIES", "chain_balance", "resplit"]

TRIES = 6  # orderings tried per re-split (plain distances, then stretched edges)


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


def _whole(inq: np.ndarray, ei: np.ndarray, ej: np.ndarray, src_p, src_q) -> bool:
    """Both parts of a split are connected (``inq``: q's units)."""
    n = len(inq)
    same = inq[ei] == inq[ej]
    sub = sparse.coo_matrix((np.ones(int(same.sum())), (ei[same], ej[same])), shape=(n, n))
    _, comp = connected_components(sub, directed=False)
    return len(np.unique(comp[inq])) == 1 and len(np.unique(comp[~inq])) == 1


def chain_balance(
    s: SearchState, rng: np.random.Generator, goal: float = 0.5, max_iter: int | None = None,
    tries: int = TRIES,
) -> None:  # fmt: skip
    """Even out the primary column by re-splitting pairs along paths of territories.

    Each step takes the territory furthest from its goal and the nearest one deviating
    the other way (:func:`~patchmap.partition.balance.pick_step`) and passes the amount
    along the path between them, each pair re-split by :func:`resplit` from the
    receiving end back, each hop passing on what the one after it took. A step that does
    not reduce the imbalance is undone; the descent ends when none helps.
    """
    best = imbalance(s, goal)
    max_iter = max_iter if max_iter is not None else 20 * s.k
    tried: set = set()
    for _ in range(max_iter):
        if best[0] <= 0:
            break
        step = pick_step(s, s.territory_graph(), tried)
        if step is None:
            break
        key, path, amount = step
        s.begin()
        window = 0.25 * goal * s.bands.tol[0] * s.bands.goal[path[-1]][0]
        want = amount
        hops = list(zip(path[:-1], path[1:], strict=False))
        h = len(hops) - 1
        while h >= 0:
            p, q = hops[h]
            before = s.tot[q][0]
            s_mark = len(s.log)
            resplit(s, p, q, before + want, rng, tries=tries, window=window)
            got = s.tot[q][0] - before
            if got < 0.5 * want and h > 0:
                # blocked: cut q from p and the territory upstream together, then split
                # those two so that the upstream one gives up the amount
                s.undo(to=s_mark)
                pp = hops[h - 1][0]
                pp_before = s.tot[pp][0]
                if resplit(s, [p, pp], q, before + want, rng, tries=tries, window=window):
                    resplit(s, p, pp, pp_before - want, rng, tries=tries, window=window)
                want = pp_before - s.tot[pp][0]  # what pp gave, for upstream to make up
                h -= 2
                if want <= 0:
                    break
                continue
            want = got
            h -= 1
            if want <= 0:
                break
        now = imbalance(s, goal)
        if now >= best:
            s.undo()
            tried.add(key)
            continue
        best = now
        s.log = None
        tried.clear()
    s.log = None
