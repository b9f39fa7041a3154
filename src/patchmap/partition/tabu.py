"""Tabu search inside the exact balance bands: the anytime part of the search.

:func:`pair_search` descends over compound moves: every single boundary move and every
pair of them (a swap between two territories, or a chain p -> q -> r), ranked by the
band violation after the move, then by cut edges. Pairs are what a tight band needs: one
move alone leaves the band, the pair lands back inside. The bands are the exact ones a
plan is judged by (every column's total within its tolerance of its goal). Sideways
steps (same violation, same cut) walk plateaus, with recently moved units tabu so the
walk does not cycle; at a local optimum the walk keeps it as its base when it is no
worse, and restarts from the base after a random kick of a few moves (iterated local
search). Every move keeps every territory connected; locked units never move.

Plans are ranked by :func:`rank`: band violation, then cut edges, then the primary's
largest deviation. The pair evaluation is vectorized (numpy arrays of moves x moves x
territories); the labels and tallies are the search state's flat lists, and every random
choice comes from generators seeded by ``seed``, so a run is deterministic for a seed
and a step count.
"""

from __future__ import annotations

import functools
import math
import random
import time
from collections.abc import Callable
from itertools import chain

import numpy as np

from patchmap.partition.contiguity import can_remove
from patchmap.partition.state import SearchState

__all__ = ["Bandwidth", "pair_search", "rank"]

SECONDARY = 1000.0  # a secondary column's violation weighs 1/SECONDARY of the primary's
FULL_K = 3  # up to this many territories, pairs are scored over every territory at once
TENURE_DIV = 3.0  # a moved unit stays put for sqrt(n) / TENURE_DIV steps (up to twice that)
Report = Callable[[tuple, int], None]


class Bandwidth:
    """Exact bands per territory and column: ``lo``/``hi`` totals, and ``scale`` (the
    band's half-width, which a violation is measured in; a secondary column's is
    :data:`SECONDARY` times wider, so the primary band comes first, as in
    :func:`~patchmap.partition.objective.score`)."""

    def __init__(self, s: SearchState, tol: list[float]) -> None:
        goal = s.bands.goal
        k, m = s.k, s.m
        self.lo = [[goal[t][j] * (1 - tol[j]) for j in range(m)] for t in range(k)]
        self.hi = [[goal[t][j] * (1 + tol[j]) for j in range(m)] for t in range(k)]
        self.scale = [
            [max(goal[t][j] * tol[j], 1e-12) * (1.0 if j == 0 else SECONDARY) for j in range(m)]
            for t in range(k)
        ]
        self.goal = goal

    def excess(self, t: int, j: int, x: float) -> float:
        """How far total x lies outside territory t's band for column j (in half-widths)."""
        if x > self.hi[t][j]:
            return (x - self.hi[t][j]) / self.scale[t][j]
        if x < self.lo[t][j]:
            return (self.lo[t][j] - x) / self.scale[t][j]
        return 0.0

    def violation(self, tot: list[list[float]]) -> float:
        """Sum of every territory's and column's excess (0 when the plan is inside)."""
        return sum(
            self.excess(t, j, tot[t][j]) for t in range(len(tot)) for j in range(len(tot[t]))
        )

    def max_deviation(self, tot: list[list[float]]) -> float:
        """The primary column's largest relative deviation from its goal."""
        return max(abs(tot[t][0] / self.goal[t][0] - 1) for t in range(len(tot)) if self.goal[t][0])


def rank(violation: float, cut: int, max_dev: float) -> tuple:
    """Plans compared: inside the bands first, then fewest cut edges, then tightest."""
    return (round(violation, 9), cut, round(max_dev, 9))


def _kick(s: SearchState, rnd: random.Random, moves: int) -> None:
    """Random boundary moves that keep every territory connected (balance ignored)."""
    lab, nbrs = s.lab, s.nbrs
    bnd = s.boundary().tolist()
    for _ in range(moves * 4):
        if moves <= 0 or not bnd:
            break
        u = bnd[rnd.randrange(len(bnd))]
        if s.locked[u]:
            continue
        p = lab[u]
        others = sorted({lab[v] for v in nbrs[u]} - {p})
        if not others or not can_remove(s, u, p):
            continue
        s.move(u, p, others[rnd.randrange(len(others))])
        moves -= 1


FLAT_LIMIT = 8  # sideways steps in a row before a plateau counts as a local optimum
RECOM_SHARE = 0.5  # share of kicks that merge and re-split two territories (ReCom)
PAIR_LIMIT = 220  # most single moves combined into pairs per step


def pair_search(
    s: SearchState,
    tol: list[float],
    steps: int,
    *,
    deadline: float | None = None,
    seed: int = 0,
    report: Report | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[tuple, np.ndarray]:
    """Tabu search over compound moves: every single boundary move and every pair of
    them (a swap, or a chain p -> q -> r), ranked by band violation after the move, then
    cut edges. Pairs are what a tight band needs: one move leaves the band, the other
    brings it back. Each step takes the best pair whose units are not tabu (or that
    gives the best plan so far); a stalled walk restarts from the best plan, kicked.
    ``deadline`` is a reading of ``clock`` (wall time unless told otherwise)."""
    rnd = random.Random(seed)
    gen = np.random.default_rng(seed)
    bw = Bandwidth(s, tol)
    k, n = s.k, s.g.n
    lo, hi = np.array(bw.lo), np.array(bw.hi)
    scale = np.array(bw.scale)
    nbrs, locked = s.nbrs, s.locked
    Wn = np.asarray(s.W, dtype=float)
    bnd = set(s.boundary().tolist())
    cut = s.cut_edges()

    def violation(T: np.ndarray) -> np.ndarray:
        return (np.maximum(T - hi, 0) + np.maximum(lo - T, 0)) / scale

    viol = float(violation(np.array(s.tot)).sum())
    best = rank(viol, cut, bw.max_deviation(s.tot))
    best_lab = s.labels()
    tabu = [0] * n
    # each boundary unit's moves (territories, cut-edge change), kept until the unit or a
    # neighbour changes territory: a step rebuilds only those around its moved units
    moves: dict[int, list] = {}
    # whether a unit may leave its territory, kept until that territory changes (its
    # version counts the moves in and out of it)
    version = [0] * k
    leaves: dict[int, tuple[int, int, bool]] = {}

    def may_leave(u: int, p: int) -> bool:
        hit = leaves.get(u)
        if hit is not None and hit[0] == p and hit[1] == version[p]:
            return hit[2]
        ok = can_remove(s, u, p)
        leaves[u] = (p, version[p], ok)
        return ok

    base = max(2, int(round(math.sqrt(n) / TENURE_DIV)))
    base_key, base_lab = best, best_lab
    kicks, flat = 0, 0
    max_kicks = steps  # each descent ends in a kick; ``steps`` bounds moves and kicks alike
    for it in range(1, steps + 1):
        if deadline is not None and clock() > deadline:
            break
        lab = s.lab
        # every boundary unit's moves (flat, four numbers each), in the boundary set's
        # order (a locked unit has none)
        for u in bnd - moves.keys():
            moves[u] = [] if locked[u] else _unit_moves(s, u)
        rows = list(chain.from_iterable(map(moves.__getitem__, bnd)))
        if not rows:
            break
        U, P, Q, DC = np.array(rows, dtype=np.int64).reshape(-1, 4).T.copy()
        if len(U) > PAIR_LIMIT:
            noise = gen.random(len(U))
            keep = np.argsort(DC + 2.0 * noise, kind="stable")[:PAIR_LIMIT]
            U, P, Q, DC = U[keep], P[keep], Q[keep], DC[keep]
        M = len(U)
        V = _pair_violation(np.array(s.tot), U, P, Q, Wn, lo, hi, scale)
        C = np.r_[DC, 0][:, None] + np.r_[DC, 0][None, :]
        # pairs of neighbouring units: the edge between them was counted as if the other
        # stayed put
        i, j, data = induced(s.g.matrix, U)
        fix = (Q[i] != Q[j]).astype(int) - (Q[i] != P[j]) - (P[i] != Q[j]) + (P[i] != P[j])
        C[i, j] += fix * np.rint(data).astype(int) if s.g.weighted else fix  # (i, j) unique
        # each unordered pair once (a < b, or b the null move), of two different units
        bad = _lower(M + 1).copy()
        bad[:M, :M] |= U[:, None] == U[None, :]
        tabu_m = np.array([tabu[u] > it for u in U.tolist()] + [False])
        tb = tabu_m[:, None] | tabu_m[None, :]
        newv = np.round(V, 9)
        # descent: a pair must lower the violation, or keep it and cut no more edges
        # (a sideways step only with units that are not tabu)
        vnow = round(viol, 9)
        better = (newv < vnow - 1e-9) | ((newv <= vnow + 1e-9) & (C < 0))
        sideways = (newv <= vnow + 1e-9) & (C == 0) & ~tb & (flat < FLAT_LIMIT)
        ok = ~bad & (better | sideways)
        key = np.where(ok, newv * 1e6 + C + 0.01 * gen.random((M + 1, M + 1)), np.inf)
        flatkey = key.ravel()
        top = min(64, flatkey.size - 1)
        order = np.argpartition(flatkey, top)[: top + 1]
        order = order[np.argsort(flatkey[order], kind="stable")]
        done = False
        for f in order.tolist():
            if not np.isfinite(key.flat[f]):
                break
            a, b = divmod(f, M + 1)
            ua, pa, qa = int(U[a]), int(P[a]), int(Q[a])
            if s.lab[ua] != pa or not may_leave(ua, pa):
                continue
            s.move(ua, pa, qa)
            if b < M:
                ub, pb, qb = int(U[b]), int(P[b]), int(Q[b])
                if (
                    s.lab[ub] != pb
                    or not any(s.lab[x] == qb for x in nbrs[ub])
                    or not can_remove(s, ub, pb)
                ):
                    s.move(ua, qa, pa)
                    continue
                s.move(ub, pb, qb)
                moved = (ua, ub)
                version[pb] += 1
                version[qb] += 1
            else:
                moved = (ua,)
            version[pa] += 1
            version[qa] += 1
            cut += int(C[a, b])
            viol = float(V[a, b])
            done = True
            break
        if not done:
            # a local optimum: keep it as the base if no worse, then kick the base
            here = rank(viol, cut, bw.max_deviation(s.tot))
            if here <= base_key:
                base_key, base_lab = here, s.labels()
            kicks += 1
            if kicks > max_kicks:
                break
            before = s.labels()
            s.load(base_lab)
            if rnd.random() >= RECOM_SHARE or not _recombine(s, rnd, gen):
                _kick(s, rnd, 1 + rnd.randint(0, 1 + k))
            for x in _around(s, np.flatnonzero(before != s.labn)):
                moves.pop(x, None)
            leaves.clear()
            bnd = set(s.boundary().tolist())
            cut = s.cut_edges()
            viol = float(violation(np.array(s.tot)).sum())
            flat = 0
            continue
        flat = flat + 1 if int(C[a, b]) == 0 and float(V[a, b]) >= viol - 1e-9 else 0
        lab = s.lab
        for u in moved:
            tabu[u] = it + base + rnd.randint(0, base)
            for x in (u, *nbrs[u]):
                moves.pop(x, None)
                lx = lab[x]
                if any(lab[y] != lx for y in nbrs[x]):
                    bnd.add(x)
                else:
                    bnd.discard(x)
        if (round(viol, 9), cut) <= best[:2]:
            now = rank(viol, cut, bw.max_deviation(s.tot))
            if now < best:
                best, best_lab = now, s.labels()
                if report is not None:
                    report(best, it)
    if s.labels().tolist() != best_lab.tolist():
        s.load(best_lab)
    return best, best_lab


@functools.cache
def _lower(size: int) -> np.ndarray:
    """True on and below the diagonal of a size x size matrix (read only)."""
    out = ~np.triu(np.ones((size, size), dtype=bool), 1)
    out.flags.writeable = False
    return out


def _unit_moves(s: SearchState, u: int) -> list[int]:
    """Unit u's moves to the territories it touches, flat: unit, from, to, cut-edge
    change for each, in the order of u's neighbours; empty when it touches no other
    territory."""
    p = s.lab[u]
    cnt = s.neighbour_territories(u)
    cp = cnt.get(p, 0)
    out: list[int] = []
    for q, c in cnt.items():
        if q != p:
            out += (u, p, q, cp - c)
    return out


def _row_entries(A, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For the rows ``idx`` of the CSR matrix ``A`` (in that order): each stored entry's
    position in ``idx`` and its index into ``A.indices``/``A.data``, in stored order."""
    starts = A.indptr[idx].astype(np.int64)
    lengths = A.indptr[idx + 1] - starts
    rows = np.repeat(np.arange(len(idx)), lengths)
    flat = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths) + np.arange(lengths.sum())
    return rows, flat


def induced(A, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``A[idx][:, idx].tocoo()``'s row, col and data arrays for a CSR matrix ``A`` (``idx``
    may repeat a unit: every copy is a row and a column), in the same order when ``idx``
    has no repeats. Plain array indexing: scipy's fancy indexing, called at every step of
    the search, spent most of its time building and checking intermediate matrices."""
    idx = np.asarray(idx, dtype=np.int64)
    rows, flat = _row_entries(A, idx)
    cols, data = A.indices[flat], A.data[flat]
    order = np.argsort(idx, kind="stable")
    sidx = idx[order]
    lo = np.searchsorted(sidx, cols, "left")
    cnt = np.searchsorted(sidx, cols, "right") - lo
    k = np.repeat(lo - (np.cumsum(cnt) - cnt), cnt) + np.arange(cnt.sum())
    return np.repeat(rows, cnt), order[k], np.repeat(data, cnt)


def _around(s: SearchState, units: np.ndarray) -> list[int]:
    """The given units and their neighbours (whose moves change when they move)."""
    if not len(units):
        return []
    A = s.g.matrix
    near = np.zeros(s.g.n, dtype=bool)
    near[units] = True
    near[A.indices[_row_entries(A, np.asarray(units))[1]]] = True
    return np.flatnonzero(near).tolist()


def _recombine(s: SearchState, rnd: random.Random, gen: np.random.Generator) -> bool:
    """ReCom kick: merge two neighbouring territories and split the union again along a
    random spanning tree, at the tree edge that comes closest to the first one's goal.
    Both halves are connected by construction; balance and cut edges are left to the
    descent that follows. False (nothing done) when the pair holds locked units."""
    from scipy.sparse.csgraph import breadth_first_order, minimum_spanning_tree

    lab = s.labn
    ei, ej = s.g.ei, s.g.ej
    cut = np.flatnonzero(lab[ei] != lab[ej])
    if not len(cut):
        return False
    e = int(cut[rnd.randrange(len(cut))])
    p, q = int(lab[ei[e]]), int(lab[ej[e]])
    idx = np.flatnonzero((lab == p) | (lab == q))
    if s.lockn[idx].any():
        return False
    row, col, _ = induced(s.g.matrix, idx)
    keep = row < col
    w = gen.random(int(keep.sum())) + 0.01
    from scipy import sparse

    g = sparse.coo_matrix((w, (row[keep], col[keep])), shape=(len(idx), len(idx)))
    tree = minimum_spanning_tree(g)
    order, pred = breadth_first_order(tree, 0, directed=False)
    if len(order) < len(idx):
        return False
    wt = s.W[idx, 0].astype(float)
    acc = wt.copy()
    for x in order[:0:-1].tolist():
        acc[pred[x]] += acc[x]
    goal = s.bands.goal[p][0]
    err = np.abs(acc - goal)
    err[order[0]] = np.inf
    x = int(np.argmin(err))
    inside = np.zeros(len(idx), dtype=bool)
    inside[x] = True
    for y in order[1:].tolist():
        if inside[pred[y]]:
            inside[y] = True
    new = np.where(inside, p, q)
    for u, t in zip(idx.tolist(), new.tolist(), strict=True):
        if s.lab[u] != t:
            s.move(u, s.lab[u], t)
    return True


def _pair_violation(
    tot: np.ndarray, U: np.ndarray, P: np.ndarray, Q: np.ndarray, Wn: np.ndarray,
    lo: np.ndarray, hi: np.ndarray, scale: np.ndarray,
) -> np.ndarray:  # fmt: skip
    """Band violation after each pair of moves (M+1 x M+1; index M is "no move").

    With very few territories (most pairs of moves share one) every territory's totals
    are formed per pair (M x M x k x m); with more, each move's own change is added, and
    corrected only where two moves change the same territory (the pairs of such entries,
    grouped by territory, not M x M x k totals), so the cost does not grow with k. That
    way is exact above the diagonal (pairs ``a < b``, the null move last: the only pairs
    the search takes) and leaves the other entries approximate."""
    k, m = tot.shape
    M = len(U)

    def excess(T, lo_, hi_, sc):
        return (np.maximum(T - hi_, 0) + np.maximum(lo_ - T, 0)) / sc

    if k <= FULL_K:
        D = np.zeros((M + 1, k, m))
        w = Wn[U]
        D[np.arange(M), P] -= w
        D[np.arange(M), Q] += w
        T = tot[None, None] + D[:, None] + D[None, :]
        return excess(T, lo, hi, scale).sum(axis=(2, 3))
    # violation is a sum over territories: a pair's is the two moves' changes added,
    # corrected at each territory both moves touch (the only place they interact)
    w = Wn[U]
    ex_now = excess(tot, lo, hi, scale).sum(axis=1)
    et = np.r_[P, Q]  # one entry per (move, territory it changes)
    em = np.r_[np.arange(M), np.arange(M)]
    ed = np.vstack([-w, w])
    base = tot[et]
    lo_e, hi_e, sc_e = lo[et], hi[et], scale[et]
    single = excess(base + ed, lo_e, hi_e, sc_e).sum(axis=1) - ex_now[et]
    d = np.bincount(em, weights=single, minlength=M)
    d1 = np.r_[d, 0.0]
    V = ex_now.sum() + d1[:, None] + d1[None, :]
    # the pairs of entries of the same territory (the two entries of one move name
    # different territories, so a pair is always of two moves)
    order = np.argsort(et, kind="stable")
    st = np.flatnonzero(np.r_[True, et[order][1:] != et[order][:-1]])
    size = np.diff(np.r_[st, len(et)])
    start = np.repeat(st, size)
    count = np.repeat(size, size)
    ii = np.repeat(np.arange(len(et)), count)
    jj = (
        np.repeat(start, count)
        + np.arange(int(count.sum()))
        - np.repeat(np.cumsum(count) - count, count)
    )
    i, j = order[ii], order[jj]
    keep = em[i] < em[j]  # each unordered pair once, in the upper triangle
    i, j = i[keep], j[keep]
    both = excess(base[i] + ed[i] + ed[j], lo_e[i], hi_e[i], sc_e[i]).sum(axis=1)
    corr = both - ex_now[et[i]] - single[i] - single[j]
    cell = em[i] * (M + 1) + em[j]
    V += np.bincount(cell, weights=corr, minlength=(M + 1) ** 2).reshape(M + 1, M + 1)
    return V
