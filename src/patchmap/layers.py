"""Layers: place accounts in units (H3 cells, ZCTAs, counties) and sum them per unit.

Every unit of the region appears, also those with no account (zeros there), and nothing is
lost: each account is either placed in exactly one unit or rejected with a reason, and the
sum of every column over the units equals its sum over the placed accounts.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import CRS

from patchmap import geodata
from patchmap.accounts import tally_line
from patchmap.errors import InputError
from patchmap.io import write_units
from patchmap.notes import Note
from patchmap.options import did_you_mean, error
from patchmap.scoring import blank, text_values
from patchmap.units import h3 as h3u
from patchmap.units.county import county_units
from patchmap.units.meta import h3_resolution, tag_units
from patchmap.units.zcta import zcta_units

__all__ = [
    "COUNTED_NOTES",
    "MEASURES",
    "SUMMED",
    "Chunk",
    "LayerSpec",
    "Layout",
    "Prepared",
    "Survey",
    "apply_chunk",
    "chunk_rejects",
    "decide_units",
    "finish_layers",
    "finish_units",
    "layer_spec",
    "survey_chunk",
    "survey_geometry",
    "fold_sums",
    "prepare_accounts",
    "unit_contributions",
    "UNIT_COLUMNS",
    "UNIT_KINDS",
    "LayersResult",
    "account_points",
    "build_layers",
    "check_sums",
    "local_equal_area_crs",
    "locate_points",
    "place_accounts",
    "write_layers",
]

UNIT_KINDS = ("h3", "zcta", "county")
MEASURES = ("score", "reach", "potential")
#: Points in no unit but this close to one join the nearest: coastline slivers left by the
#: simplification of ZCTAs (1 km); counties and states are 1:10,000,000 cartographic
#: outlines whose coasts are off by a few km (5 km).
NEAREST_METERS = {"zcta": 1000.0, "county": 5000.0, "state": 5000.0}
MAX_H3_CELLS = 3_000_000  # guard against polyfilling a large region at a fine resolution
OUTSIDE = "outside the region's units"
_ROUND = 1_000_000


def joined_nearest_note(count: int, kind: str) -> Note:
    """Accounts in the region but in no unit (land without ZIP delivery areas) joined the
    nearest unit."""
    return Note(
        "joined_nearest",
        f"{count} accounts lie in the region but in no {kind.upper()} "
        f"(land without ZIP delivery areas): joined the nearest {kind.upper()}",
        count=count,
        kind=kind,
    )


def zip_only_note(count: int) -> Note:
    """Accounts located by ZIP only, placed at their ZCTA's internal point."""
    return Note(
        "located_by_zip",
        f"{count:,} accounts located by ZIP only: placed at their ZCTA's internal point",
        count=count,
    )


def outside_by_zip_note(count: int) -> Note:
    """Accounts whose point lies in no ZCTA (across a border, offshore), placed in the ZCTA
    of their ZIP."""
    return Note(
        "outside_by_zip",
        f"{count:,} accounts whose lat/lon lie in no ZCTA of the region (across a border or "
        "offshore) placed in their ZIP's ZCTA",
        count=count,
    )


#: Note makers by code, for :func:`patchmap.notes.merge_counts` (notes of several parts).
COUNTED_NOTES = {
    "joined_nearest": joined_nearest_note,
    "located_by_zip": zip_only_note,
    "outside_by_zip": outside_by_zip_note,
}
NO_STATUS_NOTE = Note(
    "no_status",
    "accounts have no 'status' column: customers counted as 0, whitespace = potential",
)


@dataclass
class LayersResult:
    """Units with summed measures and densities, the placed accounts, and the rejects."""

    units: gpd.GeoDataFrame
    placed: pd.DataFrame
    rejects: pd.DataFrame
    kind: str = "zcta"
    resolution: int | None = None
    states: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per step

    def __post_init__(self) -> None:
        # the layer records what it is (kept in the GeoParquet file): no stage re-guesses it
        tag_units(self.units, self.kind, self.resolution)

    @property
    def n_placed(self) -> int:
        return len(self.placed)

    @property
    def n_read(self) -> int:
        return self.n_placed + len(self.rejects)

    def tally(self) -> str:
        """One line: ``N read, M placed, R rejected; U units``."""
        units = f"{len(self.units)} {self.kind} units"
        return f"{tally_line(self.n_read, self.n_placed, len(self.rejects))}; {units}"


# ---------------------------------------------------------------- geometry helpers


def local_equal_area_crs(bounds: Sequence[float]) -> CRS:
    """A Lambert azimuthal equal-area CRS centred on ``(minx, miny, maxx, maxy)``.

    Areas are exact anywhere; distances are close to true near the centre, which is what
    the 1 km nearest-unit tolerance needs.
    """
    minx, miny, maxx, maxy = (float(v) for v in bounds)
    lon0 = (minx + maxx) / 2 if maxx - minx <= 180 else 0.0
    lat0 = (miny + maxy) / 2
    return CRS.from_proj4(
        f"+proj=laea +lat_0={lat0:.4f} +lon_0={lon0:.4f} +datum=WGS84 +units=m +no_defs"
    )


def _coordinate_codes(
    lon: np.ndarray, lat: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Factorize points by coordinate rounded to 1e-6 degree: (codes, unique lon, unique lat)."""
    ilat = np.rint(lat * _ROUND).astype("int64") + 90 * _ROUND
    ilon = np.rint(lon * _ROUND).astype("int64") + 180 * _ROUND
    codes, uniq = pd.factorize(ilat * (400 * _ROUND) + ilon, sort=False)
    ulat = uniq // (400 * _ROUND) - 90 * _ROUND
    ulon = uniq % (400 * _ROUND) - 180 * _ROUND
    return codes, ulon / _ROUND, ulat / _ROUND


def locate_points(
    lon: np.ndarray,
    lat: np.ndarray,
    polygons: np.ndarray | gpd.GeoSeries,
    *,
    nearest_m: float = 0.0,
    within: shapely.Geometry | None = None,
    return_how: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Index of the polygon containing each point (-1 for none), first polygon on ties.

    Vectorized over points: points are de-duplicated and sorted by longitude once; then,
    per *polygon*, the points inside its bounding box are tested with the prepared
    ``shapely.contains_xy``. Points in no polygon but within ``nearest_m`` metres of one
    (coastline slivers left by simplification) take the nearest polygon; so do, at any
    distance, points inside ``within`` (the region: land between ZCTAs still belongs to
    it). ``return_how`` adds a code per point: 0 inside, 1 near, 2 in a gap, -1 none.
    """
    lon = np.asarray(lon, dtype="float64")
    lat = np.asarray(lat, dtype="float64")
    polys = np.asarray(
        polygons.values if isinstance(polygons, gpd.GeoSeries) else polygons, dtype=object
    )
    if lon.size == 0 or polys.size == 0:
        none = np.full(lon.size, -1, dtype="int64")
        return (none, none.copy()) if return_how else none
    codes, ulon, ulat = _coordinate_codes(lon, lat)
    order = np.argsort(ulon, kind="stable")
    xs, ys = ulon[order], ulat[order]
    found = np.full(ulon.size, -1, dtype="int64")
    bounds = shapely.bounds(polys)
    shapely.prepare(polys)
    los = np.searchsorted(xs, bounds[:, 0], side="left")
    his = np.searchsorted(xs, bounds[:, 2], side="right")
    for i in np.nonzero(his > los)[0]:  # one iteration per unit, not per account
        lo, hi = los[i], his[i]
        yy = ys[lo:hi]
        cand = np.nonzero((yy >= bounds[i, 1]) & (yy <= bounds[i, 3]))[0] + lo
        if cand.size == 0:
            continue
        cand = cand[found[order[cand]] < 0]
        if cand.size == 0:
            continue
        inside = cand[shapely.contains_xy(polys[i], xs[cand], ys[cand])]
        found[order[inside]] = i
    how = np.where(found >= 0, 0, -1)
    missing = np.nonzero(found < 0)[0]
    if missing.size and (nearest_m > 0 or within is not None):
        crs = local_equal_area_crs(shapely.total_bounds(polys))
        tree = shapely.STRtree(gpd.GeoSeries(polys, crs=4326).to_crs(crs).values)
        pts = (
            gpd.GeoSeries(shapely.points(ulon[missing], ulat[missing]), crs=4326).to_crs(crs).values
        )
        if nearest_m > 0:
            pt_i, poly_i = tree.query_nearest(pts, max_distance=nearest_m, all_matches=False)
            found[missing[pt_i]] = poly_i
            how[missing[pt_i]] = 1
        if within is not None:
            left = found[missing] < 0
            inside = left & shapely.contains_xy(within, ulon[missing], ulat[missing])
            if inside.any():
                pt_i, poly_i = tree.query_nearest(pts[inside], all_matches=False)
                sel = missing[np.nonzero(inside)[0][pt_i]]
                found[sel] = poly_i
                how[sel] = 2
    return (found[codes], how[codes]) if return_how else found[codes]


# ---------------------------------------------------------------- account helpers


def _rows(accounts: pd.DataFrame) -> np.ndarray:
    """1-based data rows: ``source_row`` from ingest when present, else position + 1."""
    if "source_row" in accounts.columns:
        return (
            pd.to_numeric(accounts["source_row"], errors="coerce")
            .fillna(0)
            .astype("int64")
            .to_numpy()
        )
    return np.arange(1, len(accounts) + 1, dtype="int64")


def _ids(accounts: pd.DataFrame) -> pd.Series:
    if "account_id" in accounts.columns:
        return accounts["account_id"].astype("string").reset_index(drop=True)
    return pd.Series(_rows(accounts).astype(str), dtype="string")


def _rejects(accounts: pd.DataFrame, mask: np.ndarray, reason: str | np.ndarray) -> pd.DataFrame:
    reasons = np.broadcast_to(np.asarray(reason, dtype=object), (len(accounts),))
    return pd.DataFrame(
        {
            "row": pd.Series(_rows(accounts)[mask], dtype="int64"),
            "account_id": _ids(accounts)[mask].reset_index(drop=True),
            "reason": pd.Series(reasons[mask], dtype="string"),
        }
    )


def _empty_rejects() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "row": pd.Series(dtype="int64"),
            "account_id": pd.Series(dtype="string"),
            "reason": pd.Series(dtype="string"),
        }
    )


def coordinates(accounts: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """lat, lon as float arrays (NaN where missing); wrong types raise InputError."""
    for col in ("lat", "lon"):
        if col not in accounts.columns:
            raise InputError(
                f"accounts: missing column {col!r} (run ingest first, or give lat/lon)"
            )
    out = []
    for col in ("lat", "lon"):
        out.append(measure_values(accounts, col, fill=None))
    lat, lon = out
    outside = ~(np.isnan(lat) | np.isnan(lon)) & ((np.abs(lat) > 90) | (np.abs(lon) > 180))
    lat = np.where(outside, np.nan, lat)
    lon = np.where(outside, np.nan, lon)
    return lat, lon


def located_by_zip(accounts: pd.DataFrame, lat: np.ndarray) -> np.ndarray:
    """Accounts geocoded from their ZIP (they carry the ZCTA they were placed by)."""
    if "zcta" not in accounts.columns:
        return np.zeros(len(accounts), dtype=bool)
    has = accounts["zcta"].notna().to_numpy()
    if "location_source" in accounts.columns:
        return has & (text_values(accounts["location_source"]) == "zip")
    return has & np.isnan(lat)


def measure_values(accounts: pd.DataFrame, col: str, fill: float | None = 0.0) -> np.ndarray:
    """A numeric column as float (NaN -> ``fill``); text raises InputError naming the row."""
    raw = accounts[col]
    if pd.api.types.is_numeric_dtype(raw) or pd.api.types.is_bool_dtype(raw):
        values = raw.to_numpy(dtype="float64", na_value=np.nan)
    else:
        values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
        bad = np.isnan(values) & ~blank(raw)
        if bad.any():
            i = int(np.argmax(bad))
            raise InputError(
                f"accounts: column {col!r} must be numeric (row {_rows(accounts)[i]}: {raw.iloc[i]!r})"
            )
    return values if fill is None else np.nan_to_num(values, nan=fill)


def customer_flags(accounts: pd.DataFrame) -> np.ndarray | None:
    """Boolean customer flag from ``status == 'customer'`` or an ``is_customer`` column."""
    if "status" in accounts.columns:
        return text_values(accounts["status"], lower=True) == "customer"
    if "is_customer" in accounts.columns:
        raw = text_values(accounts["is_customer"], lower=True)
        return np.isin(raw, ["1", "true", "yes", "y", "customer", "1.0"])
    return None


# ---------------------------------------------------------------- placement


def place_accounts(
    accounts: pd.DataFrame,
    units_gdf: gpd.GeoDataFrame,
    kind: str,
    *,
    resolution: int | None = None,
    strict: bool = True,
    region_geometry: shapely.Geometry | None = None,
    notes: list[str] | None = None,
    cells: np.ndarray | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Assign each account a ``unit_id`` of ``units_gdf``, or reject it with a reason.

    ``zcta``: the ZCTA an account was geocoded to from its ZIP when that ZCTA is a unit,
    else the polygon containing its point (nearest polygon within 1 km for coastline
    slivers); a point in no ZCTA but inside ``region_geometry`` (the land between ZCTAs)
    joins the nearest one, counted in ``notes``; a point beyond them all (across a border,
    offshore) whose ZIP's ZCTA is a unit is placed there, counted in ``notes``. ``county``: the polygon containing the
    point (5 km fallback: cartographic coastlines). ``h3``:
    the cell of the point; cells not among the units are rejected, unless
    ``strict=False`` (no region was given), when every cell is kept.
    ``cells``: int64 H3 cells of the accounts, if already computed.
    Returns ``(placed, rejects)``; ``placed`` is ``accounts`` with ``unit_id`` added.
    """
    kind = check_kind(kind)
    if "unit_id" not in units_gdf.columns:
        raise InputError("units: missing column 'unit_id'")
    if units_gdf.crs is not None and not units_gdf.crs.equals("EPSG:4326"):
        units_gdf = units_gdf.to_crs(4326)
    accounts = accounts.reset_index(drop=True)
    lat, lon = coordinates(accounts)
    has_point = ~(np.isnan(lat) | np.isnan(lon))
    unit_ids = units_gdf["unit_id"].astype(str).to_numpy(dtype=object)
    n = len(accounts)
    reason = np.full(n, None, dtype=object)

    if kind == "h3":
        res = (
            h3u.check_resolution(resolution) if resolution is not None else h3_resolution(units_gdf)
        )
        res = 7 if res is None else res
        if cells is None:
            cells = np.zeros(n, dtype="uint64")
            cells[has_point] = h3u.points_to_int_cells(lat[has_point], lon[has_point], res)
        unit_int = np.sort(np.array([h3u.h3.str_to_int(u) for u in unit_ids], dtype="uint64"))
        pos = np.searchsorted(unit_int, cells)
        known = (
            has_point
            & (pos < unit_int.size)
            & (unit_int[np.minimum(pos, max(unit_int.size - 1, 0))] == cells)
            if unit_int.size
            else np.zeros(n, dtype=bool)
        )
        ok = has_point & (known | (not strict))
        reason[has_point & ~ok] = "outside region"
        unit = np.full(n, None, dtype=object)
        if ok.any():
            unit[ok] = h3u.int_cells_to_str(cells[ok])
    else:
        unit_index = pd.Index(unit_ids)
        unit = np.full(n, None, dtype=object)
        if kind == "zcta":
            zip_rows = located_by_zip(accounts, lat)
            pos = np.full(n, -1, dtype="int64")
            if zip_rows.any():
                pos[zip_rows] = unit_index.get_indexer(text_values(accounts["zcta"])[zip_rows])
            by_zip = pos >= 0
            unit[by_zip] = unit_ids[pos[by_zip]]
        else:
            by_zip = np.zeros(n, dtype=bool)
        todo = has_point & ~by_zip
        if todo.any():
            hit, how = locate_points(
                lon[todo],
                lat[todo],
                units_gdf.geometry.values,
                nearest_m=NEAREST_METERS[kind],
                within=region_geometry,
                return_how=True,
            )
            if notes is not None and (how == 2).any():
                notes.append(joined_nearest_note(int((how == 2).sum()), kind))
            idx = np.nonzero(todo)[0]
            unit[idx[hit >= 0]] = unit_ids[hit[hit >= 0]]
            reason[idx[hit < 0]] = OUTSIDE
            miss = idx[hit < 0]
            if kind == "zcta" and miss.size and "zcta" in accounts.columns:
                # a point off every ZCTA whose ZIP names one of the units: the ZIP decides
                zpos = unit_index.get_indexer(text_values(accounts["zcta"])[miss])
                back = miss[zpos >= 0]
                unit[back], reason[back] = unit_ids[zpos[zpos >= 0]], None
                if notes is not None and back.size:
                    notes.append(outside_by_zip_note(int(back.size)))
        ok = by_zip | (todo & (unit != None))  # noqa: E711 (elementwise on an object array)
    reason[~ok & (reason == None)] = "no location (lat/lon or zip)"  # noqa: E711

    placed = accounts.loc[ok].copy()
    placed["unit_id"] = unit[ok]
    rejects = _rejects(accounts, ~ok, reason) if (~ok).any() else _empty_rejects()
    return placed.reset_index(drop=True), rejects


def check_kind(kind: str) -> str:
    """A unit kind (``h3``, ``zcta``, ``county``) in canonical form; anything else raises."""
    k = str(kind).strip().lower()
    if k not in UNIT_KINDS:
        raise error("layers", f"{{units}} must be one of {', '.join(UNIT_KINDS)}, got {kind!r}")
    return k


# ---------------------------------------------------------------- region


def _normalize_states(states: Sequence[str] | str) -> list[str]:
    return sorted(geodata.normalize_states(states))


def _bundled_zcta_states() -> list[str]:
    return list(geodata.zcta_states())


def _point_states(lon: np.ndarray, lat: np.ndarray, states_gdf: gpd.GeoDataFrame) -> np.ndarray:
    """State abbreviation of each point (None outside every state; 5 km coastal tolerance)."""
    hit = locate_points(lon, lat, states_gdf.geometry.values, nearest_m=NEAREST_METERS["state"])
    names = states_gdf["state"].astype(str).to_numpy(dtype=object)
    return np.where(hit >= 0, names[np.maximum(hit, 0)], None)


def _states_layer() -> gpd.GeoDataFrame:
    return geodata.states().reset_index(drop=True)


# ---------------------------------------------------------------- aggregation


def build_layers(
    accounts: pd.DataFrame,
    *,
    units: str = "zcta",
    resolution: int = 7,
    states: Sequence[str] | str | None = None,
    sums: Sequence[str] | None = None,
) -> LayersResult:
    """Place accounts in units and sum account count, customers, score, reach, potential,
    whitespace per unit, with equal-area ``area_km2`` and densities per km²; ``sums`` are
    the user's own numeric account columns summed too (a ``revenue``, a ``workload``).

    ``states=None`` infers the region: the states that contain placed accounts (for ZCTAs,
    the states of the bundled ZCTAs they fall in; accounts beyond the bundled coverage are
    rejected with that reason). Units with no account inside the region are kept, with zeros.

    The stages of :mod:`patchmap.distributed`, on the whole table as one chunk.
    """
    clock = Clock()
    spec = layer_spec(units, resolution, states)
    if not isinstance(accounts, pd.DataFrame):
        raise InputError("accounts: expected a table of accounts")
    prep = prepare_accounts(accounts, spec.kind, sums)
    notes = prep.notes
    clock("validate")
    survey = survey_chunk(spec, prep.lat, prep.lon, survey_geometry(spec))
    clock("survey")
    layout = decide_units(spec, [survey], notes)
    clock("units")
    chunk = apply_chunk(spec, layout, prep, survey.cells)
    notes += chunk.notes
    clock("place")
    totals = fold_sums(None, chunk.contrib, len(layout.units), prep.sums)
    out, region = finish_layers(spec, layout, totals, notes, prep.sums)
    clock("aggregate")
    return LayersResult(
        units=out,
        placed=chunk.placed,
        rejects=chunk_rejects([chunk.rejects]),
        kind=spec.kind,
        resolution=spec.resolution,
        states=region,
        notes=notes,
        timings=clock.laps,
    )


#: Columns every unit layer has: a user's ``sums`` cannot take these names.
UNIT_COLUMNS = (
    "unit_id", "geometry", "state", "name", "accounts", "customers", *MEASURES, "whitespace",
    "area_km2", "population", "land_km2",
)  # fmt: skip


def check_sums(accounts: pd.DataFrame, sums: Sequence[str] | str | None) -> list[str]:
    """The user's own columns to sum into the units, checked: present in the accounts,
    numeric (text raises naming the row), not a built-in unit column, not repeated."""
    if sums is None:
        return []
    names = [sums] if isinstance(sums, str) else [str(c) for c in sums]
    for col in names:
        if col in UNIT_COLUMNS or col.endswith("_density"):
            raise error("layers", f"{{sums}}: {col!r} is a built-in unit column, summed already "
                                  "or computed")  # fmt: skip
        if col not in accounts.columns:
            raise error(
                "layers",
                f"{{sums}}: column {col!r} not found in the accounts"
                f"{did_you_mean(col, map(str, accounts.columns))}",
            )
        try:
            measure_values(accounts, col)
        except InputError as exc:
            raise error("layers", f"{{sums}}: {exc}".replace("accounts: ", "")) from None
    if len(set(names)) != len(names):
        raise error("layers", f"{{sums}}: a column repeats ({', '.join(names)})")
    return names


def _measures_present(accounts: pd.DataFrame, notes: list[str]) -> list[str]:
    """The measure columns the accounts carry (validated numeric); say what is missing."""
    present = []
    for col in MEASURES:
        if col in accounts.columns:
            measure_values(accounts, col)  # validate early: text in a measure column is an error
            present.append(col)
        else:
            notes.append(
                Note(
                    "no_measure",
                    f"accounts have no {col!r} column: {col} summed as 0 (run `patchmap score` first)",
                    column=col,
                )
            )
    if customer_flags(accounts) is None:
        notes.append(NO_STATUS_NOTE)
    return present


def build_layers_on_polygons(
    accounts: pd.DataFrame, units_gdf: gpd.GeoDataFrame, *, sums: Sequence[str] | None = None
) -> LayersResult:
    """Aggregate accounts into a user's own polygons (``units.custom.load_user_units``).

    Points go to the polygon containing them (nearest within the county tolerance for
    coastline slivers); accounts outside every polygon are rejected with the reason.
    ``sums``: the user's own numeric account columns, summed as the built-in measures.
    """
    clock = Clock()
    prep = prepare_accounts(accounts, "polygon", sums)
    accounts, present, sums, notes = prep.accounts, prep.present, prep.sums, prep.notes
    clock("validate")
    placed, rejects = place_accounts(accounts, units_gdf, "county", notes=notes)
    clock("place")
    rejects = rejects.sort_values("row", kind="stable").reset_index(drop=True)
    extra = [c for c in units_gdf.columns if c not in ("unit_id", "geometry", *MEASURES, *sums)]
    out = aggregate_units(units_gdf, placed, [], present, sums)
    user = pd.DataFrame(
        units_gdf[extra].to_numpy(), columns=extra, index=units_gdf["unit_id"].astype(str)
    )
    for col in [c for c in extra if c not in out.columns]:
        out[col] = user[col].reindex(out["unit_id"]).to_numpy()
    clock("aggregate")
    return LayersResult(
        units=out,
        placed=placed,
        rejects=rejects,
        kind="polygon",
        resolution=None,
        states=[],
        notes=notes,
        timings=clock.laps,
    )


class Clock:
    """Seconds between successive calls, by name (for ``LayersResult.timings``)."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._t = time.perf_counter()

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = round(self.laps.get(name, 0.0) + now - self._t, 4)
        self._t = now


def account_points(accounts: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """(accounts, lat, lon): :func:`coordinates`, ZIP-only rows at their ZCTA's point."""
    lat, lon = coordinates(accounts)
    return fill_from_zcta(accounts, lat, lon)


def fill_from_zcta(
    accounts: pd.DataFrame, lat: np.ndarray, lon: np.ndarray
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Give rows that carry a ``zcta`` but no coordinates the ZCTA's internal point."""
    if "zcta" not in accounts.columns:
        return accounts, lat, lon
    need = (np.isnan(lat) | np.isnan(lon)) & accounts["zcta"].notna().to_numpy()
    if not need.any():
        return accounts, lat, lon

    pts = geodata.zcta_points().drop_duplicates("zcta").set_index("zcta")
    keys = text_values(accounts["zcta"])[need]
    lat, lon = lat.copy(), lon.copy()
    lat[need] = pts["lat"].reindex(keys).to_numpy(dtype="float64")
    lon[need] = pts["lon"].reindex(keys).to_numpy(dtype="float64")
    accounts = accounts.copy()
    accounts["lat"] = lat
    accounts["lon"] = lon
    return accounts, lat, lon


def explain_outside(
    rejects: pd.DataFrame,
    accounts: pd.DataFrame,
    lat: np.ndarray,
    lon: np.ndarray,
    bundled: list[str],
) -> pd.DataFrame:
    """Say which state a rejected point lies in when that state has no bundled ZCTAs."""
    outside = (rejects["reason"] == OUTSIDE).fillna(False).to_numpy(dtype=bool)
    if not outside.any():
        return rejects
    pos = pd.Index(_rows(accounts)).get_indexer(rejects["row"].to_numpy()[outside])
    st = _point_states(lon[pos], lat[pos], _states_layer())
    beyond = pd.notna(st) & ~pd.Series(st).isin(bundled).to_numpy()
    if beyond.any():
        why = [
            f"in {s}: outside the bundled ZCTA coverage ({', '.join(bundled)})" for s in st[beyond]
        ]
        idx = np.nonzero(outside)[0][beyond]
        rejects = rejects.copy()
        rejects.loc[idx, "reason"] = why
    return rejects


#: States with at least this share of the located accounts make the inferred region.
MIN_REGION_SHARE = 0.01


def split_region(counts: pd.Series, notes: list[str]) -> tuple[list[str], list[str]]:
    """(region, minor): states with >= 1% of the accounts (at least the largest one) are
    the region, filled with every unit; in the others only units holding accounts are kept.
    """
    counts = counts[counts > 0].sort_values(ascending=False)
    if counts.empty:
        return [], []
    major = counts[counts >= MIN_REGION_SHARE * counts.sum()]
    region = sorted(major.index.astype(str)) or [str(counts.index[0])]
    minor = sorted(s for s in counts.index.astype(str) if s not in region)
    if len(counts) > 1:
        notes.append(
            Note(
                "region_inferred",
                "region inferred from the accounts: "
                + ", ".join(region)
                + (
                    f"; only the units holding accounts in {', '.join(minor)} "
                    f"({int(counts[minor].sum()):,} accounts)"
                    if minor
                    else ""
                )
                + "; pass states to choose",
                region=region,
                minor=minor,
            )
        )
    return region, minor


def point_states(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """The U.S. state of each point (None outside every state; 5 km coastal tolerance)."""
    if lat.size == 0:
        return np.empty(0, dtype=object)
    return _point_states(lon, lat, _states_layer())


def infer_states(lat: np.ndarray, lon: np.ndarray, states: np.ndarray | None = None) -> pd.Series:
    """Accounts per state (point in state polygon, 5 km coastal tolerance); ``states``: the
    points' :func:`point_states`, when already known."""
    st = point_states(lat, lon) if states is None else states
    return pd.Series(st[pd.notna(st)], dtype=object).value_counts()


def check_h3_size(region_geom: shapely.Geometry, res: int, region: list[str]) -> None:
    """Raise InputError when the region needs more than :data:`MAX_H3_CELLS` cells at ``res``."""
    import h3

    crs = local_equal_area_crs(region_geom.bounds)
    km2 = float(gpd.GeoSeries([region_geom], crs=4326).to_crs(crs).area.iloc[0]) / 1e6
    n = km2 / h3.average_hexagon_area(res, unit="km^2")
    if n > MAX_H3_CELLS:
        raise error(
            "layers",
            f"{{resolution}} {res} over {', '.join(region)} needs about {n:,.0f} H3 cells "
            f"(limit {MAX_H3_CELLS:,}); use a lower {{resolution}} or a smaller {{region}}",
        )


# ---------------------------------------------------------------- stages both engines run
# The layers stage is prepare and survey per chunk -> decide -> apply per chunk -> fold ->
# finish: prepare_accounts, survey_chunk, decide_units, apply_chunk, fold_sums (in row order),
# finish_layers. The pandas engine (build_layers) runs them on one chunk, the whole table;
# patchmap.distributed runs the same functions on each partition of a Parquet dataset and
# only schedules them.

#: Per-unit sums every layer has (``accounts`` counts rows; the others add a value per row).
SUMMED = ("accounts", "customers", *MEASURES, "whitespace")


@dataclass
class Prepared:
    """Accounts checked and filled for placement (see :func:`prepare_accounts`)."""

    accounts: pd.DataFrame
    lat: np.ndarray
    lon: np.ndarray
    present: list[str]  # built-in measures the accounts carry
    sums: list[str]  # the user's own columns to sum
    notes: list[str]


def prepare_accounts(
    accounts: pd.DataFrame, kind: str, sums: Sequence[str] | str | None = None
) -> Prepared:
    """The checks and fills before placement, on one chunk of accounts: coordinates (ZIP-only
    rows get their ZCTA's internal point), measure columns numeric, ``sums`` valid; notes
    say what is missing and how many rows were located by ZIP only."""
    accounts, lat, lon = account_points(accounts.reset_index(drop=True))
    notes: list[str] = []
    present = _measures_present(accounts, notes)
    sums = check_sums(accounts, sums)
    by_zip = int(located_by_zip(accounts, np.full(len(accounts), np.nan)).sum())
    if by_zip and kind != "zcta":
        notes.append(zip_only_note(by_zip))
    return Prepared(accounts, lat, lon, present, sums, notes)


@dataclass(frozen=True)
class LayerSpec:
    """What layer is asked for: unit kind, H3 resolution, and the region (None: inferred)."""

    kind: str
    resolution: int | None = None
    region: tuple[str, ...] | None = None

    @property
    def strict(self) -> bool:
        """True when the region is given (not inferred from the accounts)."""
        return self.region is not None

    @property
    def needs_survey(self) -> bool:
        """True when :func:`decide_units` needs the accounts' states or H3 cells."""
        return self.kind == "h3" or (self.kind == "county" and not self.strict)


def layer_spec(
    units: str = "zcta", resolution: int | None = 7, states: Sequence[str] | str | None = None
) -> LayerSpec:
    """A checked :class:`LayerSpec` (raises in library words on a bad kind or resolution)."""
    kind = check_kind(units)
    res = h3u.check_resolution(resolution) if kind == "h3" else None
    region = tuple(_normalize_states(states)) if states is not None else None
    return LayerSpec(kind, res, region)


def survey_geometry(spec: LayerSpec) -> shapely.Geometry | None:
    """The given region's outline when :func:`survey_chunk` needs it (H3 cells inside it)."""
    if spec.kind != "h3" or not spec.strict:
        return None

    return geodata.region_geometry(list(spec.region))


@dataclass
class Survey:
    """What one chunk tells before the units exist (see :func:`survey_chunk`)."""

    states: pd.Series | None = None  # located accounts per state (region to infer)
    cells: np.ndarray | None = None  # H3 cell of each account (0: no location)
    extra: np.ndarray | None = None  # distinct cells of the points inside the region


def survey_chunk(
    spec: LayerSpec, lat: np.ndarray, lon: np.ndarray, region_geom: shapely.Geometry | None = None
) -> Survey:
    """Survey one chunk's points (:func:`prepare_accounts`' ``lat``, ``lon``): accounts per
    state when the region is inferred (counties, H3) and, for H3, each account's cell and
    the cells of points inside the region (``region_geom``, from :func:`survey_geometry`)
    or, inferred, inside (or within 5 km of) a U.S. state."""
    out = Survey()
    if not spec.needs_survey:
        return out
    located = ~(np.isnan(lat) | np.isnan(lon))
    if not spec.strict:
        states_of = point_states(lat[located], lon[located])
        out.states = infer_states(lat[located], lon[located], states_of)
    if spec.kind == "h3":
        cells = np.zeros(len(lat), dtype="uint64")
        cells[located] = h3u.points_to_int_cells(lat[located], lon[located], spec.resolution)
        inside = located.copy()
        if spec.strict:
            inside[located] = shapely.contains_xy(region_geom, lon[located], lat[located])
        else:
            inside[located] = pd.notna(states_of)
        out.cells, out.extra = cells, np.unique(cells[inside])
    return out


@dataclass
class Layout:
    """The units the chunks are placed in (see :func:`decide_units`)."""

    units: gpd.GeoDataFrame  # sorted by unit_id
    land: shapely.Geometry | None  # the region's land (ZCTAs, counties: gaps join nearest)
    region: list[str]
    minor: list[str]  # states with few accounts: only the units holding some are kept
    bundled: list[str]  # states with ZCTA polygons

    @property
    def ids(self) -> pd.Index:
        return pd.Index(self.units["unit_id"].astype(str))


def decide_units(spec: LayerSpec, surveys: Sequence[Survey], notes: list[str]) -> Layout:
    """The region (inferred from the chunks' surveys for counties and H3, noted) and its
    units; ZCTAs without a region: every bundled ZCTA (the region follows placement, in
    :func:`finish_layers`)."""
    region = list(spec.region) if spec.strict else []
    minor: list[str] = []
    bundled = _bundled_zcta_states()
    if spec.kind == "zcta":
        units = zcta_units(region if spec.strict else None)
        land = geodata.region_geometry(region if spec.strict else bundled)
        return Layout(_sorted(units), land, region, minor, bundled)
    if not spec.strict:
        counts = [s.states for s in surveys if s.states is not None and len(s.states)]
        total = (
            pd.concat(counts).groupby(level=0).sum().astype("int64")
            if counts
            else pd.Series(dtype="int64")
        )
        region, minor = split_region(total, notes)
        if not region:
            raise error(
                "layers",
                "accounts: no account lies in a U.S. state; give the region ({states=STATES})",
                states="region",
            )
    if spec.kind == "county":
        land = geodata.region_geometry(region + minor)
        return Layout(_sorted(county_units(region + minor)), land, region, minor, bundled)
    region_geom = geodata.region_geometry(region)
    check_h3_size(region_geom, spec.resolution, region)
    extra = [s.extra for s in surveys if s.extra is not None and s.extra.size]
    cells = np.unique(np.concatenate(extra)) if extra else np.empty(0, "uint64")
    units = h3u.h3_units(region_geom, spec.resolution, extra_cells=h3u.int_cells_to_str(cells))
    return Layout(_sorted(units), None, region, minor, bundled)


def _sorted(units: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    return units.sort_values("unit_id", kind="stable").reset_index(drop=True)


@dataclass
class Chunk:
    """One chunk placed: its placed accounts, rejects, contributions and notes."""

    placed: pd.DataFrame
    rejects: pd.DataFrame
    contrib: dict[str, np.ndarray]
    notes: list[str]


def apply_chunk(
    spec: LayerSpec, layout: Layout, prep: Prepared, cells: np.ndarray | None = None
) -> Chunk:
    """Place one prepared chunk in the layout's units (``cells``: its survey's H3 cells);
    rejects say why (for ZCTAs without a region, which state lacks bundled polygons)."""
    notes: list[str] = []
    if spec.kind == "h3":  # strict: the units hold every cell kept
        placed, rejects = place_accounts(
            prep.accounts, layout.units, "h3", resolution=spec.resolution, strict=True,
            cells=cells,
        )  # fmt: skip
    else:
        placed, rejects = place_accounts(
            prep.accounts, layout.units, spec.kind, region_geometry=layout.land, notes=notes
        )
        if spec.kind == "zcta" and not spec.strict:
            rejects = explain_outside(rejects, prep.accounts, prep.lat, prep.lon, layout.bundled)
    contrib = unit_contributions(placed, layout.ids, prep.present, prep.sums)
    return Chunk(placed, rejects, contrib, notes)


def chunk_rejects(rejects: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """The chunks' rejects as one table, in row order."""
    given = [r for r in rejects if len(r)]
    if not given:
        return _empty_rejects()
    return (
        pd.concat(given, ignore_index=True).sort_values("row", kind="stable").reset_index(drop=True)
    )


def finish_layers(
    spec: LayerSpec, layout: Layout, totals: dict[str, np.ndarray], notes: list[str],
    sums: Sequence[str] = (),
) -> tuple[gpd.GeoDataFrame, list[str]]:  # fmt: skip
    """(unit layer, region) from the folded sums: ZCTAs without a region take the states of
    the ZCTAs that received accounts (noted); units of minor states only where used."""
    region, minor = layout.region, layout.minor
    units = layout.units
    keep = np.ones(len(units), dtype=bool)
    used = totals["accounts"] > 0
    if spec.kind == "zcta":
        if not spec.strict:
            counts = pd.Series(totals["accounts"], index=units["state"].to_numpy())
            region, minor = split_region(counts.groupby(level=0).sum().astype("int64"), notes)
            keep = units["state"].isin(region).to_numpy() | used
        if not region:
            raise error(
                "layers",
                "accounts: no account lies in a state with bundled ZCTA polygons "
                f"({', '.join(layout.bundled)}); use {{units=h3}} or county",
            )
    elif spec.kind == "county" and minor:
        keep = units["state"].isin(region).to_numpy() | used
    kept = units[keep].reset_index(drop=True)
    out = finish_units(kept, {k: v[keep] for k, v in totals.items()}, region + minor, sums)
    return out, list(region)


def unit_contributions(
    placed: pd.DataFrame, unit_ids: pd.Index, present: Sequence[str], sums: Sequence[str] = ()
) -> dict[str, np.ndarray]:
    """What each placed account adds to its unit: ``codes`` (position in ``unit_ids``), then
    one value per row for every column of :data:`SUMMED` but ``accounts``, and ``sums``."""
    codes = unit_ids.get_indexer(placed["unit_id"].astype(str).to_numpy())
    cust = customer_flags(placed)
    cust = cust if cust is not None else np.zeros(len(placed), dtype=bool)
    values = {
        col: measure_values(placed, col) if col in present else np.zeros(len(placed))
        for col in MEASURES
    }
    return {
        "codes": codes,
        "customers": cust.astype("float64"),
        **values,
        "whitespace": np.where(cust, 0.0, values["potential"]),
        **{col: measure_values(placed, col) for col in sums},
    }


def fold_sums(
    acc: dict[str, np.ndarray] | None, contrib: dict[str, np.ndarray] | None, n_units: int,
    sums: Sequence[str] = (),
) -> dict[str, np.ndarray]:  # fmt: skip
    """Add one chunk's contributions to the running per-unit sums (``acc``; None to start).

    ``np.add.at`` adds row after row, as ``np.bincount`` does: folding chunks in row order
    gives the sums of the whole table in one chunk, to the last bit.
    """
    out = (
        {k: np.zeros(n_units) for k in (*SUMMED, *sums)}
        if acc is None
        else {k: v.copy() for k, v in acc.items()}
    )
    if contrib is None or contrib["codes"].size == 0:
        return out
    out["accounts"] += np.bincount(contrib["codes"], minlength=n_units)
    for k in (*SUMMED[1:], *sums):
        np.add.at(out[k], contrib["codes"], contrib[k])
    return out


def finish_units(
    units_gdf: gpd.GeoDataFrame, totals: dict[str, np.ndarray], region: list[str],
    sums: Sequence[str] = (),
) -> gpd.GeoDataFrame:  # fmt: skip
    """The unit layer from the folded sums (``units_gdf`` sorted by ``unit_id``, ``totals``
    in that order): counts as integers, equal-area ``area_km2``, densities per km², state."""
    nu = len(units_gdf)
    cols: dict[str, np.ndarray] = {
        "accounts": totals["accounts"].astype("int64"),
        "customers": totals["customers"].astype("int64"),
    }
    for col in (*MEASURES, "whitespace", *sums):
        cols[col] = np.asarray(totals[col], dtype="float64").reshape(nu)
    crs = local_equal_area_crs(units_gdf.total_bounds)
    area = units_gdf.geometry.to_crs(crs).area.to_numpy() / 1e6
    cols["area_km2"] = area
    safe = np.where(area > 0, area, np.nan)
    for col in ("accounts", *MEASURES):
        cols[f"{col}_density"] = np.nan_to_num(cols[col] / safe)

    out = pd.DataFrame({"unit_id": units_gdf["unit_id"].astype(str).to_numpy()})
    if "state" in units_gdf.columns:
        out["state"] = units_gdf["state"].to_numpy()
    else:
        out["state"] = _cell_states(units_gdf, region, geodata)
    if "name" in units_gdf.columns:
        out["name"] = units_gdf["name"].to_numpy()
    for col, values in cols.items():
        out[col] = values
    if "population" in units_gdf.columns:
        out["population"] = (
            pd.to_numeric(units_gdf["population"], errors="coerce").fillna(0).to_numpy()
        )
    if "land_km2" in units_gdf.columns:
        out["land_km2"] = units_gdf["land_km2"].to_numpy()
    return gpd.GeoDataFrame(out, geometry=units_gdf.geometry.values, crs=4326)


def aggregate_units(
    units_gdf: gpd.GeoDataFrame,
    placed: pd.DataFrame,
    region: list[str],
    present: list[str],
    sums: Sequence[str] = (),
) -> gpd.GeoDataFrame:
    """The pandas engine's fold and finish: the whole table as one chunk.

    ``present``: the built-in measures the accounts carry (others are zero); ``sums``: the
    user's own numeric columns (checked by :func:`check_sums`), summed after them.
    """
    units_gdf = units_gdf.sort_values("unit_id", kind="stable").reset_index(drop=True)
    ids = pd.Index(units_gdf["unit_id"].astype(str))
    missing = ~placed["unit_id"].astype(str).isin(ids).to_numpy()
    if missing.any():  # h3 without a region: cells of accounts beyond the polyfill
        new = pd.unique(placed["unit_id"].to_numpy()[missing])
        more = gpd.GeoDataFrame(
            {"unit_id": new}, geometry=h3u.cells_to_polygons(new).values, crs=4326
        )
        units_gdf = pd.concat([units_gdf, more], ignore_index=True)
        units_gdf = units_gdf.sort_values("unit_id", kind="stable").reset_index(drop=True)
        ids = pd.Index(units_gdf["unit_id"].astype(str))
    contrib = unit_contributions(placed, ids, present, sums)
    totals = fold_sums(None, contrib, len(units_gdf), sums)
    return finish_units(units_gdf, totals, region, sums)


def _cell_states(units_gdf: gpd.GeoDataFrame, region: list[str], geodata) -> np.ndarray:
    """State of each H3 cell: the state containing its centre (nearest for coastal cells)."""
    if len(region) == 1:
        return np.full(len(units_gdf), region[0], dtype=object)
    st = geodata.states()
    st = st[st["state"].isin(region)] if region else st
    c = shapely.centroid(units_gdf.geometry.values)
    out = _point_states(shapely.get_x(c), shapely.get_y(c), st.reset_index(drop=True))
    missing = pd.isna(out)
    if missing.any():
        tree = shapely.STRtree(st.geometry.values)
        _, j = tree.query_nearest(c[missing], all_matches=False)
        out[missing] = st["state"].to_numpy()[j]
    return out


def write_layers(result: LayersResult, out_path: str | os.PathLike) -> Path:
    """Write the unit layer atomically; the format follows the suffix (GeoParquet default)."""
    return write_units(result.units, out_path)
