"""Overlay layers over shared, compactly packed data, with a legend per layer: the parts
of the maps that toggle several layers (the comparison of two plans, the segments map).

Polygons are packed once (:func:`packed_polygons`: delta-coded integer coordinates,
columnar properties) into one JavaScript variable (:class:`Data`) that Leaflet GeoJSON
layers (:class:`GeoJsonLayer`) draw with JS style/tooltip functions; :class:`Panels` adds
the title, a summary panel and each layer's legend, shown while its layer is on.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import shapely
from branca.element import MacroElement
from folium.map import Layer
from folium.template import Template

from patchmap.render.common import html_text, js_json

__all__ = [
    "DECODER_JS",
    "TERRITORY_FILL_OPACITY",
    "Data",
    "GeoJsonLayer",
    "Panels",
    "columns",
    "packed_polygons",
]

TERRITORY_FILL_OPACITY = 0.55
_DECIMALS = 5


_SCALE = 10**_DECIMALS


#: Rebuilds a GeoJSON FeatureCollection from :func:`packed_polygons` (columnar, delta-coded).
DECODER_JS = """
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


def columns(props: pd.DataFrame) -> dict[str, list]:
    """Property columns as JSON-ready lists (NaN as null)."""
    out = {}
    for col in props.columns:
        v = props[col]
        if pd.api.types.is_integer_dtype(v) or pd.api.types.is_bool_dtype(v):
            out[col] = v.to_numpy().tolist()
        else:
            out[col] = v.astype(object).where(v.notna(), None).tolist()
    return out


def packed_polygons(geoms: np.ndarray, props: pd.DataFrame) -> str:
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
        "props": columns(props),
    }
    return "patchmapDecode(" + js_json(payload) + ")"


class Data(MacroElement):
    """``var <name> = <payload>;``: data shared by several layers (written once)."""

    _template = Template(
        "{% macro script(this, kwargs) %}var {{ this.get_name() }} = {{ this.payload }};{% endmacro %}"
    )

    def __init__(self, payload: str, name: str = "pm_data") -> None:
        super().__init__()
        self._name = name
        self.payload = payload


class GeoJsonLayer(Layer):
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
        data: Data,
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


class Panels(MacroElement):
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
  var shown = {{ this.shown|tojson }};
  function redraw() {
    var d = lg.getContainer();
    var html = shown.map(function (k) { return legends[k]; }).join('<hr style="margin:4px 0">');
    d.innerHTML = html; d.style.display = html ? 'block' : 'none';
    {% if this.territories %}{{ this.territories }}.setStyle({fillOpacity: shown.length ? 0 : {{ this.fill_opacity }}});{% endif %}
  }
  var layers = { {% for key, layer in this.layers.items() %}{{ key|tojson }}: {{ layer }},{% endfor %} };
  map.on('overlayadd', function (e) { for (var k in layers) { if (layers[k] === e.layer && shown.indexOf(k) < 0) { shown.push(k); } } redraw(); });
  map.on('overlayremove', function (e) { for (var k in layers) { if (layers[k] === e.layer) { shown.splice(shown.indexOf(k), 1); } } redraw(); });
  if (shown.length) { redraw(); }
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
        shown: Sequence[str] = (),
    ) -> None:
        super().__init__()
        self._name = "PatchPanels"
        self.shown = list(shown)  # layers (keys of ``layers``) shown when the page opens
        self.territories, self.fill_opacity = territories, TERRITORY_FILL_OPACITY
        self.title = html_text(title) if title else None
        self.summary, self.legends, self.layers, self.background = (
            summary,
            legends,
            layers,
            background,
        )
