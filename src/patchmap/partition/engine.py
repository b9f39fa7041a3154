"""The territory engine: balanced, contiguous, compact territories from units.

How it works (each step keeps what the previous one guaranteed):

1. Seed by recursive bisection. Each split is a straight cut (of 12 directions, the one
   crossing fewest adjacency edges) at the weighted quantile that divides the primary
   total in the ratio of the territory counts; stray pieces rejoin the side they touch,
   and the two halves are balanced and refined on the graph before splitting further.
2. Balance. The territory furthest from its share is paired with the nearest territory
   (in hops over the territory graph) deviating the other way, and the difference is
   passed along the path between them: single boundary units (fewest cut edges first),
   then whole blocks - subtrees of a spanning tree of the donor, which leave it connected
   and reach amounts no single unit can - then one-for-one exchanges. A step that does
   not reduce the imbalance is undone. Secondary columns are evened out by trading
   blocks between neighbours while the primary stays inside its band.
3. Refine. Boundary units move (and pairs of units swap) to a neighbouring territory when
   that cuts fewer edges or makes both territories more compact, every balance column
   within its band; the primary band starts wide and narrows over the rounds, each round
   followed by a rebalance and Fiduccia-Mattheyses passes (the best boundary move taken
   even when it cuts more edges, the best prefix of the sequence kept), and the best plan
   seen is kept.

Several restarts run from different seeds; the best plan wins (balance targets first,
then fewest cut edges). With rep homes, starts also come from capacitated assignments of
units to homes solved as linear programs. Only boundary units are ever visited, and the contiguity check
is a short search around the moved unit, so a move costs microseconds, not a graph pass.
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
from patchmap.options import default
from patchmap.partition.constraints import (
    BalanceTolerance,
    Contiguity,
    HomeBases,
    LockedUnits,
    check_all,
)
from patchmap.partition.plan import Plan
from patchmap.units.adjacency import Adjacency, _show, build_adjacency

__all__ = ["Partitioner", "check_locks", "locked_conflicts"]

_RETRIES = 4  # extra restarts allowed while no plan meets the primary target
_ANGLES = 12  # directions tried for each straight cut of the recursive bisection
_MARGIN = 0.9  # share of the primary target the search holds deviations within
_TIGHTEN = True
_HOME_STARTS = ("plain", "match", "linear")  # capacitated starts with rep homes
_TIE_BREAK = 0.05  # weight of the squared term breaking ties of the linear-cost start
_SECONDARY_WINDOW = 40  # exchanges over which the secondary excess must fall by 2%
_FM = True  # Fiduccia–Mattheyses passes after each refinement round
_FM_COMPACTNESS = 0.1  # share of the compactness weight FM passes use
_MAX_FAILURES = 0.5  # failed balancing steps allowed per territory before giving up
_TIGHTEN_COST = 0.01  # extra cut edges (fraction) the final tightening may cost
_SLACK = [8.0, 4.0, 2.0, 1.0]  # primary band multipliers for successive refinement rounds
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
        Restarts from different seeds; the best plan is kept (``"auto"``: 3 up to 1,000
        units, 2 up to 5,000, else 1).
    max_rounds:
        Most refine-and-rebalance rounds per restart.
    """

    def __init__(
        self,
        n_territories: int,
        balance: str | Sequence[str],
        *,
        tolerance: float = default("partition", "tolerance"),
        target: float = 0.005,
        id_col: str | None = "unit_id",
        seed: int = 0,
        compactness: float = 0.5,
        labels: str = "T{:02d}",
        n_init: int | str = "auto",
        max_rounds: int = 6,
    ) -> None:
        if isinstance(n_territories, bool) or not isinstance(n_territories, (int, np.integer)):
            raise InputError(f"n_territories must be an integer >= 2, got {n_territories!r}")
        if n_territories < 2:
            raise InputError(f"n_territories must be >= 2, got {n_territories}")
        cols = [balance] if isinstance(balance, str) else list(balance)
        if not cols or not all(isinstance(c, str) and c for c in cols):
            raise InputError(
                f"balance must be a column name or a list of column names, got {balance!r}"
            )
        if len(set(cols)) != len(cols):
            raise InputError(f"balance columns repeat: {', '.join(cols)}")
        for name, value in (("tolerance", tolerance), ("target", target)):
            if not isinstance(value, (int, float)) or not (0 < float(value) < 1):
                raise InputError(
                    f"{name} must be a fraction between 0 and 1 (0.05 = 5%), got {value!r}"
                )
        if not isinstance(compactness, (int, float)) or compactness < 0:
            raise InputError(f"compactness must be a number >= 0, got {compactness!r}")
        try:
            labels.format(1)
        except (IndexError, KeyError, ValueError, AttributeError):
            raise InputError(
                f"labels must be a format string like 'T{{:02d}}', got {labels!r}"
            ) from None
        if n_init != "auto" and (
            not isinstance(n_init, int) or isinstance(n_init, bool) or n_init < 1
        ):
            raise InputError(f"n_init must be an integer >= 1 or 'auto', got {n_init!r}")
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
                raise InputError(
                    f"balance column {c!r} not found (columns: {', '.join(map(str, units.columns))})"
                )
            s = units[c]
            if not (pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)):
                num = pd.to_numeric(s, errors="coerce")
                bad = num.isna() & s.notna()
                if bad.any():
                    raise InputError(
                        f"balance column {c!r} is not numeric (e.g. {s[bad].iloc[0]!r})"
                    )
                s = num
            v = s.to_numpy(dtype=float, na_value=np.nan)
            if np.isnan(v).any():
                raise InputError(
                    f"balance column {c!r} has {int(np.isnan(v).sum())} missing values"
                )
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
        reps: pd.DataFrame | None = None,
        within: str | pd.Series | None = None,
        regions: int | None = None,
        shares: Sequence[float] | None = None,
    ) -> Plan:
        """Partition ``units`` and return the :class:`Plan`.

        ``adjacency`` reuses a prebuilt graph (built with :func:`build_adjacency` otherwise).
        ``initial`` (unit id -> territory label) warm-starts from an existing plan;
        ``locked`` (unit id -> label) pins units to territories, which then never move.
        ``reps`` (``rep_id``, ``lat``, ``lon``; see :func:`patchmap.partition.reps.prepare_reps`)
        gives one territory per rep, labelled by ``rep_id`` and grown around the unit holding
        the rep's home, which stays in it. ``within`` (a column name or one value per unit)
        keeps every territory inside one group; ``regions`` first draws that many regions
        and nests the territories in them (``plan.regions``). ``shares`` sets each
        territory's target fraction of the totals (equal by default).
        """
        if within is not None or regions is not None:
            from patchmap.partition.hierarchy import fit_nested

            return fit_nested(
                self, units, adjacency=adjacency, initial=initial, locked=locked, reps=reps,
                within=within, regions=regions,
            )  # fmt: skip
        t0 = time.perf_counter()
        W, adjacency = self._prepare(units, adjacency)
        n = len(units)
        k = self.n_territories
        ids = np.asarray(adjacency.ids)
        names = [self.labels.format(i + 1) for i in range(k)]
        extra: list = []
        home_idx = None
        if reps is not None:
            from patchmap.partition.reps import locate_homes, prepare_reps

            reps = prepare_reps(reps)
            if len(reps) != k:
                raise InputError(
                    f"{reps.attrs.get('source', 'reps')}: {len(reps)} reps but "
                    f"n_territories={k} (one territory per rep)"
                )
            home_idx = locate_homes(reps, units, adjacency)
            names = reps["rep_id"].tolist()
        init_codes, lock_codes, label_names = self._warm(
            ids, names, initial, locked, fixed=reps is not None
        )
        if locked is not None:
            extra.append(
                LockedUnits(
                    pd.Series(
                        np.asarray(label_names, dtype=object)[lock_codes[lock_codes >= 0]],
                        index=ids[lock_codes >= 0],
                    )
                )
            )
        if home_idx is not None:
            clash = (lock_codes[home_idx] >= 0) & (lock_codes[home_idx] != np.arange(k))
            if clash.any():
                i = int(np.flatnonzero(clash)[0])
                raise InputError(
                    f"locked: unit {_show(ids[home_idx[i]])} is locked to "
                    f"{label_names[lock_codes[home_idx[i]]]!r} but is the home of rep "
                    f"{names[i]!r}"
                )
            lock_codes[home_idx] = np.arange(k)
            extra.append(
                HomeBases(pd.Series(ids[home_idx], index=pd.Index(names, name="territory")))
            )
        check_locks(adjacency, lock_codes, label_names)
        share = self._shares(shares, k)

        xy = adjacency.xy_km if adjacency.xy_km is not None else _spectral_xy(adjacency.matrix)
        area = adjacency.area_km2 if adjacency.area_km2 is not None else np.ones(n)
        notes = self._notes(W, ids, adjacency, share)
        graph = _Graph(adjacency.matrix)
        # the search holds the primary a little inside its target, so no territory lands
        # exactly on the limit (secondaries aim inside theirs by themselves)
        tols = [self.target * _MARGIN] + [self.tolerance] * (W.shape[1] - 1)
        lab = self._solve(
            graph, W, xy, area, k, tols, init_codes, lock_codes, share, homes=home_idx
        )
        fixed_names = initial is not None or locked is not None or reps is not None
        plan = self._plan(
            units, adjacency, lab, W, label_names, notes, reorder=not fixed_names, shares=share,
            extra=extra,
        )  # fmt: skip
        if not _locked_whole(graph, lab, lock_codes):
            notes.append(
                "locked units of some territories could not all be joined (other territories' "
                "locks are in the way): see the contiguous column"
            )
        if home_idx is not None:
            from patchmap.partition.reps import rep_report

            plan.homes = pd.Series(ids[home_idx], index=pd.Index(names, name="territory"))
            plan.reps = rep_report(reps, plan, units)
            if plan.max_deviation > self.target + 1e-12:
                dev = plan.territories.set_index("territory")[f"{self.balance[0]}_deviation"]
                worst = dev.abs().sort_values(ascending=False).index[:3]
                load = plan.reps.set_index("rep_id")["nearest_load"]
                spread = (
                    f"; the units nearest each home hold {load.min():.2f}x ({load.idxmin()}) to "
                    f"{load.max():.2f}x ({load.idxmax()}) of a territory's share"
                    if load.notna().all()
                    else ""
                )
                notes.append(
                    "with these rep homes the balance target cannot be met: reps living close "
                    "together compete for the same units (most off: "
                    + ", ".join(f"{t} {dev[t]:+.1%}" for t in worst)
                    + ")"
                    + spread
                )
        plan.elapsed_s = time.perf_counter() - t0
        return plan

    def _prepare(
        self, units: gpd.GeoDataFrame, adjacency: Adjacency | None
    ) -> tuple[np.ndarray, Adjacency]:
        """Validated balance weights and the adjacency graph (built unless given)."""
        if not isinstance(units, (gpd.GeoDataFrame, pd.DataFrame)):
            raise InputError("units must be a GeoDataFrame of polygons with the balance columns")
        if len(units) == 0:
            raise InputError("units: no units (empty table)")
        id_col = self.id_col if self.id_col in units.columns else None
        if self.id_col is not None and id_col is None and adjacency is None:
            raise InputError(
                f"id column {self.id_col!r} not found (columns: {', '.join(map(str, units.columns))})"
            )
        W = self._weights(units)
        n = len(units)
        k = self.n_territories
        if k > n:
            raise InputError(f"n_territories={k} exceeds the number of units ({n})")
        if adjacency is None:
            adjacency = build_adjacency(units, id_col=id_col)
        else:
            ids = units[id_col].to_numpy() if id_col else units.index.to_numpy()
            if adjacency.n_units != n or not np.array_equal(
                np.asarray(adjacency.ids, dtype=object), np.asarray(ids, dtype=object)
            ):
                raise InputError(
                    "adjacency ids do not match the units (build it from the same table)"
                )
        return W, adjacency

    @staticmethod
    def _shares(shares: Sequence[float] | None, k: int) -> np.ndarray:
        if shares is None:
            return np.full(k, 1.0 / k)
        s = np.asarray(shares, dtype=float)
        if s.shape != (k,) or not np.isfinite(s).all() or (s <= 0).any():
            raise InputError(f"shares: expected {k} positive numbers, got {list(shares)!r}")
        return s / s.sum()

    def _notes(self, W, ids, adjacency, share) -> list[str]:
        notes: list[str] = []
        goal = W[:, 0].sum() * share.min()
        big = np.flatnonzero(W[:, 0] > goal * (1 + self.target))
        for u in big[np.argsort(-W[big, 0])][:5]:
            notes.append(
                f"unit {_show(ids[u])} alone holds {W[u, 0]:,.0f} {self.balance[0]} "
                f"({W[u, 0] / goal:.0%} of a territory's share): its territory cannot meet the target"
            )
        if len(adjacency.bridges):
            notes.append(
                f"{len(adjacency.bridges)} bridge edge(s) join {adjacency.n_components_before} "
                "separate pieces of the unit map (islands or gaps); see plan.bridges"
            )
        return notes

    def _solve(
        self, graph, W, xy, area, k, tols, init_codes, lock_codes, share, homes=None
    ) -> np.ndarray:
        """Restarts of seed + search; the best labelling (integer codes) wins.

        With rep homes, three extra starts come from capacitated assignments of units to
        homes (see :func:`_capacity_seed`): recursive bisection can trap a rep whose home
        sits among others' in a pocket it cannot grow out of.
        """
        n = graph.n
        best = None
        rng_master = np.random.default_rng(self.seed)
        if homes is not None and init_codes is None:
            for i, mode in enumerate(_HOME_STARTS):
                rng = np.random.default_rng(self.seed + 1 + i)
                lab = _capacity_seed(graph, xy, W[:, 0], k, lock_codes, share, homes, mode)
                if lab is None:
                    break
                search = _Search(
                    graph, lab, W, xy, area, list(share), tols, lock_codes, rng, self.compactness
                )
                search.balance(0.5, max_iter=40 * k, failures=5.0, in_a_row=True)
                search.run(self.max_rounds)
                score = search.score()
                if best is None or score < best[0]:
                    best = (score, search.labels())
        n_init = (
            self.n_init if self.n_init != "auto" else (3 if n <= 1000 else 2 if n <= 5000 else 1)
        )
        # restarts; a few more when none has met the primary target yet (an unlucky
        # early split among coarse units is the usual cause, and another seed avoids it)
        seeds = rng_master.integers(0, 2**31 - 1, size=n_init + _RETRIES)
        for r, s in enumerate(seeds):
            if r >= n_init and best is not None and best[0][0] == 0:
                break
            rng = np.random.default_rng(int(s))
            if init_codes is not None and r == 0:
                lab = init_codes.copy()
            else:
                # with locked units, restarts alternate straight and graph-grown splits
                lab = _recursive_seed(
                    graph, xy, W, area, k, tols, lock_codes, rng, self.compactness, shares=share,
                    graph_cut=bool(r % 2) and bool((lock_codes >= 0).any()),
                )  # fmt: skip
            lab = _settle_locks(graph, lab, W[:, 0], k, lock_codes)
            search = _Search(
                graph, lab, W, xy, area, list(share), tols, lock_codes, rng, self.compactness
            )
            search.run(self.max_rounds)
            score = search.score()
            if best is None or score < best[0]:
                best = (score, search.labels())
        return best[1]

    def realign(
        self,
        units: gpd.GeoDataFrame,
        current: pd.Series | Mapping,
        *,
        max_moved: float | None = None,
        adjacency: Adjacency | None = None,
        locked: pd.Series | Mapping | None = None,
        reps: pd.DataFrame | None = None,
        within: str | pd.Series | None = None,
        regions: int | None = None,
        relax: str = "tolerance",
    ) -> Plan:
        """Rebalance an existing plan ``current`` (unit id -> label) while moving little.

        Every balance column is brought within ``tolerance`` (realignment does not chase the
        tighter ``target``) by moving boundary units, at most ``max_moved`` (a fraction) of
        the primary column to a different territory. When both cannot hold, ``relax``
        (``"tolerance"`` or ``"budget"``) says which gives way; ``plan.notes`` says by how
        much. Territories keep their labels; ``plan.moves`` lists the units that moved.
        """
        from patchmap.partition.realign import realign

        return realign(
            self, units, current, max_moved=max_moved, adjacency=adjacency, locked=locked,
            reps=reps, within=within, regions=regions, relax=relax,
        )  # fmt: skip

    def evaluate(
        self, units: gpd.GeoDataFrame, assignment: pd.Series | Mapping, *,
        adjacency: Adjacency | None = None,
    ) -> Plan:  # fmt: skip
        """The :class:`Plan` of a given assignment (unit id -> label), measured the way
        :meth:`fit` measures its own; ``n_territories`` is taken from the assignment."""
        labels = pd.Series(assignment)
        names = sorted(pd.unique(labels.astype(str)))
        probe = _copy_with_k(self, max(len(names), 2))
        W, adjacency = probe._prepare(units, adjacency)
        ids = pd.Index(np.asarray(adjacency.ids))
        lab_s = labels.astype(str).reindex(ids)
        if lab_s.isna().any():
            raise InputError(
                f"assignment: unit {_show(ids[lab_s.isna().to_numpy()][0])} has no territory"
            )
        lab = pd.Index(names).get_indexer(lab_s.to_numpy())
        probe.n_territories = len(names)
        return probe._plan(units, adjacency, lab, W, names, [], reorder=False)

    def _warm(self, ids, names, initial, locked, fixed=False):
        """Integer codes for a warm start and for locked units (-1 = free).

        With ``fixed`` names (rep ids) every label must be one of them.
        """
        n = len(ids)
        label_names = list(names)
        index = pd.Index(ids)

        def codes(mapping, what):
            s = pd.Series(mapping)
            unknown = ~s.index.isin(index)
            if unknown.any():
                raise InputError(
                    f"{what}: unit {_show(s.index[unknown][0])} is not among the units"
                )
            lab = pd.Series(-1, index=index)
            vals = s.astype(str)
            for v in vals.unique():
                if v not in label_names:
                    if fixed:
                        raise InputError(
                            f"{what}: territory {v!r} is not one of the territories "
                            f"({', '.join(label_names[:5])}{', ...' if len(label_names) > 5 else ''})"
                        )
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

    def _plan(
        self, units, adjacency, lab, W, label_names, notes, reorder=True, shares=None,
        extra=(), primary_tol=None,
    ) -> Plan:  # fmt: skip
        k = self.n_territories
        share = self._shares(shares, k)
        xy = adjacency.xy_km if adjacency.xy_km is not None else np.zeros((len(lab), 2))
        area = adjacency.area_km2 if adjacency.area_km2 is not None else np.ones(len(lab))
        # order territories west -> east by area-weighted centroid (stable, seed-free)
        a = np.bincount(lab, weights=area, minlength=k)
        cx = np.bincount(lab, weights=area * xy[:, 0], minlength=k) / np.maximum(a, 1e-12)
        cy = np.bincount(lab, weights=area * xy[:, 1], minlength=k) / np.maximum(a, 1e-12)
        if reorder:
            order = np.lexsort((-cy, cx))
            rank = np.empty(k, dtype=int)
            rank[order] = np.arange(k)
            lab = rank[lab]
            share = share[order]
            a = a[order]
        lab_str = np.asarray(label_names, dtype=object)[lab]
        ids = np.asarray(adjacency.ids)
        assignment = pd.Series(lab_str, index=pd.Index(ids, name="unit_id"), name="territory")
        terr = pd.DataFrame({"territory": label_names})
        terr["units"] = np.bincount(lab, minlength=k)
        for j, c in enumerate(self.balance):
            tot = np.bincount(lab, weights=W[:, j], minlength=k)
            terr[c] = tot
            terr[f"{c}_deviation"] = tot / (tot.sum() * share) - 1.0
        if adjacency.shared_km is not None:
            pp = polsby_popper_from_parts(
                lab, adjacency.area_km2, adjacency.perimeter_km, adjacency.shared_km, k
            )
        else:
            pp = np.full(k, np.nan)
        terr["polsby_popper"] = pp
        terr["contiguous"] = (
            is_contiguous(adjacency, lab).reindex(range(k), fill_value=False).to_numpy()
        )
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
        primary_tol = self.target if primary_tol is None else primary_tol
        for j, c in enumerate(self.balance):
            tol = primary_tol if j == 0 else self.tolerance
            worst = float(terr[f"{c}_deviation"].abs().max())
            if worst > tol + 1e-12:
                why = (
                    "unit sizes or shape do not allow it"
                    if j == 0
                    else f"the primary {self.balance[0]!r} comes first, and the two pull apart"
                )
                notes.append(
                    f"balance column {c!r}: max deviation {worst:.2%} exceeds {tol:.2%} ({why})"
                )
        checks = [BalanceTolerance(self.balance[0], primary_tol)]
        checks += [BalanceTolerance(c, self.tolerance) for c in self.balance[1:]]
        checks += [Contiguity(), *extra]
        plan.constraints = check_all(checks, plan)
        return plan


def _copy_with_k(p: Partitioner, k: int) -> Partitioner:
    """The same settings with another number of territories."""
    return Partitioner(
        k, p.balance, tolerance=p.tolerance, target=p.target, id_col=p.id_col, seed=p.seed,
        compactness=p.compactness, labels=p.labels, n_init=p.n_init, max_rounds=p.max_rounds,
    )  # fmt: skip


def check_locks(adjacency: Adjacency, codes: np.ndarray, names: Sequence[str]) -> None:
    """Raise :class:`InputError` when a territory's locked units cannot be joined without
    passing through units locked to other territories (the plan could not be contiguous)."""
    bad = locked_conflicts(adjacency, codes)
    if bad:
        t, units = bad[0]
        more = f" ({len(bad)} territories in all)" if len(bad) > 1 else ""
        raise InputError(
            f"locked: units {', '.join(_show(u) for u in units[:6])} of territory "
            f"{names[t]!r} cannot be joined without crossing units locked to other "
            f"territories{more}"
        )


def locked_conflicts(adjacency: Adjacency, codes: np.ndarray) -> list[tuple[int, list]]:
    """Territories whose locked units lie in separate pieces of the graph once the units
    locked to other territories are taken out: ``[(code, unit ids cut off), ...]``."""
    codes = np.asarray(codes)
    pinned = codes >= 0
    if not pinned.any():
        return []
    ids = np.asarray(adjacency.ids)
    coo = sparse.triu(adjacency.matrix, k=1).tocoo()
    ei, ej = coo.row, coo.col
    n = adjacency.n_units
    out = []
    for t in np.unique(codes[pinned]).tolist():
        mine = codes == t
        if mine.sum() < 2:
            continue
        free = (codes < 0) | mine
        keep = free[ei] & free[ej]
        g = sparse.coo_matrix((np.ones(int(keep.sum())), (ei[keep], ej[keep])), shape=(n, n))
        _, comp = connected_components(g, directed=False)
        pieces, counts = np.unique(comp[mine], return_counts=True)
        if len(pieces) > 1:
            main = pieces[np.argmax(counts)]
            out.append((t, ids[mine & (comp != main)].tolist()))
    return out


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
# 1. seeding: recursive bisection, each split balanced and refined on the graph


def _straight_cut(
    graph: _Graph,
    xy: np.ndarray,
    w: np.ndarray,
    frac: float,
    k1: int,
    k2: int,
    dirs: np.ndarray,
    locked: np.ndarray | None = None,
    codes: Sequence[int] = (),
) -> tuple[np.ndarray, list[int]]:
    """Side (False = first part) of a straight cut putting ``frac`` of ``w`` first, and the
    territory codes that go first.

    Of several directions, the one cutting fewest edges (then leaving fewest stray
    pieces) wins. With ``locked`` units (territory codes, -1 free), each cut is slid so
    that at most ``k1`` locked territories fall first and at most ``k2`` second, ordered by
    the mean position of their locked units; a cut slid away from balance costs extra.
    """
    n = graph.n
    li, lj = graph.ei, graph.ej
    proj = xy @ dirs
    order = np.argsort(proj, axis=0, kind="stable")
    cum = np.cumsum(w[order], axis=0)
    goal = cum[-1] * frac
    pos = np.argmin(np.abs(cum - goal[None, :]), axis=0) + 1
    pos = np.clip(pos, k1, n - k2)
    codes = list(codes)
    present: np.ndarray = np.zeros(0, dtype=np.int64)
    if locked is not None and (locked >= 0).any():
        pinned = np.flatnonzero(locked >= 0)
        present, inv = np.unique(locked[pinned], return_inverse=True)
        # mean projection of each locked territory, per direction
        mean = (
            np.stack(
                [np.bincount(inv, weights=proj[pinned, a]) for a in range(dirs.shape[1])], axis=1
            )
            / np.bincount(inv)[:, None]
        )
        lo_n, hi_n = max(0, len(present) - k2), min(k1, len(present))
        sproj = np.take_along_axis(proj, order, axis=0)
        for a in range(dirs.shape[1]):
            m = np.sort(mean[:, a])
            best_pos, best_err = pos[a], np.inf
            for n0 in range(lo_n, hi_n + 1):
                # the cut lies between the n0-th and the (n0+1)-th locked territory
                lo = int(np.searchsorted(sproj[:, a], m[n0 - 1], side="right")) if n0 else 1
                hi = int(np.searchsorted(sproj[:, a], m[n0], side="left")) if n0 < len(m) else n - 1
                p = int(np.clip(pos[a], max(min(lo, hi), 1), min(max(lo, hi), n - 1)))
                err = abs(cum[p - 1, a] - goal[a])
                if err < best_err:
                    best_pos, best_err = p, err
            pos[a] = best_pos
    side = np.ones((n, dirs.shape[1]), dtype=bool)
    first = np.arange(n)[:, None] < pos[None, :]
    np.put_along_axis(side, order, ~first, axis=0)
    cuts = (side[li] != side[lj]).sum(axis=0).astype(float)
    if len(present):
        share = np.take_along_axis(cum, (pos - 1)[None, :], axis=0)[0] / cum[-1]
        off = np.abs(share - frac) / min(frac, 1 - frac)
        cuts = cuts * (1.0 + 4.0 * off)
    best, best_s = 0, np.inf
    for a in np.argsort(cuts, kind="stable")[:4].tolist():
        s = cuts[a]
        for flag in (False, True):
            sel = side[:, a] == flag
            m = sel[li] & sel[lj]
            sub = sparse.coo_matrix((np.ones(int(m.sum())), (li[m], lj[m])), shape=(n, n))
            _, comp = connected_components(sub, directed=False)
            s += 3.0 * (len(np.unique(comp[sel])) - 1)
        if s < best_s:
            best, best_s = a, s
    chosen = side[:, best]
    if not len(present):
        return chosen, codes[:k1]
    # locked territories in order of position along the chosen direction; the first n0 go first
    pinned = np.flatnonzero(locked >= 0)
    inv = np.searchsorted(present, locked[pinned])
    mean = np.bincount(inv, weights=proj[pinned, best]) / np.bincount(inv)
    on_first = np.bincount(inv, weights=(~chosen[pinned]).astype(float)) / np.bincount(inv) >= 0.5
    ranked = present[np.lexsort((mean, ~on_first))]
    n0 = int(np.clip(on_first.sum(), max(0, len(present) - k2), min(k1, len(present))))
    firsts = ranked[:n0].tolist()
    free = [c for c in codes if c not in set(present.tolist())]
    firsts += free[: k1 - n0]
    return chosen, [c for c in codes if c in set(firsts)]


def _graph_cut(
    graph: _Graph, xy: np.ndarray, w: np.ndarray, frac: float, lock_side: np.ndarray
) -> np.ndarray:
    """Two sides grown from their locked units: unit u goes first when
    ``d0(u) - d1(u) < tau`` (shortest distances from each side's locked units along the
    graph, centroid to centroid in km), ``tau`` the weighted quantile putting ``frac`` of
    ``w`` first.

    Each side is a union of shortest-path trees rooted at its locked units (a unit's
    predecessor towards its side's sources is on the same side), so no side has stray
    pieces, and the locked units stay on their side.
    """
    from scipy.sparse.csgraph import dijkstra

    ei, ej = graph.ei, graph.ej
    d = np.hypot(*(xy[ei] - xy[ej]).T) + 1e-6
    n = graph.n
    g = sparse.csr_matrix((np.r_[d, d], (np.r_[ei, ej], np.r_[ej, ei])), shape=(n, n))
    d0 = dijkstra(g, indices=np.flatnonzero(lock_side == 0), min_only=True)
    d1 = dijkstra(g, indices=np.flatnonzero(lock_side == 1), min_only=True)
    far = 10.0 * (d0[np.isfinite(d0)].max(initial=0) + d1[np.isfinite(d1)].max(initial=0) + 1)
    diff = np.where(np.isfinite(d0), d0, far) - np.where(np.isfinite(d1), d1, far)
    order = np.argsort(diff, kind="stable")
    cum = np.cumsum(w[order])
    pos = int(np.searchsorted(cum, frac * cum[-1]))
    tau = diff[order[min(pos, n - 1)]]
    # keep every locked unit on its own side
    lo = diff[lock_side == 0].max()
    hi = diff[lock_side == 1].min()
    tau = min(max(tau, np.nextafter(lo, np.inf)), hi)
    side = (diff >= tau).astype(np.int64)
    return np.where(lock_side >= 0, lock_side, side)


def _recursive_seed(
    graph: _Graph,
    xy: np.ndarray,
    W: np.ndarray,
    area: np.ndarray,
    k: int,
    tol: list[float],
    locked: np.ndarray,
    rng: np.random.Generator,
    compactness: float,
    n_angles: int | None = None,
    shares: np.ndarray | None = None,
    graph_cut: bool = False,
) -> np.ndarray:
    """K contiguous, balanced territories by recursive bisection.

    Each split starts from a straight cut, is made contiguous, then balanced to the
    territories' shares and refined by the same local search as the final plan. Locked
    units (a rep's home, a key account) steer each cut and stay on their territory's side;
    with ``graph_cut`` a split with locked units on both sides follows the graph (see
    :func:`_graph_cut`) instead of a straight line.
    """
    n = graph.n
    n_angles = n_angles or _ANGLES
    shares = np.full(k, 1.0 / k) if shares is None else np.asarray(shares, dtype=float)
    lab = np.zeros(n, dtype=np.int64)
    offset = rng.uniform(0, np.pi / n_angles)
    ang = offset + np.arange(n_angles) * np.pi / n_angles
    dirs = np.vstack([np.cos(ang), np.sin(ang)])
    wt = W[:, 0] + 1e-9 * max(W[:, 0].mean(), 1e-12)
    stack = [(np.arange(n), list(range(k)))]
    while stack:
        idx, codes = stack.pop()
        kk = len(codes)
        lk = locked[idx]
        if kk == 1:
            lab[idx] = codes[0]
            continue
        k1 = kk // 2
        if len(idx) == 2:
            pair = codes[:2] if lk[1] != codes[0] and lk[0] != codes[1] else codes[1::-1]
            lab[idx[0]], lab[idx[1]] = pair
            continue
        sub = graph if len(idx) == n else _Graph(graph.matrix[idx][:, idx])
        frac = float(shares[codes[:k1]].sum() / shares[codes].sum())
        cut, firsts = _straight_cut(
            sub, xy[idx], wt[idx], frac, k1, kk - k1, dirs, lk if (lk >= 0).any() else None, codes
        )
        seconds = [c for c in codes if c not in set(firsts)]
        frac = float(shares[firsts].sum() / shares[codes].sum())
        lock_side = np.where(lk < 0, -1, np.isin(lk, seconds).astype(np.int64))
        if graph_cut and (lock_side == 0).any() and (lock_side == 1).any():
            # locked units on both sides (reps' homes): split along the graph instead
            side = _graph_cut(sub, xy[idx], wt[idx], frac, lock_side)
        else:
            side = np.where(lock_side >= 0, lock_side, cut.astype(np.int64))
        side = _settle_locks(sub, side, wt[idx], 2, lock_side)
        search = _Search(
            sub, side, W[idx], xy[idx], area[idx], [frac, 1 - frac], tol, lock_side, rng,
            compactness,
        )  # fmt: skip
        search.settle(0.5)
        search.secondary()
        search.refine(passes=3)
        search.settle(0.5)
        search.secondary()
        left = search.labels() == 0
        stack.append((idx[~left], seconds))
        stack.append((idx[left], firsts))
    return lab


def _capacity_seed(
    graph: _Graph, xy: np.ndarray, w: np.ndarray, k: int, locked: np.ndarray,
    shares: np.ndarray, homes: np.ndarray, mode: str,
) -> np.ndarray | None:  # fmt: skip
    """Territories around rep homes from a capacitated assignment, made contiguous.

    Units go to homes by a transportation problem (each territory its share of ``w``,
    cost ``w`` x squared shortest-path distance from the home, locked units fixed), solved
    as a linear program (``mode`` "plain"). With "match" the resulting cells are first
    handed to reps by a min-cost matching on the distance from each home to each cell's
    main piece. With "linear" the cost grows linearly with a distance that avoids other
    reps' homes: the squared cost lets a crowded home's cell drift away from it, the
    linear one keeps cells around their homes (plus a small squared term to break its
    many ties). A home cut off from its cell's main piece is joined to it along a shortest
    path, and the rest is made contiguous. None when the program cannot be solved.
    """
    from scipy.optimize import linear_sum_assignment, linprog
    from scipy.sparse.csgraph import dijkstra

    n = graph.n
    ei, ej = graph.ei, graph.ej
    if n * k > 2_000_000:
        return None
    d = np.hypot(*(xy[ei] - xy[ej]).T) + 1e-6
    g = sparse.csr_matrix((np.r_[d, d], (np.r_[ei, ej], np.r_[ej, ei])), shape=(n, n))
    cw = w + 1e-3 * max(w.mean(), 1e-12)
    if mode == "linear":
        # capacity counts the weights the cost does, so a unit's choice is distance - price
        cap = cw
        D = np.full((k, n), np.inf)
        for r in range(k):
            keep = np.flatnonzero((locked < 0) | (locked == r))
            D[r, keep] = dijkstra(g[keep][:, keep], indices=int(np.searchsorted(keep, homes[r])))
    else:
        cap = w
        D = dijkstra(g, indices=homes)
    D = np.where(np.isfinite(D), D, 10.0 * D[np.isfinite(D)].max(initial=1.0))
    C = cw[None, :] * (D + _TIE_BREAK * D**2 / D.max() if mode == "linear" else D**2)
    C = C / max(C.max(), 1e-300)
    nv = k * n
    cols = np.arange(nv)
    a_eq = sparse.vstack([
        sparse.csr_matrix((np.ones(nv), (np.tile(np.arange(n), k), cols)), shape=(n, nv)),
        sparse.csr_matrix((np.tile(cap, k), (np.repeat(np.arange(k), n), cols)), shape=(k, nv)),
    ]).tocsr()  # fmt: skip
    b_eq = np.r_[np.ones(n), cap.sum() * np.asarray(shares)]
    pinned = np.flatnonzero(locked >= 0)
    lo, hi = np.zeros((k, n)), np.ones((k, n))
    hi[:, pinned] = 0.0
    hi[locked[pinned], pinned] = 1.0
    lo[locked[pinned], pinned] = 1.0
    try:
        res = linprog(C.ravel(), A_eq=a_eq, b_eq=b_eq, bounds=np.c_[lo.ravel(), hi.ravel()],
                      method="highs")  # fmt: skip
    except (ValueError, MemoryError):
        return None
    if res.status != 0 or res.x is None:
        return None
    lab = res.x.reshape(k, n).argmax(axis=0)
    free = locked < 0
    # each cell's main piece (its heaviest piece of free units)
    same = (lab[ei] == lab[ej]) & free[ei] & free[ej]
    sub = sparse.coo_matrix((np.ones(int(same.sum())), (ei[same], ej[same])), shape=(n, n))
    _, comp = connected_components(sub, directed=False)
    cwt = np.bincount(comp, weights=np.where(free, w, 0.0) + 1e-6 * max(w.mean(), 1e-12))
    body = np.full(k, -1)
    for c in range(k):
        m = np.flatnonzero((lab == c) & free)
        if len(m):
            pcs = np.unique(comp[m])
            body[c] = pcs[np.argmax(cwt[pcs])]
    if mode == "match":
        cost = np.full((k, k), 1e9)
        for c in range(k):
            if body[c] >= 0:
                cost[:, c] = D[:, comp == body[c]].min(axis=1)
        ri, ci = linear_sum_assignment(cost)
        code = np.empty(k, dtype=np.int64)
        code[ci] = ri
        lab = code[lab]
        body_new = np.full(k, -1)
        body_new[code] = body
        body = body_new
        lab[pinned] = locked[pinned]
    # a home cut off from its cell's main piece is joined to it: the unit of the main piece
    # nearest the home is pinned for the repair, so the path runs between them
    pseudo = locked.copy()
    for r in range(k):
        if body[r] < 0:
            continue
        mine = np.flatnonzero(locked == r)
        if len(mine) and (comp[mine] != body[r]).any():
            part = np.flatnonzero((comp == body[r]) & free)
            dist = D[r, part]
            pseudo[part[int(np.argmin(dist))]] = r
    lab = _settle_locks(graph, lab, w, k, pseudo)
    return _settle_locks(graph, lab, w, k, locked)


def _connect_locked(graph: _Graph, lab: np.ndarray, locked: np.ndarray, k: int) -> np.ndarray:
    """Join each territory's locked units into one piece along shortest paths (in units)
    through units not locked elsewhere; the units on a path join that territory."""
    from scipy.sparse.csgraph import dijkstra

    pinned = locked >= 0
    lab = np.where(pinned, locked, lab)
    n = graph.n
    ei, ej = graph.ei, graph.ej
    same = lab[ei] == lab[ej]
    sub = sparse.coo_matrix((np.ones(int(same.sum())), (ei[same], ej[same])), shape=(n, n))
    _, comp = connected_components(sub, directed=False)
    pairs = np.unique(np.stack([locked[pinned], comp[pinned]], axis=1), axis=0)
    split = np.unique(pairs[:, 0])[
        np.bincount(pairs[:, 0], minlength=k)[np.unique(pairs[:, 0])] > 1
    ]
    for t in split.tolist():
        free = (locked < 0) | (locked == t)
        keep = free[ei] & free[ej]
        g = sparse.coo_matrix(
            (np.ones(2 * int(keep.sum())), (np.r_[ei[keep], ej[keep]], np.r_[ej[keep], ei[keep]])),
            shape=(n, n),
        ).tocsr()
        mine = pinned & (locked == t)
        pieces = np.unique(comp[mine])
        main = pieces[np.argmax([np.count_nonzero(mine & (comp == c)) for c in pieces])]
        body = np.flatnonzero((lab == t) & (comp == main))
        dist, pred, _ = dijkstra(
            g, indices=body, min_only=True, unweighted=True, return_predecessors=True
        )
        for c in pieces[pieces != main].tolist():
            ends = np.flatnonzero(mine & (comp == c))
            u = int(ends[np.argmin(dist[ends])])
            while u >= 0 and np.isfinite(dist[u]) and dist[u] > 0:
                lab[u] = t
                u = int(pred[u])
    return lab


def _settle_locks(
    graph: _Graph, lab: np.ndarray, w: np.ndarray, k: int, locked: np.ndarray, rounds: int = 3
) -> np.ndarray:
    """Pin locked units, join each territory's locked units and make every territory one
    piece (a path for one territory may cut another, so this runs a few rounds)."""
    if not (locked >= 0).any():
        return _repair(graph, lab, w, k, locked)
    for _ in range(rounds):
        lab = _repair(graph, _connect_locked(graph, lab, locked, k), w, k, locked)
        if _locked_whole(graph, lab, locked):
            break
    return lab


def _locked_whole(graph: _Graph, lab: np.ndarray, locked: np.ndarray) -> bool:
    """True when each territory's locked units lie in one connected piece of it."""
    n = graph.n
    ei, ej = graph.ei, graph.ej
    same = lab[ei] == lab[ej]
    sub = sparse.coo_matrix((np.ones(int(same.sum())), (ei[same], ej[same])), shape=(n, n))
    _, comp = connected_components(sub, directed=False)
    pinned = locked >= 0
    if (lab[pinned] != locked[pinned]).any():
        return False
    pairs = np.unique(np.stack([locked[pinned], comp[pinned]], axis=1), axis=0)
    return len(pairs) == len(np.unique(pairs[:, 0]))


# ---------------------------------------------------------------------------------------------
# 2. contiguity repair


def _repair(
    graph: _Graph, lab: np.ndarray, w: np.ndarray, k: int, locked: np.ndarray
) -> np.ndarray:
    """Make every territory one piece: keep its heaviest piece, re-home the strays."""
    n = graph.n
    lab = lab.copy()
    ei, ej = graph.ei, graph.ej
    A = graph.matrix
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
        lab[~keep[comp] & (locked < 0)] = -1
        # stray units join the neighbouring territory they touch most, layer by layer
        while (lab < 0).any():
            todo = np.flatnonzero(lab < 0)
            done = np.flatnonzero(lab >= 0)
            onehot = sparse.csr_matrix((np.ones(len(done)), (done, lab[done])), shape=(n, k))
            counts = (A[todo] @ onehot).toarray()
            has = counts.max(axis=1) > 0
            if not has.any():
                lab[todo] = 0  # unreachable on a connected graph
                break
            lab[todo[has]] = counts[has].argmax(axis=1)
    # an empty territory takes a unit at the edge of the territory with most units
    for t in np.flatnonzero(np.bincount(lab, minlength=k) == 0).tolist():
        donor = int(np.argmax(np.bincount(lab, minlength=k)))
        members = np.flatnonzero((lab == donor) & (locked < 0))
        deg_in = np.array(
            [sum(1 for v in graph.nbrs[u] if lab[v] == donor) for u in members.tolist()]
        )
        lab[members[np.argmin(deg_in)]] = t
    return lab


# ---------------------------------------------------------------------------------------------
# 3-4. local search


class _Search:
    """Boundary-unit local search over a labelling that keeps every territory connected.

    ``shares`` are the territories' target fractions of each balance column (equal for a
    plan, k1/k and k2/k for a bisection); ``tol`` the allowed deviation per column.
    """

    def __init__(self, graph, lab, W, xy, area, shares, tol, locked, rng, compactness) -> None:
        k = len(shares)
        self.g = graph
        self.nbrs = graph.nbrs
        self.k = k
        self.m = W.shape[1]
        self.rows = W.tolist()
        total = W.sum(axis=0)
        self.goal = [[float(total[j] * sh) for j in range(self.m)] for sh in shares]
        self.tol = list(tol)
        self.lo = [[g[j] * (1 - tol[j]) for j in range(self.m)] for g in self.goal]
        self.hi = [[g[j] * (1 + tol[j]) for j in range(self.m)] for g in self.goal]
        self.x = xy[:, 0].tolist()
        self.y = xy[:, 1].tolist()
        a = np.maximum(area, 1e-9)
        self.a = a.tolist()
        self._lockn = np.asarray(locked) >= 0
        self.locked = self._lockn.tolist()
        self.rng = rng
        self.beta = compactness
        self._W, self._xy, self._area = W, xy, a
        self.load(np.asarray(lab))

    def load(self, lab: np.ndarray) -> None:
        """Set the labelling and recompute every running total from it."""
        k, W, xy, a = self.k, self._W, self._xy, self._area
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

    # --- bookkeeping -------------------------------------------------------------------------
    def labels(self) -> np.ndarray:
        return self.labn.copy()

    def begin(self) -> None:
        """Start recording moves so :meth:`undo` can take them back."""
        self.log = []

    def undo(self) -> None:
        """Take back every move since :meth:`begin`, newest first."""
        log, self.log = self.log or [], None
        for u, p, q in reversed(log):
            self.move(u, q, p)

    def move(self, u: int, p: int, q: int) -> None:
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

    def geo(self, u: int, p: int, q: int) -> float:
        """Compactness gain of moving u from p to q: squared distances to the territories'
        centroids, each scaled by its territory's area (scale-free, ~1 at the edge of a disc)."""
        x, y = self.x[u], self.y[u]
        sap, saq = self.sa[p], self.sa[q]
        dpx = x - self.sx[p] / sap
        dpy = y - self.sy[p] / sap
        dqx = x - self.sx[q] / saq
        dqy = y - self.sy[q] / saq
        return 3.14159 * ((dpx * dpx + dpy * dpy) / sap - (dqx * dqx + dqy * dqy) / saq)

    def can_remove(self, u: int, p: int) -> bool:
        """True when p stays connected without u (short BFS among u's p-neighbours)."""
        if self.cnt[p] <= 1 or self.locked[u]:
            return False
        lab = self.lab
        nbrs = self.nbrs
        same = [v for v in nbrs[u] if lab[v] == p]
        if len(same) <= 1:
            return len(same) == 1
        # local check first: same-territory neighbours linked among themselves (the usual
        # case on a planar map, where they form one arc around u)
        ring = set(same)
        reached = {same[0]}
        stack = [same[0]]
        while stack:
            x = stack.pop()
            for y in nbrs[x]:
                if y in ring and y not in reached:
                    reached.add(y)
                    stack.append(y)
        if len(reached) == len(ring):
            return True
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

    def _excess(self, t: int, j: int, x: float) -> float:
        hi, lo = self.hi[t][j], self.lo[t][j]
        if x > hi:
            return (x - hi) / self.goal[t][j]
        if x < lo:
            return (lo - x) / self.goal[t][j]
        return 0.0

    def _viol_delta(self, u: int, p: int, q: int, first: int = 0) -> float:
        """Change in band violation if u moves p -> q (columns from ``first`` on)."""
        d = 0.0
        row = self.rows[u]
        for j in range(first, self.m):
            wj = row[j]
            if wj == 0:
                continue
            tp, tq = self.tot[p][j], self.tot[q][j]
            d += self._excess(p, j, tp - wj) - self._excess(p, j, tp)
            d += self._excess(q, j, tq + wj) - self._excess(q, j, tq)
        return d

    def cut_edges(self) -> int:
        lab = self.labn
        return int((lab[self.g.ei] != lab[self.g.ej]).sum())

    def max_dev(self, j: int = 0) -> float:
        return max(
            abs(self.tot[t][j] / self.goal[t][j] - 1) for t in range(self.k) if self.goal[t][j] > 0
        )

    def score(self) -> tuple:
        """Lexicographic plan quality: primary outside its band (the worst territory, then
        all), secondaries outside theirs, cut edges, primary deviation (smaller is better)."""
        over = [self._excess(t, 0, self.tot[t][0]) for t in range(self.k)]
        rest = sum(
            self._excess(t, j, self.tot[t][j]) for t in range(self.k) for j in range(1, self.m)
        )
        return (
            round(max(over), 6),
            round(sum(over), 6),
            round(rest, 6),
            self.cut_edges(),
            round(self.max_dev(), 6),
        )

    def boundary(self) -> np.ndarray:
        lab = self.labn
        cut = lab[self.g.ei] != lab[self.g.ej]
        b = np.zeros(self.g.n, dtype=bool)
        b[self.g.ei[cut]] = True
        b[self.g.ej[cut]] = True
        return np.flatnonzero(b)

    def boundary_of(self, p: int, q: int) -> list[int]:
        """Units of p that touch q."""
        lab = self.lab
        out = []
        for u in self._pair_units(p, q):
            if lab[u] == p:
                out.append(u)
        return out

    def _all_boundaries(self) -> dict[tuple[int, int], list[int]]:
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

    def _pair_units(self, p: int, q: int) -> list[int]:
        lab = self.labn
        ei, ej = self.g.ei, self.g.ej
        a, b = lab[ei], lab[ej]
        m = ((a == p) & (b == q)) | ((a == q) & (b == p))
        return np.unique(np.concatenate([ei[m], ej[m]])).tolist()

    def _gain(self, u: int, p: int, q: int) -> float:
        cp = cq = 0
        for v in self.nbrs[u]:
            lv = self.lab[v]
            if lv == p:
                cp += 1
            elif lv == q:
                cq += 1
        return cq - cp

    # --- balance by diffusion ----------------------------------------------------------------
    def _push(self, p: int, q: int, amount: float, j: int) -> float:
        """Move boundary units p -> q totalling at most about ``amount`` of column j."""
        lab, nbrs, rows = self.lab, self.nbrs, self.rows
        heap: list = []
        seen: set[int] = set()

        def offer(u: int) -> None:
            if u in seen or self.locked[u] or lab[u] != p:
                return
            g = self._gain(u, p, q)
            if not any(lab[v] == q for v in nbrs[u]):
                return
            seen.add(u)
            s = g + self.beta * self.geo(u, p, q) - 20.0 * self._viol_delta(u, p, q, first=1)
            heapq.heappush(heap, (-s, -rows[u][j], u))

        for u in self.boundary_of(p, q):
            offer(u)
        moved = 0.0
        rem = amount
        while heap and rem > 0:
            _, _, u = heapq.heappop(heap)
            if lab[u] != p:
                continue
            wu = rows[u][j]
            if wu > rem:
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

        Exchanges (a: p -> q, b: q -> p) reach amounts far below any single unit's weight,
        which is what lets dense areas balance to a fraction of a percent. Of the options
        that close at least half the gap, the one cutting fewest edges wins.
        """
        lab, nbrs = self.lab, self.nbrs
        A = [u for u in self.boundary_of(p, q) if not self.locked[u]]
        B = [u for u in self.boundary_of(q, p) if not self.locked[u]]
        if not A:
            return False
        wa = np.array([self.rows[u][j] for u in A])
        wb = np.array([self.rows[u][j] for u in B] + [0.0])  # last column: no return move
        ga = np.array([self._gain(u, p, q) + self.beta * self.geo(u, p, q) for u in A])
        gb = np.array([self._gain(u, q, p) + self.beta * self.geo(u, q, p) for u in B] + [0.0])
        err = np.abs(wa[:, None] - wb[None, :] - amount)
        score = ga[:, None] + gb[None, :]
        ok = err < 0.5 * amount
        if not ok.any():
            ok = err < 0.999 * amount
        if not ok.any():
            return False
        flat = np.flatnonzero(ok.ravel())
        order = flat[np.lexsort((err.ravel()[flat], -score.ravel()[flat]))][:12]
        for f in order.tolist():
            ia, ib = divmod(f, len(wb))
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

    def _subtrees(self, p: int, q: int, cols: list[int]):
        """Blocks of p that can join q whole, as (roots, weights per column, children).

        The blocks are the subtrees of a breadth-first spanning tree of p rooted far from
        q: cutting a subtree off leaves the rest of p connected, and a subtree holding a
        unit that touches q joins q in one piece. Subtree weights span every scale from a
        single unit to most of the territory. None when p has no such block.
        """
        lab, nbrs, rows, locked = self.lab, self.nbrs, self.rows, self.locked
        edge = self.boundary_of(p, q)
        if not edge:
            return None
        # root: the unit of p farthest from the shared edge (straight-line, a cheap proxy)
        members = np.flatnonzero(self.labn == p)
        ex = sum(self.x[u] for u in edge) / len(edge)
        ey = sum(self.y[u] for u in edge) / len(edge)
        d = (self._xy[members, 0] - ex) ** 2 + (self._xy[members, 1] - ey) ** 2
        # a locked unit (a rep's home) makes the best root: no block then contains it
        pinned = self._lockn[members]
        if pinned.any():
            d = np.where(pinned, d, -1.0)
        root = int(members[int(np.argmax(d))])
        order = [root]
        pred = {root: -1}
        i = 0
        while i < len(order):
            x = order[i]
            i += 1
            for y in nbrs[x]:
                if y not in pred and lab[y] == p:
                    pred[y] = x
                    order.append(y)
        if len(order) < self.cnt[p]:
            return None
        wsub = {u: [rows[u][c] for c in cols] for u in order}
        touch = dict.fromkeys(order, False)
        for u in edge:
            touch[u] = True
        blocked = {u: locked[u] for u in order}
        for x in reversed(order[1:]):
            px = pred[x]
            wp, wx = wsub[px], wsub[x]
            for c in range(len(cols)):
                wp[c] += wx[c]
            if touch[x]:
                touch[px] = True
            if blocked[x]:
                blocked[px] = True
        roots = [x for x in order[1:] if touch[x] and not blocked[x]]
        if not roots:
            return None
        children: dict[int, list[int]] = {}
        for x in order[1:]:
            children.setdefault(pred[x], []).append(x)
        return roots, np.array([wsub[x] for x in roots], dtype=float), children

    @staticmethod
    def _subtree(root: int, children: dict[int, list[int]]) -> list[int]:
        nodes = [root]
        for x in nodes:
            nodes.extend(children.get(x, ()))
        return nodes

    def _block(
        self, p: int, q: int, amount: float, j: int, window: float, limit: float | None = None
    ) -> bool:
        """Move one connected block of p into q weighing about ``amount`` of column j.

        See :meth:`_subtrees`; this reaches amounts no single move can. Within ``window``
        of the amount the block cutting fewest edges wins.
        """
        limit = amount if limit is None else limit
        blocks = self._subtrees(p, q, [j])
        if blocks is None:
            return False
        roots, w, children = blocks
        err = np.abs(w[:, 0] - amount)
        ok = np.flatnonzero(err < limit)
        if len(ok) == 0:
            return False
        ok = ok[np.argsort(err[ok], kind="stable")][:6]
        if err[ok[0]] <= window:
            ok = ok[err[ok] <= window]
        lab, nbrs = self.lab, self.nbrs
        best = None
        for i in ok.tolist():
            nodes = self._subtree(roots[i], children)
            inside = set(nodes)
            gain = 0
            for u in nodes:
                for v in nbrs[u]:
                    lv = lab[v]
                    if lv == q:
                        gain += 1
                    elif lv == p and v not in inside:
                        gain -= 1
            key = (-gain, err[i]) if err[ok[0]] <= window else (err[i], -gain)
            if best is None or key < best[0]:
                best = (key, nodes)
        for u in best[1]:
            self.move(u, p, q)
        return True

    def _connected(self, p: int) -> bool:
        """Full check that territory p is one piece."""
        lab, nbrs = self.lab, self.nbrs
        start = int(np.flatnonzero(self.labn == p)[0]) if self.cnt[p] else -1
        if start < 0:
            return False
        seen = {start}
        stack = [start]
        while stack:
            x = stack.pop()
            for y in nbrs[x]:
                if y not in seen and lab[y] == p:
                    seen.add(y)
                    stack.append(y)
        return len(seen) == self.cnt[p]

    def _block_exchange(self, t: int, q: int, goal: float) -> bool:
        """Trade a block of t for a block of q (either may be empty) so the secondary
        columns' excess falls while both primaries stay inside their band."""
        cols = list(range(self.m))
        bt = self._subtrees(t, q, cols)
        bq = self._subtrees(q, t, cols)
        if bt is None and bq is None:
            return False
        m = self.m
        rt, wt, ct = bt if bt is not None else ([], np.zeros((0, m)), {})
        rq, wq, cq = bq if bq is not None else ([], np.zeros((0, m)), {})
        # keep blocks modest (a quarter of a territory) and the search small
        cap_t = 0.25 * np.array(self.goal[t])
        cap_q = 0.25 * np.array(self.goal[q])
        st = np.flatnonzero((wt <= cap_t + 1e-9).all(axis=1))[:300]
        sq = np.flatnonzero((wq <= cap_q + 1e-9).all(axis=1))[:300]
        wt = np.vstack([wt[st], np.zeros((1, m))])
        wq = np.vstack([wq[sq], np.zeros((1, m))])
        net = wt[:, None, :] - wq[None, :, :]  # leaves t, joins q
        gt, gq = np.array(self.goal[t]), np.array(self.goal[q])
        dt = np.abs((np.array(self.tot[t]) - net) / gt - 1)
        dq = np.abs((np.array(self.tot[q]) + net) / gq - 1)
        band = self.tol[0] * max(goal, 1.0)
        cur0 = max(abs(self.tot[t][0] / gt[0] - 1), abs(self.tot[q][0] / gq[0] - 1))
        ok = np.maximum(dt[..., 0], dq[..., 0]) <= max(band, cur0) + 1e-12
        tolv = np.array(self.tol[1:])
        after = (
            np.maximum(dt[..., 1:] / tolv - 0.9, 0) + np.maximum(dq[..., 1:] / tolv - 0.9, 0)
        ).sum(-1)
        now_t = np.abs(np.array(self.tot[t][1:]) / gt[1:] - 1) / tolv - 0.9
        now_q = np.abs(np.array(self.tot[q][1:]) / gq[1:] - 1) / tolv - 0.9
        before = float(np.maximum(now_t, 0).sum() + np.maximum(now_q, 0).sum())
        gain = before - after
        ok &= gain > 1e-6
        ok[-1, -1] = False
        if not ok.any():
            return False
        flat = np.flatnonzero(ok.ravel())
        for f in flat[np.argsort(-gain.ravel()[flat], kind="stable")][:3].tolist():
            it, iq = divmod(f, len(wq))
            moved: list[tuple[int, int, int]] = []
            if it < len(st):
                for u in self._subtree(rt[st[it]], ct):
                    self.move(u, t, q)
                    moved.append((u, t, q))
            if iq < len(sq):
                for u in self._subtree(rq[sq[iq]], cq):
                    if self.lab[u] == q:
                        self.move(u, q, t)
                        moved.append((u, q, t))
            if self.cnt[t] and self.cnt[q] and self._connected(t) and self._connected(q):
                return True
            for u, a, b in reversed(moved):
                self.move(u, b, a)
        return False

    def _members(self, p: int) -> list[int]:
        return np.flatnonzero(self.labn == p).tolist()

    def _territory_graph(self) -> list[set[int]]:
        lab = self.labn
        a, b = lab[self.g.ei], lab[self.g.ej]
        cut = a != b
        adj: list[set[int]] = [set() for _ in range(self.k)]
        for code in np.unique(a[cut] * self.k + b[cut]).tolist():
            x, y = divmod(code, self.k)
            adj[x].add(y)
            adj[y].add(x)
        return adj

    def _shift(self, path: list[int], amount: float, j: int, window: float) -> None:
        """Pass about ``amount`` of column j along a path of territories.

        Hops run from the receiving end back to the donor, and each passes on what the hop
        after it actually moved: a hop into a territory with coarse units may move more or
        less than asked (it only has to improve the receiver), and the hops upstream, usually
        with finer choice, make up exactly that.
        """
        hops = list(zip(path[:-1], path[1:], strict=False))
        want = amount
        # the receiver improves with anything below twice its shortfall
        gap = self.goal[path[-1]][j] - self.tot[path[-1]][j]
        first_limit = max(2.0 * gap - amount, amount)
        for n, (p, q) in enumerate(reversed(hops)):
            limit = first_limit if n == 0 else want
            before = self.tot[q][j]
            # p keeps the units touching the territory upstream, which passes to p next
            up = len(hops) - 1 - n
            guard = (
                [u for u in self.boundary_of(p, path[up - 1]) if not self.locked[u]] if up else []
            )
            self._pin(guard, True)
            try:
                rem = want - self._push(p, q, want, j)
                if rem > 0.1 * window and not self._block(p, q, rem, j, window, limit=limit):
                    self._swap(p, q, rem, j)
            finally:
                self._pin(guard, False)
            want = self.tot[q][j] - before
            if want <= 0:
                break

    def _pin(self, units: list[int], on: bool) -> None:
        """Temporarily lock (or release) units."""
        for u in units:
            self.locked[u] = on
            self._lockn[u] = on

    def imbalance(self, goal: float = 1.0) -> tuple[float, float]:
        """Primary column: (largest deviation beyond ``goal`` x tolerance, sum of squared
        deviations), in units of its tolerance; (0, ...) when every total is inside."""
        worst, sq = 0.0, 0.0
        tol = self.tol[0]
        for t in range(self.k):
            g = self.goal[t][0]
            if g > 0:
                d = abs(self.tot[t][0] / g - 1) / tol
                sq += d * d
                if d - goal > worst:
                    worst = d - goal
        return worst, sq

    def secondary_excess(self, slack: float = 0.9) -> float:
        """Sum over territories and secondary columns of the deviation beyond ``slack`` x
        tolerance, in units of tolerance (0 when all inside)."""
        total = 0.0
        for j in range(1, self.m):
            tol = self.tol[j]
            for t in range(self.k):
                g = self.goal[t][j]
                if g > 0:
                    d = abs(self.tot[t][j] / g - 1) / tol - slack
                    if d > 0:
                        total += d
        return total

    def secondary(self, goal: float = 0.5, max_iter: int | None = None) -> None:
        """Bring secondary columns inside their tolerance by exchanges between neighbours.

        An exchange moves one unit a from p to q and optionally one unit b back, chosen so
        the primary column of both stays inside its band while the secondary excess falls.
        """
        if self.m == 1:
            return
        max_iter = max_iter if max_iter is not None else 30 * self.k
        stuck: set[int] = set()
        trail: list[float] = []
        for _ in range(max_iter):
            cur = self.secondary_excess()
            if cur <= 0:
                return
            trail.append(cur)
            if len(trail) > _SECONDARY_WINDOW and cur > 0.98 * trail[-_SECONDARY_WINDOW - 1]:
                return  # under 2% better than a window ago: out of reach beside the primary
            worst = None
            for j in range(1, self.m):
                for t in range(self.k):
                    if t in stuck or self.goal[t][j] <= 0:
                        continue
                    d = abs(self.tot[t][j] / self.goal[t][j] - 1) / self.tol[j]
                    if d > 0.9 and (worst is None or d > worst[0]):
                        worst = (d, t)
            if worst is None:
                return
            t = worst[1]
            nbr = sorted({self.lab[v] for u in self._members(t) for v in self.nbrs[u]} - {t})
            if any(self._block_exchange(t, q, goal) for q in nbr) or self._exchange(t, goal, cur):
                if self.secondary_excess() < cur - 1e-9:
                    stuck.clear()  # progress: territories stuck before may move now
            else:
                stuck.add(t)

    def _exchange(self, t: int, goal: float, cur: float) -> bool:
        """Best single exchange between t and a neighbour lowering the secondary excess."""
        lab = self.lab
        nbr_terr = sorted({lab[v] for u in self._members(t) for v in self.nbrs[u] if lab[v] != t})
        m = self.m
        tol0 = self.tol[0] * goal
        best = None
        for q in nbr_terr:
            A = [u for u in self.boundary_of(t, q) if not self.locked[u]]
            B = [u for u in self.boundary_of(q, t) if not self.locked[u]]
            if not A and not B:
                continue
            # options: a alone (t -> q), b alone (q -> t), or a with b
            wa = np.array([self.rows[u] for u in A] + [[0.0] * m])
            wb = np.array([self.rows[u] for u in B] + [[0.0] * m])
            net = wa[:, None, :] - wb[None, :, :]  # moved from t to q, per column
            tt = np.array(self.tot[t])[None, None, :] - net
            tq = np.array(self.tot[q])[None, None, :] + net
            gt, gq = np.array(self.goal[t]), np.array(self.goal[q])
            dt = np.abs(tt / gt - 1)
            dq = np.abs(tq / gq - 1)
            # the primary stays inside its band, or at least gets no worse
            p_now = max(abs(self.tot[t][0] / gt[0] - 1), abs(self.tot[q][0] / gq[0] - 1), tol0)
            ok = np.maximum(dt[..., 0], dq[..., 0]) <= p_now + 1e-12
            tolv = np.array(self.tol)[None, None, 1:]
            ex = (
                np.maximum(dt[..., 1:] / tolv - 0.9, 0) + np.maximum(dq[..., 1:] / tolv - 0.9, 0)
            ).sum(-1)
            before = 0.0
            for j in range(1, m):
                for x, g in ((self.tot[t][j], gt[j]), (self.tot[q][j], gq[j])):
                    before += max(abs(x / g - 1) / self.tol[j] - 0.9, 0)
            gain = before - ex
            ok &= gain > 1e-9
            ok[-1, -1] = False
            if not ok.any():
                continue
            flat = np.flatnonzero(ok.ravel())
            order = flat[np.argsort(-gain.ravel()[flat], kind="stable")][:8]
            for f in order.tolist():
                ia, ib = divmod(f, len(B) + 1)
                g = float(gain.ravel()[f])
                if best is None or g > best[0]:
                    best = (g, q, A[ia] if ia < len(A) else -1, B[ib] if ib < len(B) else -1)
                break
        if best is None:
            return False
        _, q, a, b = best
        before_lab = None
        if a >= 0:
            if not self.can_remove(a, t):
                return False
            self.move(a, t, q)
            before_lab = (a, t, q)
        if b >= 0:
            if lab[b] == q and any(lab[v] == t for v in self.nbrs[b]) and self.can_remove(b, q):
                self.move(b, q, t)
            elif before_lab is not None:
                self.move(a, q, t)
                return False
            else:
                return False
        return True

    def balance(
        self,
        goal: float = 0.5,
        max_iter: int | None = None,
        failures: float = _MAX_FAILURES,
        in_a_row: bool = False,
    ) -> None:
        """Even out totals until every column is within ``goal`` times its tolerance.

        Each step takes the territory furthest from its goal and the nearest territory
        (fewest hops in the territory graph) deviating the other way, and passes the
        smaller of the two gaps along the path between them. A step that does not reduce
        the imbalance is undone; the descent ends when no step helps, or after ``failures``
        x K failed steps (in all, or ``in_a_row``: a long descent from a poor start).
        """
        best = self.imbalance(goal)
        max_iter = max_iter if max_iter is not None else 4 * self.k + 8
        tried: set[tuple[int, int, int]] = set()
        n_failed = 0
        for _ in range(max_iter):
            if best[0] <= 0:
                break
            adj = self._territory_graph()
            step = self._pick(adj, tried)
            if step is None:
                break
            key, path, amount = step
            j = key[0]
            self.begin()
            window = 0.5 * goal * self.tol[j] * self.goal[path[0]][j]
            self._shift(path, amount, j, window)
            now = self.imbalance(goal)
            if now >= best:
                self.undo()
                tried.add(key)
                n_failed += 1
                if n_failed > failures * self.k:
                    break
                continue
            best = now
            self.log = None
            tried.clear()
            if in_a_row:
                n_failed = 0
        self.log = None

    def _pick(self, adj: list[set[int]], tried: set) -> tuple[tuple, list[int], float] | None:
        """Next balancing step: (key, territory path from donor to receiver, amount).

        The most deviating territory s is paired with the nearest territory t (fewest hops,
        then largest deviation) deviating the other way that has not failed already.
        """
        j = 0
        devs = sorted(
            (
                (abs(self.tot[t][j] / self.goal[t][j] - 1), t)
                for t in range(self.k)
                if self.goal[t][j] > 0
            ),
            reverse=True,
        )
        for _, s in devs:
            es = self.tot[s][j] - self.goal[s][j]
            if es == 0:
                continue
            prev = {s: -1}
            hops = {s: 0}
            frontier = [s]
            found = []
            while frontier:
                nxt = []
                for x in frontier:
                    for y in sorted(adj[x]):
                        if y not in prev:
                            prev[y] = x
                            hops[y] = hops[x] + 1
                            nxt.append(y)
                            ey = self.tot[y][j] - self.goal[y][j]
                            if ey * es < 0 and (j, s, y) not in tried:
                                found.append((hops[y], -abs(ey), y))
                frontier = nxt
            if not found:
                continue
            _, _, t = min(found)
            path = [t]
            while path[-1] != s:
                path.append(prev[path[-1]])
            path.reverse()  # s ... t
            et = self.tot[t][j] - self.goal[t][j]
            amount = 0.5 * (abs(es) + abs(et))  # evens s and t out; never overshoots s
            if es < 0:  # s is short: flow runs from t to s
                path.reverse()
            return (j, s, t), path, amount
        return None

    def _kick(self) -> bool:
        """Perturb a stuck balance: move one unit into or out of the worst territory even
        when that overshoots, choosing at random among the least damaging moves."""
        lab, nbrs = self.lab, self.nbrs
        devs = [
            (abs(self.tot[t][0] / self.goal[t][0] - 1), t)
            for t in range(self.k)
            if self.goal[t][0] > 0
        ]
        _, t = max(devs)
        over = self.tot[t][0] > self.goal[t][0]
        ext = set()
        for u in range(self.g.n) if self.g.n < 2000 else self.boundary().tolist():
            if (lab[u] == t) == over:
                for v in nbrs[u]:
                    if lab[v] != lab[u] and (lab[v] == t or over):
                        ext.add((u, lab[u], lab[v]) if over else (u, lab[u], t))
        opts = []
        for u, p, q in ext:
            if self.locked[u] or (not over and q != t):
                continue
            w = self.rows[u][0]
            dp = abs((self.tot[p][0] - w) / self.goal[p][0] - 1)
            dq = abs((self.tot[q][0] + w) / self.goal[q][0] - 1)
            opts.append((max(dp, dq) - 0.1 * (self._gain(u, p, q)) * self.tol[0], u, p, q))
        if not opts:
            return False
        opts.sort()
        pick = opts[: max(3, len(opts) // 4)]
        for i in self.rng.permutation(len(pick)).tolist():
            _, u, p, q = pick[i]
            if self.can_remove(u, p):
                self.move(u, p, q)
                return True
        return False

    def settle(self, goal: float = 0.5, kicks: int = 3) -> None:
        """Balance; when stuck outside the goal, kick and rebalance, keeping the best state."""
        self.balance(goal)
        best = (self.imbalance(goal)[0], self.cut_edges())
        best_lab = self.labels()
        for _ in range(kicks):
            if best[0] <= 0 or not self._kick():
                break
            self.balance(goal)
            now = (self.imbalance(goal)[0], self.cut_edges())
            if now < best:
                best, best_lab = now, self.labels()
        if (self.imbalance(goal)[0], self.cut_edges()) != best:
            self.load(best_lab)

    # --- refinement --------------------------------------------------------------------------
    def _set_band(self, slack: float) -> None:
        """Widen (slack > 1) or restore (slack = 1) the primary column's band."""
        tol = self.tol[0] * slack
        for t in range(self.k):
            g = self.goal[t][0]
            self.lo[t][0] = g * (1 - tol)
            self.hi[t][0] = g * (1 + tol)

    def refine(self, passes: int = 8, slack: float = 1.0) -> int:
        """Greedy boundary moves that cut fewer edges or improve compactness, bands kept
        (the primary band widened ``slack`` times, for a rebalance to tighten afterwards)."""
        self._set_band(slack)
        try:
            return self._refine(passes)
        finally:
            self._set_band(1.0)

    def swap_refine(self, rounds: int = 3) -> int:
        """Exchange pairs of boundary units between neighbouring territories when the pair
        cuts fewer edges and both territories stay inside every band: the refinement that
        still works when balance is so tight that no single move fits."""
        lab, nbrs = self.lab, self.nbrs
        done = 0
        m = self.m
        for _ in range(rounds):
            swapped = 0
            sides = self._all_boundaries()
            for (p, q), A0 in sides.items():
                if q > p:
                    A = [u for u in A0 if not self.locked[u] and lab[u] == p]
                    B = [u for u in sides.get((q, p), ()) if not self.locked[u] and lab[u] == q]
                    if not A or not B:
                        continue
                    ga = np.array([self._gain(u, p, q) + self.beta * self.geo(u, p, q) for u in A])
                    gb = np.array([self._gain(u, q, p) + self.beta * self.geo(u, q, p) for u in B])
                    gain = ga[:, None] + gb[None, :]
                    bset = {u: i for i, u in enumerate(B)}
                    for ia, u in enumerate(A):
                        for v in nbrs[u]:
                            ib = bset.get(v)
                            if ib is not None:
                                gain[ia, ib] -= 2.0
                    ok = gain > 1e-9
                    if not ok.any():
                        continue
                    wa = np.array([self.rows[u] for u in A])
                    wb = np.array([self.rows[u] for u in B])
                    net = wa[:, None, :] - wb[None, :, :]  # leaves p, joins q
                    tp = np.array(self.tot[p])[None, None, :] - net
                    tq = np.array(self.tot[q])[None, None, :] + net
                    inside = (
                        (
                            (tp >= np.array(self.lo[p]) - 1e-9)
                            & (tp <= np.array(self.hi[p]) + 1e-9)
                            & (tq >= np.array(self.lo[q]) - 1e-9)
                            & (tq <= np.array(self.hi[q]) + 1e-9)
                        ).all(axis=-1)
                        if m
                        else ok
                    )
                    ok &= inside
                    if not ok.any():
                        continue
                    flat = np.flatnonzero(ok.ravel())
                    for f in flat[np.argsort(-gain.ravel()[flat], kind="stable")][:4].tolist():
                        ia, ib = divmod(f, len(B))
                        a, b = A[ia], B[ib]
                        if lab[a] != p or lab[b] != q or not self.can_remove(a, p):
                            continue
                        if not any(lab[x] == q for x in nbrs[a]):
                            continue
                        self.move(a, p, q)
                        if any(lab[x] == p for x in nbrs[b]) and self.can_remove(b, q):
                            self.move(b, q, p)
                            swapped += 1
                            break
                        self.move(a, q, p)
            done += swapped
            if swapped == 0:
                break
        return done

    def _best_move(self, u: int, beta: float) -> tuple[float, int]:
        """(gain, territory) of u's best move to a neighbouring territory: edges no longer
        cut plus ``beta`` times the compactness term; (-inf, -1) if none."""
        lab = self.lab
        p = lab[u]
        cnt: dict[int, int] = {}
        for v in self.nbrs[u]:
            lv = lab[v]
            cnt[lv] = cnt.get(lv, 0) + 1
        cp = cnt.get(p, 0)
        best_s, best_q = -np.inf, -1
        for q, cq in cnt.items():
            if q != p:
                s = (cq - cp) + beta * self.geo(u, p, q)
                if s > best_s:
                    best_s, best_q = s, q
        return best_s, best_q

    def fm(self, passes: int = 6, patience: int = 100) -> int:
        """Fiduccia–Mattheyses passes: keep taking the best boundary move, even one that
        cuts more edges, each unit moving once per pass, and keep the best prefix of the
        sequence. Where greedy refinement stops at the first ridge, this walks over it (a
        jagged boundary straightens only after a few moves that gain nothing on their own).
        Bands and contiguity hold after every move; compactness only breaks near-ties here
        (cut edges are what the walk is after). Returns the number of moves kept."""
        lab, nbrs = self.lab, self.nbrs
        beta = _FM_COMPACTNESS * self.beta
        kept = 0
        for _ in range(passes):
            heap = []
            for u in self.boundary().tolist():
                if not self.locked[u]:
                    s, q = self._best_move(u, beta)
                    if q >= 0:
                        heap.append((-s, u, q))
            heapq.heapify(heap)
            done: set[int] = set()
            seq: list[tuple[int, int, int]] = []
            gain = best_gain = 0.0
            best_len = 0
            while heap and len(seq) - best_len <= patience:
                neg, u, q = heapq.heappop(heap)
                if u in done:
                    continue
                s, q2 = self._best_move(u, beta)
                if q2 < 0:
                    continue
                if s < -neg - 1e-9 or q2 != q:  # stale entry: requeue at its current value
                    heapq.heappush(heap, (-s, u, q2))
                    continue
                p = lab[u]
                if self._viol_delta(u, p, q) > 1e-12 or not self.can_remove(u, p):
                    done.add(u)
                    continue
                self.move(u, p, q)
                done.add(u)
                seq.append((u, p, q))
                gain += s
                if gain > best_gain + 1e-9:
                    best_gain, best_len = gain, len(seq)
                for v in nbrs[u]:
                    if v not in done and not self.locked[v]:
                        sv, qv = self._best_move(v, beta)
                        if qv >= 0:
                            heapq.heappush(heap, (-sv, v, qv))
            for u, p, q in reversed(seq[best_len:]):
                self.move(u, q, p)
            kept += best_len
            if best_len == 0:
                break
        return kept

    def _refine(self, passes: int) -> int:
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
                    if s <= best_s or self._viol_delta(u, p, q) > 1e-12:
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
        """Balance, then alternate refinement (with a shrinking band) and rebalancing,
        keeping the best plan seen."""
        self.settle(0.5)
        self.secondary()
        best = self.score()
        best_lab = self.labels()
        for r in range(rounds):
            slack = _SLACK[min(r, len(_SLACK) - 1)]
            moved = self.refine(slack=slack)
            self.settle(0.5)
            self.secondary()
            self.swap_refine()
            self.refine()
            if _FM:
                self.fm()
            now = self.score()
            if now < best:
                best, best_lab = now, self.labels()
            if moved == 0 and slack == 1.0:
                break
        if self.score() != best:
            self.load(best_lab)
        if _TIGHTEN:
            # as tight as it goes, as long as that costs (almost) no cut edges: rebalance to
            # half the band, refine inside it, and keep the result only if it holds up
            before, cut0 = self.labels(), self.cut_edges()
            self.settle(0.5)
            self._set_band(0.5)
            try:
                self.swap_refine()
                self._refine(4)
            finally:
                self._set_band(1.0)
            if self.cut_edges() > cut0 * (1 + _TIGHTEN_COST) or self.score()[0] > 0:
                self.load(before)
