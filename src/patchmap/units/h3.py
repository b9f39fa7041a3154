"""H3 hexagon units: cells covering a region, cells of points, and cell polygons.

h3-py (4.x) has no array API for ``latlng_to_cell``, so :func:`points_to_cells` calls it
once per *unique* coordinate (rounded to 1e-6 degree, about 0.1 m), on plain floats with
the integer API, and turns only the unique cells into strings; everything around that call
is numpy. Measured here per million distinct points: 0.6-0.9 s, against 0.3 s for the
vectorized ``h3ronpy`` 0.22. Half a second on a 15 s command does not pay for an extra
compiled dependency (with its own Arrow stack), so h3-py it is.
"""

from __future__ import annotations

from collections.abc import Iterable

import geopandas as gpd
import h3
import numpy as np
import pandas as pd
import shapely
from h3.api import numpy_int as h3i

from patchmap.errors import InputError

__all__ = [
    "cells_to_polygons",
    "check_resolution",
    "h3_units",
    "int_cells_to_str",
    "points_to_cells",
    "points_to_int_cells",
]

_SCALE = 1_000_000  # coordinate rounding for de-duplication: 1e-6 degree


def check_resolution(resolution: object) -> int:
    """Return ``resolution`` as an int, or raise InputError unless it is 0-15."""
    if isinstance(resolution, bool):
        raise InputError(f"H3 resolution must be an integer 0-15, got {resolution!r}")
    try:
        res = int(resolution)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise InputError(f"H3 resolution must be an integer 0-15, got {resolution!r}") from None
    if res != resolution and not (isinstance(resolution, str) and str(res) == resolution.strip()):
        raise InputError(f"H3 resolution must be an integer 0-15, got {resolution!r}")
    if not 0 <= res <= 15:
        raise InputError(f"H3 resolution must be between 0 and 15, got {res}")
    return res


def int_cells_to_str(cells: np.ndarray) -> np.ndarray:
    """Hex-string ids (object array, aligned) of integer H3 cell ids such as
    :func:`points_to_int_cells` returns; one h3 call per *unique* cell."""
    uniq, inverse = np.unique(cells, return_inverse=True)
    names = np.array([h3.int_to_str(int(c)) for c in uniq], dtype=object)
    return names[inverse]


def points_to_int_cells(lat: np.ndarray, lon: np.ndarray, resolution: int) -> np.ndarray:
    """int64 H3 cell ids of points; the per-point h3 call runs once per unique coordinate."""
    res = check_resolution(resolution)
    lat = np.asarray(lat, dtype="float64")
    lon = np.asarray(lon, dtype="float64")
    if lat.shape != lon.shape:
        raise InputError(f"lat and lon differ in length ({lat.size} vs {lon.size})")
    if lat.size == 0:
        return np.empty(0, dtype="uint64")
    bad = ~(np.isfinite(lat) & np.isfinite(lon) & (np.abs(lat) <= 90) & (np.abs(lon) <= 180))
    if bad.any():
        i = int(np.argmax(bad))
        raise InputError(
            f"row {i + 1}: coordinates out of range or missing (lat={lat[i]}, lon={lon[i]})"
        )
    ilat = np.rint(lat * _SCALE).astype("int64")
    ilon = np.rint(lon * _SCALE).astype("int64")
    key = (ilat + 90 * _SCALE) * (400 * _SCALE) + (ilon + 180 * _SCALE)
    codes, uniq = pd.factorize(key, sort=False)
    ulat = ((uniq // (400 * _SCALE)) - 90 * _SCALE) / _SCALE
    ulon = ((uniq % (400 * _SCALE)) - 180 * _SCALE) / _SCALE
    cell = h3i.latlng_to_cell
    ucells = np.fromiter(
        (cell(a, b, res) for a, b in zip(ulat.tolist(), ulon.tolist(), strict=True)),
        dtype="uint64",
        count=len(uniq),
    )
    return ucells[codes]


def points_to_cells(lat: np.ndarray, lon: np.ndarray, resolution: int) -> np.ndarray:
    """H3 cell ids (hex strings) of points, as an object ndarray aligned with the input."""
    return int_cells_to_str(points_to_int_cells(lat, lon, resolution))


def cells_to_polygons(cells: Iterable[str]) -> gpd.GeoSeries:
    """Hexagon (or pentagon) polygons of H3 cells, EPSG:4326, aligned with ``cells``.

    Boundaries come from h3 one cell at a time (no array API); the polygons are built
    in one vectorized shapely call.
    """
    cells = list(cells)
    if not cells:
        return gpd.GeoSeries([], crs=4326)
    try:
        bounds = [h3.cell_to_boundary(c) for c in cells]
    except (ValueError, TypeError, h3.H3BaseException) as exc:
        raise InputError(f"not an H3 cell id among the units ({exc})") from None
    counts = np.fromiter((len(b) for b in bounds), dtype="int64", count=len(bounds))
    latlng = np.array([pt for b in bounds for pt in b], dtype="float64").reshape(-1, 2)
    # ring i = its n_i vertices and the first one again, gathered with one index array
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    ring_len = counts + 1
    ring_ids = np.repeat(np.arange(len(cells)), ring_len)
    out_starts = np.concatenate([[0], np.cumsum(ring_len)[:-1]])
    j = np.arange(int(ring_len.sum())) - out_starts[ring_ids]
    ring = latlng[starts[ring_ids] + j % counts[ring_ids]]
    lon = ring[:, 1]
    # cells crossing the antimeridian: shift negative longitudes so the ring stays continuous
    span = np.maximum.reduceat(lon, out_starts) - np.minimum.reduceat(lon, out_starts)
    wrap = span[ring_ids] > 180
    if wrap.any():
        lon = np.where(wrap & (lon < 0), lon + 360, lon)
    coords = np.column_stack([lon, ring[:, 0]])
    rings = shapely.linearrings(coords, indices=ring_ids)
    return gpd.GeoSeries(shapely.polygons(rings), crs=4326)


def h3_units(
    region_geometry: shapely.Geometry | None,
    resolution: int,
    *,
    extra_cells: Iterable[str] | None = None,
) -> gpd.GeoDataFrame:
    """All H3 cells covering a region (any overlap), plus ``extra_cells``, as units.

    Cells are those whose hexagon overlaps the region geometry (not only those whose
    centre lies inside), so a point anywhere in the region lands in a unit; pass the
    cells of placed points as ``extra_cells`` so that none is lost. Sorted by id.
    """
    res = check_resolution(resolution)
    cells: set[str] = set()
    if region_geometry is not None and not region_geometry.is_empty:
        geom = shapely.make_valid(region_geometry)
        parts = [g for g in shapely.get_parts(geom) if g.geom_type in ("Polygon", "MultiPolygon")]
        if parts:
            shape = h3.geo_to_h3shape(shapely.MultiPolygon(parts) if len(parts) > 1 else parts[0])
            cells.update(h3.h3shape_to_cells_experimental(shape, res, contain="overlap"))
    if extra_cells is not None:
        cells.update(str(c) for c in extra_cells)
    ids = np.array(sorted(cells), dtype=object)
    return gpd.GeoDataFrame({"unit_id": ids}, geometry=cells_to_polygons(ids).values, crs=4326)
