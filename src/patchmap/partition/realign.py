"""Realignment: rebalance an existing plan while moving as little as possible.

Plans are redrawn every year and every moved account costs a relationship, so a
realignment starts from the current plan, keeps its labels, and only moves boundary
units until every territory is back inside the tolerance: the same balancing steps as
the engine (territory-path transfers of units and blocks), but with no compactness
refinement and a budget on the share of the primary measure that may change territory.
Afterwards moved units go back home wherever balance and contiguity allow.

When the budget and the tolerance cannot both hold, one gives way (``relax``) and the
plan's notes say which and by how much.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import geopandas as gpd
import numpy as np
import pandas as pd

from patchmap.errors import InputError, LockError
from patchmap.notes import Note
from patchmap.partition.balance import settle
from patchmap.partition.constraints import HomeBases, LockedUnits, MoveBudget, Within
from patchmap.partition.contiguity import can_remove, check_locks, locked_whole, settle_locks
from patchmap.partition.hierarchy import group_shares, group_territories, group_values
from patchmap.partition.objective import cut_gain, violation_delta
from patchmap.partition.plan import Plan, build_plan
from patchmap.partition.problem import (
    Graph,
    Problem,
    bridges_note,
    prepare,
    warm_codes,
    within_note,
)
from patchmap.partition.reps import locate_homes, prepare_reps, rep_report, rep_shares
from patchmap.partition.secondary import secondary
from patchmap.partition.state import SearchState
from patchmap.units.adjacency import Adjacency, show_id

__all__ = ["moved_accounts", "moves_table", "realign", "send_back"]

_ATTEMPTS = 3  # seeds tried; the plan moving least (inside the tolerance) wins
_RELAX = ("tolerance", "budget")


def send_back(s: SearchState, passes: int = 4) -> int:
    """Moved units go back to their own territory (``s.origin``) where balance bands and
    contiguity allow; the rest may shift to a neighbour when that cuts fewer edges
    (neither adds to the moved weight). Returns the number of moves."""
    lab, nbrs, orig = s.lab, s.nbrs, s.origin.tolist()
    done = 0
    for _ in range(passes):
        cand = np.flatnonzero(s.labn != s.origin)
        cand = cand[np.argsort(-s.W[cand, 0], kind="stable")]
        changed = 0
        for u in cand.tolist():
            p, o = lab[u], orig[u]
            if s.locked[u] or p == o:
                continue
            near = {lab[v] for v in nbrs[u]} - {p}
            if not near:
                continue
            options = [o] if o in near else []
            gains = sorted(((cut_gain(s, u, p, q), q) for q in near if q != o), reverse=True)
            options += [q for g, q in gains if g > 0]
            for q in options:
                if violation_delta(s, u, p, q) <= 1e-12 and can_remove(s, u, p):
                    s.move(u, p, q)
                    changed += 1
                    break
        done += changed
        if not changed:
            break
    return done


def _current_codes(current, ids: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Integer codes of the current plan per unit (in ``ids`` order) and the labels."""
    if isinstance(current, pd.DataFrame):
        if not {"unit_id", "territory"} <= set(current.columns):
            raise InputError("current: expected columns unit_id, territory")
        cur = pd.Series(current["territory"].to_numpy(), index=current["unit_id"].to_numpy())
    else:
        cur = pd.Series(current)
    cur.index = cur.index.astype(str)
    cur = cur.astype(str)
    index = pd.Index(np.asarray(ids).astype(str))
    unknown = ~cur.index.isin(index)
    if unknown.any():
        raise InputError(
            f"current: unit {show_id(cur.index[unknown][0])} is not among the units "
            f"({int(unknown.sum())} unknown)"
        )
    if cur.index.duplicated().any():
        raise InputError(f"current: unit {show_id(cur.index[cur.index.duplicated()][0])} repeats")
    lab = cur.reindex(index)
    missing = lab.isna().to_numpy()
    if missing.any():
        raise InputError(
            f"current: {int(missing.sum())} unit(s) have no territory, e.g. {show_id(index[missing][0])}"
        )
    names = sorted(pd.unique(lab.to_numpy()))
    return pd.Index(names).get_indexer(lab.to_numpy()), names


def moves_table(
    ids: np.ndarray, before: np.ndarray, after: np.ndarray, names: list[str], w: np.ndarray
) -> pd.DataFrame:
    """``unit_id, from, to, measure`` for each unit whose territory changed."""
    moved = np.flatnonzero(before != after)
    names_a = np.asarray(names, dtype=object)
    t = pd.DataFrame(
        {
            "unit_id": np.asarray(ids)[moved],
            "from": names_a[before[moved]],
            "to": names_a[after[moved]],
            "measure": w[moved],
        }
    )
    return t.sort_values(["from", "to", "measure"], ascending=[True, True, False]).reset_index(
        drop=True
    )


def _no_cross_edges(adjacency: Adjacency, groups: np.ndarray) -> Adjacency:
    """The adjacency without edges between different groups (realignment then never
    moves a unit across a group boundary)."""
    from dataclasses import replace

    from scipy import sparse

    coo = sparse.coo_matrix(adjacency.matrix)
    keep = groups[coo.row] == groups[coo.col]
    m = sparse.csr_matrix(
        (coo.data[keep], (coo.row[keep], coo.col[keep])), shape=adjacency.matrix.shape
    )
    return replace(adjacency, matrix=m)


def realign(
    partitioner,
    units: gpd.GeoDataFrame,
    current: pd.Series | Mapping | pd.DataFrame,
    *,
    max_moved: float | None = None,
    adjacency: Adjacency | None = None,
    locked: pd.Series | Mapping | None = None,
    reps: pd.DataFrame | None = None,
    within: str | pd.Series | None = None,
    regions: int | None = None,
    relax: str = "tolerance",
) -> Plan:
    """Rebalance ``current`` to the units' (new) measures, moving as little as possible.

    See :meth:`Partitioner.realign` (``partitioner`` gives the settings). ``max_moved``
    is a fraction (0.1 = at most 10% of the primary column may change territory); None
    means no budget.
    """
    t0 = time.perf_counter()
    if relax not in _RELAX:
        raise InputError(f"relax: expected one of {', '.join(_RELAX)}, got {relax!r}")
    if max_moved is not None and not (
        isinstance(max_moved, (int, float)) and 0 <= float(max_moved) <= 1
    ):
        raise InputError(f"max_moved must be a fraction between 0 and 1, got {max_moved!r}")
    p = partitioner.settings()
    W, adjacency = prepare(
        units, adjacency, balance=p.balance, id_col=p.id_col, n_territories=p.n_territories
    )
    ids = np.asarray(adjacency.ids)
    orig, names = _current_codes(current, ids)
    k = len(names)
    if k != p.n_territories:
        raise InputError(
            f"current: the plan has {k} territories but n_territories="
            f"{p.n_territories} (a realignment keeps the territories)"
        )
    extra: list = []
    lock = np.full(len(ids), -1, dtype=np.int64)
    if locked is not None:
        _, lock, _ = warm_codes(ids, names, None, locked, fixed=True)
        extra.append(LockedUnits(pd.Series(np.asarray(names, dtype=object)[lock[lock >= 0]],
                                           index=ids[lock >= 0])))  # fmt: skip
    home_idx = None
    if reps is not None:
        reps = prepare_reps(reps)
        missing = sorted(set(names) - set(reps["rep_id"]))
        extra_reps = sorted(set(reps["rep_id"]) - set(names))
        if missing or extra_reps:
            raise InputError(
                f"{reps.attrs.get('source', 'reps')}: rep_id must match the current plan's "
                f"territories ({'no rep for ' + ', '.join(map(repr, missing[:5])) if missing else ''}"
                f"{'; ' if missing and extra_reps else ''}"
                f"{'no territory ' + ', '.join(map(repr, extra_reps[:5])) if extra_reps else ''})"
            )
        home_idx = locate_homes(reps, units, adjacency)
        codes = pd.Index(names).get_indexer(reps["rep_id"])
        clash = (lock[home_idx] >= 0) & (lock[home_idx] != codes)
        if clash.any():
            raise LockError(
                f"locked: unit {show_id(ids[home_idx[clash][0]])} is locked elsewhere but is the "
                f"home of rep {reps['rep_id'].iloc[int(np.flatnonzero(clash)[0])]!r}",
                units=ids[home_idx[clash][:1]],
            )
        lock[home_idx] = codes
        extra.append(HomeBases(pd.Series(ids[home_idx], index=pd.Index(reps["rep_id"]))))
    check_locks(adjacency, lock, names)

    search_adj = adjacency
    share = np.full(k, 1.0 / k)
    cap = None
    if reps is not None and (cap := rep_shares(reps)) is not None:
        # the reps' capacity in the order of the territories (names)
        cap = pd.Series(cap, index=reps["rep_id"].to_numpy()).reindex(names).to_numpy()
        share = cap / cap.sum()
    if within is not None:
        groups, gname = group_values(units, within, ids)
        search_adj = _no_cross_edges(adjacency, groups)
        extra.append(Within(pd.Series(groups, index=ids), gname))
        # territories cannot trade across groups: each aims at its own group's mean
        share = group_shares(W[:, 0], groups, orig, k, weights=cap)

    tol = max(p.tolerance, 1e-6)
    problem = Problem.from_adjacency(
        adjacency, W, shares=share, primary_tol=tol, tolerance=tol, locked=lock,
        compactness=p.compactness, graph=Graph(search_adj.matrix),
    )  # fmt: skip
    graph = problem.graph
    n = len(ids)
    start = settle_locks(graph, orig.copy(), W[:, 0], k, lock) if (lock >= 0).any() else orig
    if not np.array_equal(np.unique(start), np.arange(k)):
        raise InputError("current: some territories have no units left")
    total = float(W[:, 0].sum())
    col = p.balance[0]

    def attempt(budget: float, seed: int) -> tuple[np.ndarray, float, float]:
        s = SearchState(problem, start.copy(), np.random.default_rng(seed))
        s.track_moves(orig, budget)
        settle(s, 1.0)
        before = s.labels()
        secondary(s, 1.0)
        if s.over_budget():
            s.load(before)
        send_back(s)
        lab = s.labels()
        tot = np.bincount(lab, weights=W[:, 0], minlength=k)
        dev = float(np.abs(tot / (total * share) - 1).max())
        return lab, s.moved / total, dev

    def best_of(budget: float) -> tuple[np.ndarray, float, float]:
        rng = np.random.default_rng(p.seed)
        runs = [attempt(budget, int(s)) for s in rng.integers(0, 2**31 - 1, size=_ATTEMPTS)]
        # inside the tolerance first, then least moved, then best balanced
        return min(runs, key=lambda r: (r[2] > tol + 1e-12, r[1], r[2]))

    notes: list[str] = []
    relaxed = None
    lab, moved, dev = best_of(np.inf)
    free_moved, free_dev = moved, dev
    if max_moved is not None and moved > max_moved + 1e-12:
        if relax == "tolerance":
            lab, moved, dev = best_of(max_moved * total)
            relaxed = Note(
                "relaxed",
                f"the move budget and the tolerance cannot both hold: kept the budget "
                f"({moved:.2%} of {col} moved, at most {max_moved:.2%}) and relaxed the "
                f"tolerance from {tol:.2%} to {max(dev, tol):.2%} (meeting {tol:.2%} would "
                f"move {free_moved:.2%})",
                kept="budget",
                tolerance=tol,
                max_deviation=max(dev, tol),
            )
        else:
            relaxed = Note(
                "relaxed",
                f"the move budget and the tolerance cannot both hold: kept the tolerance "
                f"(max deviation {dev:.2%}) and relaxed the move budget from {max_moved:.2%} "
                f"to {moved:.2%} of {col}",
                kept="tolerance",
                max_moved=max_moved,
                moved=moved,
            )
        notes.append(relaxed)
    if free_dev > tol + 1e-12:
        unmet = Note(
            "relaxed",
            f"the tolerance {tol:.2%} cannot be met from this plan even without a move "
            f"budget (best max deviation {free_dev:.2%})",
            kept="budget",
            tolerance=tol,
            max_deviation=free_dev,
        )
        notes.append(unmet)
        relaxed = relaxed or unmet
    moves = moves_table(ids, orig, lab, names, W[:, 0])
    notes.insert(
        0,
        Note(
            "realigned",
            f"realigned: {len(moves)} of {n} units moved, {moved:.2%} of {col}"
            + (f" (budget {max_moved:.2%})" if max_moved is not None else "")
            + f"; max deviation {dev:.2%} (tolerance {tol:.2%})",
            units=len(moves),
            of=n,
            moved=moved,
            max_moved=max_moved,
            max_deviation=dev,
            tolerance=tol,
        ),
    )
    if max_moved is not None:
        extra.append(MoveBudget(pd.Series(np.asarray(names, dtype=object)[orig], index=ids),
                                pd.Series(W[:, 0], index=ids), float(max_moved)))  # fmt: skip
    if len(adjacency.bridges):
        notes.append(bridges_note(adjacency))
    explained = len(notes)
    if within is not None:
        notes.append(within_note(gname))
    plan = build_plan(
        adjacency, lab, W, names, notes, balance=p.balance, target=p.target,
        tolerance=p.tolerance, seed=p.seed, reorder=False, extra=extra, primary_tol=tol,
        shares=share,
    )  # fmt: skip
    # the notes above already say why the primary is off; drop the engine's generic one
    notes[explained:] = [
        x
        for x in notes[explained:]
        if not (getattr(x, "code", None) == "balance_off" and x.data["column"] == col)
    ]
    if (lock >= 0).any() and not locked_whole(graph, lab, lock):
        notes.append(
            Note("locked_apart", "locked units of some territories could not all be joined")
        )
    plan.moves = moves
    plan.moved_share = float(moved)
    plan.relaxed = relaxed
    if home_idx is not None:
        plan.homes = pd.Series(ids[home_idx], index=pd.Index(reps["rep_id"], name="territory"))
        plan.reps = rep_report(reps, plan, units)
    if regions is not None:
        group_territories(plan, regions, units=units, within=within)
    plan.elapsed_s = time.perf_counter() - t0
    return plan


def moved_accounts(accounts: pd.DataFrame, moves: pd.DataFrame) -> pd.DataFrame:
    """The accounts whose unit moved: the account's columns (id, name, potential...) with
    the unit's ``from`` and ``to`` territories, for the account owners' hand-over."""
    if "unit_id" not in accounts.columns:
        raise InputError("accounts: column 'unit_id' not found (place accounts into units first)")
    m = moves[["unit_id", "from", "to"]].assign(unit_id=moves["unit_id"].astype(str))
    acc = accounts.assign(unit_id=accounts["unit_id"].astype(str))
    out = acc.merge(m, on="unit_id", how="inner")
    lead = [c for c in ("account_id", "name", "unit_id", "from", "to") if c in out.columns]
    extra = [c for c in ("status", "potential", "score", "zip", "lat", "lon") if c in out.columns]
    return (
        out[lead + extra]
        .sort_values(["from", "to", "unit_id"], kind="stable")
        .reset_index(drop=True)
    )
