"""What the search minimizes: balance bands, cut edges and compactness.

A plan is ranked lexicographically by :func:`score`: the primary balance column outside
its band (the worst territory, then all), the secondary columns outside theirs, cut
edges, then the primary's largest deviation. Single moves are judged by
:func:`cut_gain` (edges no longer cut), :func:`compactness_gain` (area-scaled squared
distance to the territories' centroids) and :func:`violation_delta` (change in band
violation). All read a :class:`~patchmap.partition.state.SearchState`'s tallies.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from patchmap.partition.state import SearchState

__all__ = [
    "Bands",
    "compactness_gain",
    "cut_gain",
    "imbalance",
    "max_deviation",
    "score",
    "secondary_excess",
    "violation_delta",
]


class Bands:
    """Per territory and balance column: the goal (its share of the total) and the band
    ``[lo, hi]`` around it allowed by the column's tolerance ``tol``."""

    def __init__(self, goal: list[list[float]], tol: list[float]) -> None:
        self.goal = goal
        self.tol = list(tol)
        m = len(self.tol)
        self.lo = [[g[j] * (1 - tol[j]) for j in range(m)] for g in goal]
        self.hi = [[g[j] * (1 + tol[j]) for j in range(m)] for g in goal]

    def set_primary(self, slack: float) -> None:
        """Widen (slack > 1), narrow (< 1) or restore (slack = 1) the primary band."""
        tol = self.tol[0] * slack
        for t, g in enumerate(self.goal):
            self.lo[t][0] = g[0] * (1 - tol)
            self.hi[t][0] = g[0] * (1 + tol)

    def excess(self, t: int, j: int, x: float) -> float:
        """How far total ``x`` of column j lies outside territory t's band (a fraction of
        its goal; 0 inside)."""
        hi, lo = self.hi[t][j], self.lo[t][j]
        if x > hi:
            return (x - hi) / self.goal[t][j]
        if x < lo:
            return (lo - x) / self.goal[t][j]
        return 0.0


def cut_gain(s: SearchState, u: int, p: int, q: int) -> int:
    """Edges no longer cut when u moves p -> q (negative when more are cut)."""
    cp = cq = 0
    lab = s.lab
    for v in s.nbrs[u]:
        lv = lab[v]
        if lv == p:
            cp += 1
        elif lv == q:
            cq += 1
    return cq - cp


def compactness_gain(s: SearchState, u: int, p: int, q: int) -> float:
    """Compactness gain of moving u from p to q: squared distances to the territories'
    centroids, each scaled by its territory's area (scale-free, ~1 at the edge of a disc)."""
    x, y = s.x[u], s.y[u]
    sap, saq = s.sa[p], s.sa[q]
    dpx = x - s.sx[p] / sap
    dpy = y - s.sy[p] / sap
    dqx = x - s.sx[q] / saq
    dqy = y - s.sy[q] / saq
    return 3.14159 * ((dpx * dpx + dpy * dpy) / sap - (dqx * dqx + dqy * dqy) / saq)


def violation_delta(s: SearchState, u: int, p: int, q: int, first: int = 0) -> float:
    """Change in band violation if u moves p -> q (columns from ``first`` on)."""
    d = 0.0
    row = s.rows[u]
    excess = s.bands.excess
    for j in range(first, s.m):
        wj = row[j]
        if wj == 0:
            continue
        tp, tq = s.tot[p][j], s.tot[q][j]
        d += excess(p, j, tp - wj) - excess(p, j, tp)
        d += excess(q, j, tq + wj) - excess(q, j, tq)
    return d


def max_deviation(s: SearchState, j: int = 0) -> float:
    """Largest absolute deviation of column j from the territories' goals (a fraction)."""
    goal = s.bands.goal
    return max(abs(s.tot[t][j] / goal[t][j] - 1) for t in range(s.k) if goal[t][j] > 0)


def score(s: SearchState) -> tuple:
    """Lexicographic plan quality: primary outside its band (the worst territory, then
    all), secondaries outside theirs, cut edges, primary deviation (smaller is better)."""
    excess = s.bands.excess
    over = [excess(t, 0, s.tot[t][0]) for t in range(s.k)]
    rest = sum(excess(t, j, s.tot[t][j]) for t in range(s.k) for j in range(1, s.m))
    return (
        round(max(over), 6),
        round(sum(over), 6),
        round(rest, 6),
        s.cut_edges(),
        round(max_deviation(s), 6),
    )


def imbalance(s: SearchState, goal: float = 1.0) -> tuple[float, float]:
    """Primary column: (largest deviation beyond ``goal`` x tolerance, sum of squared
    deviations), in units of its tolerance; (0, ...) when every total is inside.
    Infinite when the state is over its move budget, so no step that overspends counts
    as progress."""
    if s.over_budget():
        return float("inf"), float("inf")
    worst, sq = 0.0, 0.0
    tol = s.bands.tol[0]
    for t in range(s.k):
        g = s.bands.goal[t][0]
        if g > 0:
            d = abs(s.tot[t][0] / g - 1) / tol
            sq += d * d
            if d - goal > worst:
                worst = d - goal
    return worst, sq


def secondary_excess(s: SearchState, slack: float = 0.9) -> float:
    """Sum over territories and secondary columns of the deviation beyond ``slack`` x
    tolerance, in units of tolerance (0 when all inside)."""
    total = 0.0
    for j in range(1, s.m):
        tol = s.bands.tol[j]
        for t in range(s.k):
            g = s.bands.goal[t][j]
            if g > 0:
                d = abs(s.tot[t][j] / g - 1) / tol - slack
                if d > 0:
                    total += d
    return total
