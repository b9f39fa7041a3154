"""Plan metrics: balance, contiguity, compactness and disruption, each a small function.

In the manner of GerryChain's metrics these are separate from the engine, so the map,
export and benchmark code measure a plan the same way the engine reports it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import CRS
from scipy import sparse
from scipy.sparse.csgraph import connected_components

if TYPE_CHECKING:
    from patchmap.units.adjacency import Adjacency

__all__ = [
    "account_distance_km",
    "account_travel",
    "cut_edge_fraction",
    "deviation",
    "disruption",
    "equal_area_crs",
    "haversine_km",
    "is_contiguous",
    "match_labels",
    "mean_travel_km",
    "polsby_popper",
    "territory_metrics",
    "travel_km",
]


def _centre(gs: gpd.GeoSeries) -> tuple[float, float]:
    """(lon, lat) at the middle of the data's bounds; when the data spans the antimeridian
    (Alaska's Aleutians reach 172 E), the longitude is the circular mean of the pieces'
    bounding-box centres, so the centre lies near 180 degrees and not near 0."""
    minx, miny, maxx, maxy = gs.total_bounds
    if not np.all(np.isfinite([minx, miny, maxx, maxy])):
        return 0.0, 0.0
    lat0 = (miny + maxy) / 2.0
    if maxx - minx <= 180.0:
        return (minx + maxx) / 2.0, lat0
    b = shapely.bounds(np.asarray(gs.values, dtype=object))
    ok = np.isfinite(b).all(axis=1) & (b[:, 2] - b[:, 0] <= 180.0)  # skip pieces that wrap
    if not ok.any():
        return (minx + maxx) / 2.0, lat0
    lon = np.radians((b[ok, 0] + b[ok, 2]) / 2.0)
    return float(np.degrees(np.arctan2(np.sin(lon).sum(), np.cos(lon).sum()))), lat0


def equal_area_crs(geoms: gpd.GeoSeries | gpd.GeoDataFrame) -> CRS:
    """Lambert azimuthal equal-area projection centred on the data (works anywhere on Earth).

    Areas (and so Polsby-Popper scores) are true in it; distances near the centre are too.
    """
    gs = geoms.geometry if isinstance(geoms, gpd.GeoDataFrame) else geoms
    if gs.crs is not None and not gs.crs.is_geographic:
        gs = gs.to_crs(4326)
    lon0, lat0 = _centre(gs)
    return CRS.from_proj4(
        f"+proj=laea +lat_0={lat0:.4f} +lon_0={lon0:.4f} +datum=WGS84 +units=m +no_defs"
    )


def to_equal_area(geoms: gpd.GeoSeries | gpd.GeoDataFrame) -> gpd.GeoSeries:
    """Geometries projected to :func:`equal_area_crs` (metres); no CRS means EPSG:4326."""
    gs = geoms.geometry if isinstance(geoms, gpd.GeoDataFrame) else geoms
    if gs.crs is None:
        gs = gs.set_crs(4326)
    return gs.to_crs(equal_area_crs(gs))


def deviation(totals: Sequence[float] | np.ndarray | pd.Series) -> np.ndarray:
    """Signed deviation of each total from the mean, as a fraction (0.01 = 1% over)."""
    t = np.asarray(totals, dtype=float)
    mean = t.mean() if t.size else 0.0
    if mean == 0:
        return np.zeros_like(t)
    return t / mean - 1.0


def _codes(labels: Sequence | np.ndarray | pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes and the sorted unique labels."""
    uniq, codes = np.unique(np.asarray(labels), return_inverse=True)
    return codes.ravel(), uniq


def cut_edge_fraction(adjacency: Adjacency | sparse.spmatrix, labels: Sequence) -> float:
    """Share of adjacency edges whose two units are in different territories."""
    m = adjacency.matrix if hasattr(adjacency, "matrix") else adjacency
    coo = sparse.triu(m, k=1).tocoo()
    if coo.nnz == 0:
        return 0.0
    codes, _ = _codes(labels)
    return float(np.mean(codes[coo.row] != codes[coo.col]))


def is_contiguous(adjacency: Adjacency | sparse.spmatrix, labels: Sequence) -> pd.Series:
    """Per territory: True when its units form one connected piece of the adjacency graph."""
    m = adjacency.matrix if hasattr(adjacency, "matrix") else adjacency
    codes, uniq = _codes(labels)
    coo = sparse.triu(m, k=1).tocoo()
    keep = codes[coo.row] == codes[coo.col]
    n = len(codes)
    sub = sparse.coo_matrix(
        (np.ones(int(keep.sum())), (coo.row[keep], coo.col[keep])), shape=(n, n)
    ).tocsr()
    _, comp = connected_components(sub, directed=False)
    pieces = pd.Series(comp).groupby(codes).nunique()
    return pd.Series(pieces.to_numpy() == 1, index=uniq, name="contiguous")


def polsby_popper(geoms: gpd.GeoSeries | Sequence) -> np.ndarray:
    """Polsby-Popper compactness 4*pi*area/perimeter**2 (1 = disc), in an equal-area projection."""
    gs = geoms if isinstance(geoms, gpd.GeoSeries) else gpd.GeoSeries(list(geoms), crs=4326)
    arr = to_equal_area(gs).values
    area = shapely.area(arr)
    perim = shapely.length(arr)
    with np.errstate(divide="ignore", invalid="ignore"):
        pp = np.where(perim > 0, 4.0 * np.pi * area / perim**2, np.nan)
    return pp


def polsby_popper_from_parts(
    labels: np.ndarray,
    area: np.ndarray,
    perimeter: np.ndarray,
    shared: sparse.spmatrix,
    n_territories: int,
) -> np.ndarray:
    """Polsby-Popper of each territory without dissolving polygons (exact for a coverage).

    A territory's perimeter is the sum of its units' perimeters minus twice the length of
    the boundaries its units share; ``shared`` holds shared boundary lengths per edge and
    ``labels`` are integer codes 0..n_territories-1.
    """
    coo = sparse.triu(shared, k=1).tocoo()
    inside = labels[coo.row] == labels[coo.col]
    inner = np.bincount(labels[coo.row[inside]], weights=coo.data[inside], minlength=n_territories)
    a = np.bincount(labels, weights=area, minlength=n_territories)
    p = np.bincount(labels, weights=perimeter, minlength=n_territories) - 2.0 * inner
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(p > 0, 4.0 * np.pi * a / p**2, np.nan)


def territory_metrics(
    units: gpd.GeoDataFrame,
    labels: Sequence | pd.Series,
    balance_cols: str | Sequence[str],
    adjacency: Adjacency | None = None,
) -> pd.DataFrame:
    """One row per territory: units, balance totals, signed deviations, Polsby-Popper, contiguous.

    With an ``adjacency`` that carries shared boundary lengths, compactness comes from unit
    areas and perimeters (no polygon dissolve); otherwise territories are dissolved.
    """
    cols = [balance_cols] if isinstance(balance_cols, str) else list(balance_cols)
    lab = np.asarray(labels)
    codes, uniq = _codes(lab)
    k = len(uniq)
    out = pd.DataFrame({"territory": uniq})
    out["units"] = np.bincount(codes, minlength=k)
    for c in cols:
        tot = np.bincount(codes, weights=units[c].to_numpy(dtype=float), minlength=k)
        out[c] = tot
        out[f"{c}_deviation"] = deviation(tot)
    if adjacency is not None and adjacency.shared_km is not None:
        pp = polsby_popper_from_parts(
            codes, adjacency.area_km2, adjacency.perimeter_km, adjacency.shared_km, k
        )
    else:
        geo = gpd.GeoDataFrame({"t": codes}, geometry=units.geometry.values, crs=units.crs)
        dissolved = geo.dissolve(by="t").sort_index()
        pp = polsby_popper(dissolved.geometry)
    out["polsby_popper"] = pp
    if adjacency is not None:
        out["contiguous"] = is_contiguous(adjacency, lab).to_numpy()
    return out


def disruption(
    labels_a: Sequence | pd.Series,
    labels_b: Sequence | pd.Series,
    weights: Sequence[float] | np.ndarray | pd.Series | None = None,
) -> float:
    """Share of the weight (unit count when None) whose territory differs between two plans.

    Labels are compared as given, so both plans must use the same territory names (see
    :func:`match_labels` when they do not); Series are aligned on their index first.
    """
    if isinstance(labels_a, pd.Series) and isinstance(labels_b, pd.Series):
        labels_b = labels_b.reindex(labels_a.index)
    a = np.asarray(labels_a, dtype=object)
    b = np.asarray(labels_b, dtype=object)
    w = np.ones(len(a)) if weights is None else np.asarray(weights, dtype=float)
    total = w.sum()
    if total == 0:
        return 0.0
    return float(w[a != b].sum() / total)


def travel_km(
    xy_km: np.ndarray,
    labels: Sequence | np.ndarray,
    weights: Sequence[float] | np.ndarray | None = None,
    centers: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Per territory: weighted mean and largest distance (km) of its units from its centre.

    The centre is ``centers`` (``x, y`` in the same km, indexed by label: rep homes) where
    given, else the territory's weighted centroid. One row per label: ``mean_km``,
    ``max_km`` and ``weight``; an overall figure is ``(mean_km * weight).sum() / weight.sum()``.
    """
    codes, uniq = _codes(labels)
    k = len(uniq)
    xy = np.asarray(xy_km, dtype=float)
    w = np.ones(len(codes)) if weights is None else np.asarray(weights, dtype=float)
    tw = np.bincount(codes, weights=w, minlength=k)
    safe = np.where(tw > 0, tw, 1.0)
    cx = np.bincount(codes, weights=w * xy[:, 0], minlength=k) / safe
    cy = np.bincount(codes, weights=w * xy[:, 1], minlength=k) / safe
    if centers is not None:
        c = centers.reindex(uniq)
        have = c[["x", "y"]].notna().all(axis=1).to_numpy()
        cx = np.where(have, c["x"].to_numpy(dtype=float), cx)
        cy = np.where(have, c["y"].to_numpy(dtype=float), cy)
    d = np.hypot(xy[:, 0] - cx[codes], xy[:, 1] - cy[codes])
    mean = np.bincount(codes, weights=w * d, minlength=k) / safe
    dmax = np.full(k, 0.0)
    np.maximum.at(dmax, codes, d)
    return pd.DataFrame({"mean_km": mean, "max_km": dmax, "weight": tw}, index=pd.Index(uniq))


def mean_travel_km(
    xy_km: np.ndarray,
    labels: Sequence | np.ndarray,
    weights: Sequence[float] | np.ndarray | None = None,
    centers: pd.DataFrame | None = None,
) -> float:
    """Weighted mean distance (km) of all units from their territory's centre
    (see :func:`travel_km`)."""
    t = travel_km(xy_km, labels, weights, centers)
    total = t["weight"].sum()
    return float((t["mean_km"] * t["weight"]).sum() / total) if total > 0 else float("nan")


def haversine_km(
    lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray
) -> np.ndarray:
    """Great-circle distance in km between arrays of points (degrees)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp = p2 - p1
    dl = np.radians(np.asarray(lon2) - np.asarray(lon1))
    a = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * 6371.0088 * np.arcsin(np.sqrt(np.clip(a, 0, 1)))


def account_distance_km(
    lat: np.ndarray | pd.Series,
    lon: np.ndarray | pd.Series,
    labels: Sequence | np.ndarray,
    homes: pd.DataFrame | None = None,
) -> np.ndarray:
    """Great-circle distance (km) of each account from its territory's centre.

    The centre is the rep's home: ``homes`` has ``territory, lat, lon`` (one row per rep;
    an account of a territory with several reps counts from the nearest). Territories
    without a home in ``homes`` (or all, when None) use the centroid of their accounts
    (the mean position on the sphere). Accounts without a label or coordinates get NaN.
    """
    lat = np.asarray(lat, dtype=float)
    lon = np.asarray(lon, dtype=float)
    lab = pd.Series(np.asarray(labels, dtype=object)).astype("string")
    ok = lab.notna().to_numpy() & np.isfinite(lat) & np.isfinite(lon)
    d = np.full(len(lat), np.nan)
    if not ok.any():
        return d
    codes, uniq = pd.factorize(lab[ok].astype(str).to_numpy(), sort=True)
    rows = np.flatnonzero(ok)
    rad_lat, rad_lon = np.radians(lat[rows]), np.radians(lon[rows])
    xyz = np.column_stack(
        [np.cos(rad_lat) * np.cos(rad_lon), np.cos(rad_lat) * np.sin(rad_lon), np.sin(rad_lat)]
    )
    k = len(uniq)
    c = np.column_stack([np.bincount(codes, weights=xyz[:, j], minlength=k) for j in range(3)])
    c_lat = np.degrees(np.arctan2(c[:, 2], np.hypot(c[:, 0], c[:, 1])))
    c_lon = np.degrees(np.arctan2(c[:, 1], c[:, 0]))
    d[rows] = haversine_km(lat[rows], lon[rows], c_lat[codes], c_lon[codes])
    if homes is not None and len(homes):
        h = homes.dropna(subset=["lat", "lon"])
        h = h.assign(code=pd.Index(uniq).get_indexer(h["territory"].astype(str)))
        h = h[h["code"] >= 0]
        if len(h):
            pairs = pd.DataFrame({"row": rows, "code": codes}).merge(h, on="code")
            dist = haversine_km(
                lat[pairs["row"]], lon[pairs["row"]],
                pairs["lat"].to_numpy(float), pairs["lon"].to_numpy(float),
            )  # fmt: skip
            nearest = pd.Series(dist).groupby(pairs["row"].to_numpy()).min()
            d[nearest.index.to_numpy()] = nearest.to_numpy()
    return d


def account_travel(distance_km: np.ndarray, labels: Sequence | np.ndarray) -> pd.DataFrame:
    """Per territory: ``accounts``, ``mean_account_km`` and ``p90_account_km`` (the 90th
    percentile) of the accounts' distances from :func:`account_distance_km`; each account
    counts once."""
    d = pd.Series(np.asarray(distance_km, dtype=float))
    lab = pd.Series(np.asarray(labels, dtype=object)).astype("string")
    ok = d.notna() & lab.notna()
    g = d[ok].groupby(lab[ok].astype(str).to_numpy())
    return pd.DataFrame(
        {"accounts": g.size(), "mean_account_km": g.mean(), "p90_account_km": g.quantile(0.9)}
    )


def match_labels(
    labels_a: Sequence | np.ndarray,
    labels_b: Sequence | np.ndarray,
    weights: Sequence[float] | np.ndarray | None = None,
) -> dict:
    """Map each label of plan B to the label of plan A it overlaps most, one-to-one.

    Maximum total overlap (``weights``, unit count when None) by the Hungarian method
    (``scipy.optimize.linear_sum_assignment``); labels of B left without a partner (B has
    more territories) keep their own name.
    """
    from scipy.optimize import linear_sum_assignment

    ca, ua = _codes(labels_a)
    cb, ub = _codes(labels_b)
    w = np.ones(len(ca)) if weights is None else np.asarray(weights, dtype=float)
    overlap = sparse.coo_matrix((w, (cb, ca)), shape=(len(ub), len(ua))).toarray()
    rows, cols = linear_sum_assignment(-overlap)
    out = {ub[r]: ua[c] for r, c in zip(rows.tolist(), cols.tolist(), strict=True)}
    taken = set(out.values())
    for b in ub.tolist():
        if b not in out:
            out[b] = b if b not in taken else f"{b} (new)"
    return out
