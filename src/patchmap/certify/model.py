"""The exact model of a plan's constraints, and the variable fixing that makes it strong.

An :class:`Instance` is what any plan must satisfy, as flat arrays: the unit graph, the
balance weights, each territory's band per column, the units fixed to a territory
(locks and rep homes) and whether territories must be contiguous. :func:`formulate`
turns it into a :class:`Formulation` of the labelling model of Validi & Buchanan
("Political districting to minimize cut edges", 2022): which unit may go to which
territory (``allowed``), after

- **distance fixing** (with contiguity): a territory holding units ``a`` and ``i`` holds a
  whole path between them, so when the lightest path (summing the primary weight of its
  units) is heavier than the territory's cap, ``i`` cannot join ``a``'s territory;
- **symmetry handling**: interchangeable territories (same band, nothing fixed) get
  anchors, a set of units pairwise too far apart to share a territory, each fixed to its
  own territory; the rest are ordered by their lowest unit in a vertex order (orbitope
  rows ``x[i, j] <= sum of x[i', j-1] over i' before i``).

Everything here removes only labellings that no feasible plan has, so a bound of the
model is a bound for every plan. :func:`cut_edges`, :func:`pieces` and :func:`meets` judge
a labelling of an instance (what it cuts, whether it meets every constraint), and
:func:`trivial_bound` is the bound that needs no solver. The solver-side code is in
:mod:`.bound`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import connected_components, dijkstra

__all__ = [
    "MAX_CELLS",
    "Formulation",
    "Instance",
    "add_rows",
    "better",
    "cut_edges",
    "formulate",
    "is_feasible",
    "meets",
    "pieces",
    "trivial_bound",
]

MAX_CELLS = 400_000  # unit x territory pairs beyond which no exact model is built
_DIST_UNITS = 2_000  # all-pairs distances up to this many units, from anchors only beyond
_EPS = 1e-9  # relative widening of every band (a relaxation: bounds stay valid)


@dataclass(frozen=True)
class Instance:
    """What a plan must satisfy: units ``0..n-1`` joined by edges ``ei[t] - ej[t]``,
    ``weights`` (units x columns, primary first), ``lo``/``hi`` (territories x columns:
    each territory's band per column), ``fixed`` (territory code per unit, -1 free), and
    whether every territory must be ``contiguous``. ``names`` and ``columns`` are only used
    to word reasons."""

    ei: np.ndarray
    ej: np.ndarray
    weights: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    fixed: np.ndarray
    contiguous: bool = True
    names: list[str] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        """Number of units."""
        return int(self.weights.shape[0])

    @property
    def k(self) -> int:
        """Number of territories."""
        return int(self.lo.shape[0])

    @property
    def matrix(self) -> sparse.csr_matrix:
        """The symmetric 0/1 adjacency matrix."""
        n = self.n
        a = sparse.coo_matrix((np.ones(len(self.ei)), (self.ei, self.ej)), shape=(n, n))
        return (a + a.T).tocsr().sign()

    @classmethod
    def from_bands(
        cls,
        ei: np.ndarray,
        ej: np.ndarray,
        weights: np.ndarray,
        *,
        shares: np.ndarray,
        tolerances: list[float],
        fixed: np.ndarray | None = None,
        contiguous: bool = True,
        names: list[str] | None = None,
        columns: list[str] | None = None,
    ) -> Instance:
        """The instance whose territory ``j`` holds ``shares[j]`` of every column's total
        within ``tolerances[c]`` (0.005 = 0.5%), as :func:`patchmap.partition.plan.build_plan`
        judges a plan; bands are widened by a relative 1e-9 (a relaxation)."""
        w = np.asarray(weights, dtype=float)
        if w.ndim == 1:
            w = w[:, None]
        s = np.asarray(shares, dtype=float)
        s = s / s.sum()
        tot = w.sum(axis=0)
        tol = np.asarray(tolerances, dtype=float)
        mid = s[:, None] * tot[None, :]
        lo = mid * (1 - tol[None, :]) * (1 - _EPS) - _EPS
        hi = mid * (1 + tol[None, :]) * (1 + _EPS) + _EPS
        n = w.shape[0]
        fx = np.full(n, -1, dtype=np.int64) if fixed is None else np.asarray(fixed, np.int64)
        k = len(s)
        return cls(
            np.asarray(ei, np.int64), np.asarray(ej, np.int64), w, lo, hi, fx, contiguous,
            list(names) if names is not None else [f"T{j + 1:02d}" for j in range(k)],
            list(columns) if columns is not None else [f"w{c}" for c in range(w.shape[1])],
        )  # fmt: skip


@dataclass
class Formulation:
    """The labelling model after fixing: ``allowed[i, j]`` (unit ``i`` may join
    territory ``j``), ``anchors`` (territory -> a unit fixed in it, -1 none), the vertex
    ``order`` and the ``chain`` of interchangeable territories ordered by their lowest unit
    in it; ``fixings`` counts the pairs removed; ``empty`` lists units with nowhere to go."""

    instance: Instance
    allowed: np.ndarray
    anchors: np.ndarray
    order: np.ndarray
    chain: list[int]
    fixings: int
    empty: np.ndarray
    group: list[int] = field(default_factory=list)
    far: list[int] = field(default_factory=list)

    @property
    def cells(self) -> int:
        """Number of unit-territory variables left."""
        return int(self.allowed.sum())

    def canonical(self, labels: np.ndarray) -> np.ndarray:
        """The same plan with its interchangeable territories renamed the way the model
        orders them (anchored ones first, then by lowest unit in ``order``), so a plan can
        warm-start the model."""
        lab = np.asarray(labels, dtype=np.int64).copy()
        group = list(self.group)
        if not group:
            return lab
        rename: dict[int, int] = {}
        anchored = [j for j in group if j not in self.chain]
        for j, u in zip(anchored, self.far, strict=False):
            if lab[u] in group and lab[u] not in rename:
                rename[int(lab[u])] = j
        pos = np.empty(len(lab), dtype=np.int64)
        pos[self.order] = np.arange(len(lab))
        rest = [j for j in group if j not in rename]
        first = {j: int(pos[lab == j].min()) if (lab == j).any() else len(lab) for j in rest}
        for j, target in zip(sorted(rest, key=first.get), self.chain, strict=False):
            rename[j] = target
        out = lab.copy()
        for old, new in rename.items():
            out[lab == old] = new
        return out


def add_rows(h, rows) -> None:
    """Add ``rows`` (``(lower, upper, columns, values)`` each) to the HiGHS program ``h``
    in one call (the exact model and the column bound's pricing both build rows so)."""
    if not rows:
        return
    lo = np.array([r[0] for r in rows], dtype=float)
    hi = np.array([r[1] for r in rows], dtype=float)
    starts = np.cumsum([0] + [len(r[2]) for r in rows[:-1]]).astype(np.int32)
    idx = np.concatenate([np.asarray(r[2]) for r in rows]).astype(np.int32)
    val = np.concatenate([np.asarray(r[3], dtype=float) for r in rows])
    h.addRows(len(rows), lo, hi, len(idx), starts, idx, val)


def weighted_distances(
    inst: Instance, sources: np.ndarray | None = None, blocked: np.ndarray | None = None
) -> np.ndarray:
    """Lightest path weight between units (primary weight of every unit on the path, both
    ends included), from ``sources`` (all units when None), never entering ``blocked``
    units (a mask); ``inf`` between pieces."""
    p = inst.weights[:, 0]
    m = inst.matrix.tocoo()
    if blocked is not None:
        keep = ~blocked[m.col]
        m = sparse.coo_matrix((m.data[keep], (m.row[keep], m.col[keep])), shape=m.shape)
    # arc u -> v costs the head's weight; a tiny floor keeps zero-weight units as arcs
    cost = sparse.csr_matrix((p[m.col] + 1e-12, (m.row, m.col)), shape=m.shape)
    src = np.arange(inst.n) if sources is None else np.asarray(sources)
    d = dijkstra(cost, directed=True, indices=src)
    return d + p[src][:, None]


def _far_set(dist: np.ndarray, cap: float, limit: int, weight: np.ndarray) -> list[int]:
    """Up to ``limit`` units pairwise farther apart than ``cap`` (so no two can share a
    territory): greedy, heaviest-first among the units with the fewest close ones."""
    close = (dist <= cap) & (dist.T <= cap)
    deg = close.sum(axis=1)
    order = np.lexsort((-weight, deg))
    out: list[int] = []
    for i in order:
        if len(out) >= limit:
            break
        if not any(close[i, j] for j in out):
            out.append(int(i))
    return out


def _interchangeable(inst: Instance) -> list[int]:
    """The largest set of territories with identical bands and no fixed unit."""
    taken = set(inst.fixed[inst.fixed >= 0].tolist())
    groups: dict[bytes, list[int]] = {}
    for j in range(inst.k):
        if j in taken:
            continue
        key = np.round(np.r_[inst.lo[j], inst.hi[j]], 6).tobytes()
        groups.setdefault(key, []).append(j)
    return max(groups.values(), key=len) if groups else []


def formulate(inst: Instance) -> Formulation:
    """Fix what the constraints rule out and break the symmetry of interchangeable
    territories (see the module docstring). Every removed pair is one no feasible plan
    uses."""
    n, k = inst.n, inst.k
    p = inst.weights[:, 0]
    cap = inst.hi[:, 0]
    allowed = np.ones((n, k), dtype=bool)
    # a unit heavier than a territory's cap (any column) cannot join it
    for c in range(inst.weights.shape[1]):
        allowed &= inst.weights[:, c][:, None] <= inst.hi[None, :, c]
    fx = inst.fixed
    for i in np.flatnonzero(fx >= 0):
        keep = allowed[i, fx[i]]
        allowed[i] = False
        allowed[i, fx[i]] = keep
    anchors = np.full(k, -1, dtype=np.int64)
    for j in range(k):
        own = np.flatnonzero(fx == j)
        if len(own):
            anchors[j] = own[np.argmax(p[own])]
    chain = _interchangeable(inst)
    group = list(chain)
    dist = None
    if inst.contiguous and n <= _DIST_UNITS:
        dist = weighted_distances(inst)
    if len(chain) == k and dist is not None:
        # every territory is interchangeable: anchor far-apart units, one per territory
        far = _far_set(dist, float(cap[chain[0]]), k, p)
        for t, u in enumerate(far):
            j = chain[t]
            anchors[j] = u
            allowed[u] = False
            allowed[u, j] = True
        chain = chain[len(far) :]
        front = far
    else:
        front, far = [], []
    rest = np.setdiff1d(np.arange(n), np.asarray(front, dtype=np.int64))
    order = np.r_[np.asarray(front, dtype=np.int64), rest[np.argsort(-p[rest], kind="stable")]]
    pos = np.empty(n, dtype=np.int64)
    pos[order] = np.arange(n)
    # diagonal fixing: the t-th chained territory's lowest unit comes after t others
    for t, j in enumerate(chain):
        allowed[pos < len(front) + t, j] = False
    if inst.contiguous:
        # a territory's units are reached from its anchor without crossing a unit that
        # is fixed elsewhere (a lock, a home, another anchor)
        owner = fx.copy()
        owner[anchors[anchors >= 0]] = np.flatnonzero(anchors >= 0)
        for j in np.flatnonzero(anchors >= 0):
            blocked = (owner >= 0) & (owner != j)
            if blocked.any() or dist is None:
                d = weighted_distances(inst, anchors[j : j + 1], blocked)[0]
            else:
                d = dist[anchors[j]]
            allowed[:, j] &= d <= cap[j] * (1 + 1e-9) + 1e-9
        # units in a piece of the graph too light to hold any territory go nowhere
        ncomp, comp = connected_components(inst.matrix, directed=False)
        if ncomp > 1:
            piece = np.bincount(comp, weights=p, minlength=ncomp)
            light = piece[comp][:, None] < inst.lo[None, :, 0]
            allowed &= ~light
    fixings = int(n * k - allowed.sum())
    empty = np.flatnonzero(~allowed.any(axis=1))
    return Formulation(inst, allowed, anchors, order, list(chain), fixings, empty, group, far)


def cut_edges(inst: Instance, labels: np.ndarray) -> int:
    """Number of edges whose two units carry different labels."""
    lab = np.asarray(labels)
    return int(np.count_nonzero(lab[inst.ei] != lab[inst.ej]))


def trivial_bound(inst: Instance) -> int:
    """k territories over c pieces of the graph cut at least k - c edges (the territories
    of one piece, joined by the piece's edges, form a connected quotient graph)."""
    if not inst.contiguous:
        return 0
    ncomp, _ = connected_components(inst.matrix, directed=False)
    return max(0, inst.k - ncomp)


def pieces(inst: Instance, labels: np.ndarray, j: int) -> list[np.ndarray]:
    """The connected pieces of territory ``j`` (unit index arrays), largest first."""
    units = np.flatnonzero(labels == j)
    if len(units) <= 1:
        return [units]
    sub = inst.matrix[units][:, units]
    nc, comp = connected_components(sub, directed=False)
    out = [units[comp == c] for c in range(nc)]
    w = inst.weights[:, 0]
    return sorted(out, key=lambda u: (-w[u].sum(), -len(u)))


def meets(inst: Instance, labels: np.ndarray) -> bool:
    """True when a labelling meets every band (with the model's hair of slack), every
    fixed unit and, if asked, contiguity."""
    k = inst.k
    for c in range(inst.weights.shape[1]):
        tot = np.bincount(labels, weights=inst.weights[:, c], minlength=k)
        if (tot < inst.lo[:, c]).any() or (tot > inst.hi[:, c]).any():
            return False
    fx = inst.fixed >= 0
    if (labels[fx] != inst.fixed[fx]).any():
        return False
    return not inst.contiguous or all(len(pieces(inst, labels, j)) == 1 for j in range(k))


def better(inst: Instance, a: np.ndarray | None, b: np.ndarray) -> np.ndarray:
    """The plan of the two cutting fewer edges (``a`` on a tie; ``b`` when ``a`` is None)."""
    return b if a is None or cut_edges(inst, b) < cut_edges(inst, a) else a


def is_feasible(inst: Instance, labels: np.ndarray) -> bool:
    """True when ``labels`` meets every constraint of ``inst``."""
    return meets(inst, np.asarray(labels, dtype=np.int64))
