"""User polygons as units: any polygon file geopandas reads, validated and put in EPSG:4326."""

from __future__ import annotations

import os
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from patchmap.errors import InputError
from patchmap.geofetch import polygonal
from patchmap.io import read_polygon_file
from patchmap.notes import Note

__all__ = ["load_user_units"]

_POLYGONAL = (3, 6)  # shapely type ids of Polygon and MultiPolygon
_SHOW = 5  # ids named in one error line


def _some(values: pd.Series | list[str]) -> str:
    """Up to five values for a one-line message, and how many more there are."""
    items = [str(v) for v in list(values)]
    more = f" (+{len(items) - _SHOW} more)" if len(items) > _SHOW else ""
    return ", ".join(items[:_SHOW]) + more


def _id_strings(ids: pd.Series) -> pd.Series:
    """Ids as strings; whole floats (``12.0``, from a numeric column with blanks) lose the ``.0``."""
    if pd.api.types.is_float_dtype(ids) and ids.notna().all() and (ids % 1 == 0).all():
        ids = ids.astype("int64")
    return ids.astype("string").str.strip()


def load_user_units(path: str | os.PathLike, id_col: str) -> tuple[gpd.GeoDataFrame, list[str]]:
    """Read and validate the user's own unit polygons; the units and notes on what was fixed.

    Any file geopandas reads (GeoParquet, GeoPackage, GeoJSON, Shapefile). The id column
    must exist with unique, non-empty ids; geometries must be polygons (invalid ones are
    repaired with ``make_valid``, counted in the notes); a file without a CRS is assumed to
    be EPSG:4326 (lon/lat) with a note. Output: ``unit_id`` (str), the user's other columns,
    geometry, in EPSG:4326. Anything unusable raises :class:`InputError` naming the file.
    """
    p = Path(path)
    gdf = read_polygon_file(p)
    if not isinstance(gdf, gpd.GeoDataFrame) or gdf.geometry.name not in gdf.columns:
        raise InputError(f"{p}: no geometry column")
    notes: list[str] = []

    columns = [c for c in gdf.columns if c != gdf.geometry.name]
    if id_col not in columns:
        raise InputError(
            f"{p}: no id column {id_col!r} (columns: {', '.join(map(str, columns)) or 'none'})"
        )
    if id_col != "unit_id" and "unit_id" in columns:
        raise InputError(f"{p}: has a column 'unit_id' that is not the id column {id_col!r}")
    ids = _id_strings(gdf[id_col])
    blank = ids.isna() | (ids == "")
    if blank.any():
        rows = (np.flatnonzero(blank.to_numpy()) + 1).tolist()
        raise InputError(f"{p}: empty id in column {id_col!r} (features {_some(rows)})")
    dup = ids[ids.duplicated(keep=False)].drop_duplicates()
    if len(dup):
        raise InputError(f"{p}: duplicate ids in column {id_col!r}: {_some(dup)}")

    geoms = np.asarray(gdf.geometry.values, dtype=object)
    missing = pd.isna(geoms) | shapely.is_empty(geoms)
    if missing.all():
        raise InputError(f"{p}: no geometries")
    if missing.any():
        raise InputError(f"{p}: features without geometry (ids {_some(ids[missing])})")
    types = shapely.get_type_id(geoms)
    if not np.isin(types, _POLYGONAL).any():
        kinds = sorted({g.geom_type for g in geoms[:1000]})
        raise InputError(
            f"{p}: a {'/'.join(kinds)} layer; units must be polygons (e.g. ZIP or sales areas)"
        )
    invalid = ~shapely.is_valid(geoms)
    if invalid.any():
        geoms = geoms.copy()
        geoms[invalid] = polygonal(geoms[invalid])
        notes.append(
            Note(
                "repaired_geometry",
                f"{p}: repaired {int(invalid.sum())} invalid geometries with make_valid "
                f"(ids {_some(ids[invalid])})",
                count=int(invalid.sum()),
            )
        )
        types = shapely.get_type_id(geoms)
    bad = ~np.isin(types, _POLYGONAL) | shapely.is_empty(geoms)
    if bad.any():
        raise InputError(f"{p}: features that are not polygons (ids {_some(ids[bad])})")

    out = gpd.GeoDataFrame(
        {"unit_id": ids.to_numpy()} | {c: gdf[c].to_numpy() for c in columns if c != id_col},
        geometry=geoms,
        crs=gdf.crs,
    )
    out["unit_id"] = out["unit_id"].astype(str)
    if out.crs is None:
        lon_lat = shapely.bounds(geoms)
        if (np.abs(lon_lat[:, [0, 2]]) > 180).any() or (np.abs(lon_lat[:, [1, 3]]) > 90).any():
            raise InputError(f"{p}: no CRS and the coordinates are not longitude/latitude")
        notes.append(Note("assumed_crs", f"{p}: no CRS; assumed EPSG:4326 (longitude/latitude)"))
        out = out.set_crs(4326)
    elif not out.crs.equals("EPSG:4326"):
        notes.append(
            Note(
                "reprojected",
                f"{p}: reprojected from {out.crs.to_string()} to EPSG:4326",
                crs=out.crs.to_string(),
            )
        )
        out = out.to_crs(4326)
    return out, notes
