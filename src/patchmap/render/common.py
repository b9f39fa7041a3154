"""Shared parts of the HTML maps: units checked and simplified for display, density
classes, Leaflet inlined from ``xstatic-leaflet`` (no network), the page written atomically."""

from __future__ import annotations

import base64
import functools
import html
import json
import os
import re
from pathlib import Path
from typing import Any

import folium
import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from branca.element import Element

from patchmap.errors import InputError
from patchmap.io import write_text
from patchmap.metrics import to_equal_area

#: Density layers: column, name, matplotlib colormap, what the measure means.
DENSITY_LAYERS = (
    ("score", "Score density", "YlOrRd", "Sum of the accounts' fit scores (0-100 each)."),
    ("reach", "Reach density", "PuBu", "Sum of the accounts' engagement (MQLs, opportunities, intent, product usage; 0-100 each)."),
    ("potential", "Potential density", "YlGn", "Revenue potential: P(win) times the expected deal size, summed over accounts."),
    ("whitespace", "Whitespace density", "RdPu", "Whitespace: revenue potential of the accounts that are not customers yet (open prospects)."),
)  # fmt: skip
NO_DATA_COLOR = "#eeeeee"
#: Coordinates budget for the unit coverage in the HTML.
MAX_COORDS = 400_000


def prepare_units(units: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
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


def simplify_coverage(geoms: np.ndarray, max_coords: int = MAX_COORDS) -> np.ndarray:
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


def density(units: gpd.GeoDataFrame, measure: str) -> pd.Series | None:
    """``<measure>density`` (per km²) from the units, or computed from the measure and area."""
    col = f"{measure}density"
    if col in units.columns:
        return pd.to_numeric(units[col], errors="coerce")
    if measure not in units.columns:
        return None
    if "area_km2" in units.columns:
        area = pd.to_numeric(units["area_km2"], errors="coerce")
    else:
        area = pd.Series(
            shapely.area(to_equal_area(units.geometry).values) / 1e6, index=units.index
        )
    with np.errstate(divide="ignore", invalid="ignore"):
        return pd.to_numeric(units[measure], errors="coerce") / area.where(area > 0)


def classify(values: pd.Series, cmap: str, k: int = 5) -> tuple[np.ndarray, list[str], list[str]]:
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
        labels.append(f"up to {compact_number(bins[0])}")
        labels += [
            f"{compact_number(lo)} – {compact_number(hi)}"
            for lo, hi in zip(bins[:-1], bins[1:], strict=True)
        ]
    return idx, colors, labels


def format_metric(v: Any, metric: str, *, signed: bool = False) -> str:
    """A comparison table value as text: percentages to 2 decimals, counts with thousands
    separators, other numbers to 3 decimals (1 from 100 up), missing as ''; ``signed``
    (a change) shows its sign."""
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return ""
    sign = "+" if signed else ""
    if "%" in metric:
        return f"{float(v):{sign}.2f}"
    if isinstance(v, (int, np.integer)):
        return f"{int(v):{sign},}"
    if isinstance(v, (float, np.floating)):
        return f"{float(v):{sign},.3f}" if abs(v) < 100 else f"{float(v):{sign},.1f}"
    return str(v)


def compact_number(x: float) -> str:
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


#: Jinja's opening delimiters: branca renders each element's output as a template again.
_JINJA_OPEN = re.compile(r"\{(?=[{%#])")


def js_json(obj: Any) -> str:
    """JSON safe to put inside a <script> element of a folium page: no ``<`` (``</script``,
    ``<!--`` change how the script is read) and no ``{{``/``{%``/``{#`` (folium would run it
    as a template). Neither is ever structural in JSON, so only characters inside strings
    are written as escapes (\\u003c, \\u007b)."""
    text = json.dumps(obj, separators=(",", ":"), allow_nan=False).replace("<", "\\u003c")
    return _JINJA_OPEN.sub(r"\\u007b", text)


def html_text(s: Any) -> str:
    """Text escaped for HTML, braces as character references (see :func:`js_json`)."""
    return html.escape(str(s)).replace("{", "&#123;").replace("}", "&#125;")


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


def check_self_contained(page: str) -> None:
    m = _EXTERNAL.search(page)
    if m:
        raise RuntimeError(
            f"map HTML would load an external resource: {page[m.start() : m.start() + 120]!r}"
        )


def base_map(tiles: bool) -> folium.Map:
    """A folium map with Leaflet and the polygon decoder inlined (no network), the
    optional basemap, and panes for borders and rep markers above the fills."""
    m = folium.Map(tiles=None, control_scale=True, zoom_snap=0.25)
    m.default_js, m.default_css = [], []
    js, css = leaflet_assets()
    root = m.get_root()
    root.header.add_child(Element(f"<style>{css}</style>"), name="leaflet_css", index=0)
    root.header.add_child(Element(f"<script>{js}</script>"), name="leaflet", index=1)
    if tiles:
        folium.TileLayer("OpenStreetMap", name="Basemap", control=False).add_to(m)
    return m


def finish(m: folium.Map, bounds: np.ndarray | None, out_path: str | os.PathLike) -> Path:
    """Fit the view to ``bounds`` (None: the page fits itself), render, check nothing loads
    from the network, write atomically."""
    if bounds is not None:
        minx, miny, maxx, maxy = bounds
        m.fit_bounds(
            [[miny, minx], [maxy, maxx]], padding_top_left=(40, 50), padding_bottom_right=(190, 90)
        )
    page = m.get_root().render()
    check_self_contained(page)
    return write_text(page, out_path)
