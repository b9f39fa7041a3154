"""Seeding: first labellings, contiguous and roughly balanced, for the search to improve.

:func:`recursive_seed` bisects recursively: each split is a straight cut (of 12
directions, the one crossing fewest adjacency edges) at the weighted quantile that
divides the primary total in the ratio of the territory counts (:func:`straight_cut`),
or with locked units on both sides a split grown along the graph from them
(:func:`graph_cut`); stray pieces rejoin the side they touch, and the two halves are
balanced and refined before splitting further. :func:`capacity_seed` starts from rep
homes: a capacitated assignment of units to homes solved as a linear program.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from patchmap.partition.balance import settle
from patchmap.partition.contiguity import settle_locks
from patchmap.partition.objective import imbalance
from patchmap.partition.problem import Graph, Problem
from patchmap.partition.refine import refine
from patchmap.partition.secondary import secondary
from patchmap.partition.state import SearchState

__all__ = ["ANGLES", "TIE_BREAK", "capacity_seed", "graph_cut", "recursive_seed", "straight_cut"]

ANGLES = 12  # directions tried for each straight cut of the recursive bisection
TIE_BREAK = 0.05  # weight of the squared term breaking ties of the linear-cost start


def straight_cut(
    graph: Graph,
    xy: np.ndarray,
    w: np.ndarray,
    frac: float,
    k1: int,
    k2: int,
    dirs: np.ndarray,
    locked: np.ndarray | None = None,
    codes: Sequence[int] = (),
) -> tuple[np.ndarray, list[int]]:
    """Side (False = first part) of a straight cut putting ``frac`` of ``w`` first, and the
    territory codes that go first.

    Of several directions, the one cutting fewest edges (then leaving fewest stray
    pieces) wins. With ``locked`` units (territory codes, -1 free), each cut is slid so
    that at most ``k1`` locked territories fall first and at most ``k2`` second, ordered by
    the mean position of their locked units; a cut slid away from balance costs extra.
    """
    n = graph.n
    li, lj = graph.ei, graph.ej
    proj = xy @ dirs
    order = np.argsort(proj, axis=0, kind="stable")
    cum = np.cumsum(w[order], axis=0)
    goal = cum[-1] * frac
    pos = np.argmin(np.abs(cum - goal[None, :]), axis=0) + 1
    pos = np.clip(pos, k1, n - k2)
    codes = list(codes)
    present: np.ndarray = np.zeros(0, dtype=np.int64)
    if locked is not None and (locked >= 0).any():
        pinned = np.flatnonzero(locked >= 0)
        present, inv = np.unique(locked[pinned], return_inverse=True)
        # mean projection of each locked territory, per direction
        mean = (
            np.stack(
                [np.bincount(inv, weights=proj[pinned, a]) for a in range(dirs.shape[1])], axis=1
            )
            / np.bincount(inv)[:, None]
        )
        lo_n, hi_n = max(0, len(present) - k2), min(k1, len(present))
        sproj = np.take_along_axis(proj, order, axis=0)
        for a in range(dirs.shape[1]):
            m = np.sort(mean[:, a])
            best_pos, best_err = pos[a], np.inf
            for n0 in range(lo_n, hi_n + 1):
                # the cut lies between the n0-th and the (n0+1)-th locked territory
                lo = int(np.searchsorted(sproj[:, a], m[n0 - 1], side="right")) if n0 else 1
                hi = int(np.searchsorted(sproj[:, a], m[n0], side="left")) if n0 < len(m) else n - 1
                p = int(np.clip(pos[a], max(min(lo, hi), 1), min(max(lo, hi), n - 1)))
                err = abs(cum[p - 1, a] - goal[a])
                if err < best_err:
                    best_pos, best_err = p, err
            pos[a] = best_pos
    side = np.ones((n, dirs.shape[1]), dtype=bool)
    first = np.arange(n)[:, None] < pos[None, :]
    np.put_along_axis(side, order, ~first, axis=0)
    cuts = (side[li] != side[lj]).sum(axis=0).astype(float)
    if len(present):
        share = np.take_along_axis(cum, (pos - 1)[None, :], axis=0)[0] / cum[-1]
        off = np.abs(share - frac) / min(frac, 1 - frac)
        cuts = cuts * (1.0 + 4.0 * off)
    best, best_s = 0, np.inf
    for a in np.argsort(cuts, kind="stable")[:4].tolist():
        s = cuts[a]
        for flag in (False, True):
            sel = side[:, a] == flag
            m = sel[li] & sel[lj]
            sub = sparse.coo_matrix((np.ones(int(m.sum())), (li[m], lj[m])), shape=(n, n))
            _, comp = connected_components(sub, directed=False)
            s += 3.0 * (len(np.unique(comp[sel])) - 1)
        if s < best_s:
            best, best_s = a, s
    chosen = side[:, best]
    if not len(present):
        return chosen, codes[:k1]
    # locked territories in order of position along the chosen direction; the first n0 go first
    pinned = np.flatnonzero(locked >= 0)
    inv = np.searchsorted(present, locked[pinned])
    mean = np.bincount(inv, weights=proj[pinned, best]) / np.bincount(inv)
    on_first = np.bincount(inv, weights=(~chosen[pinned]).astype(float)) / np.bincount(inv) >= 0.5
    ranked = present[np.lexsort((mean, ~on_first))]
    n0 = int(np.clip(on_first.sum(), max(0, len(present) - k2), min(k1, len(present))))
    firsts = ranked[:n0].tolist()
    free = [c for c in codes if c not in set(present.tolist())]
    firsts += free[: k1 - n0]
    return chosen, [c for c in codes if c in set(firsts)]


def graph_cut(
    graph: Graph, xy: np.ndarray, w: np.ndarray, frac: float, lock_side: np.ndarray
) -> np.ndarray:
    """Two sides grown from their locked units: unit u goes first when
    ``d0(u) - d1(u) < tau`` (shortest distances from each side's locked units along the
    graph, centroid to centroid in km), ``tau`` the weighted quantile putting ``frac`` of
    ``w`` first.

    Each side is a union of shortest-path trees rooted at its locked units (a unit's
    predecessor towards its side's sources is on the same side), so no side has stray
    pieces, and the locked units stay on their side.
    """
    from scipy.sparse.csgraph import dijkstra

    ei, ej = graph.ei, graph.ej
    d = np.hypot(*(xy[ei] - xy[ej]).T) + 1e-6
    n = graph.n
    g = sparse.csr_matrix((np.r_[d, d], (np.r_[ei, ej], np.r_[ej, ei])), shape=(n, n))
    d0 = dijkstra(g, indices=np.flatnonzero(lock_side == 0), min_only=True)
    d1 = dijkstra(g, indices=np.flatnonzero(lock_side == 1), min_only=True)
    far = 10.0 * (d0[np.isfinite(d0)].max(initial=0) + d1[np.isfinite(d1)].max(initial=0) + 1)
    diff = np.where(np.isfinite(d0), d0, far) - np.where(np.isfinite(d1), d1, far)
    order = np.argsort(diff, kind="stable")
    cum = np.cumsum(w[order])
    pos = int(np.searchsorted(cum, frac * cum[-1]))
    tau = diff[order[min(pos, n - 1)]]
    # keep every locked unit on its own side
    lo = diff[lock_side == 0].max()
    hi = diff[lock_side == 1].min()
    tau = min(max(tau, np.nextafter(lo, np.inf)), hi)
    side = (diff >= tau).astype(np.int64)
    return np.where(lock_side >= 0, lock_side, side)


def recursive_seed(
    graph: Graph,
    xy: np.ndarray,
    W: np.ndarray,
    area: np.ndarray,
    k: int,
    tol: list[float],
    locked: np.ndarray,
    rng: np.random.Generator,
    compactness: float,
    n_angles: int | None = None,
    shares: np.ndarray | None = None,
    along_graph: bool = False,
) -> np.ndarray:
    """K contiguous, balanced territories by recursive bisection.

    Each split starts from a straight cut, is made contiguous, then balanced to the
    territories' shares and refined by the same local search as the final plan. Locked
    units (a rep's home, a key account) steer each cut and stay on their territory's side;
    with ``along_graph`` a split with locked units on both sides follows the graph (see
    :func:`graph_cut`) instead of a straight line.
    """
    n = graph.n
    n_angles = n_angles or ANGLES
    shares = np.full(k, 1.0 / k) if shares is None else np.asarray(shares, dtype=float)
    lab = np.zeros(n, dtype=np.int64)
    offset = rng.uniform(0, np.pi / n_angles)
    ang = offset + np.arange(n_angles) * np.pi / n_angles
    dirs = np.vstack([np.cos(ang), np.sin(ang)])
    wt = W[:, 0] + 1e-9 * max(W[:, 0].mean(), 1e-12)
    stack = [(np.arange(n), list(range(k)))]
    while stack:
        idx, codes = stack.pop()
        kk = len(codes)
        lk = locked[idx]
        if kk == 1:
            lab[idx] = codes[0]
            continue
        k1 = kk // 2
        if len(idx) == 2:
            pair = codes[:2] if lk[1] != codes[0] and lk[0] != codes[1] else codes[1::-1]
            lab[idx[0]], lab[idx[1]] = pair
            continue
        sub = graph if len(idx) == n else graph.subgraph(idx)
        frac = float(shares[codes[:k1]].sum() / shares[codes].sum())
        cut, firsts = straight_cut(
            sub, xy[idx], wt[idx], frac, k1, kk - k1, dirs, lk if (lk >= 0).any() else None, codes
        )
        seconds = [c for c in codes if c not in set(firsts)]
        frac = float(shares[firsts].sum() / shares[codes].sum())
        lock_side = np.where(lk < 0, -1, np.isin(lk, seconds).astype(np.int64))
        if along_graph and (lock_side == 0).any() and (lock_side == 1).any():
            # locked units on both sides (reps' homes): split along the graph instead
            side = graph_cut(sub, xy[idx], wt[idx], frac, lock_side)
        else:
            side = np.where(lock_side >= 0, lock_side, cut.astype(np.int64))
        side = settle_locks(sub, side, wt[idx], 2, lock_side)
        part = Problem(
            sub, W[idx], xy[idx], area[idx], [frac, 1 - frac], tol, lock_side, compactness
        )
        s = SearchState(part, side, rng)
        settle(s, 0.5)
        secondary(s)
        refine(s, passes=3)
        settle(s, 0.5)
        secondary(s)
        if imbalance(s, 0.5)[0] > 0 and not (lk >= 0).any():
            # the balancing could not bring the split to its ratio (few links between the
            # sides, islands): each side takes the number of territories its weight fits
            n1 = fitting_count(shares[codes], float(s.tot[0][0]) / float(wt[idx].sum()))
            if n1 != len(firsts):
                firsts, seconds = codes[:n1], codes[n1:]
                frac = float(shares[firsts].sum() / shares[codes].sum())
                part = replace(part, shares=[frac, 1 - frac])
                s = SearchState(part, s.labels(), rng)
                settle(s, 0.5)
                secondary(s)
        left = s.labels() == 0
        stack.append((idx[~left], seconds))
        stack.append((idx[left], firsts))
    return lab


def fitting_count(shares: np.ndarray, got: float) -> int:
    """How many of the territories (``shares``, in order) a first side holding ``got``
    of the total should take: the count from 1 to all but one whose worse side deviates
    least from its share."""
    cum = np.cumsum(shares)[:-1] / shares.sum()
    worst = np.maximum(np.abs(got / cum - 1), np.abs((1 - got) / (1 - cum) - 1))
    return int(np.argmin(worst)) + 1


def capacity_seed(
    graph: Graph, xy: np.ndarray, w: np.ndarray, k: int, locked: np.ndarray,
    shares: np.ndarray, homes: np.ndarray, mode: str,
) -> np.ndarray | None:  # fmt: skip
    """Territories around rep homes from a capacitated assignment, made contiguous.

    Units go to homes by a transportation problem (each territory its share of ``w``,
    cost ``w`` x squared shortest-path distance from the home, locked units fixed), solved
    as a linear program (``mode`` "plain"). With "match" the resulting cells are first
    handed to reps by a min-cost matching on the distance from each home to each cell's
    main piece. With "linear" the cost grows linearly with a distance that avoids other
    reps' homes: the squared cost lets a crowded home's cell drift away from it, the
    linear one keeps cells around their homes (plus a small squared term to break its
    many ties). A home cut off from its cell's main piece is joined to it along a shortest
    path, and the rest is made contiguous. None when the program cannot be solved.
    """
    from scipy.optimize import linear_sum_assignment, linprog
    from scipy.sparse.csgraph import dijkstra

    n = graph.n
    ei, ej = graph.ei, graph.ej
    if n * k > 2_000_000:
        return None
    d = np.hypot(*(xy[ei] - xy[ej]).T) + 1e-6
    g = sparse.csr_matrix((np.r_[d, d], (np.r_[ei, ej], np.r_[ej, ei])), shape=(n, n))
    cw = w + 1e-3 * max(w.mean(), 1e-12)
    if mode == "linear":
        # capacity counts the weights the cost does, so a unit's choice is distance - price
        cap = cw
        D = np.full((k, n), np.inf)
        for r in range(k):
            keep = np.flatnonzero((locked < 0) | (locked == r))
            D[r, keep] = dijkstra(g[keep][:, keep], indices=int(np.searchsorted(keep, homes[r])))
    else:
        cap = w
        D = dijkstra(g, indices=homes)
    D = np.where(np.isfinite(D), D, 10.0 * D[np.isfinite(D)].max(initial=1.0))
    C = cw[None, :] * (D + TIE_BREAK * D**2 / D.max() if mode == "linear" else D**2)
    C = C / max(C.max(), 1e-300)
    nv = k * n
    cols = np.arange(nv)
    a_eq = sparse.vstack([
        sparse.csr_matrix((np.ones(nv), (np.tile(np.arange(n), k), cols)), shape=(n, nv)),
        sparse.csr_matrix((np.tile(cap, k), (np.repeat(np.arange(k), n), cols)), shape=(k, nv)),
    ]).tocsr()  # fmt: skip
    b_eq = np.r_[np.ones(n), cap.sum() * np.asarray(shares)]
    pinned = np.flatnonzero(locked >= 0)
    lo, hi = np.zeros((k, n)), np.ones((k, n))
    hi[:, pinned] = 0.0
    hi[locked[pinned], pinned] = 1.0
    lo[locked[pinned], pinned] = 1.0
    try:
        res = linprog(C.ravel(), A_eq=a_eq, b_eq=b_eq, bounds=np.c_[lo.ravel(), hi.ravel()],
                      method="highs")  # fmt: skip
    except (ValueError, MemoryError):
        return None
    if res.status != 0 or res.x is None:
        return None
    lab = res.x.reshape(k, n).argmax(axis=0)
    free = locked < 0
    # each cell's main piece (its heaviest piece of free units)
    same = (lab[ei] == lab[ej]) & free[ei] & free[ej]
    sub = sparse.coo_matrix((np.ones(int(same.sum())), (ei[same], ej[same])), shape=(n, n))
    _, comp = connected_components(sub, directed=False)
    cwt = np.bincount(comp, weights=np.where(free, w, 0.0) + 1e-6 * max(w.mean(), 1e-12))
    body = np.full(k, -1)
    for c in range(k):
        m = np.flatnonzero((lab == c) & free)
        if len(m):
            pcs = np.unique(comp[m])
            body[c] = pcs[np.argmax(cwt[pcs])]
    if mode == "match":
        cost = np.full((k, k), 1e9)
        for c in range(k):
            if body[c] >= 0:
                cost[:, c] = D[:, comp == body[c]].min(axis=1)
        ri, ci = linear_sum_assignment(cost)
        code = np.empty(k, dtype=np.int64)
        code[ci] = ri
        lab = code[lab]
        body_new = np.full(k, -1)
        body_new[code] = body
        body = body_new
        lab[pinned] = locked[pinned]
    # a home cut off from its cell's main piece is joined to it: the unit of the main piece
    # nearest the home is pinned for the repair, so the path runs between them
    pseudo = locked.copy()
    for r in range(k):
        if body[r] < 0:
            continue
        mine = np.flatnonzero(locked == r)
        if len(mine) and (comp[mine] != body[r]).any():
            part = np.flatnonzero((comp == body[r]) & free)
            dist = D[r, part]
            pseudo[part[int(np.argmin(dist))]] = r
    lab = settle_locks(graph, lab, w, k, pseudo)
    return settle_locks(graph, lab, w, k, locked)
