"""ZCTA (ZIP Code Tabulation Area) units: real polygons where patchmap has them, Voronoi
cells of the gazetteer's internal points elsewhere (so any state, or the whole country,
can be planned by ZIP area before its polygons are fetched)."""

from __future__ import annotations

from collections.abc import Sequence

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from patchmap import geodata
from patchmap.logs import log

__all__ = ["zcta_units", "zcta_voronoi_units"]

_COLUMNS = ["unit_id", "state", "population", "land_km2"]
_EQUAL_AREA = "EPSG:5070"  # CONUS Albers; Voronoi cells are drawn in metres
_LONELY_RADIUS_M = 300.0  # a point whose cell falls outside its state's outline keeps a disc


def zcta_units(states: Sequence[str] | str | None = None) -> gpd.GeoDataFrame:
    """ZCTA units of ``states`` (all states with polygons if None), one row per ZCTA.

    Columns: ``unit_id`` (5-digit ZCTA), ``state``, ``population``, ``land_km2``,
    geometry (EPSG:4326); sorted by ``unit_id``. States without polygons (neither bundled
    nor fetched with ``patchmap geodata fetch zcta``) get Voronoi cells, with a note.
    """
    wanted = None if states is None else geodata.normalize_states(states)
    have = set(geodata.zcta_states())
    with_polygons = None if wanted is None else [s for s in wanted if s in have]
    approximated = [] if wanted is None else [s for s in wanted if s not in have]
    parts = []
    if with_polygons is None or with_polygons:
        gdf = geodata.zcta_polygons(with_polygons).rename(columns={"zcta": "unit_id"})
        parts.append(
            gpd.GeoDataFrame(
                gdf[_COLUMNS].copy(), geometry=gdf.geometry.values, crs=gdf.crs or 4326
            ).to_crs(4326)
        )
    if approximated:
        log.info(
            f"no ZCTA polygons for {', '.join(approximated)}: using Voronoi cells of the ZCTA "
            "internal points (`patchmap geodata fetch zcta` gets the real polygons)"
        )
        parts.append(zcta_voronoi_units(approximated))
    out = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    out["unit_id"] = out["unit_id"].astype(str)
    return (
        gpd.GeoDataFrame(out, geometry="geometry", crs=4326)
        .sort_values("unit_id", kind="stable")
        .reset_index(drop=True)
    )


def zcta_voronoi_units(states: Sequence[str] | str) -> gpd.GeoDataFrame:
    """Voronoi cells of the ZCTA internal points of ``states``, clipped to each state.

    Cells never cross a state line, tile each state without gaps or overlaps, and give
    every ZCTA of the gazetteer a unit (a small disc where the clipped cell is empty).
    """
    wanted = geodata.normalize_states(states)
    points = geodata.zcta_points()
    points = points[points["state"].isin(wanted)].reset_index(drop=True)
    outlines = geodata.states().set_index("state").to_crs(_EQUAL_AREA).geometry
    xy = gpd.GeoSeries(shapely.points(points["lon"].to_numpy(), points["lat"].to_numpy()), crs=4326)
    xy = np.asarray(xy.to_crs(_EQUAL_AREA).values)
    cells = np.empty(len(points), dtype=object)
    for state, idx in points.groupby("state").indices.items():  # one pass per state, not per ZCTA
        outline = outlines[state]
        if len(idx) == 1:
            cells[idx] = outline
            continue
        diagram = shapely.get_parts(
            shapely.voronoi_polygons(shapely.multipoints(xy[idx]), extend_to=outline)
        )
        cell_of, point_of = shapely.STRtree(xy[idx]).query(diagram, predicate="contains")
        own = np.empty(len(idx), dtype=object)
        own[point_of] = diagram[cell_of]
        cells[idx] = shapely.intersection(own, outline)
    lonely = shapely.is_empty(cells) | pd.isna(cells)
    cells[lonely] = shapely.buffer(xy[lonely], _LONELY_RADIUS_M)
    gdf = gpd.GeoDataFrame(
        {
            "unit_id": points["zcta"].astype(str).to_numpy(),
            "state": points["state"].to_numpy(),
            "population": points["population"].to_numpy(),
            "land_km2": points["land_km2"].to_numpy(),
        },
        geometry=cells,
        crs=_EQUAL_AREA,
    )
    return gdf.to_crs(4326)
