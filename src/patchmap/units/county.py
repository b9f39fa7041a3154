"""County polygons as units, from the bundled geodata."""

from __future__ import annotations

from collections.abc import Sequence

import geopandas as gpd

from patchmap import geodata
from patchmap.logs import log

__all__ = ["county_units"]


def county_units(states: Sequence[str] | str | None = None) -> gpd.GeoDataFrame:
    """County units of ``states`` (all if None), one row per county.

    Columns: ``unit_id`` (5-digit FIPS), ``name``, ``state``, ``population``,
    geometry (EPSG:4326); sorted by ``unit_id``. Counties whose cartographic polygon
    collapsed to nothing at 1:10m (Falls Church city, VA, 51610) are left out with a note:
    a unit without area cannot border anything, and their accounts join the nearest county.
    """
    gdf = geodata.counties(states)
    empty = gdf.geometry.is_empty | gdf.geometry.isna()
    if empty.any():
        names = ", ".join(
            f"{n} ({c})"
            for c, n in zip(gdf.loc[empty, "county"], gdf.loc[empty, "name"], strict=True)
        )
        log.info(f"counties without a polygon at this scale left out: {names}")
        gdf = gdf[~empty]
    gdf = gdf.rename(columns={"county": "unit_id"})
    cols = ["unit_id", "name", "state", "population"]
    out = gpd.GeoDataFrame(gdf[cols].copy(), geometry=gdf.geometry.values, crs=gdf.crs or 4326)
    out["unit_id"] = out["unit_id"].astype(str)
    out = out.sort_values("unit_id", kind="stable").reset_index(drop=True)
    return out if out.crs.equals("EPSG:4326") else out.to_crs(4326)
