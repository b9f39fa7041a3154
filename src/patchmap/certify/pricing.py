"""The pricing of the column generation bound (:mod:`.columns`): sets of units meeting
the band, of least reduced cost.

The exact pricing (:class:`Pricer`) is a small mixed-integer program (``x[v]`` binary,
``y[e] >= |x[u] - x[v]|``, the band on ``x``, two units too far apart never together, a
connected set of one or two units lighter than the band's floor inside the set has a
bordering unit in it too), contiguity added lazily as separator rows, and the same
light-piece row for every light piece a solve met (a relaxation until then: still
valid). The cheap pricing (:func:`grow`, :func:`improve`) grows sets greedily from random
seeds and improves known sets by local search; its sets are only columns, the bound never
relies on them.
"""

from __future__ import annotations

import math
import time

import numpy as np
from scipy.sparse.csgraph import connected_components

from patchmap.certify.model import Instance, add_rows, weighted_distances

__all__ = [
    "PIECE_UNITS",
    "Pricer",
    "boundary",
    "connected_parts",
    "far_units",
    "grow_sets",
    "improve",
    "is_connected",
    "light_pieces",
]

PIECE_UNITS = 2  # the pricing program starts with the rows of every light piece up to this size


def boundary(inst: Instance, members: np.ndarray) -> int:
    """Edges with exactly one end in the set (a boolean mask over the units)."""
    return int((members[inst.ei] != members[inst.ej]).sum())


def far_units(far: np.ndarray, weight: np.ndarray, limit: int) -> np.ndarray:
    """Up to ``limit`` units pairwise ``far`` (a symmetric boolean matrix: never in one
    territory), greedy, heaviest first among the units with the fewest units not far
    from them (as the model's anchors)."""
    close = ~far
    order = np.lexsort((-np.asarray(weight, dtype=float), close.sum(axis=1)))
    out: list[int] = []
    for i in order.tolist():
        if len(out) >= limit:
            break
        if far[i, out].all():
            out.append(i)
    return np.asarray(out, dtype=np.int64)


def connected_parts(inst: Instance, members: np.ndarray) -> list[np.ndarray]:
    """The connected pieces of a set (a boolean mask over the units), as unit arrays."""
    units = np.flatnonzero(members)
    if len(units) <= 1:
        return [units]
    sub = inst.matrix[units][:, units]
    nc, comp = connected_components(sub, directed=False)
    return [units[comp == c] for c in range(nc)]


def light_pieces(inst: Instance, size: int) -> list[tuple[list[int], list[int]]]:
    """Every connected set of at most ``size`` units lighter than the band's floor, with
    the units bordering it (each set once)."""
    mat = inst.matrix
    p = inst.weights[:, 0]
    lo = float(inst.lo[0, 0])
    nbrs = [set(mat.indices[mat.indptr[v] : mat.indptr[v + 1]].tolist()) for v in range(inst.n)]
    level = [frozenset([v]) for v in range(inst.n) if p[v] < lo]
    out = list(level)
    seen = set(level)
    for _ in range(size - 1):
        grown = []
        for c in level:
            for w in set().union(*(nbrs[v] for v in c)) - c:
                d = c | {w}
                if d not in seen:
                    seen.add(d)
                    if p[list(d)].sum() < lo:
                        grown.append(d)
        out += grown
        level = grown
    return [(sorted(c), sorted(set().union(*(nbrs[v] for v in c)) - c)) for c in out]


def piece_rows(inst: Instance, size: int, inf: float) -> list:
    """``x(C) - x(border of C) <= |C| - 1`` for each light connected set ``C`` of at most
    ``size`` units: a connected set in the band holding all of ``C`` is more than ``C``,
    so it holds a unit bordering ``C``."""
    return [piece_row(c, b, inf) for c, b in light_pieces(inst, size)]


def piece_row(piece: list[int], border: list[int], inf: float) -> tuple:
    """The row ``x(piece) - x(border) <= |piece| - 1`` of one light connected piece."""
    return (-inf, len(piece) - 1.0, [*piece, *border], [1.0] * len(piece) + [-1.0] * len(border))


class Pricer:
    """The pricing program: a set meeting the band, of least reduced cost."""

    def __init__(self, inst: Instance, hs, threads: int, deadline: float) -> None:
        self.inst, self.hs, self.deadline = inst, hs, deadline
        n, m = inst.n, len(inst.ei)
        h = hs.Highs()
        h.setOptionValue("output_flag", False)
        h.setOptionValue("threads", int(threads))
        h.setOptionValue("mip_rel_gap", 0.0)
        h.setOptionValue("mip_abs_gap", 1e-7)
        h.addVars(n + m, np.zeros(n + m), np.ones(n + m))
        h.changeColsIntegrality(
            n, np.arange(n, dtype=np.int32), np.full(n, hs.HighsVarType.kInteger, np.uint8)
        )
        h.changeColsCost(m, np.arange(n, n + m, dtype=np.int32), np.ones(m))
        inf = hs.kHighsInf
        rows = []
        for t in range(m):
            u, v = int(inst.ei[t]), int(inst.ej[t])
            rows.append((0.0, inf, [n + t, u, v], [1.0, -1.0, 1.0]))
            rows.append((0.0, inf, [n + t, v, u], [1.0, -1.0, 1.0]))
        allv = list(range(n))
        for c in range(inst.weights.shape[1]):
            rows.append((float(inst.lo[0, c]), float(inst.hi[0, c]), allv,
                         inst.weights[:, c].tolist()))  # fmt: skip
        self.anchors = np.zeros(0, dtype=np.int64)
        if inst.contiguous and n <= 2_000:
            # two units whose lightest path is heavier than the cap never share a territory
            d = weighted_distances(inst)
            cap = float(inst.hi[0, 0]) * (1 + 1e-9) + 1e-9
            a, b = np.nonzero(np.triu(d > cap, 1))
            for u, v in zip(a.tolist(), b.tolist(), strict=True):
                rows.append((-inf, 1.0, [u, v], [1.0, 1.0]))
            self.anchors = far_units((d > cap) & (d > cap).T, inst.weights[:, 0], inst.k)
        # a light connected set (below the floor) inside a connected set in the band is not
        # all of it: one of its bordering units is in too
        rows += piece_rows(inst, PIECE_UNITS, inf)
        self.h = h
        add_rows(self.h, rows)
        self.anchor_row: int | None = None  # the row counting anchors (see _slot)
        self.found: list[np.ndarray] = []
        self.pi = np.zeros(n)
        for event in (h.cbMipInterrupt, h.cbSimplexInterrupt, h.cbIpmInterrupt):
            event.subscribe(self._interrupt)
        h.cbMipImprovingSolution.subscribe(self._seen)
        self.limit = math.inf
        self.stop = deadline  # the current solve's own deadline (see price)
        self.grace = False  # stop a solve some time after its first set (see _interrupt)
        self.start, self.first = 0.0, None
        self.on_dual = None  # called with each lower bound on the least value, mid-solve
        h.cbMipInterrupt.subscribe(self._dual)

    def _dual(self, event) -> None:
        """The running dual bound: with a limit, sets at or above it were pruned, so the
        least value over every set is at least the smaller of the two (see price)."""
        if self.on_dual is not None:
            lb = float(event.data_out.mip_dual_bound)
            if math.isfinite(lb):
                self.on_dual(min(lb, self.limit - 1e-6))

    def _interrupt(self, event) -> None:
        """Stop at the deadline, or once the search has run on as long again as it took
        to meet its first connected set below the limit (later sets are only columns)."""
        now = time.perf_counter()
        late = self.first is not None and now - self.first >= self.first - self.start
        event.interrupt(bool(now >= self.stop or late))

    def _seen(self, event) -> None:
        x = np.asarray(event.data_out.mip_solution)[: self.inst.n] > 0.5
        self.found.append(x)
        if self.grace and self.first is None and len(connected_parts(self.inst, x)) == 1:
            # HiGHS reports sets above the limit too: only one below it counts
            value = boundary(self.inst, x) - float(self.pi[x].sum())
            if value < self.limit:
                self.first = time.perf_counter()

    def separate(self, members: np.ndarray) -> int:
        """Separator rows for a set in pieces (any connected set holding ``a`` in piece
        ``C`` and ``b`` outside ``C`` holds a unit bordering ``C``)."""
        parts = connected_parts(self.inst, members)
        if len(parts) <= 1:
            return 0
        m = self.inst.matrix
        w = self.inst.weights[:, 0]
        rows = []
        for r, part in enumerate(parts):
            inside = np.zeros(self.inst.n, dtype=bool)
            inside[part] = True
            border = np.unique(m[part].indices)
            border = border[~inside[border]]
            others = [q for s, q in enumerate(parts) if s != r]
            b = int(max((q[np.argmax(w[q])] for q in others), key=lambda t: w[t]))
            for a in part.tolist():
                rows.append((-self.hs.kHighsInf, 1.0, [a, b, *border.tolist()],
                             [1.0, 1.0, *([-1.0] * len(border))]))  # fmt: skip
            if w[part].sum() < float(self.inst.lo[0, 0]) and len(part) > 1:
                # a light piece, whatever else the set holds (see _piece_rows)
                rows.append(piece_row(part.tolist(), border.tolist(), self.hs.kHighsInf))
        add_rows(self.h, rows)
        return len(rows)

    def price(
        self,
        pi: np.ndarray,
        limit: float = math.inf,
        sols: int = 0,
        slot: int | None = None,
        until: float = math.inf,
    ):
        """Look for connected sets meeting the band of ``c(S) - pi(S)`` below ``limit``
        (the least one when ``limit`` is infinite), stopping after ``sols`` improving
        sets (0: no stop) and at ``until`` (or the deadline). ``slot`` restricts the sets
        to the ones holding anchor ``slot`` (a unit of ``anchors``), no anchor at all
        (``-1``) or one anchor, any (``-2``); None: every set. Returns (the connected sets the solver met, a proven
        lower bound on the least value over every connected set in the band and the slot,
        or None if the time ran out before one). No set below ``limit`` makes ``limit``
        the bound; no set at all makes it infinite."""
        h, n = self.h, self.inst.n
        self._slot(slot)
        self.stop = min(self.deadline, until)
        h.changeColsCost(n, np.arange(n, dtype=np.int32), -np.asarray(pi, dtype=float))
        h.setOptionValue("objective_bound", float(limit))
        self.limit = float(limit)
        self.pi = np.asarray(pi, dtype=float)
        self.grace = math.isfinite(limit)
        h.setOptionValue("mip_max_improving_sols", int(sols) if sols else 2_147_483_647)
        best_lb = None
        while True:
            left = self.stop - time.perf_counter()
            if left <= 0.01:
                return self._keep(), best_lb
            h.setOptionValue("time_limit", float(left))
            self.found = []
            self.start, self.first = time.perf_counter(), None
            h.run()
            ms = h.getModelStatus()
            if ms == self.hs.HighsModelStatus.kInfeasible:
                # nothing below the limit (a hair of it for the solver's tolerance)
                return [], (limit - 1e-6 if math.isfinite(limit) else math.inf)
            info = h.getInfo()
            # with a limit, HiGHS prunes at it and may report a dual bound past it that
            # is not one (measured: 19.25 reported, 16.125 the least, limit 15.875): only
            # the limit is proven then (a hair below it for the solver's tolerance)
            lb = min(float(info.mip_dual_bound), limit - 1e-6)
            if math.isfinite(lb):
                best_lb = lb if best_lb is None else max(best_lb, lb)
            kept = self._keep()
            if ms == self.hs.HighsModelStatus.kOptimal:
                x = np.asarray(h.getSolution().col_value)[:n] > 0.5
                # a least set in pieces gets its rows; with sets in hand those are enough
                # (they are columns), else the solve runs again
                if not self.separate(x) or kept:
                    return kept, best_lb
            elif kept or ms != self.hs.HighsModelStatus.kSolutionLimit:
                return kept, best_lb
            else:  # stopped at sets in pieces only: cut them off and look again
                for x in self.found:
                    self.separate(x)

    def _slot(self, slot: int | None) -> None:
        """Column bounds of the anchors and the bounds of their count for ``slot`` (see
        price): the slot's anchor at 1, the others at 0 (two anchors are too far apart to
        share a set anyway); every anchor at 0; one anchor in the set; or every set."""
        a = self.anchors
        if not len(a):
            if slot is not None and slot != -1:
                raise ValueError(f"{slot} is not a slot without anchors")
            return
        lo, hi = np.zeros(len(a)), np.ones(len(a))
        count = (1.0, 1.0) if slot == -2 else (0.0, 1.0)
        if slot == -1:
            hi[:] = 0.0
        elif slot is not None and slot >= 0:
            if slot not in a:
                raise ValueError(f"unit {slot} is not an anchor")
            hi[a != slot] = 0.0
            lo[a == slot] = 1.0
        elif slot is not None and slot != -2:
            raise ValueError(f"{slot} is not a slot")
        self.h.changeColsBounds(len(a), a.astype(np.int32), lo, hi)
        if self.anchor_row is None and slot == -2:
            # the count of anchors in the set (at most one: they are pairwise far), added
            # at the first slot that needs it
            self.anchor_row = self.h.getNumRow()
            add_rows(self.h, [(0.0, 1.0, a.tolist(), [1.0] * len(a))])
        if self.anchor_row is not None:
            self.h.changeRowBounds(self.anchor_row, *count)

    def _keep(self):
        out, seen = [], set()
        for x in self.found:
            key = x.tobytes()
            if key in seen or len(connected_parts(self.inst, x)) != 1:
                continue
            seen.add(key)
            out.append(x)
        return out


def grow_sets(
    inst: Instance,
    nbrs: list[np.ndarray],
    deg: np.ndarray,
    pi: np.ndarray,
    rng: np.random.Generator,
    tries: int,
) -> list[np.ndarray]:
    """Cheap pricing: connected sets grown from random seeds, each step adding the
    neighbouring unit of best ``pi[v] - (change in boundary)`` that keeps the set under
    the cap, kept when the set lands in the band (only the sets' costs matter to the bound;
    a heuristic set is just a column)."""
    p = inst.weights[:, 0]
    lo, hi = float(inst.lo[0, 0]), float(inst.hi[0, 0])
    out = []
    n = inst.n
    for _ in range(tries):
        s = int(rng.integers(n))
        inside = np.zeros(n, dtype=bool)
        inside[s] = True
        inn = np.zeros(n)  # neighbours inside
        inn[nbrs[s]] += 1
        tot = p[s]
        noise = rng.uniform(0, rng.choice([0.5, 2.0, 4.0]), n)
        while tot < lo:
            front = np.flatnonzero((inn > 0) & ~inside & (p + tot <= hi))
            if not len(front):
                break
            gain = pi[front] - (deg[front] - 2 * inn[front]) + noise[front]
            v = int(front[np.argmax(gain)])
            inside[v] = True
            inn[nbrs[v]] += 1
            tot += p[v]
        if lo <= tot <= hi and len(inst.weights[0]) == 1:
            out.append(inside)
        elif lo <= tot <= hi:
            w = inst.weights[inside].sum(axis=0)
            if ((w >= inst.lo[0]) & (w <= inst.hi[0])).all():
                out.append(inside)
    return out


def is_connected(nbrs: list[np.ndarray], members: np.ndarray) -> bool:
    units = np.flatnonzero(members)
    if len(units) <= 1:
        return True
    seen = np.zeros(len(members), dtype=bool)
    seen[units[0]] = True
    stack, count = [int(units[0])], 1
    while stack:
        for w in nbrs[stack.pop()]:
            if members[w] and not seen[w]:
                seen[w] = True
                stack.append(int(w))
                count += 1
    return count == len(units)


def improve(
    inst: Instance,
    nbrs: list[np.ndarray],
    deg: np.ndarray,
    pi: np.ndarray,
    start: np.ndarray,
    steps: int = 300,
) -> np.ndarray:
    """Cheap pricing: local search from a connected set in the band, each step the move
    of least ``c(S) - pi(S)`` among adding a bordering unit, dropping one, or swapping one
    for a bordering unit, keeping the set connected and in the primary band (a found set
    is only a column: the bound never relies on it)."""
    p = inst.weights[:, 0]
    lo, hi = float(inst.lo[0, 0]), float(inst.hi[0, 0])
    mat = inst.matrix
    s = start.copy()
    inn = mat @ s.astype(float)  # neighbours inside
    tot = float(p[s].sum())
    for _ in range(steps):
        inside = np.flatnonzero(s)
        front = np.flatnonzero((inn > 0) & ~s)
        dadd = deg[front] - 2 * inn[front] - pi[front]
        drop = pi[inside] - (deg[inside] - 2 * inn[inside])
        moves: list[tuple[float, int, int]] = []
        ok = (tot + p[front] >= lo) & (tot + p[front] <= hi) & (dadd < -1e-9)
        moves += [(float(dadd[i]), int(front[i]), -1) for i in np.flatnonzero(ok)]
        ok = (tot - p[inside] >= lo) & (tot - p[inside] <= hi) & (drop < -1e-9)
        moves += [(float(drop[i]), -1, int(inside[i])) for i in np.flatnonzero(ok)]
        # a swap: the dropped unit next to the added one no longer counts as inside
        d = dadd[:, None] + drop[None, :] + 2 * mat[front][:, inside].toarray()
        t = tot + p[front][:, None] - p[inside][None, :]
        ia, ir = np.nonzero((t >= lo) & (t <= hi) & (d < -1e-9))
        moves += [
            (float(d[a, r]), int(front[a]), int(inside[r])) for a, r in zip(ia, ir, strict=True)
        ]
        moves.sort()
        for _gain, a, r in moves[:60]:
            nxt = s.copy()
            if a >= 0:
                nxt[a] = True
            if r >= 0:
                nxt[r] = False
                if not is_connected(nbrs, nxt):
                    continue
            s = nxt
            if a >= 0:
                inn[nbrs[a]] += 1
                tot += p[a]
            if r >= 0:
                inn[nbrs[r]] -= 1
                tot -= p[r]
            break
        else:
            break
    if inst.weights.shape[1] > 1:
        w = inst.weights[s].sum(axis=0)
        if not ((w >= inst.lo[0]) & (w <= inst.hi[0])).all():
            return start
    return s
