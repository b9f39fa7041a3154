"""ZCTA (ZIP Code Tabulation Area) polygons as units, from the bundled geodata."""

from __future__ import annotations

from collections.abc import Sequence

import geopandas as gpd

__all__ = ["zcta_units"]


def zcta_units(states: Sequence[str] | str | None = None) -> gpd.GeoDataFrame:
    """ZCTA units of ``states`` (all bundled states if None), one row per ZCTA.

    Columns: ``unit_id`` (5-digit ZCTA), ``state``, ``population``, ``land_km2``,
    geometry (EPSG:4326); sorted by ``unit_id``.
    """
    from patchmap import geodata  # imported late: loading geodata is not free

    gdf = geodata.zcta_polygons(states)
    gdf = gdf.rename(columns={"zcta": "unit_id"})
    cols = ["unit_id", "state", "population", "land_km2"]
    out = gpd.GeoDataFrame(gdf[cols].copy(), geometry=gdf.geometry.values, crs=gdf.crs or 4326)
    out["unit_id"] = out["unit_id"].astype(str)
    out = out.sort_values("unit_id", kind="stable").reset_index(drop=True)
    return out if out.crs.equals("EPSG:4326") else out.to_crs(4326)
