"""Multilevel coarsening for large maps, in the style of KaHIP and METIS.

A map of tens of thousands of units is shrunk level by level: each level matches pairs
of neighbouring nodes (:func:`match`: a heavy-edge handshake matching, rated by
``w(u, v)^2 / (size(u) size(v))``, KaHIP's *expansion\\*2*, so nodes sharing much
boundary for their size merge first and coarse nodes stay compact) and contracts them
(:func:`contract`): node weights, areas and area-weighted centroids add up, and the
coarse edge between two nodes weighs the number of fine edges between them (a
:class:`~patchmap.partition.problem.Graph` with ``weighted`` edges). A coarse plan
therefore cuts exactly as many fine edges as the fine plan it stands for, and a coarse
territory that is connected is connected on the fine map (every coarse node is a
connected set of units).

:func:`coarsen` builds the levels down to about :data:`NODES_PER_TERRITORY` nodes per
territory; the schedule (:func:`~patchmap.partition.multilevel.multilevel`) solves the
coarsest level with the full search, then projects the plan back level by level
(:func:`project`) and refines it on each. Locked units are never merged, so a lock
stays a lock on every level. Coarse levels hold the primary column to a wider band
(:func:`level_tolerance`): a node can weigh more than the final band, and the finer
levels tighten it. A pair is left apart when its merged node would leave no plan within
the band (:func:`neck_need`: what hangs off it through necks such as island bridges
weighs more than one territory can take), so every level keeps a plan the map has.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import sparse

from patchmap.partition.problem import Graph, Problem

__all__ = [
    "COARSEN_MIN_UNITS",
    "NODES_PER_TERRITORY",
    "Level",
    "coarsen",
    "contract",
    "level_tolerance",
    "least_through",
    "match",
    "neck_need",
    "project",
]

COARSEN_MIN_UNITS = 10_000  # maps above this many units are solved multilevel
NODES_PER_TERRITORY = 30  # the coarsest level has about this many nodes per territory
MIN_NODES = 500  # ... and at least this many
MAX_SHARE = 1 / 20  # a coarse node weighs at most this share of the lightest territory
ROUNDS = 6  # handshake rounds of one matching
MIN_SHRINK = 0.92  # coarsening stops when a level keeps more than this share of nodes
NODE_BAND = 1.0  # a level's primary band: at least this many mean nodes' weight


@dataclass
class Level:
    """One coarse level: its ``problem`` and ``parent`` (the coarse node of each node of
    the level below, the finer one)."""

    problem: Problem
    parent: np.ndarray


def match(
    graph: Graph, weight: np.ndarray, size: np.ndarray, cap: float, free: np.ndarray,
    rng: np.random.Generator, labels: np.ndarray | None = None,
) -> np.ndarray:  # fmt: skip
    """Mate of each node (-1 unmatched) by handshake matching on ``graph``'s edges.

    An edge is rated ``w^2 / (size_u size_v)`` (``w`` its weight, the number of fine
    edges it stands for); in each round every node picks its best-rated neighbour still
    unmatched, and two nodes that pick each other are matched. Pairs whose ``weight``
    would exceed ``cap`` and nodes not ``free`` (locked) are never matched. Ties break at
    random (``rng``), so the matching is deterministic for a seed. With ``labels``
    only nodes of the same territory are matched (a V-cycle keeps its plan).
    """
    m = sparse.triu(graph.matrix, k=1).tocoo()
    r = np.r_[m.row, m.col].astype(np.int64)
    c = np.r_[m.col, m.row].astype(np.int64)
    w = np.r_[m.data, m.data].astype(float)
    ok = free[r] & free[c] & (weight[r] + weight[c] <= cap)
    if labels is not None:
        ok &= labels[r] == labels[c]
    r, c, w = r[ok], c[ok], w[ok]
    noise = rng.random(len(r) // 2)
    rating = w * w / (size[r] * size[c]) * (1.0 + 1e-6 * np.r_[noise, noise])
    mate = np.full(graph.n, -1, dtype=np.int64)
    for _ in range(ROUNDS):
        live = (mate[r] < 0) & (mate[c] < 0)
        r, c, rating = r[live], c[live], rating[live]
        if not len(r):
            break
        order = np.lexsort((-rating, r))
        head = order[np.r_[True, r[order][1:] != r[order][:-1]]]
        best = np.full(graph.n, -1, dtype=np.int64)
        best[r[head]] = c[head]
        u = np.flatnonzero(best >= 0)
        mutual = u[best[best[u]] == u]
        if not len(mutual):
            break
        mate[mutual] = best[mutual]
    return mate


def least_through(x: np.ndarray, unit: float, tol: float) -> np.ndarray:
    """Least weight of a side weighing ``x`` that must go to the territory of its cut
    vertex: the side less as many territories of ``unit`` (each within ``tol`` of it)
    as it can hold, or all of it when it holds none."""
    y = np.asarray(x, dtype=float) / unit
    m = np.floor(y / (1.0 - tol) + 1e-12)
    return np.maximum(0.0, y - m * (1.0 + tol)) * unit


def neck_need(graph: Graph, w: np.ndarray, unit: float, tol: float) -> np.ndarray | None:
    """Per node, the least weight its territory must take up from the sides hanging off
    it (None when no node has any): a side of a cut vertex u (a component of the graph
    without u) that cannot be split into whole territories of about ``unit`` (within
    ``tol``) must give u's territory at least :func:`least_through` of its weight, and
    only one territory holds u. A node whose need and weight exceed a territory leaves
    no plan within the band. By an iterative Hopcroft-Tarjan depth-first search (a child
    c of u whose subtree reaches nothing above u is a side of u)."""
    A = graph.matrix
    n = graph.n
    ip, ix, wl = A.indptr.tolist(), A.indices.tolist(), np.asarray(w, dtype=float).tolist()
    disc, low, par = [-1] * n, [0] * n, [-1] * n
    sub = [0.0] * n
    sep: list[list[int]] = [[] for _ in range(n)]
    root_of = [0] * n
    t = 0
    for root in range(n):
        if disc[root] >= 0:
            continue
        disc[root] = low[root] = t
        root_of[root] = root
        t += 1
        stack = [(root, ip[root])]
        while stack:
            u, i = stack[-1]
            if i < ip[u + 1]:
                stack[-1] = (u, i + 1)
                v = ix[i]
                if disc[v] < 0:
                    par[v] = u
                    root_of[v] = root
                    disc[v] = low[v] = t
                    t += 1
                    stack.append((v, ip[v]))
                elif v != par[u] and disc[v] < low[u]:
                    low[u] = disc[v]
                continue
            stack.pop()
            sub[u] += wl[u]
            p = par[u]
            if p >= 0:
                sub[p] += sub[u]
                if low[u] < low[p]:
                    low[p] = low[u]
                if low[u] >= disc[p]:
                    sep[p].append(u)
    owner, side = [], []
    for u in range(n):
        cut = sep[u]
        if not cut or (par[u] < 0 and len(cut) < 2):
            continue  # not a cut vertex
        for c in cut:
            owner.append(u)
            side.append(sub[c])
        if par[u] >= 0:  # the side towards the search's root
            owner.append(u)
            side.append(sub[root_of[u]] - wl[u] - sum(sub[c] for c in cut))
    if not owner:
        return None
    need = np.bincount(
        np.asarray(owner, dtype=np.int64),
        weights=least_through(np.asarray(side), unit, tol),
        minlength=n,
    )
    return need if (need > 0).any() else None


def contract(problem: Problem, parent: np.ndarray, tol: list[float]) -> Problem:
    """The coarse problem whose node ``parent[u]`` holds every node u of ``problem``:
    weights and areas summed, centroids area-weighted, edge weights the number of fine
    edges between two nodes, locks kept (locked nodes are never merged), bands ``tol``."""
    n = problem.graph.n
    nc = int(parent.max()) + 1
    P = sparse.csr_matrix((np.ones(n), (np.arange(n), parent)), shape=(n, nc))
    A = problem.graph.matrix
    C = (P.T @ A @ P).tocsr()
    C.setdiag(0)
    C.eliminate_zeros()
    W = np.asarray(P.T @ problem.weights)
    area = np.bincount(parent, weights=problem.area, minlength=nc)
    a = np.maximum(problem.area, 1e-9)
    sa = np.bincount(parent, weights=a, minlength=nc)
    xy = np.column_stack(
        [np.bincount(parent, weights=a * problem.xy[:, d], minlength=nc) / sa for d in range(2)]
    )
    locked = np.full(nc, -1, dtype=np.int64)
    pinned = np.flatnonzero(np.asarray(problem.locked) >= 0)
    locked[parent[pinned]] = np.asarray(problem.locked)[pinned]
    return replace(
        problem, graph=Graph(C, weighted=True), weights=W, xy=xy, area=area, tol=list(tol),
        locked=locked,
    )  # fmt: skip


def level_tolerance(problem: Problem, n_nodes: int) -> list[float]:
    """Bands of a level of ``n_nodes`` nodes: the primary at least the mean node's
    share of the lightest territory (a coarse plan cannot be balanced finer than its
    nodes), the others as given."""
    lightest = float(np.min(problem.shares))
    mean_share = NODE_BAND / max(n_nodes, 1) / lightest
    return [max(problem.tol[0], mean_share)] + list(problem.tol[1:])


def coarsen(
    problem: Problem, rng: np.random.Generator, labels: np.ndarray | None = None,
    band: bool = True, target: int | None = None,
) -> list[Level]:  # fmt: skip
    """Levels from the first coarse one to the coarsest (empty when the map is small
    already or does not shrink): matching and contraction until about ``target`` nodes
    are left (by default :data:`NODES_PER_TERRITORY` per territory, at least
    :data:`MIN_NODES`). With ``labels`` (a plan) nodes merge only within a territory, so
    the plan carries to every level; ``band`` False keeps the problem's bands on every
    level."""
    if target is None:
        target = max(NODES_PER_TERRITORY * problem.k, MIN_NODES)
    w0 = problem.weights[:, 0]
    cap = MAX_SHARE * float(np.min(problem.shares)) * float(w0.sum())
    mean_w = max(float(w0.mean()), 1e-12)
    free = np.asarray(problem.locked) < 0
    unit = float(np.min(problem.shares)) * float(w0.sum())
    cur = problem
    count = np.ones(problem.graph.n)
    levels: list[Level] = []
    while cur.graph.n > target:
        weight = cur.weights[:, 0]
        size = 0.5 * weight / mean_w + 0.5 * count + 1e-9
        mate = match(cur.graph, weight, size, cap, free, rng, labels)
        step = _contract_matching(cur, mate, problem, band)
        if step is None:
            break
        parent, nxt = step
        if labels is None:  # a map to solve (a plan to carry is a plan of every level)
            tight = _tight(nxt, parent, unit, problem.tol[0])
            if tight is not None:
                mate[tight[parent]] = -1  # those pairs stay apart
                step = _contract_matching(cur, mate, problem, band)
                if step is None:
                    break
                parent, nxt = step
        nc = int(parent.max()) + 1
        cur = nxt
        count = np.bincount(parent, weights=count, minlength=nc)
        if labels is not None:
            labels = np.bincount(parent, weights=labels, minlength=nc) / np.bincount(parent)
            labels = np.rint(labels).astype(np.int64)
        free = np.asarray(cur.locked) < 0
        levels.append(Level(cur, parent))
    return levels


def _contract_matching(
    cur: Problem, mate: np.ndarray, problem: Problem, band: bool
) -> tuple[np.ndarray, Problem] | None:
    """The parents and coarse problem of a matching, or None when it shrinks ``cur`` too
    little (more than :data:`MIN_SHRINK` of its nodes left)."""
    parent = _parents(mate)
    nc = int(parent.max()) + 1
    if nc > MIN_SHRINK * cur.graph.n:
        return None
    tol = level_tolerance(problem, nc) if band else problem.tol
    return parent, contract(cur, parent, tol)


def _parents(mate: np.ndarray) -> np.ndarray:
    """Coarse node of every node of a matching (pairs share one, numbered in order)."""
    n = len(mate)
    rep = np.where(mate >= 0, np.minimum(np.arange(n), mate), np.arange(n))
    return np.unique(rep, return_inverse=True)[1]


def _tight(coarse: Problem, parent: np.ndarray, unit: float, tol: float) -> np.ndarray | None:
    """Mask of the merged nodes of ``coarse`` that leave no plan within the band: their
    weight and :func:`neck_need` exceed the lightest territory's lower bound. Merging
    two nodes joins what hangs off each (lower-48 H3 r7 cells at K=200: two towns of
    less than a territory each, joined by bridge edges to neighbouring units, came to
    hang off one node; 13 such nodes at the coarsest level, whose solve ended 18% off
    although the map itself has a plan). Only a merged node can become one: the sides
    of a node left alone keep their weights. None when there is none."""
    need = neck_need(coarse.graph, coarse.weights[:, 0], unit, tol)
    if need is None:
        return None
    merged = np.bincount(parent, minlength=coarse.graph.n) > 1
    tight = merged & (need + coarse.weights[:, 0] > (1.0 - tol) * unit)
    return tight if tight.any() else None


def project(lab: np.ndarray, level: Level) -> np.ndarray:
    """A coarse labelling carried to the level below (each node takes its parent's label)."""
    return np.asarray(lab)[level.parent]
