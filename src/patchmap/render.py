"""Maps: a self-contained interactive HTML map (folium) and a static map for slides.

The HTML map loads nothing from the network: Leaflet's JavaScript and CSS (with its images
as data URIs) are inlined from the ``xstatic-leaflet`` package, the version folium itself
links to. Only the optional basemap tiles come from the web; offline they simply do not
appear and the territories still draw on a plain background.

Geometry is written once and compactly: unit polygons are simplified as a *coverage*
(``shapely.coverage_simplify``, so neighbours keep a shared edge and no gaps open), packed
as delta-coded integer coordinates (1e-5 degree, about 1 m) with columnar properties, and
stored in one JavaScript variable that every choropleth layer reads; territories are
dissolved from the same simplified coverage. A California ZCTA map is about 4 MB.
"""

from __future__ import annotations

import base64
import functools
import html
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import folium
import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from branca.element import Element, MacroElement
from folium.map import Layer
from folium.template import Template

from patchmap.errors import InputError
from patchmap.export import (
    check_reps,
    dissolve_territories,
    territory_labels,
    territory_summary,
)
from patchmap.io import atomic_path, write_text

__all__ = [
    "TERRITORY_PALETTE",
    "leaflet_assets",
    "render_compare",
    "render_map",
    "render_static",
    "territory_colors",
]

#: Qualitative colours for territories (Tableau 10, grey replaced): neighbours never share one.
TERRITORY_PALETTE = (
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
    "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#8cd17d",
)  # fmt: skip
#: Choropleth layers: column, label, matplotlib colormap.
DENSITY_LAYERS = (
    ("score", "Score density", "YlOrRd"),
    ("reach", "Reach density", "PuBu"),
    ("potential", "Potential density", "YlGn"),
)
NO_DATA_COLOR = "#eeeeee"
TERRITORY_FILL_OPACITY = 0.55
#: Coordinates budget for the unit coverage in the HTML (keeps a California ZCTA map < 10 MB).
MAX_COORDS = 400_000
_DECIMALS = 5


# ---------------------------------------------------------------------------------------------
# inputs


def _prepare_units(units: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    if not isinstance(units, gpd.GeoDataFrame):
        raise InputError("units: expected polygons (a GeoDataFrame)")
    if "unit_id" not in units.columns:
        raise InputError("units: column 'unit_id' not found")
    if len(units) == 0:
        raise InputError("units: no units")
    u = units.reset_index(drop=True).copy()
    u["unit_id"] = u["unit_id"].astype(str)
    if u.crs is None:
        u = u.set_crs(4326)
    elif not u.crs.equals("EPSG:4326"):
        u = u.to_crs(4326)
    geoms = np.asarray(u.geometry.values, dtype=object)
    bad = shapely.is_missing(geoms) | shapely.is_empty(geoms)
    if bad.any():
        raise InputError(f"units: unit {u['unit_id'][bad].iloc[0]!r} has no geometry")
    return u


def _as_plan_metrics(plan: Any, plan_metrics: Any) -> Any:
    if plan_metrics is None and not isinstance(plan, (pd.DataFrame, pd.Series, str, os.PathLike)):
        return plan
    return plan_metrics


# ---------------------------------------------------------------------------------------------
# geometry for display


def _simplify_coverage(geoms: np.ndarray, max_coords: int = MAX_COORDS) -> np.ndarray:
    """Coverage-simplified polygons with at most about ``max_coords`` vertices in all.

    The tolerance starts at 1/20,000 of the extent's diagonal (about 70 m for California)
    and grows once if the budget is exceeded; H3 cells (all vertices shared) are kept.
    """
    geoms = np.asarray(geoms, dtype=object)
    n_coords = int(shapely.get_num_coordinates(geoms).sum())
    if n_coords <= 8 * len(geoms):
        return geoms
    minx, miny, maxx, maxy = shapely.total_bounds(geoms)
    tol = float(np.hypot(maxx - minx, maxy - miny)) / 20_000
    out = shapely.coverage_simplify(geoms, tol)
    count = int(shapely.get_num_coordinates(out).sum())
    if count > max_coords:
        out = shapely.coverage_simplify(geoms, tol * (count / max_coords) ** 1.5)
    return out


def territory_colors(
    geoms: Sequence | np.ndarray, palette: Sequence[str] = TERRITORY_PALETTE
) -> list[str]:
    """A colour per territory polygon such that touching territories never share one.

    Equitable colouring spreads the palette evenly when the adjacency allows it;
    otherwise DSATUR greedy colouring (and a longer palette when it needs more colours).
    """
    import networkx as nx

    geoms = np.asarray(geoms, dtype=object)
    n = len(geoms)
    tree = shapely.STRtree(geoms)
    minx, miny, maxx, maxy = shapely.total_bounds(geoms) if n else (0, 0, 0, 0)
    gap = max(maxx - minx, maxy - miny) * 1e-4
    i, j = tree.query(geoms, predicate="dwithin", distance=gap)
    graph = nx.Graph()
    graph.add_nodes_from(range(n))
    keep = i < j
    graph.add_edges_from(zip(i[keep].tolist(), j[keep].tolist(), strict=True))
    max_degree = max((d for _, d in graph.degree), default=0)
    k = min(len(palette), n)
    if n and max_degree < k:
        coloring = nx.coloring.equitable_color(graph, k)
    else:
        coloring = nx.greedy_color(graph, strategy="DSATUR")
    colors = list(palette)
    needed = max(coloring.values(), default=0) + 1
    if needed > len(colors):
        import matplotlib as mpl

        extra = mpl.colormaps["tab20"](np.linspace(0, 1, needed - len(colors)))
        colors += [mpl.colors.to_hex(c) for c in extra]
    return [colors[coloring[t]] for t in range(n)]


# ---------------------------------------------------------------------------------------------
# choropleth classes


def _density(units: gpd.GeoDataFrame, measure: str) -> pd.Series | None:
    """``<measure>_density`` (per km²) from the units, or computed from the measure and area."""
    col = f"{measure}_density"
    if col in units.columns:
        return pd.to_numeric(units[col], errors="coerce")
    if measure not in units.columns:
        return None
    if "area_km2" in units.columns:
        area = pd.to_numeric(units["area_km2"], errors="coerce")
    else:
        from patchmap.metrics import to_equal_area

        area = pd.Series(
            shapely.area(to_equal_area(units.geometry).values) / 1e6, index=units.index
        )
    with np.errstate(divide="ignore", invalid="ignore"):
        return pd.to_numeric(units[measure], errors="coerce") / area.where(area > 0)


def _classify(values: pd.Series, cmap: str, k: int = 5) -> tuple[np.ndarray, list[str], list[str]]:
    """Class per unit: -1 no data, 0 none, 1..k quantile classes of the positive values.

    Quantile breaks as ``mapclassify.Quantiles`` computes them (upper bounds at i/k,
    duplicates dropped), done in numpy to spare the map mapclassify's seconds of imports.
    Returns the classes, their colours and their legend labels.
    """
    import matplotlib as mpl

    v = values.to_numpy(dtype=float)
    idx = np.full(len(v), -1, dtype=int)
    finite = np.isfinite(v)
    idx[finite & (v <= 0)] = 0
    pos = finite & (v > 0)
    colors = [NO_DATA_COLOR]
    labels = ["none"]
    if pos.any():
        bins = np.unique(np.quantile(v[pos], np.linspace(0, 1, k + 1)[1:]))
        idx[pos] = np.searchsorted(bins, v[pos], side="left") + 1
        ramp = mpl.colormaps[cmap](np.linspace(0.25, 0.95, len(bins)))
        colors += [mpl.colors.to_hex(c) for c in ramp]
        labels.append(f"up to {_num(bins[0])}")
        labels += [f"{_num(lo)} – {_num(hi)}" for lo, hi in zip(bins[:-1], bins[1:], strict=True)]
    return idx, colors, labels


def _num(x: float) -> str:
    """A compact number: 1.23k, 45.6, 0.0123."""
    x = float(x)
    a = abs(x)
    if a >= 1e9:
        return f"{x / 1e9:.3g}B"
    if a >= 1e6:
        return f"{x / 1e6:.3g}M"
    if a >= 1e4:
        return f"{x / 1e3:.3g}k"
    if a >= 100:
        return f"{x:,.0f}"
    return f"{x:.3g}"


# ---------------------------------------------------------------------------------------------
# JavaScript pieces


def _js_json(obj: Any) -> str:
    """JSON safe to put inside a <script> element."""
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")


def _feature_collection(geoms: np.ndarray, props: pd.DataFrame) -> str:
    """GeoJSON FeatureCollection text, built with vectorized shapely/pandas string ops."""
    geo_json = pd.Series(shapely.to_geojson(geoms), dtype=object)
    prop_json = (
        props.to_json(orient="records", lines=True, double_precision=6).rstrip("\n").split("\n")
    )
    feats = (
        '{"type":"Feature","properties":'
        + pd.Series(prop_json, dtype=object)
        + ',"geometry":'
        + geo_json
        + "}"
    )
    return ('{"type":"FeatureCollection","features":[' + ",".join(feats.tolist()) + "]}").replace(
        "</", "<\\/"
    )


_SCALE = 10**_DECIMALS

#: Rebuilds a GeoJSON FeatureCollection from :func:`_packed_polygons` (columnar, delta-coded).
_DECODER_JS = """
function patchmapEsc(s) {
  return String(s).replace(/[&<>"']/g, function (c) {
    return {'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;'}[c];
  });
}
function patchmapDecode(p) {
  var feats = [], ci = 0, ri = 0, pi = 0, s = p.s, c = p.c, keys = Object.keys(p.props);
  for (var f = 0; f < p.n.length; f++) {
    var polys = [];
    for (var a = 0; a < p.n[f]; a++, pi++) {
      var rings = [];
      for (var b = 0; b < p.r[pi]; b++, ri++) {
        var x = 0, y = 0, ring = [];
        for (var k = 0; k < p.l[ri]; k++, ci += 2) { x += c[ci]; y += c[ci + 1]; ring.push([x / s, y / s]); }
        ring.push(ring[0]);
        rings.push(ring);
      }
      polys.push(rings);
    }
    var props = {};
    for (var q = 0; q < keys.length; q++) { props[keys[q]] = p.props[keys[q]][f]; }
    feats.push({type: 'Feature', properties: props, geometry: {type: 'MultiPolygon', coordinates: polys}});
  }
  return {type: 'FeatureCollection', features: feats};
}
"""


def _columns(props: pd.DataFrame) -> dict[str, list]:
    """Property columns as JSON-ready lists (NaN as null)."""
    out = {}
    for col in props.columns:
        v = props[col]
        if pd.api.types.is_integer_dtype(v) or pd.api.types.is_bool_dtype(v):
            out[col] = v.to_numpy().tolist()
        else:
            out[col] = v.astype(object).where(v.notna(), None).tolist()
    return out


def _packed_polygons(geoms: np.ndarray, props: pd.DataFrame) -> str:
    """Polygons as compact JSON for ``patchmapDecode``: integer coordinates (1e-5 degree),
    delta-coded along each ring, closing vertex dropped, with per-feature part counts
    ``n``, per-part ring counts ``r``, per-ring vertex counts ``l`` and columnar properties.
    About half the size of GeoJSON; built with vectorized shapely/numpy calls only.
    """
    geoms = np.asarray(geoms, dtype=object)
    parts, feat = shapely.get_parts(geoms, return_index=True)
    poly = shapely.get_type_id(parts) == 3
    parts, feat = parts[poly], feat[poly]
    rings, part = shapely.get_rings(parts, return_index=True)
    coords, ring = shapely.get_coordinates(rings, return_index=True)
    ints = np.rint(coords * _SCALE).astype(np.int64)
    closing = np.r_[ring[1:] != ring[:-1], True]
    ints, ring = ints[~closing], ring[~closing]
    start = np.r_[True, ring[1:] != ring[:-1]]
    delta = np.diff(ints, axis=0, prepend=np.zeros((1, 2), dtype=np.int64))
    delta[start] = ints[start]
    payload = {
        "s": _SCALE,
        "n": np.bincount(feat, minlength=len(geoms)).tolist(),
        "r": np.bincount(part, minlength=len(parts)).tolist(),
        "l": np.bincount(ring, minlength=len(rings)).tolist(),
        "c": delta.ravel().tolist(),
        "props": _columns(props),
    }
    return "patchmapDecode(" + _js_json(payload) + ")"


class _Data(MacroElement):
    """``var <name> = <payload>;``: data shared by several layers (written once)."""

    _template = Template(
        "{% macro script(this, kwargs) %}var {{ this.get_name() }} = {{ this.payload }};{% endmacro %}"
    )

    def __init__(self, payload: str, name: str = "pm_data") -> None:
        super().__init__()
        self._name = name
        self.payload = payload


class _GeoJsonLayer(Layer):
    """A Leaflet GeoJSON layer over shared data, with JS style/tooltip/popup functions."""

    _template = Template(
        """
{% macro script(this, kwargs) %}
var {{ this.get_name() }} = L.geoJson({{ this.data.get_name() }}, {
  pane: {{ this.pane|tojson }},
  interactive: {{ this.interactive|tojson }},
  {% if this.renderer %}renderer: {{ this.renderer }},{% endif %}
  {% if this.point %}pointToLayer: {{ this.point }},{% endif %}
  style: {{ this.style }},
  onEachFeature: function (f, l) {
    {% if this.tooltip %}l.bindTooltip(({{ this.tooltip }})(f), {sticky: true});{% endif %}
    {% if this.popup %}l.bindPopup(({{ this.popup }})(f), {maxWidth: 360});{% endif %}
  }
});
{% endmacro %}
"""
    )

    def __init__(
        self,
        data: _Data,
        name: str,
        *,
        style: str,
        pane: str = "overlayPane",
        tooltip: str | None = None,
        popup: str | None = None,
        point: str | None = None,
        renderer: str | None = None,
        show: bool = True,
        control: bool = True,
        interactive: bool = True,
    ) -> None:
        super().__init__(name=name, overlay=True, control=control, show=show)
        self._name = "PatchLayer"
        self.data, self.style, self.pane = data, style, pane
        self.tooltip, self.popup, self.point, self.renderer = tooltip, popup, point, renderer
        self.interactive = interactive


class _Panels(MacroElement):
    """Title, summary panel and choropleth legends (each legend shows with its layer)."""

    _template = Template(
        """
{% macro header(this, kwargs) %}
<style>
.pm-panel {background: rgba(255,255,255,0.93); padding: 6px 10px; border-radius: 5px;
  box-shadow: 0 1px 4px rgba(0,0,0,0.3); font: 12px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; color: #222;}
.pm-title {position: absolute; top: 10px; left: 50%; transform: translateX(-50%); z-index: 1000;
  font-size: 15px; font-weight: 600; max-width: 60%; text-align: center; pointer-events: none;}
.pm-panel h4 {margin: 0 0 4px; font-size: 12px;}
.pm-legend i {display: inline-block; width: 14px; height: 10px; margin-right: 6px; border: 1px solid #999;}
.pm-tip table {border-collapse: collapse;} .pm-tip td {padding: 0 6px 0 0;} .pm-tip td+td {text-align: right;}
.leaflet-container {background: {{ this.background }};}
</style>
{% endmacro %}
{% macro script(this, kwargs) %}
(function () {
  var map = {{ this._parent.get_name() }};
  {% if this.title %}
  var t = L.DomUtil.create('div', 'pm-panel pm-title', map.getContainer());
  t.innerHTML = {{ this.title|tojson }};
  {% endif %}
  var s = L.control({position: 'bottomleft'});
  s.onAdd = function () { var d = L.DomUtil.create('div', 'pm-panel pm-summary'); d.innerHTML = {{ this.summary|tojson }}; return d; };
  s.addTo(map);
  var legends = {{ this.legends|tojson }};
  var lg = L.control({position: 'bottomright'});
  lg.onAdd = function () {
    var d = L.DomUtil.create('div', 'pm-panel pm-legend');
    d.style.display = 'none';
    return d;
  };
  lg.addTo(map);
  var shown = [];
  function redraw() {
    var d = lg.getContainer();
    var html = shown.map(function (k) { return legends[k]; }).join('<hr style="margin:4px 0">');
    d.innerHTML = html; d.style.display = html ? 'block' : 'none';
    {% if this.territories %}{{ this.territories }}.setStyle({fillOpacity: shown.length ? 0 : {{ this.fill_opacity }}});{% endif %}
  }
  var layers = { {% for key, layer in this.layers.items() %}{{ key|tojson }}: {{ layer }},{% endfor %} };
  map.on('overlayadd', function (e) { for (var k in layers) { if (layers[k] === e.layer && shown.indexOf(k) < 0) { shown.push(k); } } redraw(); });
  map.on('overlayremove', function (e) { for (var k in layers) { if (layers[k] === e.layer) { shown.splice(shown.indexOf(k), 1); } } redraw(); });
})();
{% endmacro %}
"""
    )

    def __init__(
        self,
        title: str | None,
        summary: str,
        legends: dict[str, str],
        layers: dict[str, str],
        background: str,
        territories: str | None = None,
    ) -> None:
        super().__init__()
        self._name = "PatchPanels"
        self.territories, self.fill_opacity = territories, TERRITORY_FILL_OPACITY
        self.title = html.escape(title) if title else None
        self.summary, self.legends, self.layers, self.background = (
            summary,
            legends,
            layers,
            background,
        )


@functools.lru_cache(maxsize=1)
def leaflet_assets() -> tuple[str, str]:
    """Leaflet's JS and CSS from ``xstatic-leaflet``, the CSS images inlined as data URIs."""
    try:
        from xstatic.pkg import leaflet as xleaflet
    except ImportError:  # pragma: no cover - declared dependency
        raise InputError(
            "the map needs the package xstatic-leaflet (pip install xstatic-leaflet)"
        ) from None
    base = Path(xleaflet.BASE_DIR)
    js = (base / "leaflet.js").read_text(encoding="utf-8")
    css = (base / "leaflet.css").read_text(encoding="utf-8")

    def data_uri(m: re.Match) -> str:
        png = (base / "images" / m.group(2)).read_bytes()
        return f"url(data:image/png;base64,{base64.b64encode(png).decode('ascii')})"

    css = re.sub(r"url\((['\"]?)images/([\w.-]+\.png)\1\)", data_uri, css)
    return js.replace("</script", "<\\/script"), css


_EXTERNAL = re.compile(
    r"<script[^>]*\bsrc\s*=|<link[^>]*\bhref\s*=\s*[\"']?(?:https?:)?//|@import", re.IGNORECASE
)


def _check_self_contained(page: str) -> None:
    m = _EXTERNAL.search(page)
    if m:
        raise RuntimeError(
            f"map HTML would load an external resource: {page[m.start() : m.start() + 120]!r}"
        )


# ---------------------------------------------------------------------------------------------
# tooltips and panels


def _pct(x: Any) -> str:
    return "" if x is None or not np.isfinite(float(x)) else f"{100 * float(x):+.1f}%"


def _territory_html(summary: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Tooltip (short) and popup (full table) HTML per territory."""
    rows = summary.to_dict("records")
    dev_cols = [c for c in summary.columns if c.endswith("_deviation")]
    tips, pops = [], []
    for r in rows:
        name = html.escape(str(r["territory"]))
        rep = r.get("rep_name") or r.get("rep_id")
        rep_s = f" · {html.escape(str(rep))}" if isinstance(rep, str) and rep else ""
        head = f"<b>{name}</b>{rep_s}"
        short = [head]
        if "accounts" in r:
            short.append(f"{_num(r['accounts'])} accounts")
        short.append(f"deviation {_pct(r['deviation'])}")
        tips.append("<br>".join(short))
        cells = [("units", _num(r["units"]))]
        for c, label in (
            ("accounts", "accounts"),
            ("customers", "customers"),
            ("score", "score"),
            ("avg_score", "average score"),
            ("reach", "reach"),
            ("potential", "potential"),
            ("expected_revenue", "expected revenue"),
            ("population", "population"),
        ):
            if c in r and r[c] is not None and np.isfinite(float(r[c])):
                cells.append((label, _num(r[c])))
        for c in dev_cols:
            cells.append((f"{html.escape(c[: -len('_deviation')])} vs target", _pct(r[c])))
        if not dev_cols:
            cells.append(("deviation", _pct(r["deviation"])))
        cells.append(("Polsby–Popper", f"{float(r['polsby_popper']):.2f}"))
        cells.append(("contiguous", "yes" if r["contiguous"] else "<b>no</b>"))
        if r.get("recommended_reps") is not None:
            cells.append(("recommended reps", str(r["recommended_reps"])))
        table = "".join(f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in cells)
        pops.append(f'<div class="pm-tip">{head}<table>{table}</table></div>')
    return tips, pops


def _summary_html(summary: pd.DataFrame, plan_metrics: Any, balance_cols: list[str]) -> str:
    k = len(summary)
    cont = summary["contiguous"].to_numpy(dtype=bool)
    if cont.all():
        cont_s = f"all {k} contiguous"
    else:
        broken = ", ".join(html.escape(str(t)) for t in summary["territory"][~cont][:5])
        cont_s = f"<b>{int(cont.sum())} of {k} contiguous</b> (not: {broken}{', …' if (~cont).sum() > 5 else ''})"
    lines = [f"<b>{k} territories</b> · {int(summary['units'].sum()):,} units"]
    devs = [(c, float(summary[f"{c}_deviation"].abs().max())) for c in balance_cols]
    if not devs:
        devs = [("units", float(summary["deviation"].abs().max()))]
    dev_s = ", ".join(f"{html.escape(c)} <b>{100 * d:.1f}%</b>" for c, d in devs)
    lines.append(f"max deviation from target: {dev_s}")
    lines.append(cont_s)
    mpp = getattr(plan_metrics, "mean_polsby_popper", None)
    mpp = float(summary["polsby_popper"].mean()) if mpp is None else float(mpp)
    lines.append(f"mean Polsby–Popper: {mpp:.2f}")
    cut = getattr(plan_metrics, "cut_edge_fraction", None)
    if cut is not None:
        lines.append(f"cut-edge fraction: {float(cut):.3f}")
    return "<br>".join(lines)


def _legend_html(title: str, colors: list[str], labels: list[str]) -> str:
    items = "".join(
        f'<div><i style="background:{c}"></i>{html.escape(lab)}</div>'
        for c, lab in zip(colors, labels, strict=True)
    )
    return f"<h4>{html.escape(title)} (per km²)</h4>{items}"


# ---------------------------------------------------------------------------------------------
# the map


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
    max_coords: int = MAX_COORDS,
) -> Path:
    """Write a self-contained interactive HTML map of a plan; return its path.

    ``plan`` is a ``unit_id,territory`` table (or an engine ``Plan``); ``plan_metrics`` an
    engine ``Plan`` whose deviation/compactness/contiguity the map then shows. Territories
    are coloured so that neighbours differ; score/reach/potential density layers (those the
    units carry) can be toggled; ``reps`` (``rep_id, lat, lon[, name, capacity, territory]``)
    adds home markers. ``tiles=False`` draws on a plain background.
    """
    u = _prepare_units(units)
    plan_metrics = _as_plan_metrics(plan, plan_metrics)
    labels = territory_labels(u, plan)
    pf = pd.DataFrame({"unit_id": u["unit_id"], "territory": labels})
    is_coverage = bool(shapely.coverage_is_valid(u.geometry.values))
    exact = dissolve_territories(u, labels, coverage=is_coverage)
    summary = territory_summary(
        u, pf, reps=reps, balance=balance, plan_metrics=plan_metrics, dissolved=exact,
        shared=True,  # a map shows vacant and shared territories as they are
    )  # fmt: skip
    balance_cols = [c[: -len("_deviation")] for c in summary.columns if c.endswith("_deviation")]

    shown = _simplify_coverage(u.geometry.values, max_coords)
    terr = dissolve_territories(
        gpd.GeoDataFrame(geometry=shown, crs=4326), labels, coverage=is_coverage
    )
    terr = terr.set_index("territory").reindex(summary["territory"]).reset_index()
    colors = territory_colors(terr.geometry.values)
    tips, pops = _territory_html(summary)

    minx, miny, maxx, maxy = u.total_bounds
    m = _base_map(tiles)

    terr_props = pd.DataFrame(
        {"t": summary["territory"].astype(str), "c": colors, "tip": tips, "pop": pops}
    )
    terr_data = _Data(_packed_polygons(terr.geometry.values, terr_props), "pm_territories")
    m.add_child(terr_data)

    layers: dict[str, str] = {}
    legends: dict[str, str] = {}
    unit_props = pd.DataFrame({"u": u["unit_id"], "t": pd.Series(labels, dtype=object)})
    density_specs = []
    for measure, label, cmap in DENSITY_LAYERS:
        dens = _density(u, measure)
        if dens is None:
            continue
        idx, cols, labs = _classify(dens, cmap)
        unit_props[f"{measure[0]}c"] = idx
        unit_props[f"{measure[0]}v"] = dens.where(np.isfinite(dens)).round(4).to_numpy()
        density_specs.append((measure, label, cols, labs))
    unit_data = None
    if density_specs:
        unit_data = _Data(_packed_polygons(shown, unit_props), "pm_units")
        m.add_child(unit_data)

    terr_layer = _GeoJsonLayer(
        terr_data,
        "Territories",
        style=(
            "function (f) { return {color: '#333', weight: 1, opacity: 0.9, fillColor: f.properties.c,"
            f" fillOpacity: {TERRITORY_FILL_OPACITY}}}; }}"
        ),
        tooltip="function (f) { return f.properties.tip; }",
        popup="function (f) { return f.properties.pop; }",
    )
    terr_layer.add_to(m)
    for measure, label, cols, labs in density_specs:
        key = measure[0]
        layer = _GeoJsonLayer(
            unit_data,
            label,
            show=False,
            renderer="L.canvas({padding: 0.5})",
            style=(
                f"function (f) {{ var c = {_js_json(cols)}; var i = f.properties.{key}c;"
                f" return {{stroke: false, fillColor: i < 0 ? '#ffffff' : c[i], fillOpacity: i < 0 ? 0 : 0.8}}; }}"
            ),
            tooltip=(
                f"function (f) {{ var v = f.properties.{key}v; return '<b>' + patchmapEsc(f.properties.u) + '</b> · ' +"
                f" patchmapEsc(f.properties.t) + '<br>{html.escape(label.lower())}: ' + (v === null ? 'n/a' : v.toLocaleString()) + ' /km²'; }}"
            ),
        )
        layer.add_to(m)
        layers[label] = layer.get_name()
        legends[label] = _legend_html(label, cols, labs)
    _GeoJsonLayer(
        terr_data,
        "Territory borders",
        pane="pm-borders",
        interactive=False,
        style="function (f) { return {color: '#222', weight: 1.6, opacity: 0.9, fill: false}; }",
    ).add_to(m)

    if reps is not None and len(reps):
        m.add_child(_rep_layer(m, reps))

    folium.LayerControl(collapsed=False, position="topright").add_to(m)
    summary_text = _summary_html(summary, plan_metrics, balance_cols)
    m.add_child(_Panels(title, summary_text, legends, layers, "#e9edf0", terr_layer.get_name()))
    return _finish(m, (minx, miny, maxx, maxy), out_path)


def _base_map(tiles: bool) -> folium.Map:
    """A folium map with Leaflet and the polygon decoder inlined (no network), the
    optional basemap, and panes for borders and rep markers above the fills."""
    m = folium.Map(tiles=None, control_scale=True, zoom_snap=0.25)
    m.default_js, m.default_css = [], []
    js, css = leaflet_assets()
    root = m.get_root()
    root.header.add_child(Element(f"<style>{css}</style>"), name="leaflet_css", index=0)
    root.header.add_child(Element(f"<script>{js}</script>"), name="leaflet", index=1)
    root.header.add_child(Element(f"<script>{_DECODER_JS}</script>"), name="pm_decode", index=2)
    if tiles:
        folium.TileLayer("OpenStreetMap", name="Basemap", control=False).add_to(m)
    folium.map.CustomPane("pm-borders", z_index=450, pointer_events=False).add_to(m)
    folium.map.CustomPane("pm-reps", z_index=460, pointer_events=True).add_to(m)
    return m


def _finish(m: folium.Map, bounds: np.ndarray, out_path: str | os.PathLike) -> Path:
    """Fit the view, render, check nothing loads from the network, write atomically."""
    minx, miny, maxx, maxy = bounds
    m.fit_bounds(
        [[miny, minx], [maxy, maxx]], padding_top_left=(40, 50), padding_bottom_right=(190, 90)
    )
    page = m.get_root().render()
    _check_self_contained(page)
    return write_text(page, out_path)


#: Style of units whose territory changed between two plans.
CHANGED_COLOR = "#d62728"


def render_compare(
    units: gpd.GeoDataFrame,
    comparison: Any,
    out_path: str | os.PathLike,
    *,
    title: str | None = None,
    tiles: bool = False,
    max_coords: int = MAX_COORDS,
) -> Path:
    """Write a self-contained HTML map of two plans (a :class:`patchmap.compare.Comparison`):
    each plan's territories as a layer to toggle, and the units whose territory changed
    highlighted in a third layer, with the comparison table in the summary panel."""
    u = _prepare_units(units)
    ids = u["unit_id"]
    la = comparison.labels_a.reindex(ids).astype(str).to_numpy(dtype=object)
    lb = comparison.labels_b.reindex(ids).astype(str).to_numpy(dtype=object)
    changed = comparison.changed.reindex(ids).fillna(False).to_numpy(dtype=bool)
    is_coverage = bool(shapely.coverage_is_valid(u.geometry.values))
    shown = _simplify_coverage(u.geometry.values, max_coords)
    m = _base_map(tiles)
    first = None
    for i, (name, labels) in enumerate(zip(comparison.names, (la, lb), strict=True)):
        terr = dissolve_territories(
            gpd.GeoDataFrame(geometry=shown, crs=4326), labels, coverage=is_coverage
        )
        label = terr["territory"].astype(str)
        if i == 1 and comparison.matched:
            tip = (
                "<b>"
                + label.map(html.escape)
                + "</b> ("
                + html.escape(name)
                + ") ~ "
                + label.map(lambda t: html.escape(str(comparison.matching.get(t, t))))
                + " ("
                + html.escape(comparison.names[0])
                + ")"
            )
        else:
            tip = "<b>" + label.map(html.escape) + "</b> (" + html.escape(name) + ")"
        props = pd.DataFrame({"t": label, "c": territory_colors(terr.geometry.values), "tip": tip})
        data = _Data(_packed_polygons(terr.geometry.values, props), f"pm_plan{i}")
        m.add_child(data)
        layer = _GeoJsonLayer(
            data,
            f"Plan {html.escape(name)}",
            show=i == 0,
            style=(
                "function (f) { return {color: '#222', weight: 1.4, opacity: 0.9, "
                f"fillColor: f.properties.c, fillOpacity: {TERRITORY_FILL_OPACITY}}}; }}"
            ),
            tooltip="function (f) { return f.properties.tip; }",
        )
        layer.add_to(m)
        first = first or layer
    layers, legends = {}, {}
    if changed.any():
        props = pd.DataFrame(
            {
                "u": ids[changed].to_numpy(),
                "a": la[changed],
                "b": lb[changed],
            }
        )
        data = _Data(_packed_polygons(shown[changed], props), "pm_changed")
        m.add_child(data)
        a, b = (html.escape(n) for n in comparison.names)
        layer = _GeoJsonLayer(
            data,
            f"Changed units ({int(changed.sum())})",
            pane="pm-borders",
            style=(
                f"function (f) {{ return {{color: '{CHANGED_COLOR}', weight: 1.5, opacity: 1, "
                f"fillColor: '{CHANGED_COLOR}', fillOpacity: 0.35}}; }}"
            ),
            tooltip=(
                f"function (f) {{ var e = patchmapEsc; return '<b>' + e(f.properties.u) + '</b><br>' + {_js_json(a)} + ': ' + "
                f"e(f.properties.a) + '<br>' + {_js_json(b)} + ': ' + e(f.properties.b); }}"
            ),
        )
        layer.add_to(m)
        key = layer.layer_name
        layers[key] = layer.get_name()
        legends[key] = (
            f'<h4>{html.escape(key)}</h4><div><i style="background:{CHANGED_COLOR}"></i>'
            f"territory differs ({a} vs {b})</div>"
        )
    folium.LayerControl(collapsed=False, position="topright").add_to(m)
    rows = "".join(
        f"<tr><td>{html.escape(str(r[0]))}</td><td>{_cmp_cell(r[1])}</td><td>{_cmp_cell(r[2])}</td></tr>"
        for r in comparison.table.itertuples(index=False)
    )
    a, b = (html.escape(n) for n in comparison.names)
    summary = (
        f'<div class="pm-tip"><table><tr><td></td><td><b>{a}</b></td><td><b>{b}</b></td></tr>'
        f"{rows}</table></div>"
    )
    m.add_child(_Panels(title or f"{comparison.names[0]} vs {comparison.names[1]}", summary,
                        legends, layers, "#e9edf0"))  # fmt: skip
    return _finish(m, u.total_bounds, out_path)


def _cmp_cell(v: Any) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return ""
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    return f"{float(v):,.3f}" if abs(float(v)) < 100 else f"{float(v):,.1f}"


def _rep_layer(m: folium.Map, reps: pd.DataFrame) -> _GeoJsonLayer:
    """Rep home markers (their data added to ``m``), with name, territory and capacity."""
    r = check_reps(reps)
    name = r["name"].astype(str) if "name" in r.columns else r["rep_id"]
    tip = "<b>" + name.map(html.escape) + "</b> (" + r["rep_id"].map(html.escape) + ")"
    if "territory" in r.columns:
        tip = tip + r["territory"].fillna("").map(
            lambda t: f"<br>territory {html.escape(str(t))}" if t else ""
        )
    if "capacity" in r.columns:
        tip = tip + "<br>capacity " + r["capacity"].astype(str).map(html.escape)
    pts = shapely.points(r["lon"].to_numpy(), r["lat"].to_numpy())
    data = _Data(_feature_collection(pts, pd.DataFrame({"tip": tip.to_numpy()})), "pm_reps")
    m.add_child(data)
    return _GeoJsonLayer(
        data,
        "Rep home bases",
        pane="pm-reps",
        point="function (f, ll) { return L.circleMarker(ll, {pane: 'pm-reps'}); }",
        style="function (f) { return {radius: 6, color: '#fff', weight: 2, fillColor: '#111', fillOpacity: 1}; }",
        tooltip="function (f) { return f.properties.tip; }",
    )


# ---------------------------------------------------------------------------------------------
# static map


def render_static(
    units: gpd.GeoDataFrame,
    plan: Any,
    out_path: str | os.PathLike,
    *,
    title: str | None = None,
    fmt: str = "png",
    reps: pd.DataFrame | None = None,
    dpi: int = 150,
) -> Path:
    """Write a static map (PNG or PDF) for slide decks: coloured territories, labels, legend."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    fmt = fmt.lower().lstrip(".")
    if fmt not in ("png", "pdf", "svg"):
        raise InputError(f"map format: expected png or pdf, got {fmt!r}")
    u = _prepare_units(units)
    labels = territory_labels(u, plan)
    shown = _simplify_coverage(u.geometry.values, max_coords=400_000)
    terr = dissolve_territories(gpd.GeoDataFrame(geometry=shown, crs=4326), labels)
    terr["color"] = territory_colors(terr.geometry.values)
    from patchmap.metrics import equal_area_crs

    crs = equal_area_crs(terr.geometry)
    proj = terr.to_crs(crs)
    minx, miny, maxx, maxy = proj.total_bounds
    aspect = (maxy - miny) / max(maxx - minx, 1e-9)
    width = 10.0
    fig, ax = plt.subplots(figsize=(width, min(max(width * aspect, 4.0), 14.0) + 0.8))
    proj.plot(ax=ax, color=proj["color"], edgecolor="#222222", linewidth=0.6)
    anchors = proj.geometry.representative_point()
    k = len(proj)
    fontsize = 9 if k <= 20 else 7 if k <= 50 else 5
    for x, y, t in zip(anchors.x, anchors.y, proj["territory"], strict=True):
        ax.annotate(
            str(t),
            (x, y),
            ha="center",
            va="center",
            fontsize=fontsize,
            fontweight="bold",
            color="#111111",
            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.6},
        )
    if reps is not None and len(reps):
        r = check_reps(reps)
        rp = gpd.GeoSeries(gpd.points_from_xy(r["lon"], r["lat"]), crs=4326).to_crs(crs)
        ax.scatter(rp.x, rp.y, s=22, c="#111111", edgecolors="white", linewidths=1.0, zorder=5)
    ax.set_axis_off()
    ax.set_aspect("equal")
    handles = [
        Patch(facecolor=c, edgecolor="#222222", label=str(t))
        for t, c in zip(proj["territory"], proj["color"], strict=True)
    ]
    ncol = 1 if k <= 20 else 2 if k <= 40 else 3
    if k <= 80:
        ax.legend(
            handles=handles,
            loc="center left",
            bbox_to_anchor=(1.0, 0.5),
            frameon=False,
            fontsize=8,
            ncol=ncol,
            title="Territory",
        )
    ax.set_title(title or f"{k} territories", fontsize=14, fontweight="bold")
    fig.tight_layout()
    out = Path(out_path)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return out
