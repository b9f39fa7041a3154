"""The map of two plans side by side (``patchmap compare``): each plan's territories as a
layer, the units that changed territory highlighted, the comparison table in a panel."""

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
from patchmap.render.colors import territory_colors
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


def _legend_html(title: str, colors: list[str], labels: list[str]) -> str:
    items = "".join(
        f'<div><i style="background:{c}"></i>{html_text(lab)}</div>'
        for c, lab in zip(colors, labels, strict=True)
    )
    return f"<h4>{html_text(title)} (per km²)</h4>{items}"


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
    u = prepare_units(units)
    ids = u["unit_id"]
    la = comparison.labels_a.reindex(ids).astype(str).to_numpy(dtype=object)
    lb = comparison.labels_b.reindex(ids).astype(str).to_numpy(dtype=object)
    changed = comparison.changed.reindex(ids).fillna(False).to_numpy(dtype=bool)
    is_coverage = bool(shapely.coverage_is_valid(u.geometry.values))
    shown = simplify_coverage(u.geometry.values, max_coords)
    m = base_map(tiles)
    m.get_root().header.add_child(Element(f"<script>{DECODER_JS}</script>"), name="pm_decode")
    folium.map.CustomPane("pm-borders", z_index=450, pointer_events=False).add_to(m)
    first = None
    for i, (name, labels) in enumerate(zip(comparison.names, (la, lb), strict=True)):
        terr = dissolve_territories(
            gpd.GeoDataFrame(geometry=shown, crs=4326), labels, coverage=is_coverage
        )
        label = terr["territory"].astype(str)
        if i == 1 and comparison.matched:
            tip = (
                "<b>"
                + label.map(html_text)
                + "</b> ("
                + html_text(name)
                + ") ~ "
                + label.map(lambda t: html_text(str(comparison.matching.get(t, t))))
                + " ("
                + html_text(comparison.names[0])
                + ")"
            )
        else:
            tip = "<b>" + label.map(html_text) + "</b> (" + html_text(name) + ")"
        props = pd.DataFrame({"t": label, "c": territory_colors(terr.geometry.values), "tip": tip})
        data = Data(packed_polygons(terr.geometry.values, props), f"pm_plan{i}")
        m.add_child(data)
        layer = GeoJsonLayer(
            data,
            f"Plan {html_text(name)}",
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
        data = Data(packed_polygons(shown[changed], props), "pm_changed")
        m.add_child(data)
        a, b = (html_text(n) for n in comparison.names)
        layer = GeoJsonLayer(
            data,
            f"Changed units ({int(changed.sum())})",
            pane="pm-borders",
            style=(
                f"function (f) {{ return {{color: '{CHANGED_COLOR}', weight: 1.5, opacity: 1, "
                f"fillColor: '{CHANGED_COLOR}', fillOpacity: 0.35}}; }}"
            ),
            tooltip=(
                f"function (f) {{ var e = patchmapEsc; return '<b>' + e(f.properties.u) + '</b><br>' + {js_json(a)} + ': ' + "
                f"e(f.properties.a) + '<br>' + {js_json(b)} + ': ' + e(f.properties.b); }}"
            ),
        )
        layer.add_to(m)
        key = layer.layer_name
        layers[key] = layer.get_name()
        legends[key] = (
            f'<h4>{html_text(key)}</h4><div><i style="background:{CHANGED_COLOR}"></i>'
            f"territory differs ({a} vs {b})</div>"
        )
    folium.LayerControl(collapsed=False, position="topright").add_to(m)
    rows = "".join(
        f"<tr><td>{html_text(str(r[0]))}</td><td>{_cmp_cell(r[1])}</td><td>{_cmp_cell(r[2])}</td></tr>"
        for r in comparison.table.itertuples(index=False)
    )
    a, b = (html_text(n) for n in comparison.names)
    summary = (
        f'<div class="pm-tip"><table><tr><td></td><td><b>{a}</b></td><td><b>{b}</b></td></tr>'
        f"{rows}</table></div>"
    )
    m.add_child(Panels(title or f"{comparison.names[0]} vs {comparison.names[1]}", summary,
                        legends, layers, "#e9edf0"))  # fmt: skip
    return finish(m, u.total_bounds, out_path)


def _cmp_cell(v: Any) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return ""
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    return f"{float(v):,.3f}" if abs(float(v)) < 100 else f"{float(v):,.1f}"
