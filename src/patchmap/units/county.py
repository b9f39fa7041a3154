"""County polygons as units, from the bundled geodata."""

from __future__ import annotations

from collections.abc import Sequence

import geopandas as gpd

__all__ = ["county_units"]


def county_units(states: Sequence[str] | str | None = None) -> gpd.GeoDataFrame:
    """County units of ``states`` (all if None), one row per county.

    Columns: ``unit_id`` (5-digit FIPS), ``name``, ``state``, ``population``,
    geometry (EPSG:4326); sorted by ``unit_id``.
    """
    from patchmap import geodata  # imported late: loading geodata is not free

    gdf = geodata.counties(states)
    gdf = gdf.rename(columns={"county": "unit_id"})
    cols = ["unit_id", "name", "state", "population"]
    out = gpd.GeoDataFrame(gdf[cols].copy(), geometry=gdf.geometry.values, crs=gdf.crs or 4326)
    out["unit_id"] = out["unit_id"].astype(str)
    out = out.sort_values("unit_id", kind="stable").reset_index(drop=True)
    return out if out.crs.equals("EPSG:4326") else out.to_crs(4326)
