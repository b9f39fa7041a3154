"""A second lower bound: the set-partitioning relaxation, by column generation.

A plan is ``K`` territories, each a set ``S`` of units meeting its band; its cut edges are
half the sum over its territories of ``c(S)``, the edges with one end in ``S`` (every cut
edge borders exactly two territories). The *master* linear program

    min sum c(S) lam[S]   s.t.   sum of lam[S] over the S holding v = 1 (every unit v),
                                 sum lam[S] = K,   lam >= 0

over every connected set in the band is a relaxation of the plans (a plan is a 0/1
``lam``), far tighter than the labelling model's linear relaxation. Only a few sets are
written down (the *restricted* master); the *pricing* problem looks for a set of negative
reduced cost ``c(S) - pi(S) - mu`` (``pi``, ``mu``: the master's duals): a small
mixed-integer program (``x[v]`` binary, ``y[e] >= |x[u] - x[v]|``, the band on ``x``, two
units too far apart never together, a connected set of one or two units lighter than the
band's floor inside the set has a bordering unit in it too), contiguity added lazily as
separator rows, and the same light-piece row for every light piece a solve met (a
relaxation until then: still valid). Cheap
columns come first: sets grown greedily from random seeds, and local search (add, drop or
swap a unit) from the known sets of least reduced cost; the exact pricing runs only when
they find nothing, and stops once it has run on as long again as it took to meet its
first set below the limit. With a plan in hand, the exact pricing prices at smoothed
duals (Wentges): between the last priced ones and the master's, as far toward the former
as no known set falls below the limit there. The master's optimum is highly degenerate
and its duals jump between vertices; at the smoothed point the same pricing proves more
(the bound holds at any multipliers, below).

The bound (Lagrangian, Farley's): for any multipliers ``pi``, ``mu`` and any plan
``S_1..S_K``, ``sum c(S_j) = sum (c(S_j) - pi(S_j) - mu) + sum pi + K mu >=
K r + sum pi + K mu``, with ``r`` a proven lower bound on the least reduced cost (the
pricing program's dual bound, or the limit below which it found no set). So every plan
cuts at least ``(sum pi + K mu + K r) / 2`` edges, at every iteration. With a plan in
hand cutting ``ub`` edges, pricing asks only for sets below the reduced cost that would
lift the bound to ``ub``: no such set proves the plan optimal.

Only contiguous instances whose territories are interchangeable (one band, nothing
fixed) are handled (:func:`applies`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
from scipy.sparse.csgraph import connected_components

from patchmap.certify.model import Instance, add_rows, weighted_distances

__all__ = ["ColumnBound", "applies", "boundary", "column_bound"]

_TOL = 1e-6  # reduced costs below -_TOL enter the master
_SAFE = 1e-5  # margin taken off every bound before rounding (solver tolerances)
SMOOTHING = 0.7  # weight of the last priced duals in the next exact pricing (Wentges)
_STARTS = 40  # known sets of least reduced cost the local search starts from
PIECE_UNITS = 2  # the pricing program starts with the rows of every light piece up to this size


@dataclass
class ColumnBound:
    """What the column generation proved: ``lower_bound`` on the cut edges of every plan
    (an integer, None when nothing was proven), ``lp`` (the last master value, in cut
    edges), whether the master was solved to optimality (``lp_optimal``), ``labels`` (the
    plan in hand, or None), ``optimal`` (the bound meets that plan: it is optimal),
    ``iterations`` and ``seconds``."""

    lower_bound: int | None
    lp: float | None
    lp_optimal: bool
    labels: np.ndarray | None
    optimal: bool
    iterations: int
    seconds: float
    columns: int = 0
    infeasible: bool = False
    history: list[tuple[float, float]] = field(default_factory=list)


def applies(inst: Instance) -> bool:
    """True for the instances this module handles: contiguous, every territory with the
    same band and no unit fixed (one pricing problem serves every territory)."""
    if not inst.contiguous or (inst.fixed >= 0).any() or inst.k < 1:
        return False
    return bool(np.allclose(inst.lo, inst.lo[:1]) and np.allclose(inst.hi, inst.hi[:1]))


def boundary(inst: Instance, members: np.ndarray) -> int:
    """Edges with exactly one end in the set (a boolean mask over the units)."""
    return int((members[inst.ei] != members[inst.ej]).sum())


def _connected(inst: Instance, members: np.ndarray) -> list[np.ndarray]:
    units = np.flatnonzero(members)
    if len(units) <= 1:
        return [units]
    sub = inst.matrix[units][:, units]
    nc, comp = connected_components(sub, directed=False)
    return [units[comp == c] for c in range(nc)]


def _light_pieces(inst: Instance, size: int) -> list[tuple[list[int], list[int]]]:
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


def _piece_rows(inst: Instance, size: int, inf: float) -> list:
    """``x(C) - x(border of C) <= |C| - 1`` for each light connected set ``C`` of at most
    ``size`` units: a connected set in the band holding all of ``C`` is more than ``C``,
    so it holds a unit bordering ``C``."""
    return [_piece_row(c, b, inf) for c, b in _light_pieces(inst, size)]


def _piece_row(piece: list[int], border: list[int], inf: float) -> tuple:
    """The row ``x(piece) - x(border) <= |piece| - 1`` of one light connected piece."""
    return (-inf, len(piece) - 1.0, [*piece, *border], [1.0] * len(piece) + [-1.0] * len(border))


class _Pricer:
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
        if inst.contiguous and n <= 2_000:
            # two units whose lightest path is heavier than the cap never share a territory
            d = weighted_distances(inst)
            cap = float(inst.hi[0, 0]) * (1 + 1e-9) + 1e-9
            a, b = np.nonzero(np.triu(d > cap, 1))
            for u, v in zip(a.tolist(), b.tolist(), strict=True):
                rows.append((-inf, 1.0, [u, v], [1.0, 1.0]))
        # a light connected set (below the floor) inside a connected set in the band is not
        # all of it: one of its bordering units is in too
        rows += _piece_rows(inst, PIECE_UNITS, inf)
        self.h = h
        add_rows(self.h, rows)
        self.found: list[np.ndarray] = []
        self.pi = np.zeros(n)
        for event in (h.cbMipInterrupt, h.cbSimplexInterrupt, h.cbIpmInterrupt):
            event.subscribe(self._interrupt)
        h.cbMipImprovingSolution.subscribe(self._seen)
        self.limit = math.inf
        self.grace = False  # stop a solve some time after its first set (see _interrupt)
        self.start, self.first = 0.0, None
        self.on_dual = None  # called with each lower bound on the least value, mid-solve
        h.cbMipInterrupt.subscribe(self._dual)

    def _dual(self, event) -> None:
        """The running dual bound: with a limit, sets at or above it were pruned, so the
        least value over every set is at least the smaller of the two."""
        if self.on_dual is not None:
            lb = float(event.data_out.mip_dual_bound)
            if math.isfinite(lb):
                self.on_dual(min(lb, self.limit))

    def _interrupt(self, event) -> None:
        """Stop at the deadline, or once the search has run on as long again as it took
        to meet its first connected set below the limit (later sets are only columns)."""
        now = time.perf_counter()
        late = self.first is not None and now - self.first >= self.first - self.start
        event.interrupt(bool(now >= self.deadline or late))

    def _seen(self, event) -> None:
        x = np.asarray(event.data_out.mip_solution)[: self.inst.n] > 0.5
        self.found.append(x)
        if self.grace and self.first is None and len(_connected(self.inst, x)) == 1:
            # HiGHS reports sets above the limit too: only one below it counts
            value = boundary(self.inst, x) - float(self.pi[x].sum())
            if value < self.limit:
                self.first = time.perf_counter()

    def separate(self, members: np.ndarray) -> int:
        """Separator rows for a set in pieces (any connected set holding ``a`` in piece
        ``C`` and ``b`` outside ``C`` holds a unit bordering ``C``)."""
        parts = _connected(self.inst, members)
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
                rows.append(_piece_row(part.tolist(), border.tolist(), self.hs.kHighsInf))
        add_rows(self.h, rows)
        return len(rows)

    def price(self, pi: np.ndarray, limit: float = math.inf, sols: int = 0):
        """Look for connected sets meeting the band of ``c(S) - pi(S)`` below ``limit``
        (the least one when ``limit`` is infinite), stopping after ``sols`` improving
        sets (0: no stop). Returns (the connected sets the solver met, a proven lower
        bound on the least value over every connected set in the band, or None if the
        time ran out before one). No set below ``limit`` makes ``limit`` the bound; no
        set at all makes it infinite."""
        h, n = self.h, self.inst.n
        h.changeColsCost(n, np.arange(n, dtype=np.int32), -np.asarray(pi, dtype=float))
        h.setOptionValue("objective_bound", float(limit))
        self.limit = float(limit)
        self.pi = np.asarray(pi, dtype=float)
        self.grace = math.isfinite(limit)
        h.setOptionValue("mip_max_improving_sols", int(sols) if sols else 2_147_483_647)
        best_lb = None
        while True:
            left = self.deadline - time.perf_counter()
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
            lb = float(info.mip_dual_bound)
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

    def _keep(self):
        out, seen = [], set()
        for x in self.found:
            key = x.tobytes()
            if key in seen or len(_connected(self.inst, x)) != 1:
                continue
            seen.add(key)
            out.append(x)
        return out


def _grow(
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


def _is_connected(nbrs: list[np.ndarray], members: np.ndarray) -> bool:
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


def _improve(
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
                if not _is_connected(nbrs, nxt):
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


class _Master:
    """The restricted master linear program."""

    def __init__(self, inst: Instance, hs, big: float) -> None:
        self.inst, self.hs = inst, hs
        n = inst.n
        h = hs.Highs()
        h.setOptionValue("output_flag", False)
        h.setOptionValue("threads", 1)
        k = float(inst.k)
        lo = np.r_[np.ones(n), k]
        h.addRows(n + 1, lo, lo.copy(), 0, np.zeros(0, np.int32), np.zeros(0, np.int32),
                  np.zeros(0))  # fmt: skip
        # one artificial column per unit keeps the master feasible from the start
        for v in range(n):
            h.addCol(big, 0.0, hs.kHighsInf, 1, np.array([v], np.int32), np.array([1.0]))
        for sign in (1.0, -1.0):  # and the count of sets, whatever the sets
            h.addCol(big, 0.0, hs.kHighsInf, 1, np.array([n], np.int32), np.array([sign]))
        self.h = h
        self.art = n + 2
        self.sets: list[np.ndarray] = []
        self.costs: list[int] = []
        self.keys: set[bytes] = set()

    def add(self, members: np.ndarray) -> bool:
        key = members.tobytes()
        if key in self.keys:
            return False
        self.keys.add(key)
        idx = np.r_[np.flatnonzero(members), self.inst.n].astype(np.int32)
        c = boundary(self.inst, members)
        self.h.addCol(float(c), 0.0, self.hs.kHighsInf, len(idx), idx, np.ones(len(idx)))
        self.sets.append(members.copy())
        self.costs.append(c)
        return True

    def solve(self):
        self.h.run()
        sol = self.h.getSolution()
        dual = np.asarray(sol.row_dual)
        val = float(self.h.getInfo().objective_function_value)
        return (
            val,
            dual[: self.inst.n].copy(),
            float(dual[self.inst.n]),
            np.asarray(sol.col_value)[self.art :],
        )


def column_bound(
    inst: Instance,
    *,
    time_limit: float = 60.0,
    incumbent: np.ndarray | None = None,
    threads: int = 1,
    hs=None,
    on_bound=None,
    grow: int = 200,
    seed_sets: int = 2000,
    sols: int = 5,
) -> ColumnBound:
    """Column generation on ``inst`` for at most ``time_limit`` seconds (see the module
    docstring). ``incumbent`` (a plan meeting every constraint) seeds the master with its
    territories and is the plan to prove optimal; ``on_bound(value)`` is called with each
    better proven bound."""
    t0 = time.perf_counter()
    deadline = t0 + time_limit
    if hs is None:
        import highspy as hs  # the optional solver (bound.require_solver checks it first)
    if not applies(inst):
        return ColumnBound(None, None, False, None, False, 0, 0.0)
    # HiGHS refuses a solve asking for another number of threads than its pool's (made at
    # the first solve in the process): start with a fresh pool
    hs.Highs.resetGlobalScheduler(True)
    n, k, m = inst.n, inst.k, len(inst.ei)
    master = _Master(inst, hs, big=float(2 * m + 1))
    ub = None
    best_lab = None
    if incumbent is not None:
        lab = np.asarray(incumbent, dtype=np.int64)
        for j in range(k):
            s = lab == j
            if s.any():
                master.add(s)
        best_lab = lab
        ub = int((lab[inst.ei] != lab[inst.ej]).sum())
    pricer = _Pricer(inst, hs, threads, deadline)
    mat = inst.matrix
    nbrs = [mat.indices[mat.indptr[v] : mat.indptr[v + 1]] for v in range(n)]
    deg = np.diff(mat.indptr).astype(float)
    rng = np.random.default_rng(0)
    # a spread of compact sets first: the master's first duals are then not the wild
    # ones of a handful of columns
    for x in _grow(inst, nbrs, deg, np.zeros(n), rng, seed_sets):
        master.add(x)
    best = -math.inf
    history: list[tuple[float, float]] = []
    it = 0
    lp, lp_opt = None, False
    centre = None  # the duals of the last exact pricing (the smoothing's centre)

    def reduced(pi: np.ndarray, mu: float) -> np.ndarray:
        if not master.sets:
            return np.zeros(0)
        sets = np.asarray(master.sets, dtype=float)
        return np.asarray(master.costs, dtype=float) - sets @ pi - mu

    def cheap(pi: np.ndarray, mu: float) -> list[np.ndarray]:
        # grown sets, and local search from the known sets of least reduced cost
        grown = _grow(inst, nbrs, deg, pi, rng, grow)
        starts = [master.sets[i] for i in np.argsort(reduced(pi, mu))[:_STARTS]]
        found = grown + [_improve(inst, nbrs, deg, pi, x) for x in starts + grown[:10]]
        return [x for x in found if boundary(inst, x) - float(pi[x].sum()) - mu < -_TOL]

    while time.perf_counter() < deadline:
        val, pi, mu, _lam = master.solve()
        lp = val / 2
        if time.perf_counter() >= deadline:
            break
        it += 1
        if sum(master.add(x) for x in cheap(pi, mu)):
            continue
        spi, smu, weight = pi, mu, 0.0
        limit = math.inf
        goal = None
        if ub is not None:
            # the restricted master is at least the LP, whose value no bound here passes:
            # aim at the plan's cut, or at the most the LP can give
            goal = min(ub, math.ceil(lp - _SAFE))

            def aim(qi, qu, goal=goal):
                # reduced costs below this keep the bound under goal: none of them proves
                # it (HiGHS prunes on the limit)
                r_goal = (2 * (goal - 1 + 2 * _SAFE) - float(qi.sum()) - k * qu) / k
                return qu + min(r_goal, -_TOL)

            limit = aim(pi, mu)
            if centre is not None:
                # Wentges smoothing: price between the last priced duals and the master's
                # (the master's jump between the vertices of a degenerate optimum), as far
                # toward the centre as no known set falls below the limit there
                for weight in (SMOOTHING, SMOOTHING / 2, SMOOTHING / 4, 0.0):
                    qi = weight * centre[0] + (1 - weight) * pi
                    qu = weight * centre[1] + (1 - weight) * mu
                    if weight == 0.0 or (reduced(qi, qu) >= aim(qi, qu)).all():
                        break
                spi, smu = qi, qu
                limit = aim(spi, smu)
                if weight > 0 and sum(master.add(x) for x in cheap(spi, smu)):
                    continue
            centre = (spi, smu)
        tot, mu_now = float(spi.sum()), float(smu)

        def running(r, tot=tot, mu_now=mu_now):
            # the bound the pricing has proven so far, passed on as it rises
            nonlocal best
            lag = (tot + k * mu_now + k * min(0.0, r - mu_now)) / 2
            if lag > best:
                best = lag
                if on_bound is not None:
                    on_bound(math.ceil(best - _SAFE))

        pricer.on_dual = running
        if goal is not None:
            sets, rmin = pricer.price(spi, limit=limit, sols=sols)
        else:
            sets, rmin = pricer.price(pi)
        if rmin == math.inf:  # not one set meets the band: no plan at all
            return ColumnBound(None, None, False, None, False, it,
                               time.perf_counter() - t0, infeasible=True)  # fmt: skip
        if rmin is not None:
            # any multipliers give a bound: every plan cuts at least this many edges
            running(rmin)
            history.append((time.perf_counter() - t0, best))
        if goal is not None and math.ceil(best - _SAFE) >= goal:
            break  # the plan is proven optimal, or the bound is all the LP can give
        enter = [x for x in sets if boundary(inst, x) - float(spi[x].sum()) - smu < -_TOL]
        if sum(master.add(x) for x in enter):
            continue
        if weight > 0:  # nothing new at the smoothed duals: price at the master's next
            centre = None
            continue
        lp_opt = weight == 0.0 and rmin is not None and rmin - mu >= -_TOL - 2e-6
        break
    lbv = None if best == -math.inf else max(0, math.ceil(best - _SAFE))
    optimal = ub is not None and lbv is not None and lbv >= ub
    return ColumnBound(
        lbv, lp, lp_opt, best_lab, optimal, it, time.perf_counter() - t0,
        columns=len(master.sets), history=history,
    )  # fmt: skip
