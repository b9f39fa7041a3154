"""Compare two plans side by side: balance, compactness, cut edges, travel, disruption.

Plans are read the way ``map`` and ``export`` read them (``unit_id,territory`` over the
same units). Plan B's territories are always matched to plan A's by maximum overlap of
the primary measure (Hungarian method) before changes are counted, so disruption counts
real moves, not renamings: the same plan relabelled changes nothing. (Who owns what, rep
by rep, is ``patchmap diff``.)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from patchmap.errors import InputError
from patchmap.export import assign_reps, balance_columns, numeric_or_zero, plan_frame
from patchmap.io import write_csv, write_markdown
from patchmap.metrics import (
    account_distance_km,
    cut_edge_fraction,
    disruption,
    is_contiguous,
    match_labels,
    mean_travel_km,
    polsby_popper_from_parts,
)
from patchmap.notes import Note
from patchmap.options import error
from patchmap.partition.reps import home_xy_km
from patchmap.render.common import format_metric
from patchmap.units.adjacency import build_adjacency

__all__ = ["Comparison", "compare_plans", "format_metric", "plan_homes", "write_comparison"]


@dataclass
class Comparison:
    """Two plans compared: ``table`` (``metric, <A>, <B>, change``; change is B - A),
    label ``matching`` (B -> A by overlap; ``matched`` when some label maps to another
    name), ``changed`` (per unit: territory differs after matching) and the labels."""

    table: pd.DataFrame
    names: tuple[str, str]
    labels_a: pd.Series
    labels_b: pd.Series
    matching: dict[str, str] = field(default_factory=dict)
    matched: bool = False
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def changed(self) -> pd.Series:
        """True for the units whose territory changed (B's labels matched to A's)."""
        b = self.labels_b.map(self.matching) if self.matched else self.labels_b
        return pd.Series(self.labels_a.to_numpy() != b.to_numpy(), index=self.labels_a.index)

    def markdown(self) -> str:
        """The table as Markdown with a short headline."""
        a, b = self.names
        lines = [f"# Plan comparison: {a} vs {b}", ""]
        renamed = {k: v for k, v in self.matching.items() if k != v}
        if renamed:
            shown = ", ".join(f"{k} = {v}" for k, v in list(renamed.items())[:8])
            more = f" and {len(renamed) - 8} more" if len(renamed) > 8 else ""
            lines.append(
                f"{b}'s territories are matched to {a}'s by maximum overlap before changes "
                f"are counted ({shown}{more})."
            )
        else:
            lines.append(
                f"Territories are matched by maximum overlap before changes are counted: "
                f"each of {b}'s keeps the name of the {a} territory it overlaps most."
            )
        lines += ["", f"| metric | {a} | {b} | change |", "|---|---:|---:|---:|"]
        for row in self.table.itertuples(index=False):
            cells = [format_metric(v, row[0], signed=i == 2) for i, v in enumerate(row[1:4])]
            lines.append(f"| {row[0]} | " + " | ".join(cells) + " |")
        if self.notes or self.warnings:
            lines += ["", *[f"- {n}" for n in [*self.warnings, *self.notes]]]
        return "\n".join(lines) + "\n"


def _labels_of(plan: Any, ids: pd.Index, units: Any) -> pd.Series:
    pf = plan_frame(plan, units)
    return pd.Series(pf["territory"].astype(str).to_numpy(), index=pd.Index(pf["unit_id"]))


def compare_plans(
    plan_a: Any,
    plan_b: Any,
    units: gpd.GeoDataFrame | Sequence[str],
    *,
    balance: str | Sequence[str] | None = None,
    reps: pd.DataFrame | None = None,
    names: tuple[str, str] = ("A", "B"),
    adjacency: Any = None,
    accounts: pd.DataFrame | None = None,
) -> Comparison:
    """Compare plan B with plan A over the same ``units``.

    ``units`` is the unit GeoDataFrame (``unit_id`` column; every metric) or just the unit
    ids (territory counts and disruption only). ``balance`` names the measures (default:
    potential and accounts where present, else population); ``reps`` measures travel from
    the reps' homes (each plan's territories linked to reps as export links them, see
    :func:`patchmap.export.assign_reps`), otherwise travel is from each territory's
    weighted centroid. ``accounts`` placed in the units (``unit_id, lat, lon``) add the
    mean and 90th-percentile distance of accounts from their territory's centre.
    """
    geo = isinstance(units, pd.DataFrame)
    ids = (
        pd.Index(units["unit_id"].astype(str))
        if geo
        else pd.Index(pd.Series(list(units)).astype(str))
    )
    la = _labels_of(plan_a, ids, units).reindex(ids)
    lb = _labels_of(plan_b, ids, units).reindex(ids)
    a, b = names
    notes: list[str] = []
    warnings: list[str] = []  # reps that could not be linked as given
    rows: list[tuple[str, Any, Any]] = [
        ("territories", int(la.nunique()), int(lb.nunique())),
        ("units", len(ids), len(ids)),
    ]
    w = np.ones(len(ids))
    cols: list[str] = []
    homes = {}
    if geo and reps is not None:
        linked = {side: _link_homes(reps, units, lab) for side, lab in (("a", la), ("b", lb))}
        if all(h is None for h, _ in linked.values()):
            raise error("compare", f"{linked['a'][1]} ({{reps}} matches neither {a} nor {b})")
        homes = {side: h for side, (h, _) in linked.items()}
        for side, name in (("a", a), ("b", b)):
            h, why = linked[side]
            if h is None:
                warnings.append(f"{name}: travel is from territory centroids: {why}")
            elif why:
                warnings.append(f"{name}: {why}")
    if geo:
        cols = balance_columns(units, balance)
        if cols:
            w = numeric_or_zero(units, cols[0]).to_numpy()
        for c in cols:
            v = numeric_or_zero(units, c).to_numpy()
            rows.append((f"max deviation {c} (%)", *(100 * _max_dev(v, lab) for lab in (la, lb))))
        if adjacency is None:
            adjacency = build_adjacency(units, id_col="unit_id")
        for name, fn in (
            ("mean Polsby-Popper", "pp"),
            ("cut-edge fraction", "cut"),
            ("contiguous territories", "cont"),
            ("travel (km)", "travel"),
        ):
            vals = []
            for lab in (la, lb):
                codes, uniq = pd.factorize(lab.to_numpy(), sort=True)
                if fn == "pp":
                    pp = polsby_popper_from_parts(
                        codes, adjacency.area_km2, adjacency.perimeter_km, adjacency.shared_km,
                        len(uniq),
                    )  # fmt: skip
                    vals.append(float(np.nanmean(pp)))
                elif fn == "cut":
                    vals.append(cut_edge_fraction(adjacency, codes))
                elif fn == "cont":
                    vals.append(int(is_contiguous(adjacency, codes).sum()))
                else:
                    h = homes.get("a" if lab is la else "b")
                    vals.append(mean_travel_km(adjacency.xy_km, lab.to_numpy(), w,
                                               _homes_xy(h, units)))  # fmt: skip
            rows.append((name, *vals))
        if accounts is not None:
            rows += _account_travel_rows(accounts, la, lb, homes)
        centre = "the rep's home where known, else " if reps is not None else ""
        notes.append(Note("travel", f"travel (km): weighted mean distance of units from "
                          f"{centre}their territory's weighted centroid"))  # fmt: skip
        if accounts is not None:
            notes.append(Note("account_travel", f"account travel (km): great-circle distance "
                              f"of each account from {centre}its territory's centroid, every "
                              "account counted once"))  # fmt: skip
    matching = match_labels(la.to_numpy(), lb.to_numpy(), w)
    matched = any(k != v for k, v in matching.items())
    lb_m = lb.map(matching)
    rows.append(("units changed (%)", np.nan, 100 * disruption(la, lb_m)))
    if cols:
        rows.append((f"{cols[0]} changed (%)", np.nan, 100 * disruption(la, lb_m, w)))
    table = pd.DataFrame(rows, columns=["metric", a, b], dtype=object)
    table["change"] = pd.Series(
        [_change(x, y) for x, y in zip(table[a], table[b], strict=True)], dtype=object
    )
    return Comparison(table, names, la, lb, matching, matched, notes, warnings)


def _change(x: Any, y: Any) -> Any:
    """B - A where both are numbers, else NaN."""
    if x is None or y is None or isinstance(x, str) or isinstance(y, str):
        return np.nan
    if not (np.isfinite(float(x)) and np.isfinite(float(y))):
        return np.nan
    d = y - x
    return int(d) if isinstance(d, (int, np.integer)) else float(d)


def plan_homes(
    reps: pd.DataFrame, units: gpd.GeoDataFrame, labels: pd.Series
) -> pd.DataFrame | None:
    """``territory, lat, lon`` of the reps of a plan (linked as export links them, over the
    units' polygons), or None when this plan's territories cannot be linked to the reps."""
    return _link_homes(reps, units, labels)[0]


def _link_homes(
    reps: pd.DataFrame, units: gpd.GeoDataFrame, labels: pd.Series
) -> tuple[pd.DataFrame | None, str | None]:
    """The plan's rep homes and a note: reps whose ``territory`` column names none of this
    plan's territories (the other plan's labels, say) are placed by their homes instead
    (the note says so); None and the reason when neither links them."""
    polys = gpd.GeoDataFrame(
        {"territory": labels.reindex(units["unit_id"].astype(str)).to_numpy()},
        geometry=units.geometry.values, crs=units.crs or 4326,
    )  # fmt: skip
    territories = pd.unique(labels.to_numpy())
    note = None
    try:
        link = assign_reps(reps, territories, polys, shared=True)
    except InputError as exc:
        if "territory" not in reps.columns:
            return None, str(exc)
        by_home = reps.drop(columns="territory")
        by_home.attrs = dict(reps.attrs)
        try:
            link = assign_reps(by_home, territories, polys, shared=True)
        except InputError:
            return None, str(exc)
        note = (f"the reps' territory column does not fit this plan ({exc}); each rep's "
                "territory is the one holding their home")  # fmt: skip
    link = link.dropna(subset=["lat", "lon"])
    if not len(link):
        return None, f"{reps.attrs.get('source', 'reps')}: no rep has a home"
    return link[["territory", "lat", "lon"]], note


def _account_travel_rows(
    accounts: pd.DataFrame, la: pd.Series, lb: pd.Series, homes: dict
) -> list[tuple[str, Any, Any]]:
    """Mean and 90th-percentile account travel (km) under each plan."""
    if not {"unit_id", "lat", "lon"} <= set(accounts.columns):
        return []
    unit = accounts["unit_id"].astype(str)
    lat = pd.to_numeric(accounts["lat"], errors="coerce").to_numpy(float)
    lon = pd.to_numeric(accounts["lon"], errors="coerce").to_numpy(float)
    d = [
        account_distance_km(lat, lon, lab.reindex(unit).to_numpy(), homes.get(side))
        for side, lab in (("a", la), ("b", lb))
    ]
    return [
        ("mean account travel (km)", *(float(np.nanmean(x)) for x in d)),
        ("p90 account travel (km)", *(float(np.nanpercentile(x, 90)) for x in d)),
    ]


def _max_dev(values: np.ndarray, labels: pd.Series) -> float:
    tot = pd.Series(values).groupby(labels.to_numpy()).sum()
    return float((tot / tot.mean() - 1).abs().max()) if tot.mean() > 0 else float("nan")


def _homes_xy(homes: pd.DataFrame | None, units: gpd.GeoDataFrame) -> pd.DataFrame | None:
    """Rep homes (km, the adjacency's equal-area frame) indexed by territory; the first
    rep's home where a territory has several."""
    if homes is None:
        return None

    h = homes.drop_duplicates(subset="territory")
    return pd.DataFrame(home_xy_km(h, units), index=h["territory"].to_numpy(), columns=["x", "y"])


def write_comparison(
    comparison: Comparison,
    out_dir: str | os.PathLike,
    *,
    units: gpd.GeoDataFrame | None = None,
    title: str | None = None,
    tiles: bool = False,
) -> dict[str, Path]:
    """Write ``compare.csv``, ``compare.md`` and (with unit polygons) ``compare.html``,
    a map with both plans as layers and the changed units highlighted."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: not a directory")
    t = comparison.table.copy()
    for c in t.columns[1:]:
        t[c] = pd.Series(
            [round(float(v), 6) if isinstance(v, (float, np.floating)) else v for v in t[c]],
            dtype=object,
        )
    written = {
        "compare_csv": write_csv(t, out / "compare.csv"),
        "compare_md": write_markdown(comparison.markdown(), out / "compare.md"),
    }
    if units is not None and isinstance(units, gpd.GeoDataFrame):
        from patchmap.render import render_compare  # folium: loaded only to draw a map

        written["compare_map"] = render_compare(
            units, comparison, out / "compare.html", title=title, tiles=tiles
        )
    return written
