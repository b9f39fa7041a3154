"""Rook adjacency of unit polygons (or H3 cells), with islands bridged to the mainland.

Two units are neighbours when they share a stretch of boundary of positive length (rook
contiguity), not a single corner point. Everything is vectorized: one STRtree query finds
the touching pairs, shared edges of coverages are matched by hashing ring segments, and
only the pairs left over (vertices that do not line up) go through shapely's exact
boundary intersection. Disconnected pieces (islands, sparse H3 cells) are joined by the
shortest gaps between components (a shortest spanning tree, plus the links between
neighbouring pieces not much longer than the tree's hops between them), and the plan
reports every such bridge.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import geopandas as gpd
import h3
import numpy as np
import pandas as pd
import shapely
from h3.api import basic_int as h3_int
from scipy import sparse
from scipy.sparse.csgraph import connected_components
from scipy.spatial import Delaunay, QhullError

from patchmap.errors import InputError
from patchmap.io import listed_lines, read_table
from patchmap.logs import log
from patchmap.metrics import equal_area_crs
from patchmap.notes import Note
from patchmap.options import default, error
from patchmap.units.meta import recorded

__all__ = [
    "BRIDGE_FACTOR",
    "check_bridge_factor",
    "Adjacency",
    "build_adjacency",
    "edge_adjacency",
    "h3_adjacency",
    "read_edges",
    "show_id",
]

BRIDGE_COLUMNS = ["unit_a", "unit_b", "distance_km", "tree"]

#: a link between two pieces besides the shortest tree joining them is kept when it is at
#: most this many times the longest tree link on the tree path between the two pieces
BRIDGE_FACTOR = default("partition", "bridge_factor")


@dataclass(frozen=True, eq=False)
class Adjacency:
    """Symmetric 0/1 unit graph plus the geometry facts the engine and metrics need.

    ``matrix`` includes bridge edges (listed in ``bridges``), so it is always connected.
    ``shared_km`` holds the shared boundary length of each rook edge (0 for bridges);
    ``area_km2``, ``perimeter_km`` and ``xy_km`` (centroids) are in an equal-area
    projection centred on the data. ``given`` is True for a graph read from an edge list
    (:func:`edge_adjacency`): a part of it is the user's edges restricted to the part,
    never the polygons' graph rebuilt.
    """

    ids: np.ndarray
    matrix: sparse.csr_matrix
    bridges: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=BRIDGE_COLUMNS))
    n_components_before: int = 1
    shared_km: sparse.csr_matrix | None = None
    area_km2: np.ndarray | None = None
    perimeter_km: np.ndarray | None = None
    xy_km: np.ndarray | None = None
    given: bool = False
    bridge_factor: float = BRIDGE_FACTOR  # the factor its bridges were chosen with

    @property
    def n_units(self) -> int:
        """Number of units (graph nodes)."""
        return int(self.matrix.shape[0])

    @property
    def n_edges(self) -> int:
        """Number of undirected edges, bridges included."""
        return int(self.matrix.nnz // 2)

    def edges(self) -> tuple[np.ndarray, np.ndarray]:
        """Undirected edges as two index arrays ``(i, j)`` with ``i < j``."""
        coo = sparse.triu(self.matrix, k=1).tocoo()
        order = np.lexsort((coo.col, coo.row))
        return coo.row[order].astype(np.int64), coo.col[order].astype(np.int64)

    def neighbors(self, i: int) -> np.ndarray:
        """Indices of the neighbours of unit ``i``."""
        return self.matrix.indices[self.matrix.indptr[i] : self.matrix.indptr[i + 1]]


# ---------------------------------------------------------------------------------------------
# input checks


def show_id(x: object) -> str:
    """repr of an id as the user wrote it (numpy scalars as plain Python values)."""
    return repr(x.item() if isinstance(x, np.generic) else x)


def _unit_ids(units: gpd.GeoDataFrame, id_col: str | None) -> np.ndarray:
    if id_col is None:
        ids = units.index.to_numpy()
        where = "index"
    else:
        if id_col not in units.columns:
            raise InputError(
                f"id column {id_col!r} not found (columns: {', '.join(map(str, units.columns))})"
            )
        ids = units[id_col].to_numpy()
        where = f"id column {id_col!r}"
    if pd.isna(ids).any():
        raise InputError(f"{where}: {int(pd.isna(ids).sum())} missing ids")
    dup = pd.Index(ids).duplicated()
    if dup.any():
        raise InputError(
            f"{where}: duplicate id {show_id(ids[dup][0])} ({int(dup.sum())} duplicates)"
        )
    return ids


def _polygons(units: gpd.GeoDataFrame, ids: np.ndarray) -> np.ndarray:
    """Valid polygonal geometry array (EPSG:4326 assumed when no CRS), else InputError."""
    geoms = np.asarray(units.geometry.values, dtype=object)
    bad = shapely.is_missing(geoms) | shapely.is_empty(geoms)
    if bad.any():
        raise InputError(
            f"unit {show_id(ids[bad][0])}: empty or missing geometry ({int(bad.sum())} units)"
        )
    kind = shapely.get_type_id(geoms)
    notpoly = ~np.isin(kind, [3, 6, 7])  # Polygon, MultiPolygon, GeometryCollection
    if notpoly.any():
        raise InputError(
            f"unit {show_id(ids[notpoly][0])}: geometry is a {geoms[notpoly][0].geom_type}, "
            "not a polygon (units must be polygons)"
        )
    invalid = ~shapely.is_valid(geoms) | (kind == 7)
    if invalid.any():
        fixed = shapely.make_valid(geoms[invalid], method="structure", keep_collapsed=False)
        geoms = geoms.copy()
        geoms[invalid] = fixed
    return geoms


def _is_h3(ids: np.ndarray) -> bool:
    """True when every id is a valid H3 cell string of one resolution."""
    if len(ids) == 0 or not all(isinstance(x, str) for x in ids[:50]):
        return False
    try:
        if not all(h3.is_valid_cell(x) for x in ids):
            return False
        return len({h3.get_resolution(x) for x in ids}) == 1
    except (TypeError, ValueError):
        return False


# ---------------------------------------------------------------------------------------------
# rook pairs


def _ring_segments(geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All boundary segments as ``(owner, x1, y1, x2, y2)`` with endpoints in canonical order."""
    parts, part_owner = shapely.get_parts(geoms, return_index=True)
    parts_poly = shapely.get_type_id(parts) == 3
    parts, part_owner = parts[parts_poly], part_owner[parts_poly]
    rings, ring_part = shapely.get_rings(parts, return_index=True)
    coords, ring_of = shapely.get_coordinates(rings, return_index=True)
    same = ring_of[1:] == ring_of[:-1]
    start = coords[:-1][same]
    end = coords[1:][same]
    owner = part_owner[ring_part[ring_of[:-1][same]]]
    swap = (start[:, 0] > end[:, 0]) | ((start[:, 0] == end[:, 0]) & (start[:, 1] > end[:, 1]))
    a = np.where(swap[:, None], end, start)
    b = np.where(swap[:, None], start, end)
    return owner, np.column_stack([a, b])


def _hashed_shared(geoms: np.ndarray, n: int) -> sparse.coo_matrix:
    """Shared boundary length (same units as the coordinates) of pairs with identical segments."""
    owner, seg = _ring_segments(geoms)
    if len(owner) == 0:
        return sparse.coo_matrix((n, n))
    # one 64-bit hash per segment sorts identical segments next to each other; equality of
    # the coordinates themselves is then checked, so a hash collision never joins units
    bits = np.ascontiguousarray(seg).view(np.uint64)
    h = np.zeros(len(seg), dtype=np.uint64)
    for c in range(4):
        h = (h ^ bits[:, c]) * np.uint64(0x9E3779B97F4A7C15)
    order = np.argsort(h, kind="stable")
    seg, owner = seg[order], owner[order]
    same_seg = np.all(seg[1:] == seg[:-1], axis=1) & (owner[1:] != owner[:-1])
    k = np.flatnonzero(same_seg)
    a, b = owner[k], owner[k + 1]
    length = np.hypot(seg[k, 2] - seg[k, 0], seg[k, 3] - seg[k, 1])
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    m = sparse.coo_matrix((length, (lo, hi)), shape=(n, n))
    m.sum_duplicates()
    return m


def _rook_pairs(
    geoms: np.ndarray, snap_m: float, min_shared_m: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs ``i < j`` sharing a boundary of positive length, and that length (metres)."""
    n = len(geoms)
    tree = shapely.STRtree(geoms)
    if snap_m > 0:
        i, j = tree.query(geoms, predicate="dwithin", distance=snap_m)
    else:
        i, j = tree.query(geoms, predicate="intersects")
    keep = i < j
    i, j = i[keep], j[keep]
    hashed = _hashed_shared(geoms, n).tocsr()
    length = np.asarray(hashed[i, j]).ravel() if len(i) else np.zeros(0)
    todo = length <= min_shared_m
    if todo.any():
        bi = shapely.boundary(geoms[i[todo]])
        bj = shapely.boundary(geoms[j[todo]])
        if snap_m > 0:
            shared = shapely.intersection(bi, shapely.buffer(bj, snap_m))
        else:
            shared = shapely.intersection(bi, bj)
        exact = shapely.length(shared)
        if snap_m > 0:
            exact = np.where(exact > 2 * snap_m, exact, 0.0)
        length[todo] = exact
    ok = length > min_shared_m
    return i[ok], j[ok], length[ok]


# ---------------------------------------------------------------------------------------------
# bridges


def _root(parent: np.ndarray, x: int) -> int:
    """Union-find root with path halving."""
    while parent[x] != x:
        parent[x] = parent[parent[x]]
        x = parent[x]
    return x


def _expand(rows: np.ndarray, ptr: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each ``k`` of ``rows`` paired with every value of CSR row ``rows[k]`` (``ptr``,
    ``values``): the positions in ``rows`` and the values, row after row."""
    count = ptr[rows + 1] - ptr[rows]
    at = np.repeat(np.arange(len(rows)), count)
    start = np.repeat(ptr[rows] - np.cumsum(count) + count, count)
    return at, values[start + np.arange(len(at))]


def _rim_points(
    geoms: np.ndarray, comp: np.ndarray, outer: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Boundary vertices of the components and the unit each belongs to.

    A ring segment shared by exactly two units of one component lies inside it and is
    left out; every other segment (coast, a gap, a boundary with another component)
    gives its two ends. ``outer`` (unit indices), when given, holds every unit that can
    touch a component's boundary (the others are not looked at). A component without
    such segments (no polygon parts left) contributes its units' centroids, so every
    component has points.
    """
    if outer is None:
        owner, seg = _ring_segments(geoms)
    else:
        owner, seg = _ring_segments(geoms[outer])
        owner = outer[owner]
    if len(seg):
        order = np.lexsort((seg[:, 3], seg[:, 2], seg[:, 1], seg[:, 0]))
        seg, owner = seg[order], owner[order]
        start = np.flatnonzero(np.r_[True, np.any(seg[1:] != seg[:-1], axis=1)])
        size = np.diff(np.r_[start, len(seg)])
        c = comp[owner]
        one = np.minimum.reduceat(c, start) == np.maximum.reduceat(c, start)
        inside = np.repeat((size == 2) & one, size)
        seg, owner = seg[~inside], owner[~inside]
    xy = np.concatenate([seg[:, :2], seg[:, 2:]])
    who = np.concatenate([owner, owner])
    bare = np.flatnonzero(~np.isin(comp, np.unique(comp[who])))
    if len(bare):
        xy = np.concatenate([xy, shapely.get_coordinates(shapely.centroid(geoms[bare]))])
        who = np.concatenate([who, bare])
    return xy, who


def _near_pairs(xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of distinct points among which lies, for any split of the points in two
    sets, the closest pair between them: the edges of a Delaunay triangulation (the
    closest such pair is a Gabriel edge; an edge may come twice), or every pair for a
    handful of points."""
    n = len(xy)
    if n < 16:
        p, q = np.triu_indices(n, k=1)
        return p.astype(np.int64), q.astype(np.int64)
    try:
        tri = Delaunay(xy)
    except QhullError:  # all points on a line: joggled, they triangulate
        tri = Delaunay(xy, qhull_options="QJ")
    s = tri.simplices.astype(np.int64)
    return np.concatenate([s[:, 0], s[:, 1], s[:, 2]]), np.concatenate([s[:, 1], s[:, 2], s[:, 0]])


def _bridge(
    geoms: np.ndarray,
    i: np.ndarray,
    j: np.ndarray,
    crs=None,
    outer: np.ndarray | None = None,
    factor: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """Join connected components by their shortest gaps: a minimum spanning tree of the
    components, each edge between the two nearest units of two components, plus the
    other short links between neighbouring components.

    Candidate gaps come in bulk from one Delaunay triangulation of the components'
    boundary vertices (a pair of components' nearest vertices are joined by one of its
    edges); the units at either end of a candidate are measured exactly (nearest points
    of the polygons), and the nearest such pair of units of two components is their
    link (one per pair of components whose boundaries face each other in the
    triangulation; for the tree's links, the nearest pair of all).
    With ``crs`` (the projection of ``geoms``) the gaps compared and returned are
    geodesic lengths, so a projection centred far away does not stretch or shrink them.

    The minimum spanning tree of the links is the core: it alone makes the graph
    connected. A tree alone hangs every group of islands on one link, so each link's
    end is a cut vertex (a pocket behind it must be split exactly there). Every other
    link is kept too when it is at most ``factor`` times the longest tree link on the
    tree path between its two components (the longest hop a territory joining them
    through the tree must make anyway): a town about as near to two neighbours is
    linked to both, a far link that only shortcuts short hops is not. ``factor`` 0
    keeps the tree alone. ``outer`` is passed to :func:`_rim_points`. Returns bridge
    endpoints (``lo < hi``), their lengths (metres, or projection units without
    ``crs``), whether each is a tree link, and the number of components before
    bridging; tree links come first, each group shortest first.
    """
    n = len(geoms)
    g = sparse.coo_matrix((np.ones(len(i)), (i, j)), shape=(n, n))
    ncomp, comp = connected_components(g, directed=False)
    empty = np.zeros(0, dtype=np.int64)
    if ncomp == 1:
        return empty, empty, np.zeros(0), np.zeros(0, dtype=bool), 1
    xy, who = _rim_points(geoms, comp, outer)
    flat, at = np.unique(np.ascontiguousarray(xy).view(np.complex128).ravel(), return_inverse=True)
    pts = np.column_stack([flat.real, flat.imag])
    # the units at each distinct point (CSR by point)
    key = np.unique(at.astype(np.int64) * n + who)
    point, unit = key // n, key % n
    ptr = np.r_[0, np.cumsum(np.bincount(point, minlength=len(pts)))]
    cmin = np.minimum.reduceat(comp[unit], ptr[:-1])
    cmax = np.maximum.reduceat(comp[unit], ptr[:-1])
    p, q = _near_pairs(pts)
    # a triangle edge inside one component is no gap; a point shared by components is one
    cross = ~((cmin[p] == cmax[p]) & (cmin[q] == cmax[q]) & (cmin[p] == cmin[q]))
    shared = np.flatnonzero(cmin != cmax)
    p, q = np.r_[p[cross], shared], np.r_[q[cross], shared]
    e, a = _expand(p, ptr, unit)
    e, b = _expand(q[e], ptr, unit)
    a = a[e]
    other = comp[a] != comp[b]
    lo, hi = np.minimum(a[other], b[other]), np.maximum(a[other], b[other])
    pair = np.unique(lo * n + hi)
    lo, hi = pair // n, pair % n
    gap = shapely.distance(geoms[lo], geoms[hi])
    # the nearest pair of units of each pair of components
    ca, cb = np.minimum(comp[lo], comp[hi]), np.maximum(comp[lo], comp[hi])
    order = np.lexsort((hi, lo, gap, cb, ca))
    first = order[
        np.r_[True, (ca[order][1:] != ca[order][:-1]) | (cb[order][1:] != cb[order][:-1])]
    ]
    lo, hi, gap, ca, cb = lo[first], hi[first], gap[first], ca[first], cb[first]
    if crs is not None:
        gap = _geodesic_gap_m(geoms[lo], geoms[hi], crs)
    rank = np.lexsort((hi, lo, gap))
    parent = np.arange(ncomp)
    tree = np.zeros(len(lo), dtype=bool)
    count = 0
    for r in rank.tolist():
        ra, rb = _root(parent, int(ca[r])), _root(parent, int(cb[r]))
        if ra != rb:
            parent[ra] = rb
            tree[r] = True
            count += 1
            if count == ncomp - 1:
                break
    kept = tree.copy()
    if factor > 0:
        # a link is kept unless its components are joined by tree links all shorter
        # than gap / factor: tree links join in order of length, links are asked in
        # order of gap / factor (the same order as gap)
        hops = rank[tree[rank]]
        parent = np.arange(ncomp)
        t = 0
        for r in rank[~tree[rank]].tolist():
            reach = gap[r] / factor
            while t < len(hops) and gap[hops[t]] < reach:
                ra, rb = _root(parent, int(ca[hops[t]])), _root(parent, int(cb[hops[t]]))
                parent[ra] = rb
                t += 1
            if _root(parent, int(ca[r])) != _root(parent, int(cb[r])):
                kept[r] = True
    out = np.r_[rank[tree[rank]], rank[kept[rank] & ~tree[rank]]]
    return lo[out], hi[out], gap[out], tree[out], ncomp


# ---------------------------------------------------------------------------------------------
# public builders


def _geodesic_gap_m(a: np.ndarray, b: np.ndarray, crs) -> np.ndarray:
    """Geodesic length (metres, WGS84) of the shortest line between geometries ``a[k]``
    and ``b[k]`` drawn in projection ``crs``."""
    from pyproj import Geod, Transformer

    pts = shapely.get_coordinates(shapely.shortest_line(a, b)).reshape(-1, 2, 2)
    to_ll = Transformer.from_crs(crs, 4326, always_xy=True)
    lon, lat = to_ll.transform(pts[:, :, 0].ravel(), pts[:, :, 1].ravel())
    lon, lat = np.asarray(lon).reshape(-1, 2), np.asarray(lat).reshape(-1, 2)
    _, _, dist = Geod(ellps="WGS84").inv(lon[:, 0], lat[:, 0], lon[:, 1], lat[:, 1])
    return np.asarray(dist, dtype=float)


def _assemble(
    ids: np.ndarray,
    geoms: np.ndarray,
    i: np.ndarray,
    j: np.ndarray,
    shared_m: np.ndarray,
    crs=None,
    outer: np.ndarray | None = None,
    bridge_factor: float = BRIDGE_FACTOR,
) -> Adjacency:
    """Bridge components, then pack the graph and geometry facts into an Adjacency.

    ``crs`` is the projection of ``geoms``: with it bridges are chosen and measured by
    the geodesic distance between the two units' nearest points (a projection centred
    far away stretches or shrinks long gaps, such as Kauai to Kodiak). ``outer`` (units
    that can lie on a component's boundary) only saves work (see :func:`_rim_points`);
    ``bridge_factor`` is :func:`_bridge`'s ``factor``."""
    n = len(ids)
    centroids = shapely.centroid(geoms)
    xy = shapely.get_coordinates(centroids)
    check_bridge_factor(bridge_factor)
    bi, bj, bd, bt, before = _bridge(geoms, i, j, crs, outer, bridge_factor)
    ii = np.concatenate([i, bi]).astype(np.int64)
    jj = np.concatenate([j, bj]).astype(np.int64)
    data = np.ones(len(ii) * 2)
    matrix = sparse.csr_matrix((data, (np.r_[ii, jj], np.r_[jj, ii])), shape=(n, n))
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    shared = sparse.csr_matrix(
        (np.r_[shared_m, shared_m] / 1000.0, (np.r_[i, j], np.r_[j, i])), shape=(n, n)
    )
    bridges = pd.DataFrame(
        {
            "unit_a": ids[bi],
            "unit_b": ids[bj],
            "distance_km": np.round(bd / 1000.0, 3),
            "tree": bt,
        },
        columns=BRIDGE_COLUMNS,
    )
    return Adjacency(
        ids=ids,
        matrix=matrix,
        bridges=bridges,
        n_components_before=before,
        shared_km=shared,
        area_km2=shapely.area(geoms) / 1e6,
        perimeter_km=shapely.length(geoms) / 1000.0,
        xy_km=xy / 1000.0,
        bridge_factor=float(bridge_factor),
    )


def check_bridge_factor(factor: float) -> None:
    """``bridge_factor`` is 0 (the shortest tree alone) or a number >= 1; a factor
    between 0 and 1 keeps no link the tree does not (each is at least as long as the
    longest tree link on its path), so it is refused as a likely slip."""
    ok = isinstance(factor, (int, float, np.integer, np.floating)) and not isinstance(
        factor, (bool, np.bool_)
    )
    if not ok or not np.isfinite(factor) or not (factor == 0 or factor >= 1):
        raise error(
            "partition",
            f"{{bridge_factor}}: expected 0 (the shortest tree alone) or a number >= 1, "
            f"got {factor!r}",
        )


def h3_adjacency(
    cell_ids: Sequence[str] | np.ndarray,
    geometry: gpd.GeoSeries | None = None,
    *,
    bridge_factor: float = BRIDGE_FACTOR,
) -> Adjacency:
    """Adjacency of H3 cells of one resolution from H3's own neighbour index (no geometry tests).

    Every hexagon shares an edge with each cell of its ``grid_ring(cell, 1)``, so the
    rook graph comes straight from H3; polygons (given, or drawn from H3) are used only for
    areas, perimeters and bridging gaps between separate clusters of cells
    (``bridge_factor`` as in :func:`build_adjacency`).
    """
    ids = np.asarray(cell_ids, dtype=object)
    if len(ids) == 0:
        raise InputError("no H3 cells given")
    if not _is_h3(ids):
        raise InputError("cell ids are not valid H3 cells of one resolution")
    dup = pd.Index(ids).duplicated()
    if dup.any():
        raise InputError(f"duplicate H3 cell {show_id(ids[dup][0])}")
    # neighbours as 64-bit cell numbers, found among the cells by a sorted search
    cells = np.fromiter((h3.str_to_int(c) for c in ids), dtype=np.uint64, count=len(ids))
    rings = [h3_int.grid_ring(c, 1) for c in cells.tolist()]
    counts = np.fromiter((len(r) for r in rings), dtype=np.int64, count=len(ids))
    src = np.repeat(np.arange(len(ids)), counts)
    ring = np.fromiter((c for r in rings for c in r), dtype=np.uint64, count=int(counts.sum()))
    order = np.argsort(cells)
    at = np.minimum(np.searchsorted(cells[order], ring), len(ids) - 1)
    dst = np.where(cells[order][at] == ring, order[at], -1)
    ok = (dst >= 0) & (src < dst)
    i, j = src[ok], dst[ok]
    if geometry is None:
        polys = [shapely.Polygon([(lon, lat) for lat, lon in h3.cell_to_boundary(c)]) for c in ids]
        geometry = gpd.GeoSeries(polys, crs=4326)
    elif geometry.crs is None:
        geometry = geometry.set_crs(4326)
    crs = equal_area_crs(geometry)
    geoms = np.asarray(geometry.to_crs(crs).values)
    perim = shapely.length(geoms)
    shared = (perim[i] + perim[j]) / 12.0  # a hexagon edge is a sixth of its perimeter
    # a cell with all six neighbours present lies inside its cluster
    degree = np.bincount(np.r_[i, j], minlength=len(ids))
    outer = np.flatnonzero(degree < 6)
    return _assemble(ids, geoms, i, j, shared, crs, outer, bridge_factor)


def build_adjacency(
    units: gpd.GeoDataFrame,
    *,
    id_col: str | None = None,
    snap_m: float = 0.0,
    min_shared_m: float = 0.01,
    bridge_factor: float = BRIDGE_FACTOR,
) -> Adjacency:
    """Rook adjacency of unit polygons, islands bridged; H3 cell ids take a fast path.

    ``id_col`` names the unit id column (the index when None). ``snap_m`` (metres) also
    joins units whose boundaries run within that distance (for coverages with slivers);
    boundaries must overlap by more than ``min_shared_m`` metres to count as shared.

    Pieces that do not touch (islands, towns apart on a sparse grid) are joined by bridge
    edges, listed in ``bridges`` with their geodesic length: the shortest tree of links
    joining all pieces (``tree`` True; it alone makes the graph connected), and every
    other link between neighbouring pieces that is at most ``bridge_factor`` times the
    longest tree link on the tree path between them (so a town about as near to two
    neighbours is joined to both, not hung on one link); ``bridge_factor=0`` keeps the
    tree alone.
    """
    if not isinstance(units, gpd.GeoDataFrame):
        raise InputError("units must be a GeoDataFrame of polygons")
    if len(units) == 0:
        raise InputError("units: no units (empty table)")
    ids = _unit_ids(units, id_col)
    geoms = _polygons(units, ids)
    meta = recorded(units)
    if (meta["unit_kind"] == "h3") if meta is not None else _is_h3(ids):
        return h3_adjacency(
            ids, gpd.GeoSeries(geoms, crs=units.crs or 4326), bridge_factor=bridge_factor
        )
    gs = gpd.GeoSeries(geoms, crs=units.crs or 4326)
    crs = equal_area_crs(gs)
    projected = np.asarray(gs.to_crs(crs).values)
    i, j, length = _rook_pairs(projected, snap_m, min_shared_m)
    return _assemble(ids, projected, i, j, length, crs, bridge_factor=bridge_factor)


# ---------------------------------------------------------------------------------------------
# a graph given as an edge list


EDGE_COLUMNS = ("unit_a", "unit_b")


def read_edges(
    edges: str | os.PathLike | pd.DataFrame, ids: Sequence | np.ndarray
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read an edge list (``unit_a,unit_b``, one row per undirected edge) against the units.

    ``edges`` is a CSV/Parquet/Excel file or a DataFrame with those two columns (others
    are ignored). Ids are compared as text. Returns index pairs ``i < j`` (each edge once)
    and notes on what was dropped: a unit paired with itself is no edge, and an edge
    listed twice (either way round) counts once. A missing column, a blank cell or an id
    that is not a unit raises a one-line :class:`InputError` naming the file and lines.
    """
    if isinstance(edges, pd.DataFrame):
        df, source, word = edges, "adjacency", "row"
        df = df.copy()
        df.columns = [str(c).strip() for c in df.columns]
    else:
        df, source, word = read_table(edges, dtype=str), str(edges), "line"
    missing = [c for c in EDGE_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(
            f"{source}: column {missing[0]!r} not found (expected unit_a,unit_b; "
            f"columns: {', '.join(map(str, df.columns))})"
        )
    first = 2 if word == "line" else 0
    lines = np.arange(len(df)) + first
    text = {c: df[c].astype("string").str.strip() for c in EDGE_COLUMNS}
    blank = np.zeros(len(df), dtype=bool)
    for c in EDGE_COLUMNS:
        blank |= (text[c].isna() | (text[c] == "")).to_numpy()
    if blank.any():
        raise InputError(f"{source}: {listed_lines(lines[blank], word)}: empty unit_a or unit_b")
    index = pd.Index(pd.Series(np.asarray(ids, dtype=object)).astype(str))
    pos = {}
    for c in EDGE_COLUMNS:
        pos[c] = index.get_indexer(text[c].astype(str).to_numpy())
        bad = pos[c] < 0
        if bad.any():
            shown = ", ".join(
                f"{word} {ln} ({u!r})"
                for ln, u in zip(lines[bad][:5], text[c][bad].iloc[:5], strict=True)
            )
            more = f" and {int(bad.sum()) - 5} more" if bad.sum() > 5 else ""
            raise InputError(f"{source}: {c} not among the units on {shown}{more}")
    a, b = pos["unit_a"], pos["unit_b"]
    notes = []
    loop = a == b
    if loop.any():
        notes.append(
            Note(
                "self_edge",
                f"{source}: {listed_lines(lines[loop], word)}: a unit paired with itself is no "
                "edge (ignored)",
                lines=[int(x) for x in lines[loop]],
            )
        )
    a, b, ln = a[~loop], b[~loop], lines[~loop]
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    key = lo.astype(np.int64) * len(index) + hi
    _, first_row = np.unique(key, return_index=True)
    if len(first_row) < len(key):
        again = np.setdiff1d(np.arange(len(key)), first_row)
        notes.append(
            Note(
                "repeated_edge",
                f"{source}: {listed_lines(ln[again], word)} repeat an edge listed before "
                "(counted once)",
                lines=[int(x) for x in ln[again]],
            )
        )
    keep = np.sort(first_row)
    return lo[keep].astype(np.int64), hi[keep].astype(np.int64), notes


def edge_adjacency(
    units: gpd.GeoDataFrame | pd.DataFrame,
    edges: str | os.PathLike | pd.DataFrame,
    *,
    id_col: str | None = None,
    bridge_factor: float = BRIDGE_FACTOR,
) -> Adjacency:
    """The adjacency graph given by an edge list (see :func:`read_edges`) instead of the
    one built from the polygons: for barriers (a mountain range, a bay: leave the edge
    out) and links (a ferry, a bridge: add one), or a published graph.

    Geometry, when the units have it, still gives areas, centroids, perimeters and
    shared boundary lengths (compactness is measured on the real shapes). A graph that
    falls apart is joined by the shortest gaps between its pieces (listed in
    ``bridges``, as for polygons, ``bridge_factor`` as in :func:`build_adjacency`);
    without geometry that is an :class:`InputError`.
    """
    if len(units) == 0:
        raise InputError("units: no units (empty table)")
    ids = _unit_ids(units, id_col)
    i, j, notes = read_edges(edges, ids)
    for note in notes:
        log.info(note)
    n = len(ids)
    source = "adjacency" if isinstance(edges, pd.DataFrame) else str(edges)
    if isinstance(units, gpd.GeoDataFrame) and units.geometry is not None:
        geoms = _polygons(units, ids)
        gs = gpd.GeoSeries(geoms, crs=units.crs or 4326)
        crs = equal_area_crs(gs)
        projected = np.asarray(gs.to_crs(crs).values)
        ri, rj, length = _rook_pairs(projected, 0.0, 0.01)
        adj = _assemble(ids, projected, i, j, np.zeros(len(i)), crs, bridge_factor=bridge_factor)
        shared = sparse.csr_matrix(
            (np.r_[length, length] / 1000.0, (np.r_[ri, rj], np.r_[rj, ri])), shape=(n, n)
        )
        return replace(adj, shared_km=shared, given=True)
    g = sparse.csr_matrix((np.ones(2 * len(i)), (np.r_[i, j], np.r_[j, i])), shape=(n, n))
    ncomp, comp = connected_components(g, directed=False)
    if ncomp > 1:
        small = np.argsort(np.bincount(comp))[0]
        raise InputError(
            f"{source}: the graph falls apart into {ncomp} pieces (e.g. unit "
            f"{show_id(ids[comp == small][0])} is cut off) and the units have no shapes "
            "to bridge them: add edges joining the pieces"
        )
    return Adjacency(ids=ids, matrix=g, given=True)
