"""A proof that rep homes cap the balance: too few corridors between two parts of the map.

Take units ``C`` whose removal leaves the map in two sides ``A`` and ``B`` (a corridor,
a narrow neck). Territories are connected, so every territory reaching from its home on
one side into the other holds a unit of ``C``, and no unit is in two territories: at
most ``|C|`` territories hold units of both sides (rep homes in ``C`` included). When
side A holds more weight than its reps' territories can carry, the surplus needs
territories coming in from outside, each at most ``goal (1 + e)``; when it holds less,
its reps' territories must reach out, each at most that much. Both counts, with the
homes inside ``C``, must fit in ``|C|``: the smallest ``e`` for which they do is a lower
bound on the largest deviation of every plan with these homes, whatever the search.

:func:`corridor_bound` looks for such necks with minimum vertex cuts (maximum flow,
scipy) between the two ends of straight sweeps across the map, and returns the best
bound with its neck; :meth:`CorridorBound.sentence` words it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import breadth_first_order, maximum_flow

__all__ = ["CorridorBound", "corridor_bound", "corridor_deviation"]

DIRECTIONS = 12  # sweep directions
STEPS = 48  # sweep positions per direction
BANDS = (1, 3, 6)  # gaps (in steps) between the two ends of a sweep
MAX_CUT = 40  # necks wider than this are not examined (they bound nothing useful)


@dataclass
class CorridorBound:
    """``deviation``: no plan deviates less (largest |total / goal - 1| of the primary);
    ``cut``: the neck's units (indices); ``side``: the units of side A; ``homes``: reps
    living in A, in the neck and in B; ``weight``: A's and B's totals in mean shares."""

    deviation: float = 0.0
    cut: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    side: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    homes: tuple[int, int, int] = (0, 0, 0)
    weight: tuple[float, float] = (0.0, 0.0)

    def sentence(self, ids=None) -> str:
        """The proof in one sentence (unit ids from ``ids`` when given)."""
        if self.deviation <= 0:
            return "no neck of the map limits the balance"
        name = [str(ids[i]) if ids is not None else str(i) for i in self.cut[:8].tolist()]
        more = ", ..." if len(self.cut) > 8 else ""
        ka, kc, kb = self.homes
        wa, wb = self.weight
        return (
            f"{len(self.cut)} units ({', '.join(name)}{more}) are the only links between "
            f"a part of the map holding {wa:.2f} territories' worth with {ka} reps' homes "
            f"and the rest holding {wb:.2f} with {kb}" + (f" ({kc} homes in the neck)" if kc else "")
            + f": at most {len(self.cut)} territories can cross, so some territory is at "
            f"least {self.deviation:.2%} off its share"
        )  # fmt: skip


def _fewest(need: float, caps: np.ndarray) -> float:
    """Fewest of ``caps`` (largest first) adding up to ``need`` (inf when all fall short)."""
    if need <= 1e-9 * max(caps.max(initial=1.0), 1.0):
        return 0
    c = np.cumsum(np.sort(caps)[::-1])
    i = int(np.searchsorted(c, need * (1 - 1e-12)))
    return i + 1 if i < len(c) else math.inf


def corridor_deviation(
    w: np.ndarray, goal: np.ndarray, home_side: np.ndarray, in_a: np.ndarray, in_cut: np.ndarray
) -> float:
    """The bound of one neck: smallest e such that side A (``in_a``), the neck (``in_cut``)
    and side B can be covered with every territory within ``goal (1 +- e)``.

    ``goal``: each territory's goal; ``home_side``: 0, 1 or 2 per territory (its home in
    A, the neck or B). Counts that cannot fit give 0 (no bound from this neck).
    """
    c = int(in_cut.sum())
    in_b = ~in_a & ~in_cut
    wa, wb = float(w[in_a].sum()), float(w[in_b].sum())
    ga, gb = goal[home_side == 0], goal[home_side == 2]
    ka_c = int((home_side == 1).sum())

    def fits(e: float) -> bool:
        lo, hi = 1 - e, 1 + e
        # reps of a side reaching out (its weight falls short), others coming in (surplus)
        xa = _fewest(lo * ga.sum() - wa, hi * ga)
        xb = _fewest(lo * gb.sum() - wb, hi * gb)
        ya = _fewest(wa - hi * ga.sum(), hi * goal[home_side != 0])
        yb = _fewest(wb - hi * gb.sum(), hi * goal[home_side != 2])
        return xa + ya <= c and xb + yb <= c and xa + xb + ka_c <= c

    if fits(0.0):
        return 0.0
    lo, hi = 0.0, 1.0
    while not fits(hi):
        lo, hi = hi, 2 * hi
        if hi > 1e6:
            return 0.0
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if fits(mid) else (mid, hi)
    return hi


def _neck(m: sparse.coo_matrix, n: int, first: np.ndarray, last: np.ndarray):
    """Minimum vertex cut between the units ``first`` and ``last`` (masks): its size, the
    units on the ``first`` side and the cut (masks), by maximum flow on split nodes."""
    big = 4 * n
    ei, ej = m.row, m.col
    s, t = 2 * n, 2 * n + 1
    fa, la = np.flatnonzero(first), np.flatnonzero(last)
    rows = np.concatenate([np.arange(n), n + ei, n + ej, np.full(len(fa), s), n + la])
    cols = np.concatenate([n + np.arange(n), ej, ei, fa, np.full(len(la), t)])
    cap = np.concatenate([np.ones(n), np.full(2 * len(ei) + len(fa) + len(la), big)])
    g = sparse.csr_matrix((cap.astype(np.int32), (rows, cols)), shape=(2 * n + 2, 2 * n + 2))
    res = maximum_flow(g, s, t)
    left = (g - res.flow).tocsr()
    left.data = (left.data > 0).astype(np.int8)
    left.eliminate_zeros()
    seen = np.zeros(2 * n + 2, dtype=bool)
    seen[breadth_first_order(left, s, directed=True, return_predecessors=False)] = True
    return int(res.flow_value), seen[:n] & seen[n : 2 * n], seen[:n] & ~seen[n : 2 * n]


def corridor_bound(
    matrix: sparse.spmatrix, xy: np.ndarray, w: np.ndarray, homes: np.ndarray,
    shares: np.ndarray | None = None, *, directions: int = DIRECTIONS, steps: int = STEPS,
) -> CorridorBound:  # fmt: skip
    """The best :class:`CorridorBound` over necks found by sweeps across the map.

    ``matrix``: the units' adjacency (the graph contiguity is judged on); ``xy``: unit
    positions; ``w``: the primary column; ``homes``: each territory's home unit;
    ``shares``: target fractions (equal by default). Each sweep runs along one of
    ``directions`` directions; at each of ``steps`` positions, the units behind the
    position and those some steps ahead are separated by a minimum vertex cut.
    """
    w = np.asarray(w, dtype=float)
    n, k = len(w), len(homes)
    share = np.full(k, 1.0 / k) if shares is None else np.asarray(shares, dtype=float)
    goal = share * w.sum()
    m = sparse.triu(sparse.csr_matrix(matrix), k=1).tocoo()
    best = CorridorBound()
    homes = np.asarray(homes)
    for a in range(directions):
        th = np.pi * a / directions
        p = xy @ np.array([np.cos(th), np.sin(th)])
        qs = np.quantile(p, np.linspace(0.03, 0.97, steps))
        for i in range(steps):
            for band in BANDS:
                if i + band >= steps:
                    continue
                size, in_a, in_cut = _neck(m, n, p <= qs[i], p >= qs[i + band])
                if size == 0 or size > MAX_CUT:
                    continue
                side = np.where(in_a[homes], 0, np.where(in_cut[homes], 1, 2))
                e = corridor_deviation(w, goal, side, in_a, in_cut)
                if e > best.deviation:
                    mean = w.sum() / k
                    best = CorridorBound(
                        e, np.flatnonzero(in_cut), np.flatnonzero(in_a),
                        (int((side == 0).sum()), int((side == 1).sum()), int((side == 2).sum())),
                        (float(w[in_a].sum() / mean), float(w[~in_a & ~in_cut].sum() / mean)),
                    )  # fmt: skip
    return best
