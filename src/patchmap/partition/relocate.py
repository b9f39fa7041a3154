"""Moving territories to where the weight is: heavy units handed off, short territories
relocated next to the surplus.

Boundary moves, flows and re-splits (:mod:`~patchmap.partition.balance`,
:mod:`~patchmap.partition.flows`) keep every territory around its home; when a heavy unit
sits in the wrong territory, or when too few territories reach out of a metro of crowded
homes, no step of those helps. :func:`transplants` hands a heavy unit to the territory
with the lightest path to it, :func:`relocations` moves a short territory next to the
surplus (the pieces a path cuts off join their neighbours,
:func:`~patchmap.partition.contiguity.settle_locks`); both return whole plans for the
search to go on from."""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import dijkstra

from patchmap.partition.contiguity import settle_locks
from patchmap.partition.recom import give
from patchmap.partition.state import SearchState

__all__ = [
    "far_side",
    "hanging",
    "hung_paths",
    "relocations",
    "transplants",
]

HEAVY = 0.2  # a unit above this share of a mean goal is heavy (see transplants)
HEAVY_UNITS = 2  # heavy units tried by transplants
HEAVY_TAKERS = 2  # territories each is offered to
RELOCATE = 3  # short territories tried by relocations
RELOCATE_FAR = 3  # ... and over territories whose far side a short territory lands in
RELOCATE_SIDES = 0.5  # ... only when the shortest and the most over are this close in size


def transplants(
    s: SearchState, heavy: float = HEAVY, units: int = HEAVY_UNITS, per_unit: int = HEAVY_TAKERS
) -> list[np.ndarray]:  # fmt: skip
    """Plans that hand a heavy unit of a territory off its target to another territory,
    with the lightest path to it from that territory's locked units (a path passing no
    other territory's locked units; the pieces it cuts off join their neighbours,
    :func:`~patchmap.partition.contiguity.settle_locks`). A unit that makes a quarter of
    a territory's goal cannot be passed by boundary moves: the territory holding it
    (Los Angeles County, no rep living in it, held by a rep in Kansas along a thread of
    counties through San Bernardino) keeps its whole path to it however the others
    balance. Takers: the ``per_unit`` territories whose path to the unit is lightest
    against their goal, when lighter than the holder's total; ``units``: the heaviest
    such units of off-target territories, ``heavy``: the least weight (share of a mean
    goal).

    Each taker is tried three ways: the path added to what it holds, and stripped first
    (its other units go to their neighbours, as in :func:`relocations`) so that it holds
    the path alone, once along the lightest path and once along :func:`hung_paths`
    (which cuts fewer territories apart on its way). A taker with a
    territory of its own is far over with the heavy unit on top of it, and the
    refinement hands the unit back; stripped, it holds about its lightest path, the
    figure the pocket bound (:mod:`patchmap.certify.pockets`) allows it. The holder is
    tried stripped too when its own lightest path to the unit is lighter than the one
    through the units it holds (a territory reaching the county the long way round)."""
    k, w = s.k, s.W[:, 0]
    goal = np.array([s.bands.goal[t][0] for t in range(k)])
    tot = np.array([s.tot[t][0] for t in range(k)])
    off = np.abs(tot / np.maximum(goal, 1e-300) - 1) > s.bands.tol[0]
    locked = np.asarray(s.problem.locked)
    cand = np.flatnonzero((w > heavy * goal.mean()) & (locked < 0) & off[s.labn])
    cand = cand[np.argsort(-w[cand], kind="stable")][:units]
    if not len(cand):
        return []
    m = s.g.matrix.tocoo()
    step = 1e-9 * max(float(w.max()), 1.0)
    plans = []
    paths = []
    for h in range(k):
        src = np.flatnonzero(locked == h)
        if not len(src):
            paths.append(None)
            continue
        keep = ((locked[m.row] < 0) | (locked[m.row] == h)) & (
            (locked[m.col] < 0) | (locked[m.col] == h)
        )
        g = sparse.csr_matrix((w[m.col[keep]] + step, (m.row[keep], m.col[keep])), shape=m.shape)
        d, pred, _ = dijkstra(g, indices=src, min_only=True, return_predecessors=True)
        paths.append((d + w[src].min(), pred))
    csr = s.g.matrix.tocsr()
    hang = None
    for u in cand.tolist():
        t = int(s.labn[u])
        cost = np.array([p[0][u] / max(goal[h], 1e-300) if p is not None else np.inf
                         for h, p in enumerate(paths)])  # fmt: skip
        held = tot[t] / max(goal[t], 1e-300)
        takers = [h for h in np.argsort(cost, kind="stable").tolist() if h != t][:per_unit]
        if np.isfinite(cost[t]) and cost[t] < _held_path(s, t, u) / max(goal[t], 1e-300) * (
            1 - 1e-9
        ):
            takers.append(t)
        for h in takers:
            if not np.isfinite(cost[h]) or cost[h] >= held:
                continue
            for strip, hung in ((False, False), (True, False), (True, True)):
                if h == t and not strip:
                    continue
                new = s.labels()
                pred = paths[h][1]
                if strip:
                    new[(new == h) & (locked < 0)] = -1
                    _dissolve(csr, new, h)
                if hung:
                    if hang is None:
                        hang = hanging(csr, s.labn, locked, w)
                    pred = hung_paths(s, h, hang)[1]
                v = u
                while v >= 0 and locked[v] != h:
                    new[v] = h
                    v = int(pred[v])
                new = settle_locks(s.g, new, w, k, locked)
                if not any(np.array_equal(new, p) for p in plans):
                    plans.append(new)
    return plans


def hung_paths(s: SearchState, h: int, hang: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distances and predecessors of the lightest paths from territory h's locked units
    passing no other territory's locked units, each unit entered costing its weight plus
    what its removal cuts off from its territory's locked units (:func:`hanging`; h's own
    units go anyway)."""
    w = s.W[:, 0]
    locked = np.asarray(s.problem.locked)
    m = s.g.matrix.tocoo()
    keep = ((locked[m.row] < 0) | (locked[m.row] == h)) & (
        (locked[m.col] < 0) | (locked[m.col] == h)
    )
    cost = w + np.where(s.labn == h, 0.0, hang) + 1e-9 * max(float(w.max()), 1.0)
    g = sparse.csr_matrix((cost[m.col[keep]], (m.row[keep], m.col[keep])), shape=m.shape)
    d, pred, _ = dijkstra(g, indices=np.flatnonzero(locked == h), min_only=True,
                          return_predecessors=True)  # fmt: skip
    return d, pred


def _held_path(s: SearchState, t: int, u: int) -> float:
    """The lightest path from territory t's locked units to its unit u through its own
    units (both ends counted, as :func:`transplants` counts paths)."""
    idx = np.flatnonzero(s.labn == t)
    w = s.W[idx, 0]
    m = s.g.matrix[idx][:, idx].tocoo()
    step = 1e-9 * max(float(s.W[:, 0].max()), 1.0)
    g = sparse.csr_matrix((w[m.col] + step, (m.row, m.col)), shape=(len(idx), len(idx)))
    src = np.flatnonzero(s.lockn[idx])
    d = dijkstra(g, indices=src, min_only=True)
    return float(d[np.searchsorted(idx, u)] + w[src].min())


def relocations(s: SearchState, most: int = RELOCATE, far: int = RELOCATE_FAR) -> list[np.ndarray]:
    """Plans that move a short territory next to the surplus: its units (all but the
    locked ones) go to its neighbours, it takes the lightest path from its locked units
    to the nearest unit of a territory over its band (passing no other territory's
    locked units; the pieces the path cuts off join their neighbours,
    :func:`~patchmap.partition.contiguity.settle_locks`), and that territory hands it
    about its goal along their new boundary (:func:`give`).

    With rep homes crowded in one metro and surplus elsewhere, the territories reaching
    out of the metro (each holding a corridor from its home) carry the surplus in; when
    too few reach out, every one of them and every territory beyond is over, the metro's
    are all short, and boundary moves, flows and re-splits only even out each side: one
    more territory must reach out, a change no step of those makes. Each unit the path
    enters costs its weight plus what its removal cuts off from its territory's locked
    units (:func:`hanging`): the path goes around another territory's corridor instead of
    cutting it, which would only swap which territory reaches out. Tried for the
    ``most`` short territories whose path is lightest against their goal, and only when
    the plan is off on both sides alike (the shortest territory and the most over within
    :data:`RELOCATE_SIDES` of each other in size): one territory far over with the rest
    near their goals is a heavy unit's doing (:func:`transplants`), not a divide.

    Besides, for each of the ``far`` territories most over their band, the short
    territory with the lightest such path to the half of it furthest from its home
    (:func:`far_side`) lands there: the nearest over-band unit to a metro's short
    territories is often one of a territory reaching out of the same metro, whose
    surplus lies at its far end."""
    k, w = s.k, s.W[:, 0]
    goal = np.array([s.bands.goal[t][0] for t in range(k)])
    tot = np.array([s.tot[t][0] for t in range(k)])
    dev = tot / np.maximum(goal, 1e-300) - 1
    tol = s.bands.tol[0]
    locked = np.asarray(s.problem.locked)
    landing = np.flatnonzero((dev[s.labn] > tol) & (locked < 0))
    if not len(landing) or min(-dev.min(), dev.max()) < RELOCATE_SIDES * np.abs(dev).max():
        return []
    csr = s.g.matrix.tocsr()
    hang = hanging(csr, s.labn, locked, w)
    cands = []
    paths: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for t in np.flatnonzero(dev < -tol).tolist():
        src = np.flatnonzero(locked == t)
        if not len(src):
            continue
        d, pred = hung_paths(s, t, hang)
        paths[t] = (d, pred)
        u = int(landing[np.argmin(d[landing])])
        if np.isfinite(d[u]):
            cands.append((float(d[u]) / max(goal[t], 1e-300), t, u, pred))
    cands.sort(key=lambda c: (c[0], c[1]))
    picked = cands[:most]
    if far > 0 and paths:
        seen = {(t, u) for _, t, u, _ in picked}
        for o in np.argsort(-dev, kind="stable").tolist():
            if dev[o] <= tol or len(picked) >= most + far:
                break
            side = far_side(s, o)
            if not len(side):
                continue
            best = min(
                ((float(d[side].min()) / max(goal[t], 1e-300), t) for t, (d, _) in paths.items()
                 if np.isfinite(d[side]).any()), default=None,
            )  # fmt: skip
            if best is None:
                continue
            t = best[1]
            d, pred = paths[t]
            u = int(side[np.argmin(d[side])])
            if (t, u) not in seen:
                seen.add((t, u))
                picked.append((best[0], t, u, pred))
    plans = []
    for _, t, u, pred in picked:
        new = s.labels()
        new[(new == t) & (locked < 0)] = -1
        _dissolve(csr, new, t)
        v = u
        while v >= 0 and locked[v] != t:
            new[v] = t
            v = int(pred[v])
        new = settle_locks(s.g, new, w, k, locked)
        o = int(s.labn[u]) if new[u] == t else -1
        st = SearchState(s.problem, new, s.rng)
        if o >= 0 and o != t:
            give(st, o, t, goal[t] - st.tot[t][0])
        plans.append(st.labels())
    return plans


def far_side(s: SearchState, o: int) -> np.ndarray:
    """Territory o's unlocked units beyond the distance from its locked units (along its
    own units, straight-line lengths) within which half its weight lies."""
    idx = np.flatnonzero(s.labn == o)
    lk = s.lockn[idx]
    if not lk.any() or lk.all():
        return np.zeros(0, dtype=np.int64)
    m = s.g.matrix[idx][:, idx].tocoo()
    length = np.hypot(*(s.xy[idx][m.row] - s.xy[idx][m.col]).T) + 1e-6
    g = sparse.csr_matrix((length, (m.row, m.col)), shape=(len(idx), len(idx)))
    d = dijkstra(g, indices=np.flatnonzero(lk), min_only=True)
    w = s.W[idx, 0]
    order = np.argsort(d, kind="stable")
    half = int(np.searchsorted(np.cumsum(w[order]), 0.5 * w.sum()))
    out = np.zeros(len(idx), dtype=bool)
    out[order[half + 1 :]] = True
    return idx[out & ~lk]


def hanging(
    csr: sparse.csr_matrix, lab: np.ndarray, locked: np.ndarray, w: np.ndarray
) -> np.ndarray:
    """What each unit's removal alone cuts off from its territory's locked units (the
    weight of the pieces left without them; 0 for a unit whose territory has none, and
    for locked units): a depth-first search of each territory from its locked units
    (Tarjan's cut vertices, the locked units together as the root)."""
    n = len(lab)
    out = np.zeros(n)
    ip, ix = csr.indptr, csr.indices
    disc = np.full(n, -1, dtype=np.int64)
    low = np.zeros(n, dtype=np.int64)
    sub = np.zeros(n)
    clock = 0
    for t in np.unique(lab[locked >= 0]).tolist():
        roots = np.flatnonzero((lab == t) & (locked >= 0)).tolist()
        disc[roots] = clock  # one root: a piece is cut off only when no locked unit holds it
        low[roots] = clock
        clock += 1
        rootset = set(roots)
        for r in roots:
            sub[r] = w[r]
            stack = [(r, -1, iter(ix[ip[r] : ip[r + 1]].tolist()))]
            while stack:
                u, parent, it = stack[-1]
                for v in it:
                    if lab[v] != t:
                        continue
                    if disc[v] < 0:
                        disc[v] = low[v] = clock
                        clock += 1
                        sub[v] = w[v]
                        stack.append((v, u, iter(ix[ip[v] : ip[v + 1]].tolist())))
                        break
                    if v != parent:
                        low[u] = min(low[u], disc[v])
                else:
                    stack.pop()
                    if stack:
                        p = stack[-1][0]
                        low[p] = min(low[p], low[u])
                        sub[p] += sub[u]
                        if low[u] >= disc[p] and p not in rootset:
                            out[p] += sub[u]
    return out


def _dissolve(csr: sparse.csr_matrix, lab: np.ndarray, t: int) -> None:
    """Units labelled -1 join a neighbouring territory other than t (the one most of
    their labelled neighbours are in, lowest first on a tie), nearest ones first; any
    left with no such neighbour go back to t."""
    while True:
        todo = np.flatnonzero(lab == -1)
        if not len(todo):
            return
        got = {}
        for x in todo.tolist():
            nb = lab[csr.indices[csr.indptr[x] : csr.indptr[x + 1]]]
            nb = nb[(nb >= 0) & (nb != t)]
            if len(nb):
                got[x] = int(np.argmax(np.bincount(nb)))
        if not got:
            lab[todo] = t
            return
        for x, q in got.items():
            lab[x] = q
