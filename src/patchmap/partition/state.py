"""Search state: the labelling and the running tallies every move keeps up to date.

A :class:`SearchState` holds one label per unit and, per territory, its total of every
balance column, its unit count and its area-weighted centroid sums, so a move costs a
few additions and any balance or compactness question is answered from the tallies
without a pass over the units. The tallies are flat Python lists (scalar reads and
writes on them are several times faster than on numpy arrays from Python code); ``labn``
mirrors the labels as a numpy array for whole-plan vector queries (boundaries, cut
edges). Moves can be recorded and undone, and a realignment's moved weight (the primary
column away from its original territory) can be counted against a budget.
"""

from __future__ import annotations

import numpy as np

from patchmap.partition.objective import Bands
from patchmap.partition.problem import Problem

__all__ = ["SearchState"]


class SearchState:
    """Labels and running tallies over a :class:`Problem` (see the module docstring).

    ``lab``/``labn`` labels (list and numpy mirror); ``tot[t][j]`` totals; ``cnt[t]``
    unit counts; ``sa``, ``sx``, ``sy`` area and area-weighted coordinate sums;
    ``bands`` the balance bands (:class:`~patchmap.partition.objective.Bands`);
    ``locked`` per unit (list, with the numpy mirror ``lockn``); ``rng`` the random
    generator every random choice uses.
    """

    def __init__(self, problem: Problem, lab: np.ndarray, rng: np.random.Generator) -> None:
        graph, W = problem.graph, problem.weights
        k = problem.k
        self.problem = problem
        self.g = graph
        self.nbrs = graph.nbrs
        self.k = k
        self.m = W.shape[1]
        self.rows = W.tolist()
        total = W.sum(axis=0)
        self.bands = Bands(
            [[float(total[j] * sh) for j in range(self.m)] for sh in problem.shares], problem.tol
        )
        self.x = problem.xy[:, 0].tolist()
        self.y = problem.xy[:, 1].tolist()
        a = np.maximum(problem.area, 1e-9)
        self.a = a.tolist()
        self.lockn = np.asarray(problem.locked) >= 0
        self.locked = self.lockn.tolist()
        self.rng = rng
        self.beta = problem.compactness
        self.W, self.xy, self.area = W, problem.xy, a
        self.origin: np.ndarray | None = None
        self.budget = np.inf
        self.moved = 0.0
        self.load(np.asarray(lab))

    def load(self, lab: np.ndarray) -> None:
        """Set the labelling and recompute every running total from it."""
        k, W, xy, a = self.k, self.W, self.xy, self.area
        self.lab = lab.tolist()
        self.labn = np.array(lab, dtype=np.int64)  # numpy mirror of lab for vector queries
        self.log: list[tuple[int, int, int]] | None = None
        self.tot = np.stack(
            [np.bincount(lab, weights=W[:, j], minlength=k) for j in range(self.m)], axis=1
        ).tolist()
        self.cnt = np.bincount(lab, minlength=k).tolist()
        self.sa = np.bincount(lab, weights=a, minlength=k).tolist()
        self.sx = np.bincount(lab, weights=a * xy[:, 0], minlength=k).tolist()
        self.sy = np.bincount(lab, weights=a * xy[:, 1], minlength=k).tolist()
        if self.origin is not None:
            self.moved = float(self.W[np.asarray(lab) != self.origin, 0].sum())

    # --- moved weight against a budget (realignment) -----------------------------------------
    def track_moves(self, origin: np.ndarray, budget: float) -> None:
        """Count the primary weight away from its territory in ``origin`` from now on;
        :meth:`over_budget` says when it exceeds ``budget``."""
        self.origin = np.asarray(origin, dtype=np.int64)
        self._origl = self.origin.tolist()
        self._w0 = self.W[:, 0].tolist()
        self.budget = float(budget)
        self.moved = float(self.W[self.labn != self.origin, 0].sum())

    def over_budget(self) -> bool:
        """True when the moved weight exceeds the budget (never without one)."""
        return self.moved > self.budget * (1 + 1e-12) + 1e-9

    # --- bookkeeping -------------------------------------------------------------------------
    def labels(self) -> np.ndarray:
        """A copy of the labels."""
        return self.labn.copy()

    def begin(self) -> None:
        """Start recording moves so :meth:`undo` can take them back."""
        self.log = []

    def undo(self, to: int | None = None) -> None:
        """Take back every move since :meth:`begin`, newest first (recording stops); with
        ``to``, only the moves after that position of the log (recording goes on)."""
        log, self.log = self.log or [], None
        for u, p, q in reversed(log[to:] if to is not None else log):
            self.move(u, q, p)
        if to is not None:
            del log[to:]
            self.log = log

    def move(self, u: int, p: int, q: int) -> None:
        """Move unit ``u`` from territory ``p`` to ``q``, updating every tally."""
        self.lab[u] = q
        self.labn[u] = q
        if self.log is not None:
            self.log.append((u, p, q))
        row = self.rows[u]
        tp, tq = self.tot[p], self.tot[q]
        for j in range(self.m):
            tp[j] -= row[j]
            tq[j] += row[j]
        self.cnt[p] -= 1
        self.cnt[q] += 1
        a = self.a[u]
        ax, ay = a * self.x[u], a * self.y[u]
        self.sa[p] -= a
        self.sa[q] += a
        self.sx[p] -= ax
        self.sx[q] += ax
        self.sy[p] -= ay
        self.sy[q] += ay
        if self.origin is not None:
            o = self._origl[u]
            if p == o:
                self.moved += self._w0[u]
            elif q == o:
                self.moved -= self._w0[u]

    def pin(self, units: list[int], on: bool) -> None:
        """Temporarily lock (or release) units."""
        for u in units:
            self.locked[u] = on
            self.lockn[u] = on

    # --- queries -----------------------------------------------------------------------------
    def cut_edges(self) -> int:
        """Number of edges between different territories."""
        lab = self.labn
        return int((lab[self.g.ei] != lab[self.g.ej]).sum())

    def neighbour_territories(self, u: int) -> dict[int, int]:
        """``{territory: number of u's neighbours in it}``, u's own territory included."""
        lab = self.lab
        counts: dict[int, int] = {}
        for v in self.nbrs[u]:
            lv = lab[v]
            counts[lv] = counts.get(lv, 0) + 1
        return counts

    def boundary(self) -> np.ndarray:
        """Units with a neighbour in another territory."""
        lab = self.labn
        cut = lab[self.g.ei] != lab[self.g.ej]
        b = np.zeros(self.g.n, dtype=bool)
        b[self.g.ei[cut]] = True
        b[self.g.ej[cut]] = True
        return np.flatnonzero(b)

    def boundary_of(self, p: int, q: int) -> list[int]:
        """Units of p that touch q, in index order: a pass over p's members and their
        neighbours (the graph's CSR arrays), not over every edge of the map."""
        lab = self.labn
        mem = np.flatnonzero(lab == p)
        ptr, ind = self.g.matrix.indptr, self.g.matrix.indices
        lens = ptr[mem + 1] - ptr[mem]
        if not len(mem) or not lens.sum():
            return []
        owner = np.repeat(np.arange(len(mem)), lens)
        pos = np.arange(int(lens.sum())) - np.repeat(np.cumsum(lens) - lens, lens)
        hit = lab[ind[ptr[mem][owner] + pos]] == q
        touch = np.zeros(len(mem), dtype=bool)
        touch[owner[hit]] = True
        return mem[touch].tolist()

    def all_boundaries(self) -> dict[tuple[int, int], list[int]]:
        """(p, q) -> units of p touching q, for every pair of neighbouring territories."""
        lab = self.labn
        ei, ej = self.g.ei, self.g.ej
        a, b = lab[ei], lab[ej]
        cut = a != b
        u = np.concatenate([ei[cut], ej[cut]])
        key = np.concatenate([a[cut] * self.k + b[cut], b[cut] * self.k + a[cut]])
        code = np.unique(key * self.g.n + u)
        out: dict[tuple[int, int], list[int]] = {}
        pair, unit = np.divmod(code, self.g.n)
        bounds = np.flatnonzero(np.r_[True, pair[1:] != pair[:-1], True])
        for s0, s1 in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
            p, q = divmod(int(pair[s0]), self.k)
            out[(p, q)] = unit[s0:s1].tolist()
        return out

    def pair_units(self, p: int, q: int) -> list[int]:
        """Units on either side of the boundary between p and q."""
        lab = self.labn
        ei, ej = self.g.ei, self.g.ej
        a, b = lab[ei], lab[ej]
        m = ((a == p) & (b == q)) | ((a == q) & (b == p))
        return np.unique(np.concatenate([ei[m], ej[m]])).tolist()

    def members(self, p: int) -> list[int]:
        """Units of territory p."""
        return np.flatnonzero(self.labn == p).tolist()

    def territory_graph(self) -> list[set[int]]:
        """Neighbouring territories of each territory."""
        lab = self.labn
        a, b = lab[self.g.ei], lab[self.g.ej]
        cut = a != b
        adj: list[set[int]] = [set() for _ in range(self.k)]
        for code in np.unique(a[cut] * self.k + b[cut]).tolist():
            x, y = divmod(code, self.k)
            adj[x].add(y)
            adj[y].add(x)
        return adj
