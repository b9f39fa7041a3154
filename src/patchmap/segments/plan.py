"""One plan per segment: its own units, K, balance, reps and constraints.

:func:`plan_segments` takes scored accounts and the segments and returns a
:class:`SegmentedPlan`: for a geographic segment the unit layer of its accounts over the
run's region (every unit of the region, so every ZIP is routed once per geographic
segment) and the engine's plan; for a national segment the books of
:class:`patchmap.segments.national.AccountBalancer`. Named accounts are routed to their
owners and kept out of the geography; nothing is written here (see
:mod:`patchmap.segments.run`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from patchmap import geodata
from patchmap.errors import InputError
from patchmap.export import recommended_headcount
from patchmap.layers import (
    MEASURES,
    UNIT_COLUMNS,
    LayersResult,
    aggregate_units,
    build_layers,
    build_layers_on_polygons,
)
from patchmap.options import did_you_mean
from patchmap.partition.reps import read_reps
from patchmap.pipeline import plan_units
from patchmap.segments.named import (
    MIN_GEO_SHARE,
    NamedAccounts,
    named_rows,
    named_shares,
    owner_shares,
)
from patchmap.segments.national import AccountBalancer, Books
from patchmap.segments.segment import Segment, Segmentation, segment_accounts

__all__ = [
    "MIN_GEO_SHARE", "SegmentPlan", "SegmentedPlan", "named_rows", "named_shares", "owner_shares",
    "plan_segments",
]  # fmt: skip


@dataclass
class SegmentPlan:
    """A segment's plan: its accounts, where each went, and what judged it.

    ``accounts``: the segment's accounts routed by geography (with ``unit_id``) or, for a
    national segment, dealt into books; ``named``: its named accounts (rows of the
    accounts table) with ``territory`` = the owner; ``rejects``: accounts of the segment
    its units could not place (``row, account_id, reason``).
    """

    segment: Segment
    accounts: pd.DataFrame
    named: pd.DataFrame
    rejects: pd.DataFrame
    units: gpd.GeoDataFrame | None = None
    plan: Any = None  # patchmap.partition.Plan
    books: Books | None = None
    reps: pd.DataFrame | None = None
    kind: str = "national"  # the unit kind (h3, zcta, county, polygon) or national
    notes: list[str] = field(default_factory=list)

    @property
    def territories(self) -> list[str]:
        return list(self.plan.labels if self.plan is not None else self.books.territories
                    ["territory"])  # fmt: skip

    def assignment(self) -> pd.DataFrame:
        """``account_id, unit_id, territory, named``: every account of the segment routed,
        once (named accounts to their owner)."""
        acc = self.accounts
        if self.plan is not None:
            terr = self.plan.assignment.reindex(acc["unit_id"].astype(str)).to_numpy()
            unit = acc["unit_id"].astype(str).to_numpy()
        else:
            terr = self.books.assignment.reindex(acc["account_id"].astype(str)).to_numpy()
            unit = np.full(len(acc), None, dtype=object)
        routed = pd.DataFrame({"account_id": acc["account_id"].astype(str).to_numpy(),
                               "unit_id": unit, "territory": terr, "named": False})  # fmt: skip
        if self.plan is None:  # books hold the named accounts already
            routed["named"] = routed["account_id"].isin(self.named["account_id"]).to_numpy()
            return routed
        named = pd.DataFrame({
            "account_id": self.named["account_id"].astype(str).to_numpy(),
            "unit_id": self.named["unit_id"].to_numpy() if "unit_id" in self.named else None,
            "territory": self.named["territory"].to_numpy(), "named": True,
        })  # fmt: skip
        return pd.concat([routed, named], ignore_index=True) if len(named) else routed


@dataclass
class SegmentedPlan:
    """Every segment's plan, the segmentation, and the accounts that found no place."""

    segmentation: Segmentation
    plans: dict[str, SegmentPlan]
    rejects: pd.DataFrame  # row, account_id, reason, segment (blank: before segments)
    notes: list[str] = field(default_factory=list)

    def tally(self) -> str:
        """Accounts per segment, named ones, and rejects per layer."""
        parts = []
        for name, p in self.plans.items():
            n = len(p.accounts) + (len(p.named) if p.plan is not None else 0)
            named = f" ({len(p.named):,} named)" if len(p.named) else ""
            over = " [overlay]" if p.segment.overlay else ""
            parts.append(f"{name}{over} {n:,}{named}")
        return "segments: " + ", ".join(parts)


def _unit_key(seg: Segment, units: Any, resolution: int) -> tuple:
    kind = seg.units if seg.units is not None else units
    res = seg.resolution if seg.resolution is not None else resolution
    if isinstance(kind, gpd.GeoDataFrame):
        return ("polygons", None)
    return (str(kind), res if kind == "h3" else None)


def _layers(accounts, key, units, states, sums) -> LayersResult:
    if key[0] == "polygons":
        return build_layers_on_polygons(accounts, units, sums=sums)
    return build_layers(accounts, units=key[0], resolution=key[1] or 7, states=states, sums=sums)


def plan_segments(
    accounts: pd.DataFrame,
    segments: Sequence[Segment],
    *,
    units: str | gpd.GeoDataFrame = "zcta",
    resolution: int = 7,
    region: Sequence[str] | str | None = None,
    sums: Sequence[str] | None = None,
    named: NamedAccounts | None = None,
    rejected_ids: Sequence[str] = (),
) -> SegmentedPlan:
    """Segment scored ``accounts`` and plan every segment (see the module docstring).

    ``units``/``resolution``/``region``: the run's ``[units]`` (a segment may choose
    another unit kind, over the same region); ``sums``: account columns summed into every
    unit layer (a segment's own balance columns are added); ``named``: named accounts;
    ``rejected_ids``: accounts rejected before this stage (for the messages of named).
    """
    accounts = accounts.reset_index(drop=True)
    seg = segment_accounts(accounts, segments)
    ids = accounts["account_id"].astype(str)
    if named is not None:
        named = named.check_accounts(ids, rejected=rejected_ids)
    base_of = pd.Series(seg.base, index=ids.to_numpy())
    names = [s.name for s in seg.segments]
    geo = [s for s in seg.segments if not s.national]
    sums = list(sums or [])

    # one placement per unit kind, over one region: the first kind's (inferred or given)
    states = geodata.normalize_states(region) if region else None
    keys = list(dict.fromkeys(_unit_key(s, units, resolution) for s in geo))
    layers: dict[tuple, LayersResult] = {}
    extra: dict[tuple, list[str]] = {}
    for key in keys:
        mine = [s for s in geo if _unit_key(s, units, resolution) == key]
        extra[key] = list(dict.fromkeys(sums + [c for s in mine for c in _own_sums(s, accounts)]))
        mask = np.logical_or.reduce([seg.mask(s.name) for s in mine])
        if not mask.any():
            raise InputError(
                f"{mine[0].label}: no account in the segment{'s' if len(mine) > 1 else ''} "
                f"{', '.join(repr(s.name) for s in mine)}: nothing to draw territories from"
            )
        layers[key] = _layers(accounts[mask], key, units, states, extra[key])
        if states is None and key[0] != "polygons":
            states = sorted(pd.unique(layers[key].units["state"].dropna().astype(str)))
    present = [c for c in MEASURES if c in accounts.columns]

    plans: dict[str, SegmentPlan] = {}
    for s in seg.segments:
        members = pd.Index(ids[seg.mask(s.name)])
        pins = (
            named.for_segment(s.name, members, base_of, names)
            if named is not None
            else pd.DataFrame(columns=["account_id", "rep_id", "territory", "segment", "line"])
        )
        if s.national:
            plans[s.name] = _plan_national(s, accounts[seg.mask(s.name)], pins, named)
        else:
            key = _unit_key(s, units, resolution)
            plans[s.name] = _plan_geographic(
                s, layers[key], members, pins, named, accounts, present, extra[key], plan_units
            )
    rejects = [p.rejects.assign(segment=name) for name, p in plans.items() if len(p.rejects)]
    unmatched = seg.unmatched
    if unmatched.any():
        rows = (
            accounts["source_row"].to_numpy()
            if "source_row" in accounts.columns
            else np.arange(1, len(accounts) + 1)
        )
        rejects.insert(0, pd.DataFrame({
            "row": rows[unmatched],
            "account_id": ids[unmatched].to_numpy(),
            "reason": "matches no segment rule", "segment": "",
        }))  # fmt: skip
    table = (
        pd.concat(rejects, ignore_index=True)
        if rejects
        else pd.DataFrame(columns=["row", "account_id", "reason", "segment"])
    )
    notes = [n for p in plans.values() for n in p.notes]
    for layer in layers.values():
        notes += layer.notes
    return SegmentedPlan(seg, plans, table, notes)


def _own_sums(seg: Segment, accounts: pd.DataFrame) -> list[str]:
    """A geographic segment's balance columns that are account columns, not unit columns:
    summed into its units so the engine can balance them."""
    out = []
    for col in seg.partition.get("balance") or []:
        if col in UNIT_COLUMNS:
            continue
        if col not in accounts.columns:
            raise InputError(
                f"{seg.label}: balance column {col!r} is neither a unit measure "
                f"({', '.join(('accounts', 'customers', *MEASURES, 'whitespace'))}) nor an "
                f"account column{did_you_mean(col, map(str, accounts.columns))}"
            )
        out.append(col)
    return out


def _rep_territory(reps: pd.DataFrame | None) -> dict[str, str] | None:
    """Rep id -> territory of a plan drawn around reps (each territory is its rep's id)."""
    if reps is None:
        return None
    ids = reps["rep_id"].astype(str)
    return dict(zip(ids, ids, strict=True))


def _read_reps(settings: Mapping[str, Any]) -> pd.DataFrame | None:
    return read_reps(settings["reps"]) if settings.get("reps") is not None else None


def _plan_national(seg: Segment, accounts: pd.DataFrame, pins: pd.DataFrame,
                   named: NamedAccounts | None) -> SegmentPlan:  # fmt: skip
    x = seg.partition
    reps = _read_reps(x)
    k = x.get("territories") or (len(reps) if reps is not None else None)
    if k == "auto":  # the headcount the capacity rule asks for the segment's accounts
        if seg.capacity is None:
            raise InputError(f"{seg.label}: territories = auto needs capacity")
        totals = accounts.select_dtypes("number").sum().to_dict() | {"accounts": len(accounts)}
        k = max(recommended_headcount(totals, seg.capacity).reps, 1)
    if k is None:
        raise InputError(f"{seg.label}: give territories (or reps) for the segment")
    if reps is not None and len(reps) != k:
        raise InputError(
            f"{seg.label}: territories = {k} but {reps.attrs.get('source', 'reps')} has "
            f"{len(reps)} reps (one territory each)"
        )
    balancer = AccountBalancer(k, list(x["balance"]), tolerance=x["tolerance"])
    names = reps["rep_id"].tolist() if reps is not None else [balancer.labels.format(i + 1)
                                                               for i in range(k)]  # fmt: skip
    owners = (
        named.owners(
            pins, rep_territory=_rep_territory(reps), territories=names, segment=seg.name
        )  # fmt: skip
        if named is not None and len(pins)
        else pd.Series(dtype=object)
    )
    books = balancer.fit(
        accounts, reps=reps, pinned=owners if len(owners) else None,
        count_pinned=x.get("named_mode") == "balance",
    )  # fmt: skip
    return SegmentPlan(
        seg, accounts.reset_index(drop=True), named_rows(accounts, owners),
        _empty_rejects(), books=books, reps=reps,
    )  # fmt: skip


def _empty_rejects() -> pd.DataFrame:
    return pd.DataFrame({"row": pd.Series(dtype="int64"), "account_id": pd.Series(dtype=str),
                         "reason": pd.Series(dtype=str)})  # fmt: skip


def _plan_geographic(
    seg: Segment, layer: LayersResult, members: pd.Index, pins: pd.DataFrame,
    named: NamedAccounts | None, accounts: pd.DataFrame, present: list[str], sums: list[str],
    plan_units,
) -> SegmentPlan:  # fmt: skip
    x = dict(seg.partition)
    pinned = pd.Index(pins["account_id"].astype(str)) if len(pins) else pd.Index([])
    placed = layer.placed[layer.placed["account_id"].astype(str).isin(members)]
    geo = placed[~placed["account_id"].astype(str).isin(pinned)].reset_index(drop=True)
    rej = layer.rejects[layer.rejects["account_id"].astype(str).isin(members)]
    rej = rej[~rej["account_id"].astype(str).isin(pinned)].reset_index(drop=True)
    units = aggregate_units(layer.units, geo, layer.states, present, sums)
    notes: list[str] = []
    reps = _read_reps(x)
    owners = None
    shares = None
    if len(pins) and x.get("named_mode") == "balance":
        given = [k for k in ("within", "regions", "current") if x.get(k) is not None]
        if reps is None or given:
            why = "reps (the owners' territories)" if reps is None else f"no {', '.join(given)}"
            raise InputError(f"{seg.label}: named_mode = balance needs {why}")
        owners = named.owners(pins, rep_territory=_rep_territory(reps),
                              territories=reps["rep_id"], segment=seg.name)  # fmt: skip
        shares, notes = owner_shares(units, named_rows(accounts, owners), reps, x["balance"][0])
    settings = {**x, "capacity": seg.capacity}  # territories = "auto" asks the capacity
    plan, reps = plan_units(units, id_col="unit_id", settings=settings, shares=shares)
    if owners is None:
        owners = (
            named.owners(
                pins, rep_territory=_rep_territory(reps), territories=plan.labels, segment=seg.name
            )  # fmt: skip
            if named is not None and len(pins)
            else pd.Series(dtype=object)
        )
    pinned_rows = named_rows(accounts, owners)
    unit_of = layer.placed.set_index(layer.placed["account_id"].astype(str))["unit_id"]
    if len(pinned_rows):
        pinned_rows["unit_id"] = unit_of.reindex(pinned_rows["account_id"].astype(str)).to_numpy()
    return SegmentPlan(seg, geo, pinned_rows, rej, units=units, plan=plan, reps=reps,
                       kind=layer.kind, notes=notes)  # fmt: skip
