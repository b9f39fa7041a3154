"""What changed for whom between two plans: the list RevOps sends before a realignment.

One row per ZIP and per account whose owner changes (old rep, new rep, potential), sorted
by potential; accounts new since last year listed as new and accounts gone as lost; totals
per rep; and, for the sales leader, why any territory stays off target.

The owner of a territory is its rep (each plan's reps linked as export links them: a
``territory`` column, territories labelled by ``rep_id``, or the territory holding each
home); without reps it is the territory itself, the new plan's territories matched to the
old plan's by overlap first, so a relabelled plan changes no owner.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd

from patchmap.export import (
    assign_reps,
    balance_columns,
    numeric_or_zero,
    off_target_reasons,
    plan_frame,
    zip_to_rep,
)
from patchmap.geocode import normalize_zip
from patchmap.io import write_csv, write_markdown
from patchmap.metrics import match_labels
from patchmap.notes import Note
from patchmap.options import TOLERANCE

__all__ = ["VACANT", "PlanDiff", "plan_diff", "write_diff"]

#: The owner shown for a territory without a rep.
VACANT = "(vacant)"
_TOP = 15


@dataclass
class PlanDiff:
    """The owner changes between an old and a new plan (see :func:`plan_diff`)."""

    names: tuple[str, str]
    zips: pd.DataFrame  # zip, city, state, old/new territory and owner, accounts, potential
    accounts: pd.DataFrame  # change (moved|new|lost), account_id, ..., old/new owner, potential
    reps: pd.DataFrame  # per owner: before/after, gained, given away, new, lost (and potential)
    off_target: pd.DataFrame  # territory, owner, measure, deviation, why
    by_rep: bool = True  # owners are reps (else territories)
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        """The summary a sales leader reads."""
        a, b = self.names
        who = "rep" if self.by_rep else "territory"
        acc = self.accounts
        lines = [f"# What changes for whom: {a} -> {b}", ""]
        if len(acc) or "potential" in acc.columns:
            pot = acc["potential"] if "potential" in acc.columns else pd.Series(dtype=float)
            for kind, one, many in (("moved", "changes owner", "change owner"),
                                    ("new", "is new since last year", "are new since last year"),
                                    ("lost", "is gone since last year", "are gone since last year")):  # fmt: skip
                n = int((sel := acc["change"] == kind).sum())
                lines.append(
                    f"- {_count(n, 'account')} {one if n == 1 else many}"
                    + (f" (potential {_money(pot[sel].sum())})" if "potential" in acc else "")
                )
        n = len(self.zips)
        lines.append(f"- {_count(n, 'ZIP code')} {'changes' if n == 1 else 'change'} owner")
        lines += [f"- {n}" for n in self.notes]
        if len(self.reps):
            lines += ["", f"## By {who}", ""]
            cols = [c for c in self.reps.columns]
            lines.append("| " + " | ".join(cols) + " |")
            lines.append("|---|" + "---:|" * (len(cols) - 1))
            for row in self.reps.itertuples(index=False):
                lines.append(
                    "| " + " | ".join(_cell(v, c) for v, c in zip(row, cols, strict=True)) + " |"
                )
        moved = acc[acc["change"] == "moved"].head(_TOP)
        if len(moved):
            lines += ["", f"## Largest hand-overs (top {len(moved)} by potential)", ""]
            cols = [c for c in ("account_id", "name", "old_owner", "new_owner", "potential")
                    if c in moved.columns]  # fmt: skip
            lines.append("| " + " | ".join(cols) + " |")
            lines.append("|" + "---|" * len(cols))
            for row in moved[cols].itertuples(index=False):
                lines.append(
                    "| " + " | ".join(_cell(v, c) for v, c in zip(row, cols, strict=True)) + " |"
                )
        lines += ["", f"## Territories off target in {b}", ""]
        if len(self.off_target):
            lines += ["| territory | owner | measure | deviation | why |", "|---|---|---|---:|---|"]
            for r in self.off_target.itertuples(index=False):
                lines.append(f"| {_esc(r.territory)} | {_esc(r.owner)} | {_esc(r.measure)} | "
                             f"{100 * r.deviation:+.1f}% | {_esc(r.why)} |")  # fmt: skip
        else:
            lines.append("Every territory is within the tolerance on every measure.")
        return "\n".join(lines) + "\n"


def _esc(v) -> str:
    return str(v).replace("|", "\\|")


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _money(v: float) -> str:
    return f"{float(v):,.0f}"


def _cell(v, col: str) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return ""
    if isinstance(v, (float, np.floating)):
        return _money(v) if abs(v) >= 100 or col.startswith("potential") else f"{v:,.2f}"
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    return _esc(v)


# ---------------------------------------------------------------------------------------------


def _owners(
    reps: pd.DataFrame | None, units: gpd.GeoDataFrame, labels: pd.Series
) -> pd.Series | None:
    """Territory -> owner (rep ids joined with ``;``, or :data:`VACANT`), or None."""
    if reps is None:
        return None

    polys = gpd.GeoDataFrame(
        {"territory": labels.reindex(units["unit_id"].astype(str)).to_numpy()},
        geometry=units.geometry.values, crs=units.crs or 4326,
    )  # fmt: skip
    terr = pd.unique(labels.to_numpy())
    link = assign_reps(reps, terr, polys, shared=True)
    owner = link.groupby("territory")["rep_id"].agg(lambda s: ";".join(sorted(map(str, s))))
    return owner.reindex(pd.Index(terr).astype(str)).fillna(VACANT)


def _placed(
    acc: pd.DataFrame | None, unit_labels: pd.Series, unit_owner: pd.Series
) -> pd.DataFrame | None:
    """Accounts (``account_id``, ``unit_id``) with the territory and owner of their unit."""
    if acc is None:
        return None
    a = acc.copy()
    a["account_id"] = a["account_id"].astype(str).str.strip()
    unit = a["unit_id"].astype(str)
    a["territory"] = unit.map(unit_labels).to_numpy()
    a["owner"] = unit.map(unit_owner).to_numpy()
    return a[a["territory"].notna()].drop_duplicates(subset="account_id")


def plan_diff(
    units: gpd.GeoDataFrame,
    old_plan,
    new_plan,
    *,
    accounts: pd.DataFrame | None = None,
    old_accounts: pd.DataFrame | None = None,
    reps: pd.DataFrame | None = None,
    old_reps: pd.DataFrame | None = None,
    balance: str | Sequence[str] | None = None,
    tolerance: float = TOLERANCE,
    names: tuple[str, str] = ("old", "new"),
) -> PlanDiff:
    """Owner changes from ``old_plan`` to ``new_plan`` over the same ``units``.

    ``accounts`` are this year's accounts placed in the units (``account_id, unit_id`` and
    ``potential``, ``name``, ``zip`` when known); ``old_accounts`` last year's (default: the
    same), so accounts only in ``accounts`` are new and those only in ``old_accounts`` lost.
    ``reps`` are the new plan's reps and ``old_reps`` the old plan's (default: the same
    file). ``balance`` and ``tolerance`` (a fraction) judge which territories of the new
    plan are off target.
    """
    units = units.reset_index(drop=True)
    ids = units["unit_id"].astype(str)
    lo = pd.Series(plan_frame(old_plan, units)["territory"].to_numpy(), index=ids.to_numpy())
    ln = pd.Series(plan_frame(new_plan, units)["territory"].to_numpy(), index=ids.to_numpy())
    cols = balance_columns(units, balance)
    w = numeric_or_zero(units, cols[0]).to_numpy() if cols else np.ones(len(units))
    notes: list[str] = []
    own_old = _owners(old_reps if old_reps is not None else reps, units, lo)
    own_new = _owners(reps, units, ln)
    by_rep = own_old is not None and own_new is not None
    if by_rep:
        owner_old, owner_new = lo.map(own_old), ln.map(own_new)
    else:
        matching = match_labels(lo.to_numpy(), ln.to_numpy(), w)
        owner_old, owner_new = lo, ln.map(matching)
        if any(k != v for k, v in matching.items()):
            notes.append(Note("matched_by_overlap", f"{names[1]}'s territories are matched to "
                              f"{names[0]}'s by overlap: owners are territories (give the reps "
                              "table to name reps)"))  # fmt: skip
    who = {"old": owner_old, "new": owner_new}

    # ZIPs
    z_old = zip_to_rep(units, lo.to_numpy())
    z_new = zip_to_rep(units, ln.to_numpy()).set_index("zip")
    z = z_old.rename(columns={"territory": "old_territory"})
    z["new_territory"] = z["zip"].map(z_new["territory"]).to_numpy()
    unit_col = "unit_id" if "unit_id" in z.columns else "zcta"
    z["old_owner"] = z[unit_col].map(who["old"]).to_numpy()
    z["new_owner"] = z[unit_col].map(who["new"]).to_numpy()
    z = z[z["old_owner"] != z["new_owner"]].copy()

    # accounts
    new_acc = _placed(accounts, ln, who["new"])
    old_acc = _placed(old_accounts if old_accounts is not None else accounts, lo, who["old"])
    if old_accounts is None and accounts is not None:
        notes.append(Note("one_accounts_file", "accounts: one file for both years, so none is "
                          "listed as new or lost (give last year's accounts to list them)"))  # fmt: skip
    acc_rows = pd.DataFrame(columns=["change", "account_id", "old_owner", "new_owner"])
    if new_acc is not None and old_acc is not None:
        acc_rows = _account_changes(old_acc, new_acc)
        if "zip" in new_acc.columns:
            per_zip = new_acc.assign(zip5=normalize_zip(new_acc["zip"]).to_numpy())
            g = per_zip.groupby("zip5")
            z["accounts"] = z["zip"].map(g.size()).fillna(0).astype(int).to_numpy()
            if "potential" in per_zip.columns:
                pot = numeric_or_zero(per_zip, "potential").groupby(per_zip["zip5"]).sum()
                z["potential"] = z["zip"].map(pot).fillna(0.0).to_numpy()
    lead = ["zip", "zcta", "city", "state", "old_territory", "new_territory", "old_owner",
            "new_owner", "accounts", "potential"]  # fmt: skip
    z = z[[c for c in lead if c in z.columns]]
    z = _by_potential(z, "zip")

    reps_t = _rep_totals(old_acc, new_acc, acc_rows) if new_acc is not None else pd.DataFrame()
    off = off_target_reasons(units, ln.to_numpy(), cols, tolerance)
    owner = off["territory"].map(own_new) if by_rep else off["territory"]
    off.insert(1, "owner", owner.to_numpy())
    return PlanDiff(names, z.reset_index(drop=True), acc_rows, reps_t, off, by_rep, notes)


def _by_potential(df: pd.DataFrame, key: str) -> pd.DataFrame:
    if "potential" in df.columns:
        return df.sort_values(["potential", key], ascending=[False, True], kind="stable")
    return df.sort_values(key, kind="stable")


def _account_changes(old: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """One row per account whose owner changes, new account or lost account."""
    info = [c for c in ("name", "unit_id", "zip", "status") if c in new.columns or c in old.columns]
    o = old.set_index("account_id")
    n = new.set_index("account_id")
    both = n.index.intersection(o.index)
    rows = []
    for kind, frame, idx in (("moved", n, both), ("new", n, n.index.difference(o.index)),
                             ("lost", o, o.index.difference(n.index))):  # fmt: skip
        f = frame.loc[idx]
        r = pd.DataFrame({"change": kind, "account_id": idx.to_numpy()})
        for c in info:
            r[c] = f[c].to_numpy() if c in f.columns else None
        r["old_territory"] = o.loc[idx, "territory"].to_numpy() if kind != "new" else None
        r["new_territory"] = n.loc[idx, "territory"].to_numpy() if kind != "lost" else None
        r["old_owner"] = o.loc[idx, "owner"].to_numpy() if kind != "new" else None
        r["new_owner"] = n.loc[idx, "owner"].to_numpy() if kind != "lost" else None
        if "potential" in f.columns:
            r["potential"] = numeric_or_zero(f, "potential").to_numpy()
        if kind == "moved":
            r = r[r["old_owner"].to_numpy() != r["new_owner"].to_numpy()]
        rows.append(r)
    out = pd.concat(rows, ignore_index=True)
    return _by_potential(out, "account_id").reset_index(drop=True)


def _rep_totals(old: pd.DataFrame | None, new: pd.DataFrame, changes: pd.DataFrame) -> pd.DataFrame:
    """Per owner: accounts (and potential) before and after, gained, given away, new, lost."""
    has_pot = "potential" in new.columns

    def tally(df: pd.DataFrame, owner: pd.Series) -> pd.DataFrame:
        g = pd.DataFrame({"owner": owner.to_numpy(), "n": 1.0,
                          "p": numeric_or_zero(df, "potential").to_numpy() if has_pot else 0.0})  # fmt: skip
        return g.groupby("owner")[["n", "p"]].sum()

    def of(kind: str, side: str) -> pd.DataFrame:
        c = changes[changes["change"] == kind]
        return tally(c, c[f"{side}_owner"])

    before = tally(old, old["owner"]) if old is not None else None
    after = tally(new, new["owner"])
    parts = {
        "accounts_before": before["n"] if before is not None else None,
        "accounts_after": after["n"],
        "gained": of("moved", "new")["n"],
        "given_away": of("moved", "old")["n"],
        "new": of("new", "new")["n"],
        "lost": of("lost", "old")["n"],
    }
    if has_pot:
        parts |= {
            "potential_before": before["p"] if before is not None else None,
            "potential_after": after["p"],
            "potential_gained": of("moved", "new")["p"],
            "potential_given_away": of("moved", "old")["p"],
        }
    t = pd.DataFrame({k: v for k, v in parts.items() if v is not None}).fillna(0.0)
    for c in t.columns:
        if not c.startswith("potential"):
            t[c] = t[c].astype(int)
    if has_pot and "potential_before" in t.columns:
        t["potential_change"] = t["potential_after"] - t["potential_before"]
    t.index.name = "owner"
    return t.sort_index().reset_index()


def write_diff(diff: PlanDiff, out_dir: str | os.PathLike) -> dict[str, Path]:
    """``zip_changes.csv``, ``account_changes.csv``, ``rep_totals.csv``, ``off_target.csv``
    and ``diff.md`` in ``out_dir``."""
    out = Path(out_dir)
    written = {
        "zip_changes": write_csv(diff.zips.round(2), out / "zip_changes.csv"),
        "account_changes": write_csv(diff.accounts.round(2), out / "account_changes.csv"),
        "off_target": write_csv(diff.off_target.round(6), out / "off_target.csv"),
        "diff_md": write_markdown(diff.markdown(), out / "diff.md"),
    }
    if len(diff.reps):
        written["rep_totals"] = write_csv(diff.reps.round(2), out / "rep_totals.csv")
    return written
