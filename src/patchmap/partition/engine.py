"""The territory engine: balanced, contiguous, compact territories from units.

How it works (each step keeps what the previous one guaranteed):

1. Seed with a balanced power diagram (k-means whose cells are grown or shrunk by
   additive weights until each holds about the same primary total): compact, nearly
   balanced, nearly contiguous.
2. Repair contiguity on the adjacency graph: every territory keeps its heaviest piece;
   stray pieces join the neighbouring territory they touch most.
3. Balance by diffusion: solve the territory-graph Laplacian for the flows that even out
   the totals, then move boundary units along those flows, best-scoring first (cut edges
   saved plus a compactness term), never disconnecting a territory.
4. Refine: boundary units move to a neighbouring territory when that cuts fewer edges or
   makes both territories more compact, and every balance column stays within its band.

Steps 3 and 4 alternate, several restarts from different seeds run, and the best plan
wins (within the balance targets, fewest cut edges). Only boundary units are ever
visited, and the contiguity check is a short breadth-first search around the moved unit.
"""

from __future__ import annotations

import heapq
import time
from collections import deque
from collections.abc import Mapping, Sequence

import geopandas as gpd
import numpy as np
import pandas as pd
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from patchmap.errors import InputError
from patchmap.metrics import cut_edge_fraction, is_contiguous, polsby_popper_from_parts
from patchmap.partition.constraints import BalanceTolerance, Contiguity, check_all
from patchmap.partition.plan import Plan
from patchmap.units.adjacency import Adjacency, build_adjacency

__all__ = ["Partitioner"]

_BFS_BUDGET = 400  # units a contiguity check may visit before it declines the move


class Partitioner:
    """Split units into ``n_territories`` balanced, contiguous, compact territories.

    Parameters
    ----------
    n_territories:
        Number of territories K (2 <= K <= number of units).
    balance:
        Column name(s) to balance. The first is primary and is held to ``target``
        (as tight as unit sizes allow); the others to ``tolerance``.
    tolerance:
        Allowed deviation from the mean for the secondary balance columns (0.05 = 5%).
    target:
        Deviation the primary column is driven below (0.005 = 0.5%).
    id_col:
        Unit id column (the index when the column is absent and ``id_col`` is None).
    seed:
        Seed for every random choice; the same seed gives the same plan.
    compactness:
        Weight of the compactness term against one cut edge when choosing moves.
    labels:
        Format of territory labels, given the 1-based territory number.
    n_init:
        Restarts from different seeds; the best plan is kept.
    """

    def __init__(
        self,
        n_territories: int,
        balance: str | Sequence[str],
        *,
        tolerance: float = 0.05,
        target: float = 0.005,
        id_col: str | None = "unit_id",
        seed: int = 0,
        compactness: float = 0.5,
        labels: str = "T{:02d}",
        n_init: int = 3,
        max_rounds: int = 6,
    ) -> None:
        if isinstance(n_territories, bool) or not isinstance(n_territories, (int, np.integer)):
            raise InputError(f"n_territories must be an integer >= 2, got {n_territories!r}")
        if n_territories < 2:
            raise InputError(f"n_territories must be >= 2, got {n_territories}")
        cols = [balance] if isinstance(balance, str) else list(balance)
        if not cols or not all(isinstance(c, str) and c for c in cols):
            raise InputError(f"balance must be a column name or a list of column names, got {balance!r}")
        if len(set(cols)) != len(cols):
            raise InputError(f"balance columns repeat: {', '.join(cols)}")
        for name, value in (("tolerance", tolerance), ("target", target)):
            if not isinstance(value, (int, float)) or not (0 < float(value) < 1):
                raise InputError(f"{name} must be a fraction between 0 and 1 (0.05 = 5%), got {value!r}")
        if not isinstance(compactness, (int, float)) or compactness < 0:
            raise InputError(f"compactness must be a number >= 0, got {compactness!r}")
        try:
            labels.format(1)
        except (IndexError, KeyError, ValueError, AttributeError):
            raise InputError(f"labels must be a format string like 'T{{:02d}}', got {labels!r}") from None
        if not isinstance(n_init, int) or n_init < 1:
            raise InputError(f"n_init must be an integer >= 1, got {n_init!r}")
        self.n_territories = int(n_territories)
        self.balance = cols
        self.tolerance = float(tolerance)
        self.target = float(target)
        self.id_col = id_col
        self.seed = int(seed)
        self.compactness = float(compactness)
        self.labels = labels
        self.n_init = n_init
        self.max_rounds = int(max_rounds)

    def __repr__(self) -> str:
        return (
            f"Partitioner(n_territories={self.n_territories}, balance={self.balance!r}, "
            f"tolerance={self.tolerance}, target={self.target}, seed={self.seed})"
        )

    @property
    def constraints(self) -> list:
        """The constraint objects this partitioner optimizes for and the plan is checked on."""
        out = [BalanceTolerance(self.balance[0], self.target)]
        out += [BalanceTolerance(c, self.tolerance) for c in self.balance[1:]]
        out.append(Contiguity())
        return out

    # -----------------------------------------------------------------------------------------
    def _weights(self, units: pd.DataFrame) -> np.ndarray:
        cols = []
        for c in self.balance:
            if c not in units.columns:
                raise InputError(f"balance column {c!r} not found (columns: {', '.join(map(str, units.columns))})")
            s = units[c]
            if not (pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)):
                num = pd.to_numeric(s, errors="coerce")
                bad = num.isna() & s.notna()
                if bad.any():
                    raise InputError(f"balance column {c!r} is not numeric (e.g. {s[bad].iloc[0]!r})")
                s = num
            v = s.to_numpy(dtype=float, na_value=np.nan)
            if np.isnan(v).any():
                raise InputError(f"balance column {c!r} has {int(np.isnan(v).sum())} missing values")
            if not np.isfinite(v).all():
                raise InputError(f"balance column {c!r} has infinite values")
            if (v < 0).any():
                raise InputError(f"balance column {c!r} has negative values (e.g. {v[v < 0][0]:g})")
            if v.sum() <= 0:
                raise InputError(f"balance column {c!r} sums to zero: nothing to balance")
            cols.append(v)
        return np.column_stack(cols)

    def fit(
        self,
        units: gpd.GeoDataFrame,
        *,
        adjacency: Adjacency | None = None,
        initial: pd.Series | Mapping | None = None,
        locked: pd.Series | Mapping | None = None,
    ) -> Plan:
        """Partition ``units`` and return the :class:`Plan`.

        ``adjacency`` reuses a prebuilt graph (built with :func:`build_adjacency` otherwise).
        ``initial`` (unit id -> territory label) warm-starts from an existing plan;
        ``locked`` (unit id -> label) pins units to territories, which then never move.
        """
        t0 = time.perf_counter()
        if not isinstance(units, (gpd.GeoDataFrame, pd.DataFrame)):
            raise InputError("units must be a GeoDataFrame of polygons with the balance columns")
        if len(units) == 0:
            raise InputError("units: no units (empty table)")
        id_col = self.id_col if self.id_col in units.columns else None
        if self.id_col is not None and id_col is None and adjacency is None:
            raise InputError(f"id column {self.id_col!r} not found (columns: {', '.join(map(str, units.columns))})")
        W = self._weights(units)
        n = len(units)
        k = self.n_territories
        if k > n:
            raise InputError(f"n_territories={k} exceeds the number of units ({n})")
        if adjacency is None:
            adjacency = build_adjacency(units, id_col=id_col)
        else:
            ids = units[id_col].to_numpy() if id_col else units.index.to_numpy()
            if adjacency.n_units != n or not np.array_equal(np.asarray(adjacency.ids, dtype=object), np.asarray(ids, dtype=object)):
                raise InputError("adjacency ids do not match the units (build it from the same table)")
        ids = np.asarray(adjacency.ids)
        names = [self.labels.format(i + 1) for i in range(k)]
        init_codes, lock_codes, label_names = self._warm(ids, names, initial, locked)

        xy = adjacency.xy_km if adjacency.xy_km is not None else _spectral_xy(adjacency.matrix)
        area = adjacency.area_km2 if adjacency.area_km2 is not None else np.ones(n)
        notes: list[str] = []
        mean0 = W[:, 0].sum() / k
        big = np.flatnonzero(W[:, 0] > mean0 * (1 + self.target))
        for u in big[np.argsort(-W[big, 0])][:5]:
            notes.append(
                f"unit {ids[u]!r} alone holds {W[u, 0]:,.0f} {self.balance[0]} "
                f"({W[u, 0] / mean0:.0%} of a territory's share): its territory cannot meet the target"
            )
        if len(adjacency.bridges):
            notes.append(
                f"{len(adjacency.bridges)} bridge edge(s) join {adjacency.n_components_before} "
                "separate pieces of the unit map (islands or gaps); see plan.bridges"
            )

        graph = _Graph(adjacency.matrix)
        best = None
        rng_master = np.random.default_rng(self.seed)
        seeds = rng_master.integers(0, 2**31 - 1, size=self.n_init)
        for r, s in enumerate(seeds):
            rng = np.random.default_rng(int(s))
            if init_codes is not None and r == 0:
                lab = init_codes.copy()
            else:
                lab = _bisect_seed(graph, xy, W[:, 0], k, rng)
                lab = np.where(lock_codes >= 0, lock_codes, lab)
            lab = _repair(graph, lab, W[:, 0], k, lock_codes)
            search = _Search(graph, lab, W, xy, area, k, self._bands(W, k), lock_codes, rng, self.compactness)
            search.run(self.max_rounds)
            score = search.score()
            if best is None or score < best[0]:
                best = (score, search.labels())
        lab = best[1]
        plan = self._plan(units, adjacency, lab, W, label_names, notes)
        plan.elapsed_s = time.perf_counter() - t0
        return plan

    def _bands(self, W: np.ndarray, k: int) -> tuple[list[float], list[float]]:
        means = W.sum(axis=0) / k
        tol = np.array([self.target] + [self.tolerance] * (W.shape[1] - 1))
        return list(means * (1 - tol)), list(means * (1 + tol))

    def _warm(self, ids, names, initial, locked):
        """Integer codes for a warm start and for locked units (-1 = free)."""
        n = len(ids)
        label_names = list(names)
        index = pd.Index(ids)

        def codes(mapping, what):
            s = pd.Series(mapping)
            unknown = ~s.index.isin(index)
            if unknown.any():
                raise InputError(f"{what}: unit {s.index[unknown][0]!r} is not among the units")
            lab = pd.Series(-1, index=index)
            vals = s.astype(str)
            for v in vals.unique():
                if v not in label_names:
                    if len(label_names) <= len(names) and v not in names:
                        # an unknown label takes the first name not used by the mapping
                        free = [x for x in label_names if x not in set(vals)]
                        if not free:
                            raise InputError(f"{what}: more than {len(names)} territories")
                        label_names[label_names.index(free[0])] = v
            pos = {v: i for i, v in enumerate(label_names)}
            lab.loc[vals.index] = vals.map(pos).to_numpy()
            return lab.to_numpy()

        init = codes(initial, "initial") if initial is not None else None
        lock = codes(locked, "locked") if locked is not None else np.full(n, -1)
        if init is not None and (init < 0).any():
            init = None  # a partial warm start is only a hint; seed fresh
        return init, lock, label_names

    def _plan(self, units, adjacency, lab, W, label_names, notes) -> Plan:
        k = self.n_territories
        xy = adjacency.xy_km if adjacency.xy_km is not None else np.zeros((len(lab), 2))
        area = adjacency.area_km2 if adjacency.area_km2 is not None else np.ones(len(lab))
        # order territories west -> east by area-weighted centroid (stable, seed-free)
        a = np.bincount(lab, weights=area, minlength=k)
        cx = np.bincount(lab, weights=area * xy[:, 0], minlength=k) / np.maximum(a, 1e-12)
        cy = np.bincount(lab, weights=area * xy[:, 1], minlength=k) / np.maximum(a, 1e-12)
        if label_names == [self.labels.format(i + 1) for i in range(k)]:
            order = np.lexsort((-cy, cx))
            rank = np.empty(k, dtype=int)
            rank[order] = np.arange(k)
            lab = rank[lab]
        lab_str = np.asarray(label_names, dtype=object)[lab]
        ids = np.asarray(adjacency.ids)
        assignment = pd.Series(lab_str, index=pd.Index(ids, name="unit_id"), name="territory")
        terr = pd.DataFrame({"territory": label_names})
        terr["units"] = np.bincount(lab, minlength=k)
        for j, c in enumerate(self.balance):
            tot = np.bincount(lab, weights=W[:, j], minlength=k)
            terr[c] = tot
            terr[f"{c}_deviation"] = tot / tot.mean() - 1.0
        if adjacency.shared_km is not None:
            pp = polsby_popper_from_parts(lab, adjacency.area_km2, adjacency.perimeter_km, adjacency.shared_km, k)
        else:
            pp = np.full(k, np.nan)
        terr["polsby_popper"] = pp
        terr["contiguous"] = is_contiguous(adjacency, lab).reindex(range(k), fill_value=False).to_numpy()
        terr["area_km2"] = a
        dev0 = terr[f"{self.balance[0]}_deviation"].abs()
        plan = Plan(
            assignment=assignment,
            adjacency=adjacency,
            territories=terr,
            balance=list(self.balance),
            max_deviation=float(dev0.max()),
            cut_edge_fraction=cut_edge_fraction(adjacency, lab),
            mean_polsby_popper=float(np.nanmean(pp)) if np.isfinite(pp).any() else float("nan"),
            bridges=adjacency.bridges.copy(),
            notes=notes,
            seed=self.seed,
        )
        for j, c in enumerate(self.balance):
            tol = self.target if j == 0 else self.tolerance
            worst = float(terr[f"{c}_deviation"].abs().max())
            if worst > tol + 1e-12:
                notes.append(f"balance column {c!r}: max deviation {worst:.2%} exceeds {tol:.2%} (unit sizes or shape do not allow it)")
        plan.constraints = check_all(self.constraints, plan)
        return plan


# ---------------------------------------------------------------------------------------------
# graph helpers


class _Graph:
    """Adjacency as Python lists (fast per-unit neighbour access in the local search)."""

    def __init__(self, matrix: sparse.csr_matrix) -> None:
        m = sparse.csr_matrix(matrix)
        self.matrix = m
        self.n = m.shape[0]
        ind = m.indices.tolist()
        ptr = m.indptr.tolist()
        self.nbrs = [ind[ptr[i] : ptr[i + 1]] for i in range(self.n)]
        coo = sparse.triu(m, k=1).tocoo()
        self.ei = coo.row.astype(np.int64)
        self.ej = coo.col.astype(np.int64)


def _spectral_xy(matrix: sparse.spmatrix) -> np.ndarray:
    """Stand-in coordinates for graphs without geometry (two smoothest Laplacian vectors)."""
    from scipy.sparse.csgraph import laplacian
    from scipy.sparse.linalg import eigsh

    n = matrix.shape[0]
    if n < 4:
        return np.column_stack([np.arange(n, dtype=float), np.zeros(n)])
    lap = laplacian(sparse.csr_matrix(matrix, dtype=float))
    vals, vecs = eigsh(lap + sparse.identity(n) * 1e-9, k=3, sigma=-1e-6, which="LM")
    return vecs[:, np.argsort(vals)[1:3]] * np.sqrt(n)


# ---------------------------------------------------------------------------------------------
# 1. seeding: recursive bisection along the best of several directions


def _bisect_seed(
    graph: _Graph, xy: np.ndarray, w: np.ndarray, k: int, rng: np.random.Generator, n_angles: int = 12
) -> np.ndarray:
    """Recursive bisection by straight cuts, each at the weighted quantile that splits the
    weight in the ratio of the territory counts, along the direction that cuts fewest edges
    (ties broken by fewest pieces)."""
    n = graph.n
    lab = np.zeros(n, dtype=np.int64)
    ei, ej = graph.ei, graph.ej
    wt = w + 1e-9 * max(w.mean(), 1e-12)
    offset = rng.uniform(0, np.pi / n_angles)
    ang = offset + np.arange(n_angles) * np.pi / n_angles
    dirs = np.vstack([np.cos(ang), np.sin(ang)])
    inset = np.zeros(n, dtype=bool)
    local = np.zeros(n, dtype=np.int64)
    stack = [(np.arange(n), 0, k)]
    while stack:
        idx, off, kk = stack.pop()
        if kk == 1:
            lab[idx] = off
            continue
        k1 = kk // 2
        if len(idx) == 2:
            lab[idx[0]], lab[idx[1]] = off, off + 1
            continue
        inset[:] = False
        inset[idx] = True
        local[idx] = np.arange(len(idx))
        em = inset[ei] & inset[ej]
        li, lj = local[ei[em]], local[ej[em]]
        proj = xy[idx] @ dirs
        order = np.argsort(proj, axis=0, kind="stable")
        cum = np.cumsum(wt[idx][order], axis=0)
        goal = cum[-1] * k1 / kk
        # split position: first n1 units go left; keep enough units on each side
        pos = np.argmin(np.abs(cum - goal[None, :]), axis=0) + 1
        pos = np.clip(pos, k1, len(idx) - (kk - k1))
        side = np.ones((len(idx), n_angles), dtype=bool)
        rows = np.arange(len(idx))[:, None] < pos[None, :]
        np.put_along_axis(side, order, ~rows, axis=0)
        cuts = (side[li] != side[lj]).sum(axis=0).astype(float)
        best, best_s = 0, np.inf
        for a in np.argsort(cuts, kind="stable")[:4]:
            s = cuts[a]
            for flag in (False, True):
                sel = side[:, a] == flag
                m = sel[li] & sel[lj]
                sub = sparse.coo_matrix((np.ones(int(m.sum())), (li[m], lj[m])), shape=(len(idx), len(idx)))
                nc, comp = connected_components(sub, directed=False)
                s += 3.0 * (len(np.unique(comp[sel])) - 1)
            if s < best_s:
                best, best_s = int(a), s
        left = ~side[:, best]
        stack.append((idx[~left], off + k1, kk - k1))
        stack.append((idx[left], off, k1))
    return lab


# ---------------------------------------------------------------------------------------------
# 2. contiguity repair


def _repair(graph: _Graph, lab: np.ndarray, w: np.ndarray, k: int, locked: np.ndarray) -> np.ndarray:
    """Make every territory one piece: keep its heaviest piece, re-home the strays."""
    n = graph.n
    lab = lab.copy()
    ei, ej = graph.ei, graph.ej
    for _ in range(4):
        same = lab[ei] == lab[ej]
        sub = sparse.coo_matrix((np.ones(int(same.sum())), (ei[same], ej[same])), shape=(n, n))
        ncomp, comp = connected_components(sub, directed=False)
        cw = np.bincount(comp, weights=w + 1e-6 * (w.mean() + 1e-12), minlength=ncomp)
        cw += np.bincount(comp, weights=(locked >= 0) * 1e18, minlength=ncomp)
        clab = np.zeros(ncomp, dtype=np.int64)
        clab[comp] = lab
        order = np.lexsort((-cw, clab))
        keep = np.zeros(ncomp, dtype=bool)
        keep[order[np.r_[True, clab[order][1:] != clab[order][:-1]]]] = True
        if keep.all():
            break
        stray = ~keep[comp] & (locked < 0)
        lab[stray] = -1
        # every stray unit joins the labelled neighbour territory it touches most, layer by layer
        A = graph.matrix
        while (lab < 0).any():
            todo = np.flatnonzero(lab < 0)
            labelled = lab >= 0
            onehot = sparse.csr_matrix((np.ones(int(labelled.sum())), (np.flatnonzero(labelled), lab[labelled])), shape=(n, k))
            counts = (A[todo] @ onehot).toarray()
            has = counts.max(axis=1) > 0
            if not has.any():
                lab[todo] = 0  # unreachable: cannot happen on a connected graph
                break
            lab[todo[has]] = counts[has].argmax(axis=1)
    # empty territories take one unit from the territory with most units
    for t in np.flatnonzero(np.bincount(lab, minlength=k) == 0):
        counts = np.bincount(lab, minlength=k)
        donor = int(np.argmax(counts))
        members = np.flatnonzero((lab == donor) & (locked < 0))
        deg_in = np.asarray([sum(1 for v in graph.nbrs[u] if lab[v] == donor) for u in members])
        lab[members[np.argmin(deg_in)]] = t
        lab = _repair(graph, lab, w, k, locked) if (np.bincount(lab, minlength=k) > 0).all() else lab
    return lab


# ---------------------------------------------------------------------------------------------
# 3-4. local search


class _Search:
    """Boundary-unit local search keeping every territory connected."""

    def __init__(self, graph, lab, W, xy, area, k, bands, locked, rng, compactness) -> None:
        self.g = graph
        self.nbrs = graph.nbrs
        self.k = k
        self.lab = lab.tolist()
        self.m = W.shape[1]
        self.W = W
        self.rows = W.tolist()
        self.w0 = W[:, 0].tolist()
        self.lo, self.hi = bands
        self.mean = (W.sum(axis=0) / k).tolist()
        self.x = xy[:, 0].tolist()
        self.y = xy[:, 1].tolist()
        self.a = np.maximum(area, 1e-9).tolist()
        self.locked = (locked >= 0).tolist()
        self.rng = rng
        self.beta = compactness
        labn = np.asarray(lab)
        self.tot = [list(r) for r in np.stack([np.bincount(labn, weights=W[:, j], minlength=k) for j in range(self.m)], axis=1)]
        self.cnt = np.bincount(labn, minlength=k).tolist()
        a = np.asarray(self.a)
        self.sa = np.bincount(labn, weights=a, minlength=k).tolist()
        self.sx = np.bincount(labn, weights=a * xy[:, 0], minlength=k).tolist()
        self.sy = np.bincount(labn, weights=a * xy[:, 1], minlength=k).tolist()

    # --- bookkeeping -------------------------------------------------------------------------
    def labels(self) -> np.ndarray:
        return np.asarray(self.lab, dtype=np.int64)

    def move(self, u: int, p: int, q: int) -> None:
        self.lab[u] = q
        row = self.rows[u]
        tp, tq = self.tot[p], self.tot[q]
        for j in range(self.m):
            tp[j] -= row[j]
            tq[j] += row[j]
        self.cnt[p] -= 1
        self.cnt[q] += 1
        a = self.a[u]
        self.sa[p] -= a
        self.sa[q] += a
        self.sx[p] -= a * self.x[u]
        self.sx[q] += a * self.x[u]
        self.sy[p] -= a * self.y[u]
        self.sy[q] += a * self.y[u]

    def geo(self, u: int, p: int, q: int) -> float:
        """Compactness gain of moving u from p to q (normalized squared centroid distances)."""
        x, y = self.x[u], self.y[u]
        sap, saq = self.sa[p], self.sa[q]
        dpx = x - self.sx[p] / sap
        dpy = y - self.sy[p] / sap
        dqx = x - self.sx[q] / saq
        dqy = y - self.sy[q] / saq
        return 3.14159 * ((dpx * dpx + dpy * dpy) / sap - (dqx * dqx + dqy * dqy) / saq)

    def can_remove(self, u: int, p: int) -> bool:
        """True when p stays connected without u (short BFS from one same-territory neighbour)."""
        if self.cnt[p] <= 1 or self.locked[u]:
            return False
        lab = self.lab
        nbrs = self.nbrs
        same = [v for v in nbrs[u] if lab[v] == p]
        if len(same) <= 1:
            return len(same) == 1
        targets = set(same[1:])
        seen = {u, same[0]}
        queue = deque([same[0]])
        budget = _BFS_BUDGET
        while queue:
            x = queue.popleft()
            for y in nbrs[x]:
                if y not in seen and lab[y] == p:
                    if y in targets:
                        targets.discard(y)
                        if not targets:
                            return True
                    seen.add(y)
                    queue.append(y)
            budget -= 1
            if budget <= 0:
                return False
        return False

    def violation(self) -> float:
        """Sum over territories and columns of the distance outside the band (relative)."""
        v = 0.0
        for t in range(self.k):
            for j in range(self.m):
                x = self.tot[t][j]
                if x > self.hi[j]:
                    v += (x - self.hi[j]) / self.mean[j]
                elif x < self.lo[j]:
                    v += (self.lo[j] - x) / self.mean[j]
        return v

    def _viol_delta(self, u: int, p: int, q: int) -> float:
        """Change in band violation (relative) if u moves p -> q."""
        d = 0.0
        row = self.rows[u]
        for j in range(self.m):
            wj = row[j]
            if wj == 0:
                continue
            lo, hi, mu = self.lo[j], self.hi[j], self.mean[j]
            for t, s in ((self.tot[p][j], -wj), (self.tot[q][j], wj)):
                before = t - hi if t > hi else (lo - t if t < lo else 0.0)
                t2 = t + s
                after = t2 - hi if t2 > hi else (lo - t2 if t2 < lo else 0.0)
                d += (after - before) / mu
        return d

    def cut_edges(self) -> int:
        lab = np.asarray(self.lab)
        return int((lab[self.g.ei] != lab[self.g.ej]).sum())

    def score(self) -> tuple:
        return (round(self.violation(), 6), self.cut_edges())

    def boundary(self) -> np.ndarray:
        lab = np.asarray(self.lab)
        cut = lab[self.g.ei] != lab[self.g.ej]
        b = np.zeros(self.g.n, dtype=bool)
        b[self.g.ei[cut]] = True
        b[self.g.ej[cut]] = True
        return np.flatnonzero(b)

    # --- balance by diffusion ----------------------------------------------------------------
    def _flows(self, j: int) -> list[tuple[float, int, int]]:
        """Flows p -> q (in column j units) that even out totals over the territory graph."""
        k = self.k
        lab = np.asarray(self.lab)
        a, b = lab[self.g.ei], lab[self.g.ej]
        cut = a != b
        pairs = np.unique(np.sort(np.column_stack([a[cut], b[cut]]), axis=1), axis=0)
        L = np.zeros((k, k))
        L[pairs[:, 0], pairs[:, 1]] = -1
        L[pairs[:, 1], pairs[:, 0]] = -1
        L[np.arange(k), np.arange(k)] = -L.sum(axis=1)
        e = np.array([self.tot[t][j] for t in range(k)]) - self.mean[j]
        phi = np.linalg.lstsq(L + np.ones((k, k)) / k, e, rcond=None)[0]
        out = []
        for p, q in pairs:
            f = phi[p] - phi[q]
            if f > 0:
                out.append((f, int(p), int(q)))
            elif f < 0:
                out.append((-f, int(q), int(p)))
        out.sort(reverse=True)
        return out

    def _push(self, p: int, q: int, amount: float, j: int) -> float:
        """Move boundary units p -> q totalling about ``amount`` of column j; return moved."""
        lab, nbrs, rows = self.lab, self.nbrs, self.rows
        heap: list = []
        seen: set[int] = set()

        def offer(u: int) -> None:
            if u in seen or self.locked[u] or lab[u] != p:
                return
            cp = cq = 0
            for v in nbrs[u]:
                lv = lab[v]
                if lv == p:
                    cp += 1
                elif lv == q:
                    cq += 1
            if cq == 0:
                return
            seen.add(u)
            s = (cq - cp) + self.beta * self.geo(u, p, q) - 50.0 * self._viol_delta_sec(u, p, q)
            heapq.heappush(heap, (-s, u))

        for u in self.boundary_of(p, q):
            offer(u)
        moved = 0.0
        rem = amount
        tries = 0
        while heap and rem > 0 and tries < 4000:
            tries += 1
            _, u = heapq.heappop(heap)
            if lab[u] != p:
                continue
            wu = rows[u][j]
            if wu > 2 * rem or (wu > rem and wu - rem > 0.5 * rem):
                continue
            if not self.can_remove(u, p):
                continue
            self.move(u, p, q)
            moved += wu
            rem -= wu
            for v in nbrs[u]:
                if lab[v] == p:
                    seen.discard(v)
                    offer(v)
        return moved

    def _swap(self, p: int, q: int, amount: float, j: int) -> bool:
        """Shift about ``amount`` of column j from p to q by one move or a two-way exchange.

        Exchanges (a: p -> q, b: q -> p) reach amounts far smaller than any single unit,
        which is what lets dense areas balance to a fraction of a percent.
        """
        lab, nbrs = self.lab, self.nbrs
        A = [u for u in self.boundary_of(p, q) if not self.locked[u]]
        B = [u for u in self.boundary_of(q, p) if not self.locked[u]]
        if not A:
            return False
        wa = np.array([self.rows[u][j] for u in A])
        wb = np.array([self.rows[u][j] for u in B] + [0.0])  # last = no return move
        net = wa[:, None] - wb[None, :]
        err = np.abs(net - amount)
        ok = np.flatnonzero((err < amount * 0.999).ravel())
        if len(ok) == 0:
            return False
        order = ok[np.argsort(err.ravel()[ok], kind="stable")][:12]
        for flat in order.tolist():
            ia, ib = divmod(flat, len(wb))
            a = A[ia]
            if lab[a] != p or not self.can_remove(a, p):
                continue
            self.move(a, p, q)
            if ib == len(B):
                return True
            b = B[ib]
            if lab[b] == q and any(lab[v] == p for v in nbrs[b]) and self.can_remove(b, q):
                self.move(b, q, p)
                return True
            self.move(a, q, p)
        return False

    def _viol_delta_sec(self, u: int, p: int, q: int) -> float:
        if self.m == 1:
            return 0.0
        d = 0.0
        row = self.rows[u]
        for j in range(1, self.m):
            wj = row[j]
            lo, hi, mu = self.lo[j], self.hi[j], self.mean[j]
            for t, s in ((self.tot[p][j], -wj), (self.tot[q][j], wj)):
                before = t - hi if t > hi else (lo - t if t < lo else 0.0)
                t2 = t + s
                after = t2 - hi if t2 > hi else (lo - t2 if t2 < lo else 0.0)
                d += (after - before) / mu
        return d

    def boundary_of(self, p: int, q: int) -> list[int]:
        lab = np.asarray(self.lab)
        ei, ej = self.g.ei, self.g.ej
        a, b = lab[ei], lab[ej]
        m1 = (a == p) & (b == q)
        m2 = (a == q) & (b == p)
        return sorted(set(ei[m1].tolist()) | set(ej[m2].tolist()))

    def balance(self, goal: float, max_iter: int = 30) -> None:
        """Diffuse totals until every column is inside ``goal`` times its band (or stuck)."""
        last = None
        for _ in range(max_iter):
            worst_j, worst = -1, 0.0
            for j in range(self.m):
                half = (self.hi[j] - self.mean[j]) * goal
                dev = max(abs(self.tot[t][j] - self.mean[j]) for t in range(self.k)) - half
                rel = dev / max(self.mean[j], 1e-12)
                if dev > 0 and (worst_j < 0 or rel > worst):
                    worst_j, worst = j, rel
            if worst_j < 0:
                return
            j = worst_j
            key = round(self.violation(), 9), j, round(worst, 9)
            if last == key:
                return
            last = key
            for f, p, q in self._flows(j):
                if f > 1e-9 * self.mean[j]:
                    rem = f - self._push(p, q, f, j)
                    if rem > 1e-9 * self.mean[j]:
                        self._swap(p, q, rem, j)

    # --- refinement --------------------------------------------------------------------------
    def refine(self, passes: int = 8) -> int:
        """Greedy boundary moves that cut fewer edges or improve compactness, bands kept."""
        lab, nbrs = self.lab, self.nbrs
        total = 0
        for _ in range(passes):
            cand = self.boundary()
            self.rng.shuffle(cand)
            moved = 0
            for u in cand.tolist():
                if self.locked[u]:
                    continue
                p = lab[u]
                cnt: dict[int, int] = {}
                for v in nbrs[u]:
                    lv = lab[v]
                    cnt[lv] = cnt.get(lv, 0) + 1
                if len(cnt) == 1:
                    continue
                cp = cnt.get(p, 0)
                best_s, best_q = 1e-9, -1
                for q, cq in cnt.items():
                    if q == p:
                        continue
                    s = (cq - cp) + self.beta * self.geo(u, p, q)
                    if s <= best_s:
                        continue
                    if self._viol_delta(u, p, q) > 1e-12:
                        continue
                    best_s, best_q = s, q
                if best_q >= 0 and self.can_remove(u, p):
                    self.move(u, p, best_q)
                    moved += 1
            total += moved
            if moved == 0:
                break
        return total

    def run(self, rounds: int) -> None:
        self.balance(goal=0.5)
        for _ in range(rounds):
            moved = self.refine()
            self.balance(goal=0.5)
            if moved == 0:
                break
