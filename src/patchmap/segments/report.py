"""The tables of a segmented plan: per territory, per segment, per ZIP, per account.

- :func:`territory_table`: one row per territory of a segment (accounts, potential, reach,
  deviation, quota, recommended headcount; ``named_accounts`` / ``named_potential`` show
  the named book inside the totals);
- :func:`segments_table`: one row per segment;
- :func:`zip_table`: one row per (ZIP, geographic segment), so a lead router looks up
  the ZIP and the lead's segment;
- :func:`assignments_table`: each account once per layer it is in, with its segment,
  territory, rep and whether it is named.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from patchmap.export import recommended_reps, rep_table, territory_summary, zip_to_rep
from patchmap.quota import Quota
from patchmap.segments.named import account_totals, add_named_totals
from patchmap.segments.plan import SegmentedPlan, SegmentPlan

__all__ = ["assignments_table", "segments_table", "territory_table", "zip_table"]

#: Account columns carried into assignments.csv when present.
ACCOUNT_COLUMNS = ("name", "status", "score", "reach", "potential", "zip", "lat", "lon")
_REP_COLUMNS = ("rep_id", "rep_name", "rep_email")


def _quota(settings: Mapping[str, Any]):
    if settings.get("quota") is None:
        return None
    return Quota(settings["quota"], settings.get("quota_floor"), settings.get("quota_cap"))


def territory_table(p: SegmentPlan, *, sums: Sequence[str] = ()) -> pd.DataFrame:
    """One row per territory of a segment's plan (see the module docstring).

    Totals are everything the territory owns: geographic accounts and named ones. The
    deviation columns measure what was balanced: with ``named_mode = "balance"`` the
    totals, else the accounts routed by geography (national books: as dealt).
    """
    seg, x = p.segment, p.segment.partition
    balance = list(x["balance"])
    if p.plan is not None:
        out = territory_summary(
            p.units, p.plan.to_frame(), accounts=p.accounts, reps=p.reps, plan_metrics=p.plan,
            named=p.named, named_mode=x.get("named_mode", "exclude"),
        )  # fmt: skip
        labels = p.plan.assignment.reindex(p.units["unit_id"].astype(str)).to_numpy()
        terr = pd.Index(out["territory"])
        codes, owner = terr.get_indexer(labels), terr.get_indexer(p.named["territory"])
        for col in sums:  # the user's own measures, summed like the built-in ones
            if col not in out.columns:
                out[col] = np.bincount(codes, weights=p.units[col].to_numpy(float),
                                       minlength=len(out))  # fmt: skip
                out[col] += account_totals(p.named, col, owner, len(out))
    else:
        out = p.books.territories.copy()
        reps_t = rep_table(p.reps, out["territory"])
        for c in _REP_COLUMNS:
            if c in reps_t.columns:
                out.insert(1, c, reps_t.set_index("territory")[c].reindex(out["territory"]).values)
        codes = pd.Index(out["territory"]).get_indexer(p.books.assignment.reindex(
            p.accounts["account_id"].astype(str)).to_numpy())  # fmt: skip
        for col in ("customers", "score", "reach", "potential", *sums):
            if col in p.accounts.columns or col == "customers":
                out[col] = account_totals(p.accounts, col, codes, len(out))
        out = add_named_totals(out, p.named, balance=balance, count_in_balance=False,
                               included=True)  # fmt: skip
    quota = _quota(x)
    if quota is not None:
        out["quota"] = quota.allocate(out, balance)
    if seg.capacity is not None:
        out["recommended_reps"] = recommended_reps(out, seg.capacity)
    for col in ("accounts", "customers", "named_accounts"):
        if col in out.columns:
            out[col] = out[col].round().astype("int64")
    lead = [c for c in _LEAD if c in out.columns]
    return out[lead + [c for c in out.columns if c not in lead]]


#: Column order of a territory table (others follow as they come).
_LEAD = (
    "territory", *_REP_COLUMNS, "rep_segment", "rep_capacity", "target_share", "units",
    "accounts", "named_accounts", "customers", "potential", "named_potential", "reach",
    "score", "avg_score", "whitespace", "expected_revenue",
)  # fmt: skip


def segments_table(sp: SegmentedPlan, territories: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per segment: layer, units, territories, accounts (named among them),
    potential, reach, quota, recommended headcount, worst deviation, placement rejects."""
    rows = []
    for name, p in sp.plans.items():
        t = territories[name]
        seg = p.segment
        primary = seg.partition["balance"][0]
        row = {
            "segment": name,
            "layer": seg.layer,
            "units": p.kind,
            "rule": str(seg.where),
            "territories": len(t),
            "accounts": int(t["accounts"].sum()),
            "named_accounts": int(t["named_accounts"].sum()),
        }
        for col in ("potential", "reach", "quota"):
            if col in t.columns:
                row[col] = t[col].sum()
        if "recommended_reps" in t.columns:
            row["recommended_reps"] = int(t["recommended_reps"].sum())
        row["balance"] = primary
        row["max_deviation"] = float(t[f"{primary}_deviation"].abs().max())
        row["rejected"] = len(p.rejects)
        rows.append(row)
    out = pd.DataFrame(rows)
    order = ["segment", "layer", "units", "rule", "territories", "accounts", "named_accounts",
             "potential", "reach", "quota", "recommended_reps", "balance", "max_deviation",
             "rejected"]  # fmt: skip
    return out[[c for c in order if c in out.columns]]


def zip_table(sp: SegmentedPlan, territories: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per (ZIP, geographic segment): ``zip, segment, zcta, territory, rep_id...``."""
    parts = []
    for name, p in sp.plans.items():
        if p.plan is None:
            continue
        t = territories[name]
        reps_t = t[[c for c in ("territory", *_REP_COLUMNS) if c in t.columns]]
        labels = p.plan.assignment.reindex(p.units["unit_id"].astype(str)).to_numpy()
        z = zip_to_rep(p.units, labels, reps_t=reps_t)
        z.insert(1, "segment", name)
        parts.append(z)
    if not parts:
        return pd.DataFrame(columns=["zip", "segment", "zcta", "territory"])
    order = {name: i for i, name in enumerate(sp.plans)}
    out = pd.concat(parts, ignore_index=True)
    out["_o"] = out["segment"].map(order)
    return out.sort_values(["zip", "_o"], kind="stable").drop(columns="_o").reset_index(drop=True)


def assignments_table(
    sp: SegmentedPlan, territories: Mapping[str, pd.DataFrame], accounts: pd.DataFrame,
    *, sums: Sequence[str] = (),
) -> pd.DataFrame:  # fmt: skip
    """Each account once per layer it is in: ``account_id, name, layer, segment,
    territory, rep_id, rep_name, named, unit_id`` and the account's measures."""
    info = accounts.assign(account_id=accounts["account_id"].astype(str)).set_index("account_id")
    keep = [c for c in (*ACCOUNT_COLUMNS, *sums) if c in info.columns]
    parts = []
    for name, p in sp.plans.items():
        a = p.assignment()
        t = territories[name].set_index("territory")
        a.insert(1, "layer", p.segment.layer)
        a.insert(2, "segment", name)
        for i, c in enumerate(c for c in _REP_COLUMNS if c in t.columns):
            a.insert(4 + i, c, t[c].reindex(a["territory"]).to_numpy())
        extra = info[keep].reindex(a["account_id"]).reset_index(drop=True)
        parts.append(pd.concat([a, extra], axis=1))
    out = pd.concat(parts, ignore_index=True)
    lead = ["account_id", *(["name"] if "name" in out.columns else []), "layer", "segment",
            "territory", *[c for c in _REP_COLUMNS if c in out.columns], "named", "unit_id"]  # fmt: skip
    return out[lead + [c for c in out.columns if c not in lead]]
