"""Rep home bases: read a reps table, find the unit each rep lives in, report travel.

A plan drawn around reps has one territory per rep, labelled by ``rep_id``; the unit that
holds the rep's home seeds that territory and is locked to it. Homes come from ``lat``/
``lon`` or, failing those, from a ZIP (the ZCTA's internal point, as for accounts).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from patchmap.errors import InputError
from patchmap.geocode import normalize_zip, zip_locations
from patchmap.io import check_ids, listed_lines, read_table
from patchmap.metrics import account_distance_km as distances
from patchmap.metrics import account_travel, equal_area_crs, travel_km

if TYPE_CHECKING:
    from patchmap.partition.plan import Plan
    from patchmap.units.adjacency import Adjacency

__all__ = [
    "account_distance_km",
    "home_xy_km",
    "locate_homes",
    "prepare_reps",
    "read_reps",
    "rep_report",
    "rep_shares",
]

#: A home this close outside every unit (a coastline simplified away) still counts.
SNAP_KM = 2.0
_LINE = "_line"
_EMAIL = r"[^@\s;,=+\-\"'<>][^@\s;,\"'<>]*@[^@\s;,\"'<>]+\.[^@\s;,\"'<>]+"
_MAX_LISTED = 5


def _rows(lines: np.ndarray, ids: np.ndarray) -> str:
    """``lines 3, 7 (rep 'a', 'b')`` for an error message."""
    who = ", ".join(repr(str(x)) for x in np.asarray(ids)[:_MAX_LISTED])
    return f"{listed_lines(lines, limit=_MAX_LISTED)} (rep {who})"


#: Other spellings of the optional columns (a plain ``territory,rep_id,rep_name,email`` file).
_ALIASES = {"rep_name": "name", "rep_email": "email", "rep_segment": "segment",
            "rep_capacity": "capacity"}  # fmt: skip


def prepare_reps(
    reps: pd.DataFrame, *, source: str = "reps", first_line: int = 2, need_home: bool = True
) -> pd.DataFrame:
    """Validate a reps table and geocode its homes.

    Columns: ``rep_id`` (required, unique), ``lat``/``lon`` or ``zip`` (per row, lat/lon
    first), optional ``capacity`` (positive number), ``segment``, ``name`` (or
    ``rep_name``), ``email`` (an address), ``territory`` and ``user_id`` (the CRM's). Returns ``rep_id, lat, lon`` plus the
    optional columns present; errors name the lines (numbered from ``first_line``, the
    header being line 1 of a file). ``need_home=False`` (a rep list for export, matched
    to territories by its ``territory`` column) leaves ``lat``/``lon`` blank where no home
    is given.
    """
    if _LINE in reps.columns and {"rep_id", "lat", "lon"} <= set(reps.columns):
        if need_home and reps["lat"].isna().any():
            bad = reps["lat"].isna().to_numpy()
            lines, ids = reps[_LINE].to_numpy(), reps["rep_id"].to_numpy()
            raise InputError(
                f"{reps.attrs.get('source', source)}: {_rows(lines[bad], ids[bad])}: no home "
                "location (lat/lon or zip)"
            )
        return reps  # already prepared
    if not isinstance(reps, pd.DataFrame):
        raise InputError(f"{source}: expected a table of reps, got {type(reps).__name__}")
    df = reps.copy()
    df.columns = [str(c).strip().lower() for c in df.columns]
    df = df.rename(columns={k: v for k, v in _ALIASES.items() if v not in df.columns})
    if "rep_id" not in df.columns:
        raise InputError(
            f"{source}: column 'rep_id' not found (expected rep_id and lat, lon or zip)"
        )
    has_ll = {"lat", "lon"} <= set(df.columns)
    if need_home and not has_ll and "zip" not in df.columns:
        raise InputError(f"{source}: no home location: expected columns lat and lon, or zip")
    if len(df) == 0:
        raise InputError(f"{source}: no reps")
    text, lines = check_ids(df, ["rep_id"], source=source, first_line=first_line)
    rid = text["rep_id"]
    out = pd.DataFrame({"rep_id": rid.to_numpy()})
    lat = np.full(len(df), np.nan)
    lon = np.full(len(df), np.nan)
    if has_ll:
        raw_lat, raw_lon = df["lat"], df["lon"]
        # copies: rows without lat/lon are filled from their ZIP below
        lat = np.array(pd.to_numeric(raw_lat, errors="coerce"), dtype=float)
        lon = np.array(pd.to_numeric(raw_lon, errors="coerce"), dtype=float)
        given = (raw_lat.notna() & (raw_lat.astype(str).str.strip() != "")).to_numpy() | (
            raw_lon.notna() & (raw_lon.astype(str).str.strip() != "")
        ).to_numpy()
        bad = given & (
            ~np.isfinite(lat) | ~np.isfinite(lon) | (np.abs(lat) > 90) | (np.abs(lon) > 180)
        )
        if bad.any():
            raise InputError(
                f"{source}: {_rows(lines[bad], rid[bad])}: lat/lon is not a valid coordinate"
            )
    need = ~(np.isfinite(lat) & np.isfinite(lon))
    if not need_home and "zip" in df.columns:  # only rows that give a ZIP are geocoded
        need &= (df["zip"].notna() & (df["zip"].astype(str).str.strip() != "")).to_numpy()
    elif not need_home:
        need[:] = False
    if need.any():
        if "zip" not in df.columns:
            raise InputError(f"{source}: {_rows(lines[need], rid[need])}: no lat/lon")

        zips = normalize_zip(df["zip"].where(pd.Series(need, index=df.index)))
        missing = need & zips.isna().to_numpy()
        if missing.any():
            raise InputError(
                f"{source}: {_rows(lines[missing], rid[missing])}: no lat/lon and no valid ZIP"
            )
        loc = zip_locations(zips[need])
        unknown = loc["lat"].isna().to_numpy()
        if unknown.any():
            sel = np.flatnonzero(need)[unknown]
            raise InputError(
                f"{source}: {_rows(lines[sel], rid[sel])}: ZIP "
                f"{zips.iloc[sel[0]]!r} is not a known ZIP code"
            )
        lat[need] = loc["lat"].to_numpy(dtype=float)
        lon[need] = loc["lon"].to_numpy(dtype=float)
    out["lat"], out["lon"] = lat, lon
    if "zip" in df.columns:
        out["zip"] = df["zip"].astype("string").to_numpy()
    if "capacity" in df.columns:
        raw = df["capacity"]
        cap = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
        given = (raw.notna() & (raw.astype(str).str.strip() != "")).to_numpy()
        bad = given & ~(np.isfinite(cap) & (cap > 0))
        if bad.any():
            raise InputError(
                f"{source}: {_rows(lines[bad], rid[bad])}: capacity must be a positive number"
            )
        out["capacity"] = cap
    for c in ("segment", "name", "email", "territory", "user_id"):
        if c in df.columns:
            out[c] = df[c].astype("string").str.strip().replace("", pd.NA).to_numpy()
    if "email" in out.columns:
        e = out["email"].astype("string")
        bad = (e.notna() & ~e.str.fullmatch(_EMAIL, na=False)).to_numpy()
        if bad.any():
            raise InputError(
                f"{source}: {_rows(lines[bad], rid[bad])}: email {e[bad].iloc[0]!r} is not "
                "an email address"
            )
    out[_LINE] = lines
    out.attrs["source"] = source
    return out


def rep_shares(reps: pd.DataFrame) -> np.ndarray | None:
    """Each rep's target share of the totals, in the reps' order: ``capacity`` (FTE) over
    the reps' total capacity, so a 0.5 FTE rep's territory aims at half a full share.
    None (equal shares) when the table has no ``capacity`` or some rep has none."""
    if "capacity" not in reps.columns:
        return None
    cap = pd.to_numeric(reps["capacity"], errors="coerce").to_numpy(dtype=float)
    if not (np.isfinite(cap).all() and (cap > 0).all()):
        return None
    return cap / cap.sum()


def read_reps(path: str | os.PathLike, *, need_home: bool = True) -> pd.DataFrame:
    """Read and validate a reps file (CSV, Parquet or Excel); see :func:`prepare_reps`."""
    return prepare_reps(read_table(path, dtype=str), source=str(path), need_home=need_home)


def _home_points(reps: pd.DataFrame) -> np.ndarray:
    return shapely.points(reps["lon"].to_numpy(dtype=float), reps["lat"].to_numpy(dtype=float))


def locate_homes(
    reps: pd.DataFrame, units: gpd.GeoDataFrame, adjacency: Adjacency | None = None,
    *, snap_km: float = SNAP_KM,
) -> np.ndarray:  # fmt: skip
    """Row position (in ``units``) of the unit holding each rep's home.

    A home within ``snap_km`` of a unit but inside none (a simplified coastline) takes the
    nearest unit. Homes outside the units' area, or two reps in one unit, raise
    :class:`InputError` naming the reps' lines.
    """
    reps = prepare_reps(reps)
    source = reps.attrs.get("source", "reps")
    geoms = units.geometry
    if geoms.crs is not None and not geoms.crs.equals("EPSG:4326"):
        geoms = geoms.to_crs(4326)
    pts = _home_points(reps)
    tree = shapely.STRtree(np.asarray(geoms.values, dtype=object))
    pi, ui = tree.query(pts, predicate="intersects")
    home = np.full(len(reps), -1, dtype=np.int64)
    order = np.lexsort((ui, pi))
    pi, ui = pi[order], ui[order]
    first = np.r_[True, pi[1:] != pi[:-1]] if len(pi) else np.zeros(0, dtype=bool)
    home[pi[first]] = ui[first]
    miss = np.flatnonzero(home < 0)
    if len(miss):
        crs = equal_area_crs(geoms)
        proj = np.asarray(geoms.to_crs(crs).values, dtype=object)
        ppts = np.asarray(gpd.GeoSeries(pts[miss], crs=4326).to_crs(crs).values, dtype=object)
        ptree = shapely.STRtree(proj)
        qi, qu = ptree.query_nearest(ppts, max_distance=snap_km * 1000.0, all_matches=False)
        home[miss[qi]] = qu
    lines = reps[_LINE].to_numpy()
    out = home < 0
    if out.any():
        sel = np.flatnonzero(out)
        raise InputError(
            f"{source}: {_rows(lines[sel], reps['rep_id'].to_numpy()[sel])}: home is outside "
            f"the units' area (no unit within {snap_km:g} km)"
        )
    dup = pd.Series(home).duplicated(keep=False).to_numpy()
    if dup.any():
        u = home[dup][0]
        sel = np.flatnonzero(home == u)
        name = adjacency.ids[u] if adjacency is not None else units.index[u]
        raise InputError(
            f"{source}: {_rows(lines[sel], reps['rep_id'].to_numpy()[sel])}: homes in the "
            f"same unit {str(name)!r} (one territory per rep needs a home unit each)"
        )
    return home


def home_xy_km(reps: pd.DataFrame, units: gpd.GeoDataFrame) -> np.ndarray:
    """Rep homes in the equal-area kilometres of the units' adjacency (``xy_km``)."""
    crs = equal_area_crs(units.geometry)
    pts = gpd.GeoSeries(_home_points(reps), crs=4326).to_crs(crs)
    return shapely.get_coordinates(np.asarray(pts.values, dtype=object)) / 1000.0


def rep_report(reps: pd.DataFrame, plan: Plan, units: gpd.GeoDataFrame) -> pd.DataFrame:
    """One row per rep: home, territory, its units and primary total, and travel.

    ``mean_distance_km`` is the distance from home to the territory's unit centroids,
    weighted by the primary balance column; ``max_distance_km`` the farthest unit.
    ``nearest_load`` is the primary total of the units nearer this rep's home than any
    other's, over the mean territory total: far from 1 when homes crowd together (or sit
    far apart), which is why balance can then cost long or lopsided territories.
    """
    reps = prepare_reps(reps)
    col = plan.balance[0]
    labels = plan.assignment.to_numpy(dtype=object)
    terr = plan.territories.set_index("territory")
    out = pd.DataFrame({"rep_id": reps["rep_id"].to_numpy()})
    for c in ("name", "segment", "capacity"):
        if c in reps.columns:
            out[c] = reps[c].to_numpy()
    out["territory"] = out["rep_id"]
    if plan.homes is not None:
        out["home_unit"] = plan.homes.reindex(out["territory"]).astype(str).to_numpy()
    out["lat"], out["lon"] = reps["lat"].to_numpy(), reps["lon"].to_numpy()
    out["units"] = terr["units"].reindex(out["territory"]).to_numpy()
    out[col] = terr[col].reindex(out["territory"]).to_numpy()
    xy = plan.adjacency.xy_km
    if xy is None:
        out["mean_distance_km"] = np.nan
        out["max_distance_km"] = np.nan
        out["nearest_load"] = np.nan
        return out
    w = pd.to_numeric(units[col], errors="coerce").fillna(0.0).to_numpy(dtype=float)
    home_xy = home_xy_km(reps, units)
    homes = pd.DataFrame(home_xy, index=out["territory"], columns=["x", "y"])
    per = travel_km(xy, labels, w, centers=homes)
    out["mean_distance_km"] = per["mean_km"].reindex(out["territory"]).to_numpy()
    out["max_distance_km"] = per["max_km"].reindex(out["territory"]).to_numpy()
    nearest = np.argmin(((xy[:, None, :] - home_xy[None, :, :]) ** 2).sum(axis=2), axis=1)
    load = np.bincount(nearest, weights=w, minlength=len(out))
    out["nearest_load"] = load / max(w.sum() / len(out), 1e-300)
    return out


def account_distance_km(reps: pd.DataFrame, accounts: pd.DataFrame, plan: Plan) -> pd.DataFrame:
    """Travel to the accounts, per rep (indexed by rep id): ``accounts``, and the mean and
    90th-percentile great-circle distance (km) from the rep's home to the accounts of the
    rep's territory, ``mean_account_km`` and ``p90_account_km`` (accounts need
    ``unit_id``, ``lat`` and ``lon``; each account counts once)."""
    reps = prepare_reps(reps)
    cols = ["accounts", "mean_account_km", "p90_account_km"]
    if not {"unit_id", "lat", "lon"} <= set(accounts.columns):
        return pd.DataFrame(np.nan, index=pd.Index(reps["rep_id"]), columns=cols)
    terr = plan.assignment.reindex(accounts["unit_id"].astype(str)).to_numpy()
    homes = reps[["rep_id", "lat", "lon"]].rename(columns={"rep_id": "territory"})
    lat = pd.to_numeric(accounts["lat"], errors="coerce").to_numpy(dtype=float)
    lon = pd.to_numeric(accounts["lon"], errors="coerce").to_numpy(dtype=float)
    d = distances(lat, lon, terr, homes)
    return account_travel(d, terr).reindex(reps["rep_id"].to_numpy())[cols]
