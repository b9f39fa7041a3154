"""Territory colours: a long palette of distinct colours, neighbours never sharing one.

The palette is colorcet's Glasbey "category10" list (Tableau 10 first, then colours
chosen one by one to be as far as possible from all before them), keeping those light
and saturated enough for a fill under a dark label. Territories are coloured on their
adjacency graph: with up to ``len(palette)`` territories each gets its own colour;
beyond that a colour is reused only between territories that neither touch nor share a
neighbour (greedy colouring of the graph's square, so no two look-alike patches meet).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import shapely

__all__ = ["MAX_DISTINCT", "palette", "territory_colors"]

#: Colours used before any is reused (a reader tells ~24 fill colours apart, not 60).
MAX_DISTINCT = 24


@functools.lru_cache(maxsize=1)
def palette() -> tuple[str, ...]:
    """Distinct fill colours, most distinct first: Glasbey colours with CIE lightness
    40-92 and HSV saturation of at least 0.25 (no greys, nothing too dark or too pale)."""
    import colorcet
    import matplotlib.colors as mc

    rgb = np.array([mc.to_rgb(c) for c in colorcet.glasbey_category10])
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    lightness = 116 * np.cbrt(linear @ [0.2126, 0.7152, 0.0722]) - 16
    saturation = np.asarray(mc.rgb_to_hsv(rgb))[:, 1]
    keep = (lightness >= 45) & (lightness <= 92) & (saturation >= 0.25)
    return tuple(mc.to_hex(c) for c in rgb[keep])


def territory_adjacency(geoms: Sequence | np.ndarray) -> list[tuple[int, int]]:
    """Pairs ``(i, j)``, ``i < j``, of territory polygons that touch (or nearly: within
    1e-4 of the extent, so a hairline gap still counts as a shared border)."""
    geoms = np.asarray(geoms, dtype=object)
    if not len(geoms):
        return []
    minx, miny, maxx, maxy = shapely.total_bounds(geoms)
    gap = max(maxx - minx, maxy - miny) * 1e-4
    i, j = shapely.STRtree(geoms).query(geoms, predicate="dwithin", distance=gap)
    keep = i < j
    return list(zip(i[keep].tolist(), j[keep].tolist(), strict=True))


def territory_colors(
    geoms: Sequence | np.ndarray | None = None,
    *,
    n: int | None = None,
    edges: Sequence[tuple[int, int]] | None = None,
    colors: Sequence[str] | None = None,
) -> list[str]:
    """A colour per territory such that touching territories never share one.

    Give the territory polygons (``geoms``) or their count ``n`` and adjacency ``edges``.
    Up to :data:`MAX_DISTINCT` territories (or ``len(colors)``) all differ; beyond, DSATUR
    greedy colouring of the squared graph (neighbours of neighbours differ too), with
    more palette colours if it needs them.
    """
    import networkx as nx

    if edges is None:
        if geoms is None:
            raise ValueError("territory_colors: give geoms or edges")
        edges = territory_adjacency(geoms)
    if n is None:
        n = len(geoms) if geoms is not None else 0
    pal = list(colors) if colors is not None else list(palette())
    distinct = min(len(pal), MAX_DISTINCT if colors is None else len(pal))
    if n <= distinct:
        return pal[:n]
    graph = nx.Graph()
    graph.add_nodes_from(range(n))
    graph.add_edges_from(edges)
    square = nx.power(graph, 2)
    coloring = nx.greedy_color(square, strategy="DSATUR")
    needed = max(coloring.values(), default=0) + 1
    if needed < distinct:  # spread the budget evenly when the square allows it
        try:
            coloring = nx.coloring.equitable_color(square, distinct)
        except nx.NetworkXAlgorithmError:
            pass
    return [pal[coloring[t] % len(pal)] for t in range(n)]
