"""Named accounts: accounts (not units) pinned to an owner, a rep or a territory.

``NAMED.csv`` has ``account_id`` and ``rep_id`` or ``territory`` (or both, when they
agree), and optionally ``segment`` (the segment the pin applies to; by default the
account's base-layer segment). A named account is taken out of geographic routing: its
owner keeps it wherever it is. With ``named_mode = "balance"`` it also counts into its
owner's balance (the owner's territory then needs less of the rest); with ``"exclude"``
(the default) only the other accounts are balanced.

Every problem is a one-line error naming the file and lines: an account id that is not
among the accounts, an account named twice (a duplicate when the owners agree, a
conflict when they do not), a row with no owner, an owner that is not a rep or a
territory of the account's segment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from patchmap.errors import InputError
from patchmap.io import listed_lines, read_table
from patchmap.layers import measure_values
from patchmap.logs import log
from patchmap.notes import Note

__all__ = [
    "MIN_GEO_SHARE", "NAMED_MODES", "NamedAccounts", "account_totals", "add_named_totals",
    "named_rows", "named_shares", "owner_shares", "prepare_named", "read_named",
]  # fmt: skip

NAMED_MODES = ("exclude", "balance")

#: Smallest geographic share a territory keeps when its named accounts alone exceed its
#: fair share (``named_mode = "balance"``), as a fraction of the mean share.
MIN_GEO_SHARE = 0.02
_OWNER_COLUMNS = ("rep_id", "territory")


@dataclass
class NamedAccounts:
    """The checked pins: one row per (account, segment) with its owner and file line.

    ``table`` columns: ``account_id``, ``rep_id`` and/or ``territory`` (text, ``<NA>``
    where a row leaves one blank), ``segment`` (``<NA>``: the account's own), ``line``.
    """

    table: pd.DataFrame
    source: str = "named"

    def __len__(self) -> int:
        return len(self.table)

    @property
    def ids(self) -> pd.Index:
        return pd.Index(self.table["account_id"].unique())

    def check_accounts(
        self, account_ids: Sequence[str], rejected: Sequence[str] = ()
    ) -> NamedAccounts:
        """The pins of accounts that were read: an id that is not an account of the file is
        an error naming the lines; an account rejected at ingest (it has no location, say)
        is in the rejects with its reason, so its pin is dropped with a warning."""
        known = pd.Index(pd.Series(list(account_ids), dtype=object).astype(str))
        gone = pd.Index(pd.Series(list(rejected), dtype=object).astype(str))
        ids = self.table["account_id"]
        dropped = ids.isin(gone).to_numpy() & ~ids.isin(known).to_numpy()
        unknown = ~ids.isin(known).to_numpy() & ~dropped
        if unknown.any():
            raise InputError(f"{self.source}: {self._where(unknown)}: account_id not among the "
                             "accounts")  # fmt: skip
        if dropped.any():
            log.warning(
                f"{self.source}: {self._where(dropped)}: named account(s) rejected when read "
                "(see the rejects file): not routed"
            )
        return NamedAccounts(self.table[~dropped].reset_index(drop=True), self.source)

    def _where(self, mask: np.ndarray) -> str:
        lines = self.table["line"].to_numpy()[mask]
        ids = self.table["account_id"].to_numpy()[mask]
        shown = ", ".join(repr(str(i)) for i in ids[:5])
        return f"{listed_lines(lines)} ({shown}{' ...' if len(ids) > 5 else ''})"

    def for_segment(self, name: str, members: pd.Index, base_of: pd.Series,
                    segments: Sequence[str]) -> pd.DataFrame:  # fmt: skip
        """The pins that apply to segment ``name``: rows naming it, and rows without a
        segment whose account is in it by its base-layer rule. ``members`` are the
        segment's account ids; ``base_of`` maps account id -> base segment.
        A row naming an unknown segment, or a segment the account is not in, is an error."""
        t = self.table
        seg = t["segment"]
        unknown = seg.notna() & ~seg.isin(list(segments))
        if unknown.any():
            m = unknown.to_numpy()
            raise InputError(
                f"{self.source}: {self._where(m)}: segment {seg[m].iloc[0]!r} is not a segment "
                f"(segments: {', '.join(segments)})"
            )
        explicit = (seg == name).fillna(False).to_numpy()
        outside = explicit & ~t["account_id"].isin(members).to_numpy()
        if outside.any():
            acc = t["account_id"][outside].iloc[0]
            raise InputError(
                f"{self.source}: {self._where(outside)}: conflict: account {acc!r} is in "
                f"segment {base_of.get(acc, 'none')!r} by the segment rules, not in {name!r}"
            )
        own = seg.isna().to_numpy() & t["account_id"].map(base_of).eq(name).fillna(False).to_numpy()
        return t[explicit | own].reset_index(drop=True)

    def owners(
        self, rows: pd.DataFrame, *, rep_territory: Mapping[str, str] | None,
        territories: Sequence[str] | None, segment: str | None = None,
    ) -> pd.Series:  # fmt: skip
        """Account id -> owner territory for ``rows`` (from :meth:`for_segment`, or the
        whole table).

        ``rep_territory`` maps each rep's id to the territory the rep covers (None: no
        reps); a ``rep_id`` must be one of them. A ``territory`` must be one of
        ``territories`` (None: any label). A row giving both must agree."""
        where = f" of segment {segment!r}" if segment else ""
        terr = rows["territory"].astype("string")
        owner = pd.Series(pd.NA, index=rows.index, dtype="string")
        has = rows["rep_id"].notna().to_numpy()
        if has.any():
            if rep_territory is None:
                raise InputError(
                    f"{self.source}: {self._where_rows(rows, has)}: rep_id needs the reps{where} "
                    "(give reps, or name a territory instead)"
                )
            mapped = rows["rep_id"].map(pd.Series(dict(rep_territory), dtype=object))
            bad = has & mapped.isna().to_numpy()
            if bad.any():
                raise InputError(
                    f"{self.source}: {self._where_rows(rows, bad)}: rep_id "
                    f"{rows['rep_id'][bad].iloc[0]!r} is not a rep{where}"
                )
            owner[has] = mapped[has].astype("string")
            clash = has & terr.notna().to_numpy() & (terr != owner).fillna(False).to_numpy()
            if clash.any():
                i = int(np.flatnonzero(clash)[0])
                raise InputError(
                    f"{self.source}: {self._where_rows(rows, clash)}: conflict: rep "
                    f"{rows['rep_id'].iloc[i]!r} covers territory {owner.iloc[i]!r}, not "
                    f"{terr.iloc[i]!r}"
                )
        fill = owner.isna().to_numpy() & terr.notna().to_numpy()
        owner[fill] = terr[fill]
        if territories is not None:
            known = pd.Index([str(t) for t in territories])
            bad = fill & ~terr.isin(known).to_numpy()
            if bad.any():
                raise InputError(
                    f"{self.source}: {self._where_rows(rows, bad)}: territory "
                    f"{terr[bad].iloc[0]!r} is not a territory{where} "
                    f"({', '.join(known[:8])}{' ...' if len(known) > 8 else ''})"
                )
        return pd.Series(owner.to_numpy(dtype=object), index=pd.Index(
            rows["account_id"].astype(str), name="account_id"), name="territory")  # fmt: skip

    def _where_rows(self, rows: pd.DataFrame, mask: np.ndarray) -> str:
        lines = rows["line"].to_numpy()[mask]
        ids = rows["account_id"].to_numpy()[mask]
        return f"{listed_lines(lines)} ({', '.join(repr(str(i)) for i in ids[:5])})"


def read_named(path: str | os.PathLike) -> NamedAccounts:
    """Read and check a NAMED.csv (CSV, Parquet or Excel): see the module docstring."""
    p = Path(path)
    df = read_table(p, dtype=str)
    df.columns = [str(c).strip().lower() for c in df.columns]
    return prepare_named(df, source=str(p))


def prepare_named(df: pd.DataFrame, *, source: str = "named", first_line: int = 2) -> NamedAccounts:
    """Check a named-accounts table already in memory (lines numbered from ``first_line``)."""
    if "account_id" not in df.columns:
        raise InputError(f"{source}: column 'account_id' not found (expected account_id,rep_id "
                         "or account_id,territory)")  # fmt: skip
    owners = [c for c in _OWNER_COLUMNS if c in df.columns]
    if not owners:
        raise InputError(f"{source}: no owner column: expected rep_id or territory")
    cols = ["account_id", *owners, *(["segment"] if "segment" in df.columns else [])]
    text = pd.DataFrame(
        {c: df[c].astype("string").str.strip().replace("", pd.NA) for c in cols}, index=df.index
    ).reset_index(drop=True)
    text["line"] = np.arange(len(text)) + first_line
    if "segment" not in text:
        text["segment"] = pd.Series(pd.NA, index=text.index, dtype="string")
    for c in _OWNER_COLUMNS:
        if c not in text:
            text[c] = pd.Series(pd.NA, index=text.index, dtype="string")
    named = NamedAccounts(text, source)
    blank = text["account_id"].isna().to_numpy()
    if blank.any():
        raise InputError(f"{source}: {listed_lines(text['line'][blank])}: empty account_id")
    none = (text["rep_id"].isna() & text["territory"].isna()).to_numpy()
    if none.any():
        raise InputError(f"{source}: {named._where(none)}: no owner (rep_id or territory)")
    key = text["account_id"] + "\x00" + text["segment"].fillna("")
    dup = key.duplicated(keep=False).to_numpy()
    if dup.any():
        first = key[dup].iloc[0]
        mine = (key == first).to_numpy()
        owner = text["rep_id"].fillna("") + "\x00" + text["territory"].fillna("")
        what = "conflict: named to different owners" if owner[mine].nunique() > 1 else "duplicate"
        acc = text["account_id"][mine].iloc[0]
        raise InputError(f"{source}: {listed_lines(text['line'][mine])}: {what} "
                         f"(account {acc!r} named more than once)")  # fmt: skip
    return named


def _numbers(rows: pd.DataFrame, col: str) -> np.ndarray:
    """A column as floats, blanks and non-numbers counted as 0 (as the exports count)."""
    return pd.to_numeric(rows[col], errors="coerce").fillna(0.0).to_numpy(float)


def account_totals(rows: pd.DataFrame, col: str, by: np.ndarray, k: int) -> np.ndarray:
    """Sum of an account measure per group ``by`` (codes 0..k-1, -1 left out): ``accounts``
    counts, ``customers`` counts customers, ``whitespace`` sums non-customers' potential."""
    if col == "accounts":
        v = np.ones(len(rows))
    elif col in ("customers", "whitespace"):
        status = rows["status"] if "status" in rows.columns else pd.Series("", index=rows.index)
        cust = status.astype(str).str.strip().str.lower().eq("customer").to_numpy()
        if col == "customers":
            v = cust.astype(float)
        else:
            v = np.where(cust, 0.0, _numbers(rows, "potential"))
    elif col in rows.columns:
        v = _numbers(rows, col)
    else:
        return np.zeros(k)
    ok = by >= 0
    return np.bincount(by[ok], weights=v[ok], minlength=k)


def add_named_totals(
    table: pd.DataFrame, named: pd.DataFrame | None, *, balance: Sequence[str],
    count_in_balance: bool, sums: Sequence[str] = (), included: bool = False,
) -> pd.DataFrame:  # fmt: skip
    """A per-territory table with the named book added: ``named_accounts`` (and
    ``named_potential``) per owner territory, and every total (accounts, potential, reach,
    the balance columns...) including the named accounts unless ``included`` (they are
    already in). With ``count_in_balance`` the deviations measure the totals; else they
    stay what was balanced without the named accounts. ``named``: account rows with
    ``territory`` = the owner."""
    out = table.copy()
    k = len(out)
    named = named if named is not None else pd.DataFrame({"territory": []})
    by = pd.Index(out["territory"].astype(str)).get_indexer(named["territory"].astype(str))
    out["named_accounts"] = np.bincount(by[by >= 0], minlength=k).astype(int)
    if "potential" in named.columns or "potential" in out.columns:
        out["named_potential"] = account_totals(named, "potential", by, k)
    if not included and len(named):
        cols = ("accounts", "customers", "score", "reach", "potential", "whitespace",
                "expected_revenue", *sums, *balance)  # fmt: skip
        for col in dict.fromkeys(cols):
            if col in out.columns:
                src = "potential" if col == "expected_revenue" else col
                out[col] = out[col] + account_totals(named, src, by, k)
        if "avg_score" in out.columns:
            with np.errstate(divide="ignore", invalid="ignore"):
                out["avg_score"] = np.where(out["accounts"] > 0, out["score"] / out["accounts"],
                                            np.nan)  # fmt: skip
        if count_in_balance:
            share = out["target_share"].to_numpy(float) if "target_share" in out else None
            for col in balance:
                if col in out.columns:
                    out[f"{col}_deviation"] = _deviation(out[col].to_numpy(dtype=float), share)
    devs = [out[f"{c}_deviation"].to_numpy(dtype=float) for c in balance
            if f"{c}_deviation" in out.columns]  # fmt: skip
    if devs:
        stacked = np.vstack(devs)
        out["deviation"] = stacked[np.argmax(np.abs(stacked), axis=0), np.arange(k)]
    return out


def _deviation(totals: np.ndarray, share: np.ndarray | None) -> np.ndarray:
    """Signed deviation from each territory's target (equal shares, or ``share``)."""
    share = share if share is not None else np.full(len(totals), 1.0 / max(len(totals), 1))
    target = totals.sum() * share
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(target > 0, totals / target - 1.0, 0.0)


def named_shares(
    weights: np.ndarray, named_load: np.ndarray, capacity: np.ndarray | None = None
) -> tuple[np.ndarray, list[str]]:
    """Geographic target shares when named accounts count into their owner's balance.

    Each territory's target is its share of everything (geography plus named, equal or by
    ``capacity``); the geography must bring what its named accounts do not. A territory
    whose named accounts exceed its target keeps :data:`MIN_GEO_SHARE` of a mean share,
    which the notes say. Returns the shares (summing to 1) and the notes.
    """
    k = len(named_load)
    cap = np.ones(k) if capacity is None else np.asarray(capacity, dtype=float)
    cap = cap / cap.sum()
    total = float(np.sum(weights)) + float(np.sum(named_load))
    geo = total * cap - named_load
    floor = MIN_GEO_SHARE * float(np.sum(weights)) / k
    over = geo < floor
    notes = []
    if over.any():
        notes.append(
            Note(
                "named_over_share",
                f"{int(over.sum())} territory(ies) hold more in named accounts than their "
                "share: they keep a minimal geographic share",
                count=int(over.sum()),
            )
        )
    geo = np.maximum(geo, floor)
    return geo / geo.sum(), notes


def owner_shares(
    units: pd.DataFrame, rows: pd.DataFrame, reps: pd.DataFrame, column: str
) -> tuple[np.ndarray, list[str]]:
    """:func:`named_shares` for a plan drawn around ``reps`` (one territory per rep, in
    the reps' order): the named accounts' ``column`` per owner (``territory`` = rep id),
    targets by the reps' ``capacity`` when every rep has one."""
    load = np.ones(len(rows)) if column == "accounts" else measure_values(rows, column)
    per = (
        pd.Series(load, index=rows["territory"].astype(str).to_numpy())
        .groupby(level=0).sum().reindex(reps["rep_id"].astype(str)).fillna(0.0).to_numpy()
    )  # fmt: skip
    cap = reps["capacity"].to_numpy(dtype=float) if "capacity" in reps.columns else None
    cap = cap if cap is not None and np.isfinite(cap).all() else None
    return named_shares(units[column].to_numpy(dtype=float), per, cap)


def named_rows(accounts: pd.DataFrame, owners: pd.Series) -> pd.DataFrame:
    """The named accounts' rows of ``accounts`` with ``territory`` = their owner
    (``owners``: account id -> territory)."""
    rows = accounts[accounts["account_id"].astype(str).isin(owners.index)].copy()
    rows["territory"] = owners.reindex(rows["account_id"].astype(str)).to_numpy()
    return rows.reset_index(drop=True)
