"""A second lower bound: the set-partitioning relaxation, by column generation.

A plan is ``K`` territories, each a set ``S`` of units meeting its band; its cut edges are
half the sum over its territories of ``c(S)``, the edges with one end in ``S`` (every cut
edge borders exactly two territories). The *master* linear program

    min sum c(S) lam[S]   s.t.   sum of lam[S] over the S holding v = 1 (every unit v),
                                 sum lam[S] = K,   lam >= 0

over every connected set in the band is a relaxation of the plans (a plan is a 0/1
``lam``), far tighter than the labelling model's linear relaxation. Only a few sets are
written down (the *restricted* master); the *pricing* problem (:mod:`.pricing`) looks
for a set of negative reduced cost ``c(S) - pi(S) - mu`` (``pi``, ``mu``: the master's
duals): a small mixed-integer program (``x[v]`` binary, ``y[e] >= |x[u] - x[v]|``, the
band on ``x``, two units too far apart never together, a connected set of one or two
units lighter than the band's floor inside the set has a bordering unit in it too),
contiguity added lazily as separator rows, and the same light-piece row for every light
piece a solve met (a relaxation until then: still valid). Cheap
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

The anchor split (``SLOTS``): the anchors are units pairwise too far apart to share a
territory, so every plan has exactly one territory holding each anchor and ``K - |A|``
holding none. The pricing then runs once per slot (an anchor's sets, the sets holding no
anchor), each at the same limit, and the bound adds each slot's proven least value as many
times as plans have territories in it (:func:`lagrangian`): never below Farley's, as each
slot's least value is at least the least over every set, and each slot's program is
rooted (smaller), so an interrupted solve proves more. With ``EARLY``, a slot that finds
columns ends the round (the round's bound cannot close) and is priced first next round.

Only contiguous instances whose territories are interchangeable (one band, nothing
fixed) are handled (:func:`applies`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from patchmap.certify.model import Instance
from patchmap.certify.pricing import Pricer, boundary, grow_sets, improve

__all__ = ["ColumnBound", "applies", "boundary", "column_bound", "lagrangian", "slot_counts"]

_TOL = 1e-6  # reduced costs below -_TOL enter the master
_SAFE = 1e-5  # margin taken off every bound before rounding (solver tolerances)
SMOOTHING = 0.7  # weight of the last priced duals in the next exact pricing (Wentges)
_STARTS = 40  # known sets of least reduced cost the local search starts from
# price the sets holding an anchor apart from those holding none (lagrangian). Off: the
# column child alone, engine plans, 120 s at load 3-6 (about 60 CPU s, i.e. a 60 s run at
# low load), one run each, bound (optimum) global / split / split with EARLY:
# AR 30 / 31 / 31 (33), IA 30 / 30 / 28 (33), KS proven in 24 CPU s / 28 / proven in
# 34 CPU s (32): no proof gained, KS slower, so the single global pricing stays
SLOTS = False
SPLIT = True  # and each anchor's sets apart (off: the sets holding one anchor, any, at once)
EARLY = True  # a slot that finds columns ends the round (the others are not priced)


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


def lagrangian(tot: float, mu: float, slots: list[tuple[int, float]]) -> float:
    """The bound on the cut edges of every plan at multipliers ``pi`` (``tot`` their sum)
    and ``mu``, from ``slots``: (count, r) pairs, ``r`` a proven lower bound on
    ``c(S) - pi(S)`` over the sets ``S`` of a slot, ``count`` territories of every plan
    in that slot, the counts summing to ``K``.

    Derivation. Let ``A`` be the anchors: units pairwise too far apart to share a
    territory (the pricing's distance rows; at most ``K`` of them). In a plan
    ``S_1..S_K`` (a partition of the units into ``K`` sets in the band), each anchor
    ``a`` lies in exactly one territory, no territory holds two, so exactly one territory
    holds ``a`` and no other anchor (slot ``a``, count 1) and the other ``K - |A|`` hold
    no anchor (count ``K - |A|``); unsplit, ``|A|`` territories hold one anchor each (slot
    ``-2``, count ``|A|``). Every unit lies in exactly one territory, so
    ``sum_j pi(S_j) = sum pi`` and

        sum_j c(S_j) = sum pi + sum_j (c(S_j) - pi(S_j))
                     >= sum pi + sum over slots of count * r
                     >= sum pi + sum over slots of count * min(r, mu).

    The last step only weakens the bound (kept from Farley's form: one slot of count
    ``K`` gives ``sum pi + K mu + K min(0, r - mu)``, his bound with the least reduced
    cost ``r - mu`` clipped at 0). Any ``pi`` and ``mu`` do; a plan cuts half of
    ``sum_j c(S_j)``. The slots are a split of the single slot, never weaker: each
    slot's least value is at least the least over every set."""
    return (tot + sum(count * min(r, mu) for count, r in slots)) / 2


def slot_counts(k: int, anchors, split: bool = True) -> list[tuple[int | None, int]]:
    """The pricing's slots and how many territories of every plan each holds (see
    lagrangian): the sets holding no anchor (``-1``, ``K - |A|`` territories, left out at
    0), and each anchor's sets (one territory each), or with ``split`` off the sets holding
    one anchor, any (``-2``, ``|A|`` territories); no anchor: one slot of every set
    (None)."""
    if not len(anchors):
        return [(None, k)]
    out: list[tuple[int | None, int]] = [(-1, k - len(anchors))] if k > len(anchors) else []
    if not split:
        return [*out, (-2, len(anchors))]
    return out + [(int(a), 1) for a in anchors]


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
    pricer = Pricer(inst, hs, threads, deadline)
    mat = inst.matrix
    nbrs = [mat.indices[mat.indptr[v] : mat.indptr[v + 1]] for v in range(n)]
    deg = np.diff(mat.indptr).astype(float)
    rng = np.random.default_rng(0)
    # a spread of compact sets first: the master's first duals are then not the wild
    # ones of a handful of columns
    for x in grow_sets(inst, nbrs, deg, np.zeros(n), rng, seed_sets):
        master.add(x)
    best = -math.inf
    history: list[tuple[float, float]] = []
    it = 0
    lp, lp_opt = None, False
    centre = None  # the duals of the last exact pricing (the smoothing's centre)
    # the pricing's slots (see lagrangian): each anchor's sets, and the sets holding none
    slots = slot_counts(k, pricer.anchors if SLOTS else [], SPLIT)

    def offer(lag: float) -> None:
        nonlocal best
        if lag > best:
            best = lag
            if on_bound is not None:
                on_bound(math.ceil(best - _SAFE))

    def reduced(pi: np.ndarray, mu: float) -> np.ndarray:
        if not master.sets:
            return np.zeros(0)
        sets = np.asarray(master.sets, dtype=float)
        return np.asarray(master.costs, dtype=float) - sets @ pi - mu

    def cheap(pi: np.ndarray, mu: float) -> list[np.ndarray]:
        # grown sets, and local search from the known sets of least reduced cost
        grown = grow_sets(inst, nbrs, deg, pi, rng, grow)
        starts = [master.sets[i] for i in np.argsort(reduced(pi, mu))[:_STARTS]]
        found = grown + [improve(inst, nbrs, deg, pi, x) for x in starts + grown[:10]]
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
        done: list[tuple[int, float]] = []  # (count, proven least value) of priced slots
        sets, rmin = [], math.inf
        for i, (slot, count) in enumerate(slots):

            def running(r, count=count, tot=tot, mu_now=mu_now, done=done):
                # the bound the pricing has proven so far, passed on as it rises (once
                # every other slot has its own)
                if len(done) == len(slots) - 1:
                    offer(lagrangian(tot, mu_now, [*done, (count, r)]))

            pricer.on_dual = running
            now = time.perf_counter()
            # every slot gets its share of the time left, so each proves something
            until = now + (deadline - now) / (len(slots) - i)
            if goal is not None:
                got, r = pricer.price(spi, limit=limit, sols=sols, slot=slot, until=until)
            else:
                got, r = pricer.price(pi, slot=slot, until=until)
            sets += got
            if EARLY and any(boundary(inst, x) - float(spi[x].sum()) - smu < -_TOL for x in got):
                # columns for the master: this round's bound cannot close; the slot goes
                # first next round (the last one still completes the round's bound)
                slots.insert(0, slots.pop(i))
                if i < len(slots) - 1:
                    rmin = None
                    break
            if r == math.inf:  # not one set meets the band (in a slot some plan needs)
                return ColumnBound(None, None, False, None, False, it,
                                   time.perf_counter() - t0, infeasible=True)  # fmt: skip
            if r is None or rmin is None:
                rmin = None
            else:
                done.append((count, r))
                rmin = min(rmin, r)
        if rmin is not None:
            # any multipliers give a bound: every plan cuts at least this many edges
            offer(lagrangian(tot, mu_now, done))
            history.append((time.perf_counter() - t0, best))
        if goal is not None and best > -math.inf and math.ceil(best - _SAFE) >= goal:
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
