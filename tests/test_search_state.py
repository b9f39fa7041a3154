"""The search state's incremental cut structure, the flat block trees and the removal
checks' memo, each against a count from scratch or a plain search over the neighbour lists."""

from collections import deque

import numpy as np
import pytest
from scipy import sparse

from patchmap.partition import balance as balance_module
from patchmap.partition import contiguity
from patchmap.partition.balance import balance, move_block
from patchmap.partition.contiguity import can_remove, removable_blocks, subtree_nodes
from patchmap.partition.problem import Graph, Problem
from patchmap.partition.state import SearchState


def grid(rows: int, cols: int, k: int, weighted: bool = False, seed: int = 0) -> SearchState:
    """A rows x cols grid (with one diagonal per cell, so rings are not always local),
    k vertical strips, random weights; ``weighted`` gives random edge multiplicities."""
    rng = np.random.default_rng(seed)
    n = rows * cols
    idx = np.arange(n).reshape(rows, cols)
    pairs = [
        (idx[:, :-1].ravel(), idx[:, 1:].ravel()),
        (idx[:-1, :].ravel(), idx[1:, :].ravel()),
        (idx[:-1, :-1].ravel(), idx[1:, 1:].ravel()),
    ]
    i = np.concatenate([a for a, _ in pairs])
    j = np.concatenate([b for _, b in pairs])
    w = rng.integers(1, 4, len(i)).astype(float) if weighted else np.ones(len(i))
    m = sparse.coo_matrix((np.r_[w, w], (np.r_[i, j], np.r_[j, i])), shape=(n, n)).tocsr()
    xy = np.stack([idx % cols, idx // cols], axis=-1).reshape(n, 2).astype(float)
    weights = rng.uniform(1, 3, (n, 2))
    problem = Problem(
        Graph(m, weighted=weighted), weights, xy, np.ones(n), [1 / k] * k, [0.05, 0.1],
        np.full(n, -1), 0.5,
    )  # fmt: skip
    lab = np.minimum((idx % cols) * k // cols, k - 1).ravel()
    return SearchState(problem, lab, rng)


def from_scratch(s: SearchState):
    lab = s.labels()
    a, b = lab[s.g.ei], lab[s.g.ej]
    cut = a != b
    bnd = np.unique(np.r_[s.g.ei[cut], s.g.ej[cut]])
    adj = [set() for _ in range(s.k)]
    shared = {}
    for x, y in zip(a[cut].tolist(), b[cut].tolist(), strict=True):
        adj[x].add(y)
        adj[y].add(x)
        key = (min(x, y), max(x, y))
        shared[key] = shared.get(key, 0) + 1
    touching = {
        (p, q): [u for u in range(s.g.n) if lab[u] == p and any(lab[v] == q for v in s.nbrs[u])]
        for p in range(s.k)
        for q in adj[p]
    }
    return int(cut.sum()), bnd, adj, shared, touching


def random_moves(
    s: SearchState, rng: np.random.Generator, count: int, contiguous: bool = False
) -> None:
    for _ in range(count):
        b = s.boundary()
        u = int(rng.choice(b))
        p = s.lab[u]
        others = sorted({s.lab[v] for v in s.nbrs[u]} - {p})
        if s.cnt[p] > 1 and (not contiguous or can_remove(s, u, p)):
            s.move(u, p, others[int(rng.integers(len(others)))])


@pytest.mark.parametrize("weighted", [False, True])
def test_the_cut_structure_follows_moves_and_undos(weighted):
    s = grid(14, 18, 5, weighted=weighted)
    rng = np.random.default_rng(3)
    for rnd in range(12):
        if rnd % 3 == 0:
            s.begin()
        random_moves(s, rng, 15)
        if rnd % 3 == 1:
            s.undo()
        if rnd == 7:
            s.load(s.labels())
        cut, bnd, adj, shared, touching = from_scratch(s)
        assert s.cut_edges() == cut
        assert np.array_equal(s.boundary(), bnd)
        assert s.territory_graph() == adj
        for p in range(s.k):
            for q in range(s.k):
                if p != q:
                    key = (min(p, q), max(p, q))
                    assert s.shared_edges(p, q) == shared.get(key, 0)
                    assert s.boundary_of(p, q) == touching.get((p, q), [])


def plain_blocks(s: SearchState, p: int, q: int, cols: list[int]):
    """removable_blocks by a plain breadth-first search over the neighbour lists."""
    edge = s.boundary_of(p, q)
    members = np.flatnonzero(s.labn == p)
    ex = np.mean([s.x[u] for u in edge])
    ey = np.mean([s.y[u] for u in edge])
    d = (s.xy[members, 0] - ex) ** 2 + (s.xy[members, 1] - ey) ** 2
    root = int(members[int(np.argmax(d))])
    order, pred = [root], {root: -1}
    queue = deque([root])
    while queue:
        x = queue.popleft()
        for y in s.nbrs[x]:
            if y not in pred and s.lab[y] == p:
                pred[y] = x
                order.append(y)
                queue.append(y)
    children: dict[int, list[int]] = {}
    for x in order[1:]:
        children.setdefault(pred[x], []).append(x)

    def sub(r):
        nodes = [r]
        for x in nodes:
            nodes.extend(children.get(x, ()))
        return nodes

    roots = [x for x in order[1:] if set(sub(x)) & set(edge)]
    return roots, {r: sub(r) for r in roots}


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("lists", [True, False])
def test_blocks_are_the_subtrees_of_the_breadth_first_tree(weighted, lists, monkeypatch):
    if not lists:  # every territory's tree by its own graph and scipy's search
        monkeypatch.setattr(contiguity, "SMALL_TERRITORY", 0)
    s = grid(12, 16, 4, weighted=weighted, seed=1)
    random_moves(s, np.random.default_rng(5), 60, contiguous=True)
    checked = 0
    for p in range(s.k):
        for q in sorted(s.territory_graph()[p]):
            got = removable_blocks(s, p, q, [0, 1])
            if got is None:
                continue
            roots, w, tree = got
            want_roots, want_nodes = plain_blocks(s, p, q, [0, 1])
            assert roots == want_roots
            for r, wr in zip(roots, w, strict=True):
                nodes = subtree_nodes(r, tree)
                assert nodes == want_nodes[r]
                assert np.allclose(wr, s.W[nodes].sum(axis=0))
                rest = [u for u in range(s.g.n) if s.lab[u] == p and u not in set(nodes)]
                sub = s.g.matrix[rest][:, rest]
                assert sparse.csgraph.connected_components(sub)[0] == 1
            checked += 1
    assert checked >= 4


@pytest.mark.parametrize("small_block", [200, 0])
def test_a_block_move_cuts_what_it_counted(small_block, monkeypatch):
    monkeypatch.setattr(balance_module, "SMALL_BLOCK", small_block)
    s = grid(12, 16, 4, seed=2)
    s.cut_edges()
    amount = 6 * float(np.mean(s.W[:, 0]))
    assert move_block(s, 1, 2, amount, 0, window=0.5 * amount)
    cut, bnd, adj, _, _ = from_scratch(s)
    assert (s.cut_edges(), s.territory_graph()) == (cut, adj)
    assert np.array_equal(s.boundary(), bnd)


def ring_state() -> tuple[SearchState, int, int]:
    """Territory 0 a ring of 8 units around one unit of territory 1 in a 3 x 3 grid
    without diagonals, plus a column of territory 1: a ring unit's two neighbours in the
    ring do not touch, so the check searches around the ring."""
    rows, cols = 3, 4
    n = rows * cols
    idx = np.arange(n).reshape(rows, cols)
    i = np.r_[idx[:, :-1].ravel(), idx[:-1, :].ravel()]
    j = np.r_[idx[:, 1:].ravel(), idx[1:, :].ravel()]
    m = sparse.coo_matrix((np.ones(2 * len(i)), (np.r_[i, j], np.r_[j, i])), shape=(n, n))
    xy = np.stack([idx % cols, idx // cols], axis=-1).reshape(n, 2).astype(float)
    problem = Problem(
        Graph(m.tocsr()), np.ones((n, 1)), xy, np.ones(n), [0.5, 0.5], [0.5], np.full(n, -1), 0.5
    )
    lab = np.zeros(n, dtype=np.int64)
    lab[idx[1, 1]] = 1
    lab[idx[:, 3]] = 1
    return SearchState(problem, lab, np.random.default_rng(0)), int(idx[0, 1]), int(idx[2, 1])


def test_the_removal_memo_holds_only_for_the_labels_it_was_found_on():
    s, u, w = ring_state()
    assert can_remove(s, u, 0)  # around the ring
    s.begin()
    s.move(w, 0, 1)  # the ring opens: u now joins the two ends
    assert not can_remove(s, u, 0)
    s.undo()  # the ring again, and its answer
    assert can_remove(s, u, 0)
    s.move(w, 0, 1)
    assert not can_remove(s, u, 0)
    s.move(w, 1, 0)  # the same labels by another way: searched again, same answer
    assert can_remove(s, u, 0)


def test_balance_gives_the_same_plan_with_the_tallies_built_or_not():
    a = grid(16, 20, 6, seed=4)
    b = grid(16, 20, 6, seed=4)
    b.cut_edges(), b.boundary_of(0, 1)  # tallies and boundary sets built before the moves
    balance(a, 0.5)
    balance(b, 0.5)
    assert np.array_equal(a.labels(), b.labels())
    assert a.cut_edges() == from_scratch(a)[0]
