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
territory; the schedule (:func:`~patchmap.partition.schedule.multilevel`) solves the
coarsest level with the full search, then projects the plan back level by level
(:func:`project`) and refines it on each. Locked units are never merged, so a lock
stays a lock on every level. Coarse levels hold the primary column to a wider band
(:func:`level_tolerance`): a node can weigh more than the final band, and the finer
levels tighten it.
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
    "match",
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
    cur = problem
    count = np.ones(problem.graph.n)
    levels: list[Level] = []
    while cur.graph.n > target:
        weight = cur.weights[:, 0]
        size = 0.5 * weight / mean_w + 0.5 * count + 1e-9
        mate = match(cur.graph, weight, size, cap, free, rng, labels)
        n = cur.graph.n
        rep = np.where(mate >= 0, np.minimum(np.arange(n), mate), np.arange(n))
        _, parent = np.unique(rep, return_inverse=True)
        nc = int(parent.max()) + 1
        if nc > MIN_SHRINK * n:
            break
        cur = contract(cur, parent, level_tolerance(problem, nc) if band else problem.tol)
        count = np.bincount(parent, weights=count, minlength=nc)
        if labels is not None:
            labels = np.bincount(parent, weights=labels, minlength=nc) / np.bincount(parent)
            labels = np.rint(labels).astype(np.int64)
        free = np.asarray(cur.locked) < 0
        levels.append(Level(cur, parent))
    return levels


def project(lab: np.ndarray, level: Level) -> np.ndarray:
    """A coarse labelling carried to the level below (each node takes its parent's label)."""
    return np.asarray(lab)[level.parent]
