"""Search state: the labelling and the running tallies every move keeps up to date.

A :class:`SearchState` holds one label per unit and, per territory, its total of every
balance column, its unit count and its area-weighted centroid sums, so a move costs a
few additions and any balance or compactness question is answered from the tallies
without a pass over the units. The tallies are flat Python lists (scalar reads and
writes on them are several times faster than on numpy arrays from Python code); ``labn``
mirrors the labels as a numpy array for whole-plan vector queries (boundaries, cut
edges). Moves can be recorded and undone, and a realignment's moved weight (the primary
column away from its original territory) can be counted against a budget.

The plan's cut structure (cut edges, each unit's cut edges, the territory graph with the
number of edges between each pair of territories, each territory's boundary units) is
kept incrementally: a move only notes the unit, and the next query re-counts the edges
at the units moved since the last one (flat arrays and the graph's unit-to-edge index),
so a query after a few moves costs a few vector operations, not a pass over the map.
"""

from __future__ import annotations

import itertools
import weakref

import numpy as np

from patchmap.partition.objective import Bands
from patchmap.partition.problem import Problem

__all__ = ["SearchState", "incidence"]

_INCIDENCE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_VERSIONS = itertools.count(1)  # labelling versions, never reused


def incidence(graph) -> tuple[np.ndarray, np.ndarray]:
    """The graph's edges at each unit as CSR arrays ``(ptr, eid)``: the positions in
    ``graph.ei``/``graph.ej`` of the edges at unit u are ``eid[ptr[u]:ptr[u + 1]]``
    (built once per graph)."""
    got = _INCIDENCE.get(graph)
    if got is None:
        ends = np.concatenate([graph.ei, graph.ej])
        eid = np.tile(np.arange(len(graph.ei), dtype=np.int64), 2)
        order = np.argsort(ends, kind="stable")
        ptr = np.zeros(graph.n + 1, dtype=np.int64)
        np.cumsum(np.bincount(ends, minlength=graph.n), out=ptr[1:])
        got = (ptr, eid[order])
        _INCIDENCE[graph] = got
    return got


class SearchState:
    """Labels and running tallies over a :class:`Problem` (see the module docstring).

    ``lab``/``labn`` labels (list and numpy mirror); ``tot[t][j]`` totals; ``cnt[t]``
    unit counts; ``sa``, ``sx``, ``sy`` area and area-weighted coordinate sums;
    ``bands`` the balance bands (:class:`~patchmap.partition.objective.Bands`);
    ``locked`` per unit (list, with the numpy mirror ``lockn``); ``rng`` the random
    generator every random choice uses. ``version`` names the labelling: every move
    makes a new one, and :meth:`undo` back to :meth:`begin` restores the version of
    that labelling, so a result computed from the labels alone (``memo``: unit ->
    (version, ...), see :func:`~patchmap.partition.contiguity.can_remove`) still holds
    when the version matches.
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
        self.version = next(_VERSIONS)
        self._begun = self.version
        self.memo: dict[int, tuple] = {}
        self.tot = np.stack(
            [np.bincount(lab, weights=W[:, j], minlength=k) for j in range(self.m)], axis=1
        ).tolist()
        self.cnt = np.bincount(lab, minlength=k).tolist()
        self.sa = np.bincount(lab, weights=a, minlength=k).tolist()
        self.sx = np.bincount(lab, weights=a * xy[:, 0], minlength=k).tolist()
        self.sy = np.bincount(lab, weights=a * xy[:, 1], minlength=k).tolist()
        if self.origin is not None:
            self.moved = float(self.W[np.asarray(lab) != self.origin, 0].sum())
        self._seen: np.ndarray | None = None  # the labels the cut tallies count (None: none yet)
        self._dirty: list[int] = []  # units moved since

    # --- the cut structure, kept incrementally -----------------------------------------------
    def _tally(self) -> None:
        """Count the cut structure from scratch (the first query after a load)."""
        lab, k, n = self.labn, self.k, self.g.n
        ei, ej = self.g.ei, self.g.ej
        a, b = lab[ei], lab[ej]
        cut = a != b
        self._ncut = int(cut.sum())
        self._nfor = np.bincount(ei[cut], minlength=n) + np.bincount(ej[cut], minlength=n)
        lo, hi = np.minimum(a[cut], b[cut]), np.maximum(a[cut], b[cut])
        codes, counts = np.unique(lo * k + hi, return_counts=True)
        self._pairs = dict(zip(codes.tolist(), counts.tolist(), strict=True))
        self._adj: list[set[int]] = [set() for _ in range(k)]
        for code in self._pairs:
            x, y = divmod(code, k)
            self._adj[x].add(y)
            self._adj[y].add(x)
        self._seen = lab.copy()
        self._dirty = []
        self._bnd: list[set[int] | None] = [None] * k
        self._nbnd = 0  # territories with a boundary set

    def _sync(self) -> None:
        """Bring the cut tallies up to date with the moves since the last query."""
        if self._seen is None:
            self._tally()
            return
        if not self._dirty:
            return
        old, lab = self._seen, self.labn
        moved = np.unique(np.array(self._dirty, dtype=np.int64))
        self._dirty = []
        moved = moved[old[moved] != lab[moved]]
        if not len(moved):
            return
        ptr, eid = incidence(self.g)
        lens = ptr[moved + 1] - ptr[moved]
        start = np.repeat(ptr[moved] - np.cumsum(lens) + lens, lens)
        e = np.unique(eid[start + np.arange(int(lens.sum()))])
        ei, ej = self.g.ei[e], self.g.ej[e]
        a0, b0, a1, b1 = old[ei], old[ej], lab[ei], lab[ej]
        c0, c1 = a0 != b0, a1 != b1
        self._ncut += int(c1.sum()) - int(c0.sum())
        d = c1.astype(np.int64) - c0
        nfor = self._nfor
        np.add.at(nfor, ei, d)
        np.add.at(nfor, ej, d)
        k = self.k
        code = np.concatenate(
            [
                (np.minimum(a0, b0) * k + np.maximum(a0, b0))[c0],
                (np.minimum(a1, b1) * k + np.maximum(a1, b1))[c1],
            ]
        )
        sign = np.concatenate([-np.ones(int(c0.sum()), np.int64), np.ones(int(c1.sum()), np.int64)])
        codes, inv = np.unique(code, return_inverse=True)
        net = np.bincount(inv, weights=sign, minlength=len(codes))
        pairs, adj = self._pairs, self._adj
        for c, dn in zip(codes.tolist(), net.tolist(), strict=True):
            if dn == 0:
                continue
            was = pairs.get(c, 0)
            now = was + int(dn)
            x, y = divmod(c, k)
            if now:
                pairs[c] = now
                if not was:
                    adj[x].add(y)
                    adj[y].add(x)
            else:
                del pairs[c]
                adj[x].discard(y)
                adj[y].discard(x)
        if self._nbnd:
            bnd = self._bnd
            ends = np.unique(np.concatenate([ei, ej]))
            for u, t0, t1, f in zip(
                ends.tolist(), old[ends].tolist(), lab[ends].tolist(), nfor[ends].tolist(),
                strict=True,
            ):  # fmt: skip
                b0 = bnd[t0]
                if b0 is not None:
                    b0.discard(u)
                if f > 0:
                    b1 = bnd[t1]
                    if b1 is not None:
                        b1.add(u)
        old[moved] = lab[moved]

    def _boundary_set(self, t: int) -> set[int]:
        """Boundary units of territory t (up to date; found on the first request after a
        load, then kept)."""
        self._sync()
        got = self._bnd[t]
        if got is None:
            got = set(np.flatnonzero((self.labn == t) & (self._nfor > 0)).tolist())
            self._bnd[t] = got
            self._nbnd += 1
        return got

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
        self._begun = self.version

    def undo(self, to: int | None = None) -> None:
        """Take back every move since :meth:`begin`, newest first (recording stops); with
        ``to``, only the moves after that position of the log (recording goes on)."""
        started = self.log is not None
        log, self.log = self.log or [], None
        for u, p, q in reversed(log[to:] if to is not None else log):
            self.move(u, q, p)
        if to is not None:
            del log[to:]
            self.log = log
        elif started:
            self.version = self._begun  # the labels are those at begin() again

    def move(self, u: int, p: int, q: int) -> None:
        """Move unit ``u`` from territory ``p`` to ``q``, updating every tally."""
        self.lab[u] = q
        self.labn[u] = q
        self.version = next(_VERSIONS)
        if self._seen is not None:
            self._dirty.append(u)
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
        self._sync()
        return self._ncut

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
        self._sync()
        return np.flatnonzero(self._nfor > 0)

    def boundary_of(self, p: int, q: int) -> list[int]:
        """Units of p that touch q, in index order: a pass over p's boundary units (kept
        up to date), not over p or the map."""
        if p == q:
            return []
        lab, nbrs = self.lab, self.nbrs
        out = []
        for u in sorted(self._boundary_set(p)):
            for v in nbrs[u]:
                if lab[v] == q:
                    out.append(u)
                    break
        return out

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
        """Neighbouring territories of each territory (fresh sets, kept up to date)."""
        self._sync()
        return [set(a) for a in self._adj]

    def shared_edges(self, p: int, q: int) -> int:
        """Number of edges between territories p and q (0 when they do not touch)."""
        self._sync()
        return self._pairs.get(min(p, q) * self.k + max(p, q), 0) if p != q else 0
