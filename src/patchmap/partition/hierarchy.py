"""Hard boundaries and two-level plans: territories within groups, regions over territories.

``within`` (a column such as ``state``) splits the units into groups no territory may
cross: K is split across the groups in proportion to the primary measure (largest
remainder, at least one each; with reps, each group gets its reps) and each group is
partitioned on its own. ``regions`` draws N regions first (balanced to the number of
territories each will hold) and then the territories inside each, so the hierarchy nests
by construction; ``plan.regions`` maps territory -> region. When the territories are
fixed first (reps, a realignment), regions group whole territories instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import geopandas as gpd
import numpy as np
import pandas as pd
from scipy import sparse
from scipy.sparse.csgraph import connected_components
from sklearn.base import clone

from patchmap.errors import InputError, LockError
from patchmap.notes import Note
from patchmap.partition.constraints import HomeBases, LockedUnits, Within
from patchmap.partition.plan import Plan, build_plan, west_east_rank
from patchmap.partition.problem import (
    COMPACTNESS,
    TARGET,
    TOLERANCE,
    Problem,
    input_notes,
    prepare,
    within_note,
)
from patchmap.partition.reps import locate_homes, prepare_reps, rep_report, rep_shares
from patchmap.partition.schedule import solve
from patchmap.units.adjacency import Adjacency, build_adjacency, edge_adjacency, show_id

__all__ = ["fit_nested", "group_shares", "group_territories", "group_values", "split_count"]


def split_count(weights: np.ndarray | list[float], k: int, minimum: int = 1) -> np.ndarray:
    """Split ``k`` items across groups in proportion to ``weights`` (largest remainder),
    giving every group at least ``minimum``."""
    w = np.asarray(weights, dtype=float)
    g = len(w)
    if k < g * minimum:
        raise InputError(f"cannot give {g} groups at least {minimum} of {k} territories each")
    quota = w / w.sum() * k if w.sum() > 0 else np.full(g, k / g)
    base = np.maximum(np.floor(quota), minimum).astype(np.int64)
    while base.sum() > k:  # the minimum overshot: take from the least deserving
        i = int(np.argmin(np.where(base > minimum, quota - base, np.inf)))
        base[i] -= 1
    rem = quota - base
    for i in np.argsort(-rem, kind="stable")[: k - int(base.sum())].tolist():
        base[i] += 1
    return base


def group_values(
    units: pd.DataFrame, within: str | pd.Series | Mapping, ids: np.ndarray
) -> tuple[np.ndarray, str]:
    """One group value (text) per unit, in ``ids`` order, and the group's name."""
    if isinstance(within, str):
        if within not in units.columns:
            cols = ", ".join(str(c) for c in units.columns if c != "geometry")
            raise InputError(f"within: column {within!r} not found (columns: {cols})")
        vals = pd.Series(units[within].to_numpy(), index=pd.Index(ids))
        name = within
    else:
        s = pd.Series(within)
        vals = s.reindex(pd.Index(ids)) if not s.index.equals(pd.RangeIndex(len(ids))) else s
        vals.index = pd.Index(ids)
        name = str(getattr(within, "name", None) or "group")
    missing = vals.isna().to_numpy()
    if missing.any():
        raise InputError(
            f"within: {int(missing.sum())} unit(s) have no {name!r} value, e.g. unit "
            f"{show_id(np.asarray(ids)[missing][0])}"
        )
    return vals.astype(str).to_numpy(dtype=object), name


def group_shares(
    w: np.ndarray, groups: np.ndarray, labels: np.ndarray, k: int,
    weights: np.ndarray | None = None,
) -> np.ndarray:  # fmt: skip
    """Each territory's target share of the total when territories stay inside groups: its
    group's total split among the group's territories (territory codes ``labels``),
    equally or in proportion to ``weights`` (one per territory: the reps' capacity)."""
    gnames, gcode = np.unique(groups, return_inverse=True)
    gtot = np.bincount(gcode, weights=w, minlength=len(gnames))
    # a territory's group: where most of its weight (or units) lies
    pair = sparse.coo_matrix((w + 1e-9, (labels, gcode)), shape=(k, len(gnames))).toarray()
    tgroup = pair.argmax(axis=1)
    tw = np.ones(k) if weights is None else np.asarray(weights, dtype=float)
    gw = np.bincount(tgroup, weights=tw, minlength=len(gnames))
    share = gtot[tgroup] * tw / np.maximum(gw[tgroup], 1e-300)
    return share / share.sum()


def _sub_adjacency(adj: Adjacency, idx: np.ndarray, units: gpd.GeoDataFrame, id_col) -> Adjacency:
    """The adjacency restricted to ``idx``. When the slice falls apart (a group with
    islands, or a given graph cut by a barrier) its pieces are bridged by the shapes: a
    polygon graph is rebuilt for the part, a given graph (an edge list) keeps the user's
    edges inside the part and gains only the bridges."""
    m = adj.matrix[idx][:, idx]
    ncomp, _ = connected_components(m, directed=False)
    ids = np.asarray(adj.ids)[idx]
    bridges = adj.bridges[adj.bridges["unit_a"].isin(ids) & adj.bridges["unit_b"].isin(ids)]
    if ncomp > 1 and isinstance(units, gpd.GeoDataFrame):
        if not adj.given:
            return build_adjacency(units, id_col=id_col, bridge_factor=adj.bridge_factor)
        upper = sparse.triu(m, k=1).tocoo()
        edges = pd.DataFrame({"unit_a": ids[upper.row], "unit_b": ids[upper.col]}, dtype=object)
        part = edge_adjacency(
            units, edges.astype(str), id_col=id_col, bridge_factor=adj.bridge_factor
        )
        return replace(part, bridges=pd.concat([bridges, part.bridges], ignore_index=True))
    return replace(
        adj,
        ids=ids,
        matrix=sparse.csr_matrix(m),
        bridges=bridges.reset_index(drop=True),
        shared_km=adj.shared_km[idx][:, idx] if adj.shared_km is not None else None,
        area_km2=adj.area_km2[idx] if adj.area_km2 is not None else None,
        perimeter_km=adj.perimeter_km[idx] if adj.perimeter_km is not None else None,
        xy_km=adj.xy_km[idx] if adj.xy_km is not None else None,
    )


def _fit_part(
    partitioner, units, adj, idx, k, id_col, *, reps=None, shares=None, locked=None
) -> np.ndarray:
    """Labels 0..k-1 for the units ``idx`` (all 0 when k is 1), drawn by a copy of
    ``partitioner`` with ``k`` territories."""
    if k == 1:
        return np.zeros(len(idx), dtype=np.int64)
    sub_units = units.iloc[idx]
    sub_adj = _sub_adjacency(adj, idx, sub_units, id_col)
    sub = clone(partitioner).set_params(n_territories=k, labels="{:d}")
    plan = sub.fit(sub_units, adjacency=sub_adj, reps=reps, shares=shares, locked=locked)
    order = plan.labels
    return pd.Index(order).get_indexer(plan.assignment.reindex(sub_adj.ids).to_numpy())


def fit_nested(
    partitioner,
    units: gpd.GeoDataFrame,
    *,
    adjacency: Adjacency | None = None,
    initial=None,
    locked=None,
    reps: pd.DataFrame | None = None,
    within: str | pd.Series | None = None,
    regions: int | None = None,
) -> Plan:
    """:meth:`Partitioner.fit` with ``within`` groups and/or ``regions`` (see the module);
    ``partitioner`` draws each part (a copy of it with the part's number of territories)."""
    import time

    t0 = time.perf_counter()
    if initial is not None:
        raise InputError(
            "within/regions cannot be combined with a warm start "
            "(realign a current plan with within= instead)"
        )
    p = partitioner
    cfg = p.settings()
    K = cfg.n_territories
    if regions is not None:
        if isinstance(regions, bool) or not isinstance(regions, (int, np.integer)) or regions < 2:
            raise InputError(f"regions must be an integer >= 2, got {regions!r}")
        if regions >= K:
            raise InputError(f"regions={regions} must be fewer than the {K} territories")
    if within is not None and regions is not None and initial is None:
        col = units[within] if isinstance(within, str) and within in units.columns else None
        n_groups = (col if col is not None else pd.Series(within)).nunique()
        if isinstance(regions, (int, np.integer)) and 2 <= regions < n_groups:
            # fewer regions than groups: draw the territories inside the groups, then let
            # each region gather whole groups
            plan = fit_nested(p, units, adjacency=adjacency, reps=reps, locked=locked,
                              within=within)  # fmt: skip
            group_territories(plan, regions, units=units, within=within)
            return plan
    if (reps is not None or locked is not None) and regions is not None:
        # territories are fixed by the reps or locks: draw them first, then group whole ones
        plan = (
            fit_nested(p, units, adjacency=adjacency, reps=reps, locked=locked, within=within)
            if within is not None
            else p.fit(units, adjacency=adjacency, reps=reps, locked=locked)
        )
        group_territories(plan, regions, units=units, within=within)
        return plan
    W, adjacency = prepare(
        units, adjacency, balance=cfg.balance, id_col=cfg.id_col, n_territories=K
    )
    ids = np.asarray(adjacency.ids)
    n = len(ids)
    id_col = cfg.id_col if cfg.id_col in units.columns else None
    notes: list[str] = []
    extra: list = []
    if within is not None:
        groups, gname = group_values(units, within, ids)
        extra.append(Within(pd.Series(groups, index=ids), gname))
    else:
        groups, gname = np.zeros(n, dtype=object), ""
        groups[:] = "all"
    gnames, gcode = np.unique(groups, return_inverse=True)
    gtot = np.bincount(gcode, weights=W[:, 0], minlength=len(gnames))
    if len(gnames) > K:
        raise InputError(
            f"within: {len(gnames)} groups of {gname!r} but only {K} territories "
            "(each group needs one)"
        )
    home_group = None
    lock_s, lock_pos = (
        _group_locks(locked, ids, gcode, gnames, gname) if locked is not None else (None, None)
    )
    if reps is not None:
        reps = prepare_reps(reps)
        if len(reps) != K:
            raise InputError(
                f"{reps.attrs.get('source', 'reps')}: {len(reps)} reps but n_territories={K}"
            )
        home = locate_homes(reps, units, adjacency)
        home_group = gcode[home]
        kg = np.bincount(home_group, minlength=len(gnames))
        if (kg == 0).any():
            raise InputError(
                f"within: no rep lives in {gname} {gnames[np.flatnonzero(kg == 0)[0]]!r} "
                "(every group needs a rep)"
            )
    else:
        kg = split_count(gtot, K)
    if lock_s is not None:
        held = lock_s.groupby(gcode[lock_pos]).nunique()
        short = held[held.to_numpy() > kg[held.index.to_numpy()]]
        if len(short):
            g = int(short.index[0])
            raise LockError(
                f"locked: {gname} {gnames[g]!r} gets {kg[g]} "
                f"territor{'y' if kg[g] == 1 else 'ies'} but holds locked "
                f"units of {short.iloc[0]} territories",
                units=lock_s.index[gcode[lock_pos] == g],
            )
    # regions per group (in proportion to the group's territories), territories per region
    if regions is not None:
        ng = split_count(kg.astype(float), regions)
        if (ng > kg).any():
            g = int(np.flatnonzero(ng > kg)[0])
            raise InputError(
                f"regions: {gname} {gnames[g]!r} would get {ng[g]} regions for {kg[g]} territories"
            )
    else:
        ng = np.ones(len(gnames), dtype=np.int64)

    lab = np.full(n, -1, dtype=np.int64)
    region_of: list[str] = []
    next_t = 0
    xy, area = (
        adjacency.xy_km,
        (adjacency.area_km2 if adjacency.area_km2 is not None else np.ones(n)),
    )
    rng_order = (
        west_east_rank(xy, gcode, len(gnames), area) if len(gnames) > 1 else np.zeros(1, int)
    )
    for g in np.argsort(rng_order, kind="stable").tolist():
        gidx = np.flatnonzero(gcode == g)
        if reps is not None:
            greps = reps.iloc[np.flatnonzero(home_group == g)]
            sub = _fit_part(
                p, units, adjacency, gidx, int(kg[g]), id_col, reps=greps,
                locked=_locks_in(lock_s, ids[gidx]),
            )  # fmt: skip
            names_g = greps["rep_id"].tolist()
            lab[gidx] = next_t + sub
            region_of += [str(gnames[g])] * len(names_g)
            next_t += len(names_g)
            continue
        # regions inside the group, sized to hold kr territories each
        kr = split_count(np.ones(int(ng[g])), int(kg[g]))
        rlab = _fit_part(p, units, adjacency, gidx, int(ng[g]), id_col, shares=kr / kr.sum())
        if ng[g] > 1:
            # a region's territory count follows its drawn size (the engine orders regions)
            rtot = np.bincount(rlab, weights=W[gidx, 0], minlength=int(ng[g]))
            kr = split_count(rtot, int(kg[g]))
        rrank = west_east_rank(xy[gidx] if xy is not None else None, rlab, int(ng[g]), area[gidx])
        for r in np.argsort(rrank, kind="stable").tolist():
            ridx = gidx[rlab == r]
            tl = _fit_part(
                p, units, adjacency, ridx, int(kr[r]), id_col, locked=_locks_in(lock_s, ids[ridx])
            )
            trank = west_east_rank(xy[ridx] if xy is not None else None, tl, int(kr[r]), area[ridx])
            lab[ridx] = next_t + trank[tl]
            if regions is None:
                region = str(gnames[g])
            elif within is None:
                region = f"R{len(set(region_of)) + 1:02d}"
            else:
                region = f"{gnames[g]}-R{r + 1:02d}"
            region_of += [region] * int(kr[r])
            next_t += int(kr[r])
    if reps is not None:
        names = [n_ for g in np.argsort(rng_order, kind="stable").tolist()
                 for n_ in reps["rep_id"].iloc[np.flatnonzero(home_group == g)]]  # fmt: skip
    else:
        names = [cfg.labels.format(i + 1) for i in range(K)]
        if lock_s is not None:
            # locked territories keep their labels; the others are numbered in order,
            # skipping the labels the locks use
            first = ~lock_s.duplicated().to_numpy()
            fixed = dict(zip(lab[lock_pos[first]].tolist(), lock_s[first], strict=True))
            used = set(fixed.values())
            free = (x for i in range(2 * K) if (x := cfg.labels.format(i + 1)) not in used)
            names = [fixed[t] if t in fixed else next(free) for t in range(K)]
    if lock_s is not None:
        extra.append(LockedUnits(lock_s))
    mean = W[:, 0].sum() / K
    for g in range(len(gnames)):
        avg = gtot[g] / kg[g] / mean - 1
        if abs(avg) > cfg.target and within is not None:
            notes.append(
                Note(
                    "group_off",
                    f"{gname} {gnames[g]!r} holds {gtot[g] / gtot.sum():.1%} of "
                    f"{cfg.balance[0]} and gets {kg[g]} of {K} territories: its territories "
                    f"average {avg:+.1%} from the overall mean",
                    group=str(gnames[g]),
                    share=float(gtot[g] / gtot.sum()),
                    territories=int(kg[g]),
                    of=K,
                    average=float(avg),
                )
            )
    share = np.full(K, 1.0 / K)
    cap = None
    if reps is not None and (cap := rep_shares(reps)) is not None:
        # the reps' capacity in the order of the territories (names)
        cap = pd.Series(cap, index=reps["rep_id"].to_numpy()).reindex(names).to_numpy()
        share = cap / cap.sum()
    if within is not None:
        # territories cannot trade across groups: each is measured against its group's mean
        share = group_shares(W[:, 0], groups, lab, K, weights=cap)
        notes.append(within_note(gname))
    unit_share = None
    if within is not None:
        # a unit can only join its own group's territories: its largest share
        tg = gcode[pd.Series(np.arange(n)).groupby(lab).first().reindex(range(K)).to_numpy()]
        gmax = np.zeros(len(gnames))
        np.maximum.at(gmax, tg, share)
        unit_share = gmax[gcode]
    notes += input_notes(
        W, ids, adjacency, share, cfg.target, cfg.balance[0], unit_share=unit_share
    )
    if reps is not None:
        extra.append(HomeBases(pd.Series(ids[home], index=pd.Index(reps["rep_id"]))))
    plan = build_plan(
        adjacency, lab, W, names, notes, balance=cfg.balance, target=cfg.target,
        tolerance=cfg.tolerance, seed=cfg.seed, reorder=False, extra=extra, shares=share,
    )  # fmt: skip
    plan.regions = pd.Series(region_of, index=pd.Index(names, name="territory"), name="region")
    if reps is not None:
        plan.homes = pd.Series(ids[home], index=pd.Index(reps["rep_id"], name="territory"))
        plan.reps = rep_report(reps, plan, units)
    plan.elapsed_s = time.perf_counter() - t0
    return plan


def _group_locks(
    locked, ids: np.ndarray, gcode: np.ndarray, gnames, gname: str
) -> tuple[pd.Series, np.ndarray]:
    """Locked unit -> label (text), and each locked unit's position among ``ids``; every
    label's units must lie in one group."""
    lock_s = pd.Series(locked).astype(str)
    pos = pd.Index(ids).get_indexer(lock_s.index)
    if (pos < 0).any():
        raise LockError(
            f"locked: unit {show_id(lock_s.index[pos < 0][0])} is not among the units",
            units=lock_s.index[pos < 0][:1],
        )
    span = pd.Series(gcode[pos]).groupby(lock_s.to_numpy()).unique()
    bad = span[span.map(len) > 1]
    if len(bad):
        where = ", ".join(repr(str(gnames[g])) for g in bad.iloc[0][:3])
        raise LockError(
            f"locked: territory {bad.index[0]!r} has locked units in several {gname} values "
            f"({where}), but a territory stays inside one {gname}",
            units=lock_s.index[lock_s.to_numpy() == bad.index[0]],
        )
    return lock_s, pos


def _locks_in(lock_s: pd.Series | None, part_ids: np.ndarray) -> pd.Series | None:
    """The locks among ``part_ids`` (None when there are none)."""
    if lock_s is None:
        return None
    sub = lock_s[lock_s.index.isin(part_ids)]
    return sub if len(sub) else None


def group_territories(
    plan: Plan,
    n_regions: int,
    *,
    units: pd.DataFrame | None = None,
    within: str | pd.Series | None = None,
) -> pd.Series:
    """Group a plan's territories into ``n_regions`` contiguous regions with equal numbers
    of territories (as equal as K/N allows); sets and returns ``plan.regions``.

    The regions are a partition of the territory graph (territories touching when any of
    their units do), drawn by the same search with the default settings, one territory
    weighing one; with ``within`` no region crosses a group.
    """
    if isinstance(n_regions, bool) or not isinstance(n_regions, (int, np.integer)):
        raise InputError(f"regions must be an integer >= 2, got {n_regions!r}")
    labels = plan.labels
    K = len(labels)
    if not 2 <= n_regions < K:
        raise InputError(f"regions must be between 2 and {K - 1} for {K} territories")
    adj = plan.adjacency
    codes = pd.Index(labels).get_indexer(plan.assignment.reindex(adj.ids).to_numpy())
    n = len(codes)
    P = sparse.csr_matrix((np.ones(n), (np.arange(n), codes)), shape=(n, K))
    T = (P.T @ adj.matrix @ P).tocsr()
    T.setdiag(0)
    T.eliminate_zeros()
    T.data[:] = 1.0
    area = (
        np.bincount(codes, weights=adj.area_km2, minlength=K) if adj.area_km2 is not None else None
    )
    xy = None
    if adj.xy_km is not None:
        a = adj.area_km2 if adj.area_km2 is not None else np.ones(n)
        s = np.maximum(np.bincount(codes, weights=a, minlength=K), 1e-12)
        xy = np.column_stack(
            [np.bincount(codes, weights=a * adj.xy_km[:, j], minlength=K) / s for j in (0, 1)]
        )
    tgroups = np.full(K, "all", dtype=object)
    if within is not None and units is not None:
        g, _ = group_values(units.reset_index(drop=True), within, np.asarray(adj.ids))
        first = pd.Series(g).groupby(codes).first()
        tgroups = first.reindex(range(K)).astype(str).to_numpy(dtype=object)
    gnames, gcode = np.unique(tgroups, return_inverse=True)
    region = np.empty(K, dtype=object)
    if 1 < n_regions < len(gnames):
        # fewer regions than groups: each region gathers whole groups (two regions over
        # New England's six states), drawn on the graph of groups, a group weighing its
        # number of territories
        G = sparse.csr_matrix((np.ones(K), (gcode, np.arange(K))), shape=(len(gnames), K))
        GG = (G @ T @ G.T).tocsr()
        GG.setdiag(0)
        GG.eliminate_zeros()
        GG.data[:] = 1.0
        if connected_components(GG, directed=False)[0] > 1:
            raise InputError(f"regions: the {len(gnames)} groups do not form one connected map")
        gsize = np.bincount(gcode, minlength=len(gnames)).astype(float)
        garea = (
            np.bincount(gcode, weights=area, minlength=len(gnames)) if area is not None else None
        )
        gxy = None
        if xy is not None:
            wa = area if area is not None else np.ones(K)
            s_ = np.maximum(np.bincount(gcode, weights=wa, minlength=len(gnames)), 1e-12)
            gxy = np.column_stack(
                [np.bincount(gcode, weights=wa * xy[:, j], minlength=len(gnames)) / s_
                 for j in (0, 1)]
            )  # fmt: skip
        gadj = Adjacency(ids=np.asarray(gnames, dtype=object), matrix=GG, area_km2=garea,
                         xy_km=gxy)  # fmt: skip
        greg = _draw_regions(gadj, n_regions, plan.seed, "R{:02d}", weights=gsize)
        region[:] = greg[gcode]
        plan.regions = pd.Series(region, index=pd.Index(labels, name="territory"), name="region")
        return plan.regions
    ng = split_count(np.bincount(gcode, minlength=len(gnames)).astype(float), n_regions)
    for g in range(len(gnames)):
        tidx = np.flatnonzero(gcode == g)
        prefix = f"{gnames[g]}-" if len(gnames) > 1 else ""
        if ng[g] == 1 or len(tidx) <= 1:
            region[tidx] = f"{prefix}R01"
            continue
        m = T[tidx][:, tidx]
        tadj = Adjacency(
            ids=np.asarray(labels, dtype=object)[tidx], matrix=sparse.csr_matrix(m),
            area_km2=area[tidx] if area is not None else None,
            xy_km=xy[tidx] if xy is not None else None,
        )  # fmt: skip
        ncomp, _ = connected_components(tadj.matrix, directed=False)
        if ncomp > 1:
            raise InputError("regions: the territories do not form one connected map")
        region[tidx] = _draw_regions(tadj, int(ng[g]), plan.seed, prefix + "R{:02d}")
    plan.regions = pd.Series(region, index=pd.Index(labels, name="territory"), name="region")
    return plan.regions


def _draw_regions(
    tadj: Adjacency, k: int, seed: int, labels: str, weights: np.ndarray | None = None
) -> np.ndarray:
    """Region label of each node of the graph ``tadj`` (territories, or groups weighing
    ``weights`` territories each): ``k`` regions of equal territory counts, numbered west
    to east."""
    n = tadj.n_units
    if k > n:
        raise InputError(f"regions: {k} regions for {n} territories")
    wcol = np.ones((n, 1)) if weights is None else np.asarray(weights, dtype=float)[:, None]
    problem = Problem.from_adjacency(
        tadj, wcol, shares=np.full(k, 1.0 / k), primary_tol=TARGET,
        tolerance=TOLERANCE, locked=np.full(n, -1), compactness=COMPACTNESS,
    )  # fmt: skip
    lab = solve(problem, seed=seed)
    area = tadj.area_km2 if tadj.area_km2 is not None else np.ones(n)
    rank = west_east_rank(tadj.xy_km, lab, k, area)
    names = np.asarray([labels.format(i + 1) for i in range(k)], dtype=object)
    return names[rank[lab]]
