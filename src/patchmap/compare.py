"""Compare two plans side by side: balance, compactness, cut edges, travel, disruption.

Plans are read the way ``map`` and ``export`` read them (``unit_id,territory`` over the
same units). When their territory labels differ, plan B's territories are matched to
plan A's by maximum overlap of the primary measure (Hungarian method), so disruption
counts real moves, not renamings.
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
from patchmap.io import write_csv, write_text

__all__ = ["Comparison", "compare_plans", "format_metric", "write_comparison"]


@dataclass
class Comparison:
    """Two plans compared: ``table`` (``metric, <A>, <B>``), label ``matching`` (B -> A),
    ``changed`` (per unit: territory differs after matching) and the plans' labels."""

    table: pd.DataFrame
    names: tuple[str, str]
    labels_a: pd.Series
    labels_b: pd.Series
    matching: dict[str, str] = field(default_factory=dict)
    matched: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> pd.Series:
        """True for the units whose territory changed (B's labels matched to A's)."""
        b = self.labels_b.map(self.matching) if self.matched else self.labels_b
        return pd.Series(self.labels_a.to_numpy() != b.to_numpy(), index=self.labels_a.index)

    def markdown(self) -> str:
        """The table as Markdown with a short headline."""
        a, b = self.names
        lines = [f"# Plan comparison: {a} vs {b}", ""]
        if self.matched:
            lines.append(
                f"Territory labels differ: {b}'s territories are matched to {a}'s by maximum "
                "overlap before counting changes."
            )
            lines.append("")
        lines += [f"| metric | {a} | {b} |", "|---|---:|---:|"]
        for row in self.table.itertuples(index=False):
            lines.append(
                f"| {row[0]} | {format_metric(row[1], row[0])} | {format_metric(row[2], row[0])} |"
            )
        if self.notes:
            lines += ["", *[f"- {n}" for n in self.notes]]
        return "\n".join(lines) + "\n"


def format_metric(v: Any, metric: str) -> str:
    """A comparison table value as text: percentages to 2 decimals, counts with thousands
    separators, other numbers to 3 decimals (1 from 100 up), missing as ''."""
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return ""
    if "%" in metric:
        return f"{float(v):.2f}"
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    if isinstance(v, (float, np.floating)):
        return f"{float(v):,.3f}" if abs(v) < 100 else f"{float(v):,.1f}"
    return str(v)


def _labels_of(plan: Any, ids: pd.Index, units: Any) -> pd.Series:
    from patchmap.export import plan_frame

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
) -> Comparison:
    """Compare plan B with plan A over the same ``units``.

    ``units`` is the unit GeoDataFrame (``unit_id`` column; every metric) or just the unit
    ids (territory counts and disruption only). ``balance`` names the measures (default:
    potential and accounts where present, else population); ``reps`` (``rep_id, lat,
    lon``) measures travel from the reps' homes for the plan whose labels are rep ids,
    otherwise travel is from each territory's weighted centroid.
    """
    from patchmap.metrics import (
        cut_edge_fraction,
        disruption,
        is_contiguous,
        match_labels,
        mean_travel_km,
        polsby_popper_from_parts,
    )

    geo = isinstance(units, pd.DataFrame)
    ids = (
        pd.Index(units["unit_id"].astype(str))
        if geo
        else pd.Index(pd.Series(list(units)).astype(str))
    )
    la = _labels_of(plan_a, ids, units).reindex(ids)
    lb = _labels_of(plan_b, ids, units).reindex(ids)
    a, b = names
    rows: list[tuple[str, Any, Any]] = [
        ("territories", int(la.nunique()), int(lb.nunique())),
        ("units", len(ids), len(ids)),
    ]
    notes: list[str] = []
    w = np.ones(len(ids))
    cols: list[str] = []
    if geo:
        from patchmap.export import balance_columns, numeric_or_zero

        cols = balance_columns(units, balance)
        if cols:
            w = numeric_or_zero(units, cols[0]).to_numpy()
        for c in cols:
            v = numeric_or_zero(units, c).to_numpy()
            rows.append((f"max deviation {c} (%)", *(100 * _max_dev(v, lab) for lab in (la, lb))))
        if adjacency is None:
            from patchmap.units.adjacency import build_adjacency

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
                    vals.append(mean_travel_km(adjacency.xy_km, lab.to_numpy(), w,
                                               _homes(reps, units, uniq)))  # fmt: skip
            rows.append((name, *vals))
        if reps is not None:
            notes.append("travel: weighted mean distance of units from the rep's home where the "
                         "territory is a rep's, else from the territory's weighted centroid")  # fmt: skip
        else:
            notes.append("travel: weighted mean distance of units from their territory's "
                         "weighted centroid")  # fmt: skip
    matched = set(la.unique()) != set(lb.unique())
    matching = match_labels(la.to_numpy(), lb.to_numpy(), w) if matched else {}
    lb_m = lb.map(matching) if matched else lb
    rows.append(("units changed (%)", np.nan, 100 * disruption(la, lb_m)))
    if cols:
        rows.append((f"{cols[0]} changed (%)", np.nan, 100 * disruption(la, lb_m, w)))
    table = pd.DataFrame(rows, columns=["metric", a, b], dtype=object)
    return Comparison(table, names, la, lb, matching, matched, notes)


def _max_dev(values: np.ndarray, labels: pd.Series) -> float:
    tot = pd.Series(values).groupby(labels.to_numpy()).sum()
    return float((tot / tot.mean() - 1).abs().max()) if tot.mean() > 0 else float("nan")


def _homes(reps: pd.DataFrame | None, units: gpd.GeoDataFrame, labels) -> pd.DataFrame | None:
    """Rep homes (km) indexed by rep id, when ``reps`` is given."""
    if reps is None:
        return None
    from patchmap.partition.reps import home_xy_km, prepare_reps

    r = prepare_reps(reps)
    xy = home_xy_km(r, units)
    return pd.DataFrame(xy, index=r["rep_id"].to_numpy(), columns=["x", "y"])


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
        "compare_md": write_text(comparison.markdown(), out / "compare.md"),
    }
    if units is not None and isinstance(units, gpd.GeoDataFrame):
        from patchmap.render import render_compare

        written["compare_map"] = render_compare(
            units, comparison, out / "compare.html", title=title, tiles=tiles
        )
    return written
