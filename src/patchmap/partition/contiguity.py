"""Contiguity: which units and blocks may leave a territory, and repairs of a labelling.

The search never breaks a territory: :func:`can_remove` asks whether a territory stays
connected without one unit (a short search around the unit, so a move costs
microseconds, not a graph pass), and :func:`removable_blocks` finds the blocks (subtrees
of a spanning tree) that can leave whole. A labelling built by other means is made
contiguous by :func:`repair` (strays rejoin the territory they touch most) and
:func:`settle_locks` (each territory's locked units joined into one piece first).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import breadth_first_order, connected_components

from patchmap.errors import LockError
from patchmap.units.adjacency import Adjacency, show_id

if TYPE_CHECKING:
    from patchmap.partition.problem import Graph
    from patchmap.partition.state import SearchState

__all__ = [
    "BFS_BUDGET",
    "SMALL_TERRITORY",
    "Blocks",
    "can_remove",
    "check_locks",
    "connect_locked",
    "is_connected",
    "locked_conflicts",
    "locked_whole",
    "removable_blocks",
    "repair",
    "settle_locks",
    "subtree_nodes",
]

BFS_BUDGET = 400  # units a contiguity check may visit before it declines the move
SMALL_TERRITORY = 1500  # up to this many units a block tree grows over the neighbour lists


def can_remove(s: SearchState, u: int, p: int) -> bool:
    """True when p stays connected without u (short BFS among u's p-neighbours)."""
    if s.cnt[p] <= 1 or s.locked[u]:
        return False
    lab = s.lab
    nbrs = s.nbrs
    same = [v for v in nbrs[u] if lab[v] == p]
    if len(same) <= 1:
        return len(same) == 1
    # local check first: same-territory neighbours linked among themselves (the usual
    # case on a planar map, where they form one arc around u)
    ring = set(same)
    reached = {same[0]}
    stack = [same[0]]
    while stack:
        x = stack.pop()
        for y in nbrs[x]:
            if y in ring and y not in reached:
                reached.add(y)
                stack.append(y)
    if len(reached) == len(ring):
        return True
    # the search's answer depends on the labels alone: a step that was undone leaves
    # them (and the state's version) as they were, and the answer found then holds
    memo = s.memo.get(u)
    if memo is not None and memo[0] == s.version and memo[1] == p:
        return memo[2]
    ok = _joined(nbrs, lab, u, p, same[0], ring - {same[0]})
    s.memo[u] = (s.version, p, ok)
    return ok


def _joined(nbrs, lab, u: int, p: int, start: int, targets: set[int]) -> bool:
    """True when a breadth-first search of p from ``start`` around u reaches every unit
    of ``targets`` within :data:`BFS_BUDGET` units visited."""
    seen = {u, start}
    queue = deque([start])
    budget = BFS_BUDGET
    while queue:
        x = queue.popleft()
        for y in nbrs[x]:
            if y not in seen and lab[y] == p:
                if y in targets:
                    targets.discard(y)
                    if not targets:
                        return True
                seen.add(y)
                queue.append(y)
        budget -= 1
        if budget <= 0:
            return False
    return False


def is_connected(s: SearchState, p: int) -> bool:
    """Full check that territory p is one (non-empty) piece."""
    lab, nbrs = s.lab, s.nbrs
    start = int(np.flatnonzero(s.labn == p)[0]) if s.cnt[p] else -1
    if start < 0:
        return False
    seen = {start}
    stack = [start]
    while stack:
        x = stack.pop()
        for y in nbrs[x]:
            if y not in seen and lab[y] == p:
                seen.add(y)
                stack.append(y)
    return len(seen) == s.cnt[p]


class Blocks:
    """A breadth-first spanning tree of one territory as flat arrays (see
    :func:`removable_blocks`): ``order`` its units in breadth-first order and, per
    position in it, ``parent`` (the position of the unit's tree parent, -1 at the root)
    and ``kids``/``first`` the children's positions in CSR form (the children of the
    unit at position i are ``kids[first[i]:first[i + 1]]``, in breadth-first order)."""

    def __init__(self, order: np.ndarray, parent: np.ndarray) -> None:
        self.order = order
        self.parent = parent
        by = np.argsort(parent[1:], kind="stable") + 1
        self.kids = by
        self.first = np.zeros(len(order) + 1, dtype=np.int64)
        np.cumsum(np.bincount(parent[1:], minlength=len(order)), out=self.first[1:])

    def subtree(self, i: int) -> np.ndarray:
        """Positions of the subtree at position ``i``, in breadth-first order."""
        kids, first = self.kids, self.first
        out = [np.array([i], dtype=np.int64)]
        level = out[0]
        while True:
            lens = first[level + 1] - first[level]
            total = int(lens.sum())
            if not total:
                break
            start = np.repeat(first[level] - np.cumsum(lens) + lens, lens)
            level = kids[start + np.arange(total)]
            out.append(level)
        return np.concatenate(out)


def removable_blocks(s: SearchState, p: int, q: int, cols: list[int]):
    """Blocks of p that can join q whole, as (roots, weights per column, tree).

    The blocks are the subtrees of a breadth-first spanning tree of p rooted far from
    q: cutting a subtree off leaves the rest of p connected, and a subtree holding a
    unit that touches q joins q in one piece. Subtree weights span every scale from a
    single unit to most of the territory. ``roots`` are units; the tree
    (:class:`Blocks`) gives each block's units (:func:`subtree_nodes`). None when p has
    no such block.
    """
    edge = s.boundary_of(p, q)
    if not edge:
        return None
    # root: the unit of p farthest from the shared edge (straight-line, a cheap proxy)
    members = np.flatnonzero(s.labn == p)
    ex = sum(s.x[u] for u in edge) / len(edge)
    ey = sum(s.y[u] for u in edge) / len(edge)
    d = (s.xy[members, 0] - ex) ** 2 + (s.xy[members, 1] - ey) ** 2
    # a locked unit (a rep's home) makes the best root: no block then contains it
    pinned = s.lockn[members]
    if pinned.any():
        d = np.where(pinned, d, -1.0)
    root = int(np.argmax(d))
    if s.cnt[p] <= SMALL_TERRITORY:
        order, parent, at = _tree_by_lists(s.nbrs, s.lab, p, int(members[root]))
        if len(order) < s.cnt[p]:
            return None
        tree = Blocks(np.array(order, dtype=np.int64), np.array(parent, dtype=np.int64))
        edge_at = [at[u] for u in edge]
    else:
        tree = _tree_by_csgraph(s, p, members, root)
        if tree is None:
            return None
        parent = tree.parent.tolist()
        at = np.empty(s.g.n, dtype=np.int64)
        at[tree.order] = np.arange(len(tree.order))
        edge_at = at[edge].tolist()
    # each parent adds its children's totals in reverse breadth-first order, so every
    # subtree total is complete before it is added on
    par = parent
    wsub = []
    for c in cols:
        w = s.W[tree.order, c].tolist()
        for i in range(len(par) - 1, 0, -1):
            w[par[i]] += w[i]
        wsub.append(w)
    touch = [False] * len(par)
    for i in edge_at:
        touch[i] = True
    blocked = s.lockn[tree.order].tolist()
    for i in range(len(par) - 1, 0, -1):
        if touch[i]:
            touch[par[i]] = True
        if blocked[i]:
            blocked[par[i]] = True
    touch = np.array(touch)
    blocked = np.array(blocked)
    wsub = np.array(wsub, dtype=float).T
    ok = np.flatnonzero(touch[1:] & ~blocked[1:]) + 1
    if not len(ok):
        return None
    return tree.order[ok].tolist(), wsub[ok], tree


def _tree_by_lists(nbrs, lab, p: int, root: int) -> tuple[list[int], list[int], dict[int, int]]:
    """Breadth-first order of p from ``root`` over the neighbour lists, each unit's
    parent position in it, and each unit's position (a small territory: the lists are
    faster than building its graph)."""
    order = [root]
    parent = [-1]
    at = {root: 0}
    i = 0
    while i < len(order):
        for y in nbrs[order[i]]:
            if y not in at and lab[y] == p:
                at[y] = len(order)
                order.append(y)
                parent.append(i)
        i += 1
    return order, parent, at


def _tree_by_csgraph(s: SearchState, p: int, members: np.ndarray, root: int) -> Blocks | None:
    """The same tree for a large territory: p's own graph (its members' neighbour lists
    in their order, so the search grows the same tree) searched by
    :func:`scipy.sparse.csgraph.breadth_first_order` from member ``root``. None when p is
    not connected."""
    ptr, ind = s.g.matrix.indptr, s.g.matrix.indices
    lens = ptr[members + 1] - ptr[members]
    start = np.repeat(ptr[members] - np.cumsum(lens) + lens, lens)
    nb = ind[start + np.arange(int(lens.sum()))]
    keep = s.labn[nb] == p
    loc = np.empty(s.g.n, dtype=np.int64)
    loc[members] = np.arange(len(members))
    local = loc[nb[keep]]
    owner = np.repeat(np.arange(len(members)), lens)[keep]
    row_ptr = np.zeros(len(members) + 1, dtype=np.int64)
    np.cumsum(np.bincount(owner, minlength=len(members)), out=row_ptr[1:])
    sub = sparse.csr_matrix(
        (np.ones(len(local)), local, row_ptr), shape=(len(members), len(members))
    )
    order, pred = breadth_first_order(sub, root, directed=True, return_predecessors=True)
    if len(order) < s.cnt[p]:
        return None
    pos = np.empty(len(members), dtype=np.int64)
    pos[order] = np.arange(len(order))
    parent = np.full(len(order), -1, dtype=np.int64)
    parent[1:] = pos[pred[order[1:]]]
    return Blocks(members[order], parent)


def subtree_nodes(root: int, tree: Blocks) -> list[int]:
    """The units of the block rooted at unit ``root`` (see :func:`removable_blocks`), in
    breadth-first order."""
    i = int(np.flatnonzero(tree.order == root)[0])
    return tree.order[tree.subtree(i)].tolist()


# ---------------------------------------------------------------------------------------------
# repairs of a whole labelling


def repair(graph: Graph, lab: np.ndarray, w: np.ndarray, k: int, locked: np.ndarray) -> np.ndarray:
    """Make every territory one piece: keep its heaviest piece, re-home the strays."""
    n = graph.n
    lab = lab.copy()
    ei, ej = graph.ei, graph.ej
    A = graph.matrix
    for _ in range(4):
        same = lab[ei] == lab[ej]
        sub = sparse.coo_matrix((np.ones(int(same.sum())), (ei[same], ej[same])), shape=(n, n))
        ncomp, comp = connected_components(sub, directed=False)
        cw = np.bincount(comp, weights=w + 1e-6 * (w.mean() + 1e-12), minlength=ncomp)
        cw += np.bincount(comp, weights=(locked >= 0) * 1e18, minlength=ncomp)
        clab = np.zeros(ncomp, dtype=np.int64)
        clab[comp] = lab
        order = np.lexsort((-cw, clab))
        keep = np.zeros(ncomp, dtype=bool)
        keep[order[np.r_[True, clab[order][1:] != clab[order][:-1]]]] = True
        if keep.all():
            break
        lab[~keep[comp] & (locked < 0)] = -1
        # stray units join the neighbouring territory they touch most, layer by layer
        while (lab < 0).any():
            todo = np.flatnonzero(lab < 0)
            done = np.flatnonzero(lab >= 0)
            onehot = sparse.csr_matrix((np.ones(len(done)), (done, lab[done])), shape=(n, k))
            counts = (A[todo] @ onehot).toarray()
            has = counts.max(axis=1) > 0
            if not has.any():
                lab[todo] = 0  # unreachable on a connected graph
                break
            lab[todo[has]] = counts[has].argmax(axis=1)
    # an empty territory takes a unit at the edge of the territory with most units
    for t in np.flatnonzero(np.bincount(lab, minlength=k) == 0).tolist():
        donor = int(np.argmax(np.bincount(lab, minlength=k)))
        members = np.flatnonzero((lab == donor) & (locked < 0))
        deg_in = np.array(
            [sum(1 for v in graph.nbrs[u] if lab[v] == donor) for u in members.tolist()]
        )
        lab[members[np.argmin(deg_in)]] = t
    return lab


def connect_locked(graph: Graph, lab: np.ndarray, locked: np.ndarray, k: int) -> np.ndarray:
    """Join each territory's locked units into one piece along shortest paths (in units)
    through units not locked elsewhere; the units on a path join that territory."""
    from scipy.sparse.csgraph import dijkstra

    pinned = locked >= 0
    lab = np.where(pinned, locked, lab)
    n = graph.n
    ei, ej = graph.ei, graph.ej
    same = lab[ei] == lab[ej]
    sub = sparse.coo_matrix((np.ones(int(same.sum())), (ei[same], ej[same])), shape=(n, n))
    _, comp = connected_components(sub, directed=False)
    pairs = np.unique(np.stack([locked[pinned], comp[pinned]], axis=1), axis=0)
    split = np.unique(pairs[:, 0])[
        np.bincount(pairs[:, 0], minlength=k)[np.unique(pairs[:, 0])] > 1
    ]
    for t in split.tolist():
        free = (locked < 0) | (locked == t)
        keep = free[ei] & free[ej]
        g = sparse.coo_matrix(
            (np.ones(2 * int(keep.sum())), (np.r_[ei[keep], ej[keep]], np.r_[ej[keep], ei[keep]])),
            shape=(n, n),
        ).tocsr()
        mine = pinned & (locked == t)
        pieces = np.unique(comp[mine])
        main = pieces[np.argmax([np.count_nonzero(mine & (comp == c)) for c in pieces])]
        body = np.flatnonzero((lab == t) & (comp == main))
        dist, pred, _ = dijkstra(
            g, indices=body, min_only=True, unweighted=True, return_predecessors=True
        )
        for c in pieces[pieces != main].tolist():
            ends = np.flatnonzero(mine & (comp == c))
            u = int(ends[np.argmin(dist[ends])])
            while u >= 0 and np.isfinite(dist[u]) and dist[u] > 0:
                lab[u] = t
                u = int(pred[u])
    return lab


def settle_locks(
    graph: Graph, lab: np.ndarray, w: np.ndarray, k: int, locked: np.ndarray, rounds: int = 3
) -> np.ndarray:
    """Pin locked units, join each territory's locked units and make every territory one
    piece (a path for one territory may cut another, so this runs a few rounds)."""
    if not (locked >= 0).any():
        return repair(graph, lab, w, k, locked)
    for _ in range(rounds):
        lab = repair(graph, connect_locked(graph, lab, locked, k), w, k, locked)
        if locked_whole(graph, lab, locked):
            break
    return lab


def locked_whole(graph: Graph, lab: np.ndarray, locked: np.ndarray) -> bool:
    """True when each territory's locked units lie in one connected piece of it."""
    n = graph.n
    ei, ej = graph.ei, graph.ej
    same = lab[ei] == lab[ej]
    sub = sparse.coo_matrix((np.ones(int(same.sum())), (ei[same], ej[same])), shape=(n, n))
    _, comp = connected_components(sub, directed=False)
    pinned = locked >= 0
    if (lab[pinned] != locked[pinned]).any():
        return False
    pairs = np.unique(np.stack([locked[pinned], comp[pinned]], axis=1), axis=0)
    return len(pairs) == len(np.unique(pairs[:, 0]))


def check_locks(adjacency: Adjacency, codes: np.ndarray, names: Sequence[str]) -> None:
    """Raise :class:`InputError` when a territory's locked units cannot be joined without
    passing through units locked to other territories (the plan could not be contiguous)."""
    bad = locked_conflicts(adjacency, codes)
    if bad:
        t, units = bad[0]
        more = f" ({len(bad)} territories in all)" if len(bad) > 1 else ""
        raise LockError(
            f"locked: units {', '.join(show_id(u) for u in units[:6])} of territory "
            f"{names[t]!r} cannot be joined without crossing units locked to other "
            f"territories{more}",
            units=units,
        )


def locked_conflicts(adjacency: Adjacency, codes: np.ndarray) -> list[tuple[int, list]]:
    """Territories whose locked units lie in separate pieces of the graph once the units
    locked to other territories are taken out: ``[(code, unit ids cut off), ...]``."""
    codes = np.asarray(codes)
    pinned = codes >= 0
    if not pinned.any():
        return []
    ids = np.asarray(adjacency.ids)
    coo = sparse.triu(adjacency.matrix, k=1).tocoo()
    ei, ej = coo.row, coo.col
    n = adjacency.n_units
    out = []
    for t in np.unique(codes[pinned]).tolist():
        mine = codes == t
        if mine.sum() < 2:
            continue
        free = (codes < 0) | mine
        keep = free[ei] & free[ej]
        g = sparse.coo_matrix((np.ones(int(keep.sum())), (ei[keep], ej[keep])), shape=(n, n))
        _, comp = connected_components(g, directed=False)
        pieces, counts = np.unique(comp[mine], return_counts=True)
        if len(pieces) > 1:
            main = pieces[np.argmax(counts)]
            out.append((t, ids[mine & (comp != main)].tolist()))
    return out
