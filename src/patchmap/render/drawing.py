"""Drawing areas: ZIP areas that cover the land wall to wall, for maps only.

2010 ZCTAs leave unpopulated land uncovered (a third of California: deserts, forests,
parks), so a territory drawn from its ZCTAs falls apart into dozens of pieces although
its units are contiguous. :func:`fill_gaps` gives each uncovered piece of a state's land
to its nearest ZCTA within the state (a Voronoi split of the gap by the ZCTA borders
around it), once, in the geodata build (``scripts/build_geodata.py`` writes
``geodata/drawing_zcta.parquet``). :func:`drawing_geometries` swaps them in for the
units' polygons when a map is drawn; adjacency, balance and every metric still use the
units' own polygons.
"""

from __future__ import annotations

import functools
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from shapely.geometry.base import BaseGeometry

from patchmap import geodata
from patchmap.metrics import equal_area_crs

__all__ = ["DRAWING_FILE", "drawing_geometries", "fill_gaps"]

#: Bundled drawing areas (not named ``zcta_*``: that prefix marks analysis polygons).
DRAWING_FILE = "drawing_zcta.parquet"
#: Uncovered land narrower than twice this is a coastline mismatch, not a gap (metres).
SLIVER_M = 250.0
#: Gaps smaller than this are left alone (m²).
MIN_GAP_M2 = 0.5e6
#: Spacing of the ZCTA border points the gap is split by (metres).
SEED_SPACING_M = 500.0


def fill_gaps(
    zctas: gpd.GeoSeries,
    land: BaseGeometry,
    *,
    sliver_m: float = SLIVER_M,
    min_gap_m2: float = MIN_GAP_M2,
    spacing_m: float = SEED_SPACING_M,
) -> tuple[np.ndarray, dict[str, float]]:
    """The ZCTAs of one state grown over the land no ZCTA covers (EPSG:4326, a valid
    coverage again), and figures for the build log (gap area, area given, shares left out).

    ``zctas`` is a coverage (EPSG:4326) and ``land`` the state's outline. The land no ZCTA
    covers (less strips narrower than ``2 * sliver_m`` and pieces under ``min_gap_m2`` along
    the coast, where outline and ZCTAs disagree) is split among the ZCTAs by nearest
    border: Voronoi cells of points every ``spacing_m`` along the ZCTA borders that touch
    it. A share cut off from its ZCTA goes to the ZCTA it shares most border with (else
    it is left out: it would draw as a piece of its own).
    """
    crs = equal_area_crs(gpd.GeoSeries([land], crs=4326))
    geoms = np.asarray(gpd.GeoSeries(zctas.values, crs=4326).to_crs(crs).values)
    outline = gpd.GeoSeries([land], crs=4326).to_crs(crs).iloc[0]
    raw_gap = shapely.difference(outline, shapely.coverage_union_all(geoms))
    # along the coast the generalized outline and the ZCTAs disagree by a few hundred
    # metres: narrow strips (and small pieces) there are not land to fill; inland, every
    # gap is, however narrow (else it draws as a hole with a border round it)
    opened = shapely.buffer(shapely.buffer(raw_gap, -sliver_m), sliver_m)
    coast = shapely.buffer(shapely.boundary(outline), 2 * sliver_m)
    thin = shapely.difference(raw_gap, opened)
    parts = shapely.get_parts(shapely.difference(raw_gap, shapely.intersection(thin, coast)))
    parts = parts[shapely.get_type_id(parts) == 3]
    small = shapely.area(parts) < min_gap_m2
    parts = parts[~(small & shapely.intersects(parts, coast))]
    stats = {"gap_km2": float(shapely.area(raw_gap)) / 1e6, "filled_km2": 0.0, "dropped": 0}
    if not len(parts):
        return np.asarray(zctas.values), stats

    # seeds: points along the ZCTA borders that touch a gap, labelled with their ZCTA
    near_zcta = np.unique(shapely.STRtree(geoms).query(parts, predicate="dwithin", distance=1.0)[1])
    borders = shapely.segmentize(shapely.boundary(geoms[near_zcta]), spacing_m)
    xy, owner = shapely.get_coordinates(borders, return_index=True)
    owner = near_zcta[owner]
    seeds = shapely.points(xy)
    _, near = shapely.STRtree(seeds).query(parts, predicate="dwithin", distance=1.0)
    near = np.unique(near)
    seeds, owner = seeds[near], owner[near]
    cells = shapely.get_parts(
        shapely.voronoi_polygons(
            shapely.multipoints(seeds), extend_to=shapely.envelope(shapely.union_all(parts))
        )
    )
    cell_i, seed_i = shapely.STRtree(seeds).query(cells, predicate="contains")
    cell_owner = np.full(len(cells), -1, dtype=np.int64)
    cell_owner[cell_i] = owner[seed_i]

    # each ZCTA's share of the gap: its cells, merged, cut to the gap
    merged = gpd.GeoDataFrame({"owner": cell_owner}, geometry=cells, crs=crs)
    merged = merged[merged["owner"] >= 0].dissolve("owner", method="unary").geometry
    shares = shapely.intersection(merged.to_numpy(), shapely.union_all(parts))
    share_parts, share_of = shapely.get_parts(shares, return_index=True)
    poly = shapely.get_type_id(share_parts) == 3
    share_parts, share_of = share_parts[poly], share_of[poly]
    own = merged.index.to_numpy()[share_of]
    # a share cut off from its ZCTA goes to the ZCTA it shares most border with
    detached = np.flatnonzero(~shapely.dwithin(share_parts, geoms[own], 1.0))
    pi, zi = shapely.STRtree(geoms).query(share_parts[detached], predicate="dwithin", distance=1.0)
    shared = shapely.length(
        shapely.intersection(
            shapely.buffer(shapely.boundary(share_parts[detached][pi]), 1.0),
            shapely.boundary(geoms[zi]),
        )
    )
    best = pd.DataFrame({"p": pi, "z": zi, "len": shared}).sort_values("len").groupby("p").last()
    own = own.copy()
    own[detached[best.index.to_numpy()]] = best["z"].to_numpy()
    touches = np.ones(len(share_parts), dtype=bool)
    touches[detached] = False
    touches[detached[best.index.to_numpy()]] = True
    stats["dropped"] = int((~touches).sum())
    stats["filled_km2"] = float(shapely.area(share_parts[touches]).sum()) / 1e6
    add = (
        pd.Series(share_parts[touches])
        .groupby(own[touches])
        .agg(lambda g: shapely.union_all(g.to_numpy()))
    )
    idx = add.index.to_numpy()
    grown = geoms.copy()
    grown[idx] = shapely.union(grown[idx], add.to_numpy())
    grown = shapely.coverage_clean(grown, snapping_distance=0.05)
    return np.asarray(gpd.GeoSeries(grown, crs=crs).to_crs(4326).values), stats


def drawing_geometries(units: gpd.GeoDataFrame, directory: Path | None = None) -> np.ndarray:
    """The polygons to draw ``units`` with (EPSG:4326 ``unit_id``, geometry).

    A ZCTA unit whose polygon is the bundled one (same id, same vertex count, same
    bounds) is drawn with its drawing area; every other unit with its own polygon.
    """
    geoms = np.asarray(units.geometry.values, dtype=object).copy()
    areas = _drawing_table(directory)
    if areas is None or not len(units):
        return geoms
    pos = pd.Index(areas["zcta"]).get_indexer(units["unit_id"].astype(str))
    hit = pos >= 0
    if not hit.any():
        return geoms
    src = areas.iloc[pos[hit]]
    same = shapely.get_num_coordinates(geoms[hit]) == src["source_coords"].to_numpy()
    bounds = shapely.bounds(geoms[hit])
    same &= np.all(np.abs(bounds - src[["minx", "miny", "maxx", "maxy"]].to_numpy()) < 1e-6, 1)
    rows = np.flatnonzero(hit)[same]
    geoms[rows] = src.geometry.to_numpy()[same]
    return geoms


def _drawing_table(directory: Path | None) -> gpd.GeoDataFrame | None:
    path = (directory or geodata.geodata_dir()) / DRAWING_FILE
    if not path.is_file():
        return None
    stat = path.stat()
    return _read(path, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=2)
def _read(path: Path, mtime_ns: int, size: int) -> gpd.GeoDataFrame:
    return gpd.read_parquet(path)
