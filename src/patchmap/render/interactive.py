"""The interactive map of a plan: one self-contained HTML page a sales leader reads and edits.

Units are drawn from a shared-border topology (:mod:`patchmap.render.topology`), filled
with their territory's colour; territory borders are the arcs between units of different
territories, so the page redraws them when a unit is moved in edit mode. Each territory
is labelled at its most inland point; a sortable table lists every territory with its
rep, accounts, primary measure, deviation from target and quota; a search box finds a
ZIP, a rep or a territory. The page script (``assets/map.js``) and style sheet are
inlined, and so is Leaflet: nothing is fetched unless basemap tiles are asked for.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import folium
import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from branca.element import Element, MacroElement
from folium.template import Template

from patchmap.export import (
    check_reps,
    dissolve_territories,
    is_valid_coverage,
    territory_labels,
    territory_summary,
    unit_kind,
)
from patchmap.metrics import equal_area_crs
from patchmap.options import TOLERANCE
from patchmap.quota import Quota, parse_amount
from patchmap.render.colors import territory_colors
from patchmap.render.common import (
    DENSITY_LAYERS,
    MAX_COORDS,
    base_map,
    classify,
    density,
    finish,
    js_json,
    prepare_units,
    simplify_coverage,
)
from patchmap.render.drawing import drawing_geometries
from patchmap.render.topology import grid_step, topology
from patchmap.units.adjacency import build_adjacency

__all__ = ["map_payload", "render_map", "write_page"]

ASSETS = Path(__file__).parent / "assets"

#: Plain names of the measures a unit table may carry, and whether they are money.
MEASURE_NAMES = {
    "potential": ("Revenue potential", True),
    "expected_revenue": ("Expected revenue", True),
    "whitespace": ("Whitespace (open potential)", True),
    "accounts": ("Accounts", False),
    "customers": ("Customers", False),
    "population": ("Population", False),
    "score": ("Fit score", False),
    "reach": ("Reach", False),
}
_MONEY_WORDS = ("revenue", "potential", "arr", "mrr", "amount", "sales", "quota", "spend")
UNIT_NAMES = {"zcta": "ZIP", "h3": "hex", "polygon": "area"}


@functools.lru_cache(maxsize=1)
def page_assets() -> tuple[str, str]:
    """The page's script and style sheet (package data, inlined into every map)."""
    js = (ASSETS / "map.js").read_text(encoding="utf-8")
    css = (ASSETS / "map.css").read_text(encoding="utf-8")
    return js.replace("</", "<\\/"), css


def _as_plan_metrics(plan: Any, plan_metrics: Any) -> Any:
    if plan_metrics is None and not isinstance(plan, (pd.DataFrame, pd.Series, str, os.PathLike)):
        return plan
    return plan_metrics


def measure_label(col: str) -> tuple[str, bool]:
    """A column's plain name and whether it is an amount of money."""
    if col in MEASURE_NAMES:
        return MEASURE_NAMES[col]
    name = str(col).replace("_", " ").strip()
    return (name[:1].upper() + name[1:]) or str(col), any(w in col.lower() for w in _MONEY_WORDS)


def unwrap_longitudes(geoms: np.ndarray) -> tuple[np.ndarray, bool]:
    """Geometries east of the antimeridian moved to longitudes below -180 when the data
    runs across it (the Aleutians, Guam with the U.S.), so the map is not a world view."""
    geoms = np.asarray(geoms, dtype=object)
    x = shapely.get_x(shapely.centroid(geoms))
    if not ((x > 90).any() and (x < -90).any()):
        return geoms, False
    lon = np.sort(x)
    gaps = np.r_[np.diff(lon), lon[0] + 360.0 - lon[-1]]  # the last gap wraps round 180
    widest = int(np.argmax(gaps))
    if widest == len(lon) - 1:  # the widest gap is across 180: the data does not cross it
        return geoms, False
    east = x >= lon[widest + 1]  # east of the widest gap: moved below -180
    out = geoms.copy()
    out[east] = shapely.transform(geoms[east], lambda c: c - np.array([360.0, 0.0]))
    return out, True


def _label_points(geoms: np.ndarray, codes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per territory: the centre of its largest inscribed circle (lat, lon) and the radius
    in metres, from the drawn polygons in an equal-area projection."""
    gs = gpd.GeoSeries(geoms, crs=4326)
    crs = equal_area_crs(gs)
    merged = dissolve_territories(gpd.GeoDataFrame(geometry=gs.to_crs(crs).values, crs=crs), codes)
    merged = merged.set_index("territory").geometry.reindex(np.arange(k))
    mic = shapely.maximum_inscribed_circle(merged.values)
    centre = gpd.GeoSeries(shapely.get_point(mic, 0), crs=crs).to_crs(4326)
    radius = shapely.length(mic)
    return np.column_stack([centre.y.round(5), centre.x.round(5)]), np.nan_to_num(radius)


def _measures(
    u: gpd.GeoDataFrame, balance_cols: list[str], extra: Sequence[str] = ()
) -> list[dict]:
    """Measures the page totals per territory: the balance columns (primary first), then
    accounts, potential and customers where the units carry them (and ``extra``)."""
    cols = list(dict.fromkeys([*balance_cols, "accounts", "potential", "customers", *extra]))
    out = []
    for c in cols:
        if c not in u.columns or not pd.api.types.is_numeric_dtype(u[c]):
            continue
        label, money = measure_label(c)
        out.append(
            {"key": c, "label": label, "money": money, "table": c in ("accounts",), "unit": True}
        )
    if not out:
        out.append(
            {"key": "units", "label": "Units", "money": False, "table": False, "unit": False}
        )
    return out


def _quota_rule(quota: Any, summary: pd.DataFrame, balance_cols: list[str]) -> dict | None:
    """The quota rule for the page (total, floor and cap as amounts, basis column), so the
    page re-splits the quota as units move; None without a quota."""
    if quota is None or "quota" not in summary.columns:
        return None

    q = Quota.coerce(quota)
    mean = q.total / max(len(summary), 1)
    return {
        "total": float(q.total),
        "floor": parse_amount(q.floor, mean, "quota floor") or 0.0,
        "cap": parse_amount(q.cap, mean, "quota cap"),
        "basis": q.basis_column(summary, balance_cols),
    }


def _unit_values(u: gpd.GeoDataFrame, measures: list[dict]) -> dict[str, list]:
    """Per-unit values of each measure, rounded for the page (money to whole units)."""
    out = {}
    for m in measures:
        if m["key"] == "units":
            out["units"] = [1] * len(u)
            continue
        v = pd.to_numeric(u[m["key"]], errors="coerce").fillna(0.0).to_numpy(dtype=float)
        v = np.where(np.isfinite(v), v, 0.0)
        if np.all(v == np.round(v)):
            out[m["key"]] = v.astype(np.int64).tolist()
        else:
            out[m["key"]] = np.round(v, 2).tolist()
    return out


class _Page(MacroElement):
    """The page's data (``PM``) and the call that builds the map from it."""

    _template = Template(
        """
{% macro header(this, kwargs) %}<style>{{ this.css }}</style>{% endmacro %}
{% macro script(this, kwargs) %}
var pm_data = {{ this.payload }};
pm_data.tileLayer = {{ this.tiles or 'null' }};
patchmap({{ this._parent.get_name() }}, pm_data);
{% endmacro %}
"""
    )

    def __init__(self, payload: str, css: str, tiles: str | None) -> None:
        super().__init__()
        self._name = "PatchPage"
        self.payload, self.css, self.tiles = payload, css, tiles


def render_map(
    units: gpd.GeoDataFrame,
    plan: Any,
    out_path: str | os.PathLike,
    *,
    reps: pd.DataFrame | None = None,
    title: str | None = None,
    tiles: bool = False,
    plan_metrics: Any = None,
    balance: str | Sequence[str] | None = None,
    quota: Any = None,
    tolerance: float = TOLERANCE,
    max_coords: int = MAX_COORDS,
) -> Path:
    """Write a self-contained interactive HTML map of a plan; return its path.

    ``plan`` is a ``unit_id,territory`` table (or an engine ``Plan``); ``plan_metrics`` an
    engine ``Plan`` whose metrics the map then shows. ``balance`` names the measures
    (primary first; default: those the units carry of potential, accounts); ``quota`` (a
    total or a :class:`patchmap.quota.Quota`) adds each territory's quota; ``reps``
    (``rep_id, lat, lon[, name, capacity, territory]``) names the reps and marks their
    homes; ``tolerance`` (a fraction) flags deviations beyond it in the table. ``tiles``
    adds an online OpenStreetMap basemap; without it the page makes no network request.
    """
    payload = map_payload(
        units, plan, reps=reps, title=title, tiles=tiles, plan_metrics=plan_metrics,
        balance=balance, quota=quota, tolerance=tolerance, max_coords=max_coords,
    )  # fmt: skip
    return write_page(payload, tiles, out_path)


def map_payload(
    units: gpd.GeoDataFrame,
    plan: Any,
    *,
    reps: pd.DataFrame | None = None,
    title: str | None = None,
    tiles: bool = False,
    plan_metrics: Any = None,
    balance: str | Sequence[str] | None = None,
    quota: Any = None,
    tolerance: float = TOLERANCE,
    max_coords: int = MAX_COORDS,
) -> dict:
    """The page's data for a plan (see :func:`render_map`): units as a topology, the
    territories with their labels, colours and totals, links, reps and density layers."""
    u = prepare_units(units)
    plan_metrics = _as_plan_metrics(plan, plan_metrics)
    labels = territory_labels(u, plan)
    pf = pd.DataFrame({"unit_id": u["unit_id"], "territory": labels})
    adjacency = getattr(plan_metrics, "adjacency", None)
    if adjacency is None or list(adjacency.ids) != u["unit_id"].tolist():
        adjacency = build_adjacency(u, id_col="unit_id")
    is_coverage = is_valid_coverage(u.geometry.values)
    exact = dissolve_territories(u, labels, coverage=is_coverage)
    summary = territory_summary(
        u, pf, reps=reps, balance=balance, plan_metrics=plan_metrics, dissolved=exact,
        adjacency=adjacency, quota=quota,
        shared=True,  # a map shows vacant and shared territories as they are
    )  # fmt: skip
    balance_cols = [c[: -len("_deviation")] for c in summary.columns if c.endswith("_deviation")]
    k = len(summary)
    codes = pd.Index(summary["territory"].astype(str)).get_indexer(pd.Series(labels).astype(str))

    drawn, wrapped = unwrap_longitudes(drawing_geometries(u))  # ZIP areas wall to wall
    shown = simplify_coverage(drawn, max_coords)
    minx, miny, maxx, maxy = shapely.total_bounds(shown)
    step = grid_step((minx, miny, maxx, maxy))
    origin = (np.floor(minx / step) * step, np.floor(miny / step) * step)
    topo = topology(shown, step, origin)

    owners = topo.owners
    both = (owners[:, 1] >= 0) & (owners[:, 0] != owners[:, 1])
    ta, tb = codes[owners[both, 0]], codes[owners[both, 1]]
    edges = {
        (min(a, b), max(a, b)) for a, b in zip(ta.tolist(), tb.tolist(), strict=True) if a != b
    }
    colors = territory_colors(n=k, edges=sorted(edges))
    at, radius = _label_points(shown, codes, k)
    if wrapped:  # the projection hands longitudes back within +-180: onto the drawn copy
        at[:, 1] = np.where(at[:, 1] > maxx + 1.0, at[:, 1] - 360.0, at[:, 1])

    # the engine's graph, less the pairs the drawn arcs already join (islands, slivers)
    ei, ej = adjacency.edges()
    drawn_pairs = set(
        zip(owners[both].min(axis=1).tolist(), owners[both].max(axis=1).tolist(), strict=True)
    )
    extra = [
        (a, b) for a, b in zip(ei.tolist(), ej.tolist(), strict=True) if (a, b) not in drawn_pairs
    ]

    points = shapely.point_on_surface(shown)
    pxy = np.column_stack([shapely.get_x(points), shapely.get_y(points)])
    quota_rule = _quota_rule(quota, summary, balance_cols)
    measures = _measures(u, balance_cols, [quota_rule["basis"]] if quota_rule else [])
    values = _unit_values(u, measures)
    dens_cls: dict[str, list] = {}
    densities = []
    for col, name, cmap, about in DENSITY_LAYERS:
        d = density(u, col)
        if d is None:
            continue
        idx, cols, labs = classify(d, cmap)
        dens_cls[col] = idx.tolist()
        dens_cls[col + "v"] = [
            None if not np.isfinite(x) else round(float(x), 4) for x in d.to_numpy(dtype=float)
        ]
        densities.append({"key": col, "name": name, "colors": cols, "labels": labs, "about": about})

    rep_name = summary.get("rep_name", summary.get("rep_id"))
    rep_col = summary["rep_id"] if "rep_id" in summary.columns else None
    links = _links(adjacency, u["unit_id"], shown)
    payload = {
        "title": title,
        "unitName": UNIT_NAMES.get(unit_kind(u), "area"),
        "tiles": bool(tiles),
        "tolerance": float(tolerance),
        "bounds": [[float(miny), float(minx)], [float(maxy), float(maxx)]],
        "topo": topo.payload(),
        "units": {
            "id": u["unit_id"].tolist(),
            "t": codes.tolist(),
            "at": np.round(pxy[:, ::-1], 5).tolist(),
            "v": values,
            "d": dens_cls,
        },
        "extraEdges": [int(x) for pair in extra for x in pair],
        "measures": measures,
        "balance": [c for c in balance_cols if c in values] or [measures[0]["key"]],
        "terr": {
            "label": summary["territory"].astype(str).tolist(),
            "color": colors,
            "rep": [_text(x) for x in (rep_name if rep_name is not None else [None] * k)],
            "repId": [_text(x) for x in (rep_col if rep_col is not None else [None] * k)],
            "at": at.tolist(),
            "r": radius.round(0).tolist(),
            "quota": summary["quota"].round(2).tolist() if "quota" in summary.columns else None,
            "pp": [
                None if not np.isfinite(x) else round(float(x), 3) for x in summary["polsby_popper"]
            ],
        },
        "quota": quota_rule if quota_rule and quota_rule["basis"] in values else None,
        "densities": densities,
        "links": links,
        "reps": _reps(reps, wrapped),
        "stats": {
            "meanPP": _finite(
                getattr(plan_metrics, "mean_polsby_popper", summary["polsby_popper"].mean())
            )
        },
    }
    return payload


def write_page(payload: dict, tiles: bool, out_path: str | os.PathLike) -> Path:
    """Write the page for ``payload`` (Leaflet, the page script and its data inlined)."""
    m = base_map(False)
    js, css = page_assets()
    m.get_root().header.add_child(Element(f"<script>{js}</script>"), name="pm_page_js")
    tile_var = None
    if tiles:
        layer = folium.TileLayer("OpenStreetMap", name="Basemap", control=False)
        layer.add_to(m)
        tile_var = layer.get_name()
    m.add_child(_Page(js_json(payload), css, tile_var))
    return finish(m, None, out_path)


def _text(x: Any) -> str:
    return (
        "" if x is None or (isinstance(x, float) and not np.isfinite(x)) or pd.isna(x) else str(x)
    )


def _finite(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None


def _links(adjacency: Any, ids: pd.Series, shown: np.ndarray) -> list[list]:
    """Island links as ``[unit a, unit b, lat, lon, lat, lon, km]``: the shortest line
    between the two drawn units (links between units that touch once drawn are left out)."""
    b = adjacency.bridges
    if b is None or not len(b):
        return []
    pos = pd.Index(ids.astype(str))
    ia = pos.get_indexer(b["unit_a"].astype(str))
    ib = pos.get_indexer(b["unit_b"].astype(str))
    ok = (ia >= 0) & (ib >= 0)
    ia, ib, km = ia[ok], ib[ok], b["distance_km"].to_numpy(dtype=float)[ok]
    line = shapely.shortest_line(shown[ia], shown[ib])
    far = shapely.length(line) > 0
    xy = shapely.get_coordinates(line[far]).reshape(-1, 4)
    return [
        [int(a), int(c), round(y1, 5), round(x1, 5), round(y2, 5), round(x2, 5), round(float(d), 2)]
        for a, c, (x1, y1, x2, y2), d in zip(ia[far], ib[far], xy.tolist(), km[far], strict=True)
    ]


def _reps(reps: pd.DataFrame | None, wrapped: bool) -> list[dict]:
    if reps is None or not len(reps):
        return []
    r = check_reps(reps)
    lon = r["lon"].to_numpy(dtype=float)
    if wrapped:
        lon = np.where(lon > 0, lon - 360.0, lon)
    return [
        {
            "id": str(row.rep_id),
            "name": _text(getattr(row, "name", None)) or str(row.rep_id),
            "lat": float(row.lat),
            "lng": float(x),
            "t": _text(getattr(row, "territory", None)),
            "capacity": _text(getattr(row, "capacity", None)) or None,
        }
        for row, x in zip(r.itertuples(index=False), lon, strict=True)
    ]
