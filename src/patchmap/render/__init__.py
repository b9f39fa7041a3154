"""Maps: a self-contained interactive HTML map a sales leader reads and edits, the map of
two plans compared, and static maps (PNG/PDF) for slides.

The HTML pages load nothing from the network: Leaflet's JavaScript and CSS (with its
images as data URIs) are inlined from ``xstatic-leaflet``, and so is the page's own
script (``assets/map.js``). Only the optional basemap tiles (``tiles=True``) come from
the web. Every user string (labels, ids, names, column and file names) reaches the page
as JSON data and is escaped where it becomes HTML.
"""

from __future__ import annotations

from patchmap.render.colors import palette, territory_colors
from patchmap.render.common import leaflet_assets
from patchmap.render.compare_map import render_compare
from patchmap.render.interactive import render_map
from patchmap.render.segments_map import render_segments
from patchmap.render.static import render_static

__all__ = [
    "leaflet_assets",
    "palette",
    "render_compare",
    "render_map",
    "render_segments",
    "render_static",
    "territory_colors",
]
