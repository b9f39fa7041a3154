"""The map of a segmented plan: one layer per segment, each with its own legend.

Geographic segments draw their territories (coloured so that neighbours differ, tooltips
with the rep, accounts and deviation); national segments have no geography and draw their
accounts as points coloured by book, and a geographic segment's named accounts are points
too. The page opens on the first geographic segment of the base layer; the layer control
switches segments, and the legend follows the layers shown.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import folium
import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from branca.element import Element

from patchmap.export import dissolve_territories
from patchmap.render.colors import palette, territory_colors
from patchmap.render.common import (
    MAX_COORDS,
    base_map,
    finish,
    html_text,
    js_json,
    prepare_units,
    simplify_coverage,
)
from patchmap.render.layers import (
    DECODER_JS,
    TERRITORY_FILL_OPACITY,
    Data,
    GeoJsonLayer,
    Panels,
    packed_polygons,
)

__all__ = ["render_segments"]

_TIP = "function (f) { return f.properties.tip; }"


def _pct(x: Any) -> str:
    return "" if x is None or not np.isfinite(float(x)) else f"{100 * float(x):+.1f}%"


def _points(lon: np.ndarray, lat: np.ndarray, props: pd.DataFrame) -> str:
    """Points as a GeoJSON FeatureCollection (6 decimals), safe inside a <script>."""
    feats = [
        {"type": "Feature", "properties": row,
         "geometry": {"type": "Point", "coordinates": [round(x, 6), round(y, 6)]}}
        for row, x, y in zip(props.to_dict("records"), lon.tolist(), lat.tolist(), strict=True)
    ]  # fmt: skip
    return js_json({"type": "FeatureCollection", "features": feats})


def render_segments(
    segmented: Any,
    tables: dict[str, pd.DataFrame],
    out_path: str | os.PathLike,
    *,
    title: str | None = None,
    tiles: bool = False,
    max_coords: int = MAX_COORDS,
) -> Path:
    """Write a self-contained HTML map of a
    :class:`patchmap.segments.plan.SegmentedPlan`: one layer per segment, each with its own
    legend (territory colours and reps) shown while the layer is on. ``tables``: each
    segment's territory table (:func:`patchmap.segments.report.territory_table`)."""
    m = base_map(tiles)
    m.get_root().header.add_child(Element(f"<script>{DECODER_JS}</script>"), name="pm_decode")
    folium.map.CustomPane("pm-points", z_index=460, pointer_events=True).add_to(m)
    plans = segmented.plans
    opening = next(
        (n for n, p in plans.items() if p.plan is not None and not p.segment.overlay),
        next(iter(plans)),
    )
    layers: dict[str, str] = {}
    legends: dict[str, str] = {}
    bounds, rows, first = [], [], None
    for i, (name, p) in enumerate(plans.items()):
        t = tables[name].reset_index(drop=True)
        label = t["territory"].astype(str)
        who = t["rep_name"] if "rep_name" in t.columns else t.get("rep_id", label)
        who = pd.Series(who).fillna(label).astype(str)
        rep = np.where(who != label, " · " + who.map(html_text), "")
        tips = (
            "<b>" + label.map(html_text) + "</b>" + rep + "<br>" + html_text(name) + ": "
            + t["accounts"].map(lambda v: f"{int(v):,} accounts")
            + ", deviation " + t["deviation"].map(_pct)
        )  # fmt: skip
        group = folium.FeatureGroup(name="", show=name == opening)
        if p.plan is not None:
            u = prepare_units(p.units)
            labels = p.plan.assignment.reindex(u["unit_id"]).astype(str).to_numpy(dtype=object)
            shown = simplify_coverage(u.geometry.values, max_coords)
            terr = dissolve_territories(gpd.GeoDataFrame(geometry=shown, crs=4326), labels)
            terr = terr.set_index("territory").reindex(label).reset_index()
            colors = territory_colors(terr.geometry.values)
            props = pd.DataFrame({"c": colors, "tip": tips.to_numpy()})
            data = Data(packed_polygons(terr.geometry.values, props), f"pm_seg{i}")
            m.add_child(data)
            GeoJsonLayer(
                data, name, control=False, tooltip=_TIP,
                style=("function (f) { return {color: '#333', weight: 1, opacity: 0.9, "
                       f"fillColor: f.properties.c, fillOpacity: {TERRITORY_FILL_OPACITY}}}; }}"),
            ).add_to(group)  # fmt: skip
            bounds.append(u.total_bounds)
            kind = f"{p.kind} units"
        else:
            pal = palette()
            colors = [pal[j % len(pal)] for j in range(len(t))]
            kind = "national"
        pts = p.accounts if p.plan is None else p.named
        if len(pts) and {"lat", "lon"} <= set(pts.columns):
            owner = (
                p.books.assignment.reindex(pts["account_id"].astype(str)).to_numpy()
                if p.plan is None
                else pts["territory"].to_numpy()
            ).astype(str)
            code = pd.Index(label).get_indexer(owner)
            names = pts["name"] if "name" in pts.columns else pts["account_id"]
            named = pts["account_id"].astype(str).isin(p.named["account_id"].astype(str))
            ptip = (
                "<b>" + names.astype(str).map(html_text).to_numpy() + "</b>"
                + np.where(named.to_numpy(), " (named)", "") + "<br>"
                + pd.Series(owner).map(html_text).to_numpy() + " · "
                + who.reindex(code).fillna("").map(html_text).to_numpy()
            )  # fmt: skip
            lon, lat = pts["lon"].to_numpy(float), pts["lat"].to_numpy(float)
            pprops = pd.DataFrame({"c": np.asarray(colors, dtype=object)[np.maximum(code, 0)],
                                   "tip": ptip})  # fmt: skip
            pdata = Data(_points(lon, lat, pprops), f"pm_segpts{i}")
            m.add_child(pdata)
            GeoJsonLayer(
                pdata, f"{name} accounts", control=False, pane="pm-points", tooltip=_TIP,
                point="function (f, ll) { return L.circleMarker(ll, {pane: 'pm-points'}); }",
                style=("function (f) { return {radius: 4, color: '#222', weight: 1, "
                       "fillColor: f.properties.c, fillOpacity: 0.9}; }"),
            ).add_to(group)  # fmt: skip
            if p.plan is None:
                bounds.append(shapely.total_bounds(shapely.points(lon, lat)))
        key = html_text(f"{name} ({len(t)} territories, {kind})")
        group.layer_name = key
        group.add_to(m)
        layers[key] = group.get_name()
        items = "".join(
            f'<div><i style="background:{c}"></i>{html_text(lab)}'
            f"{'' if w == lab else ' · ' + html_text(w)}</div>"
            for c, lab, w in zip(colors, label, who, strict=True)
        )
        named_s = f" · {len(p.named)} named" if len(p.named) else ""
        legends[key] = f"<h4>{html_text(name)} ({html_text(kind)}{named_s})</h4>{items}"
        first = key if name == opening else first
        primary = p.segment.partition["balance"][0]
        rows.append(
            f"<tr><td>{html_text(name)}</td><td>{len(t)}</td><td>{int(t['accounts'].sum()):,}"
            f"</td><td>{_pct(t[f'{primary}_deviation'].abs().max())}</td></tr>"
        )
    folium.LayerControl(collapsed=False, position="topright").add_to(m)
    summary = (
        '<div class="pm-tip"><table><tr><td><b>segment</b></td><td><b>territories</b></td>'
        f"<td><b>accounts</b></td><td><b>max dev.</b></td></tr>{''.join(rows)}</table></div>"
    )
    m.add_child(Panels(title or "Territories by segment", summary, legends, layers, "#e9edf0",
                       shown=[first] if first else []))  # fmt: skip
    b = np.array(bounds)
    return finish(m, (b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max()), out_path)
