"""National Census geography, fetched reproducibly, and the conversion shared with the bundle.

``fetch_geodata('zcta')`` downloads the official Census cartographic-boundary (or TIGER/Line)
file of a known vintage with pooch into the user cache (``$PATCHMAP_CACHE`` or
``pooch.os_cache('patchmap')``), checks what arrived (a readable archive, the expected layer
and id column, polygons, a plausible unit count), records its SHA-256 in ``manifest.json``
so a later run notices a changed file, and converts it once to coverage-simplified GeoParquet
at two levels: ``analysis`` (50 m, every neighbour kept) and ``display`` (250 m, for maps).
:mod:`patchmap.geodata` then reads the cached national layers in place of the bundled ones.

The conversion functions (reading, column matching, coverage simplification, the ZCTA,
county and state layers) are also what ``scripts/build_geodata.py`` builds ``geodata/`` with.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import urllib.parse
import warnings
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import shapely

from patchmap import geodata
from patchmap.errors import InputError
from patchmap.geodata import FIPS_TO_STATE
from patchmap.io import atomic_path
from patchmap.notes import Note

__all__ = [
    "VINTAGES",
    "FetchResult",
    "GeodataChangedWarning",
    "Vintage",
    "fetch_geodata",
    "list_geodata",
]

log = logging.getLogger(__name__)

CRS = "EPSG:4326"
SIMPLIFY_CRS = "EPSG:5070"  # CONUS Albers equal-area: the tolerance is in metres
DEFAULT_TOLERANCE_M = 50.0
DEFAULT_GRID_DEG = 1e-6  # ~0.1 m; snapping to it shrinks the files a little
MAX_LOST_PAIRS = 0.005  # fail if simplification loses more than 0.5 % of rook neighbours

#: Simplification tolerance (metres) of each cached level; ``analysis`` must keep neighbours.
LEVELS: dict[str, float] = {"analysis": DEFAULT_TOLERANCE_M, "display": 250.0}

KINDS = ("zcta", "county", "state")
CENSUS_BASE_URL = "https://www2.census.gov/geo/tiger"
BASE_URL_ENV_VAR = "PATCHMAP_CENSUS_BASE_URL"
DOWNLOAD_RETRIES = 2  # pooch retries a failed download from scratch (1 s, 2 s apart)
DOWNLOAD_TIMEOUT_S = 60
#: A ``--source`` file answers for a state only if it holds this share of the state's units.
MIN_COVERAGE = 0.95
COVERAGE_SLACK_DEG = 0.005  # ~500 m: generalised coastlines miss some internal points


# ================================================================ conversion (shared with
# scripts/build_geodata.py: keep its output byte-identical when changing anything here)


def file_suffix(src: str) -> str:
    """Lower-case file suffix of a path or URL (``.zip``, ``.parquet``, ...)."""
    path = urllib.parse.urlparse(src).path if "://" in src else src
    return Path(path).suffix.lower()


def read_geo(src: str, layer: str | None = None) -> gpd.GeoDataFrame:
    """GeoParquet, or anything GDAL reads (shapefile, zipped shapefile, URL), in EPSG:4326."""
    if file_suffix(src) in {".parquet", ".geoparquet"}:
        gdf = gpd.read_parquet(src)
    else:
        gdf = gpd.read_file(src, engine="pyogrio", layer=layer)
    if gdf.crs is None:
        gdf = gdf.set_crs(CRS)  # TIGER is NAD83 geographic; metre-level differences only
    return gdf.to_crs(CRS)


def find_column(df: pd.DataFrame, *patterns: str, what: str) -> str:
    """Name of the first column fully matching one of ``patterns`` (case-insensitive regexes)."""
    for pattern in patterns:
        for column in df.columns:
            if re.fullmatch(pattern, str(column), flags=re.IGNORECASE):
                return column
    raise InputError(f"{what}: no column matching {' or '.join(patterns)} in {list(df.columns)}")


def zcta5(values: pd.Series) -> pd.Series:
    """5-character ZCTA/ZIP strings from ids like ``1001``, ``01001`` or ``ZCTA5 01001``."""
    digits = values.astype(str).str.strip().str.extract(r"(\d{1,5})$", expand=False)
    return digits.str.zfill(5)


def polygonal(geoms: np.ndarray) -> np.ndarray:
    """Valid geometries keeping only their polygonal parts (drops collapsed lines/points)."""
    geoms = shapely.make_valid(np.asarray(geoms), method="structure", keep_collapsed=False)
    mixed = np.flatnonzero(~np.isin(shapely.get_type_id(geoms), [3, 6]))  # not (Multi)Polygon
    if mixed.size:
        parts, idx = shapely.get_parts(geoms[mixed], return_index=True)
        parts, sub = shapely.get_parts(parts, return_index=True)  # multipolygons in collections
        keep = shapely.get_type_id(parts) == 3
        fixed = np.full(mixed.size, shapely.from_wkt("MULTIPOLYGON EMPTY"), dtype=object)
        shapely.multipolygons(parts[keep], indices=idx[sub][keep], out=fixed)
        geoms[mixed] = fixed
    return geoms


def rook_pairs(geoms: np.ndarray) -> set[tuple[int, int]]:
    """Index pairs ``(i, j)``, ``i < j``, whose boundaries share a segment of positive length."""
    tree = shapely.STRtree(geoms)
    i, j = tree.query(geoms, predicate="intersects")
    keep = i < j
    i, j = i[keep], j[keep]
    boundary = shapely.boundary(geoms)
    shared = shapely.length(shapely.intersection(boundary[i], boundary[j])) > 0
    return set(zip(i[shared].tolist(), j[shared].tolist(), strict=True))


def simplify_coverage(geoms: np.ndarray, tolerance_m: float, grid_deg: float) -> np.ndarray:
    """Coverage-simplify EPSG:4326 polygons with a tolerance in metres; stay valid and glued.

    Shared edges are simplified once for both neighbours (``shapely.coverage_simplify``), so
    no gaps or overlaps open. Snapping to ``grid_deg`` is kept only if the coverage stays valid.
    """
    projected = gpd.GeoSeries(geoms, crs=CRS).to_crs(SIMPLIFY_CRS).values
    simple = shapely.coverage_simplify(np.asarray(projected), tolerance_m)
    simple = np.asarray(gpd.GeoSeries(simple, crs=SIMPLIFY_CRS).to_crs(CRS).values)
    if grid_deg > 0:
        snapped = shapely.set_precision(simple, grid_deg)
        if shapely.is_valid(snapped).all() and shapely.coverage_is_valid(snapped):
            simple = snapped
        else:
            log.info(f"  snapping to {grid_deg} deg broke the coverage; kept full precision")
    invalid = ~shapely.is_valid(simple)
    if invalid.any():
        log.info(f"  made {invalid.sum()} invalid simplified geometries valid")
        simple[invalid] = polygonal(simple[invalid])
    empty = shapely.is_empty(simple)
    if empty.any():
        log.info(f"  {empty.sum()} geometries collapsed; kept them unsimplified")
        simple[empty] = geoms[empty]
    return simple


def assign_states(points: pd.DataFrame, states: gpd.GeoDataFrame) -> pd.Series:
    """USPS state containing each lon/lat point; the nearest state for points outside all."""
    pts = shapely.points(points["lon"].to_numpy(), points["lat"].to_numpy())
    polys = states.geometry.values
    tree = shapely.STRtree(polys)
    p_idx, s_idx = tree.query(pts, predicate="intersects")
    first = pd.Series(s_idx).groupby(p_idx).first()
    hit = np.full(len(pts), -1)
    hit[first.index.to_numpy()] = first.to_numpy()
    outside = hit < 0
    if outside.any():
        hit[outside] = tree.query_nearest(pts[outside], all_matches=False)[1]
    log.info(f"  zcta_points: {outside.sum()} points outside every state polygon -> nearest state")
    return pd.Series(states["state"].to_numpy()[hit], index=points.index)


def states_frame(raw: gpd.GeoDataFrame, what: str) -> gpd.GeoDataFrame:
    """State polygons: ``state_fips``, ``state`` (USPS), ``name``."""
    fips = raw[find_column(raw, r"state_fips", r"statefp\d*", r"geoid\d*", what=what)].str.zfill(2)
    gdf = gpd.GeoDataFrame(
        {
            "state_fips": fips,
            "state": fips.map(FIPS_TO_STATE),
            "name": raw[find_column(raw, r"name\d*", what=what)],
        },
        geometry=polygonal(raw.geometry.values),
        crs=CRS,
    )
    unknown = gdf["state"].isna()
    if unknown.any():
        log.info(
            f"  states: dropped {unknown.sum()} rows with unknown FIPS {sorted(fips[unknown])}"
        )
    return gdf[~unknown].sort_values("state_fips").reset_index(drop=True)


def zcta_frame(
    raw: gpd.GeoDataFrame, population: pd.Series, states: gpd.GeoDataFrame, what: str
) -> gpd.GeoDataFrame:
    """ZCTA polygons of TIGER/cartographic files with state and population (not simplified).

    Columns: ``zcta``, ``state``, ``land_km2``, ``water_km2``, ``population``; files without a
    state column (national files) get the state containing each polygon's representative point.
    """
    zcta = zcta5(raw[find_column(raw, r"zcta5ce\d*", r"zcta5?", r"geoid\d*", what=what)])
    state_col = next((c for c in raw.columns if re.fullmatch(r"statefp\d*", c, re.I)), None)
    if state_col is not None:
        state = raw[state_col].str.zfill(2).map(FIPS_TO_STATE)
    else:  # national files have no state column: use each polygon's representative point
        rep = shapely.point_on_surface(raw.geometry.values)
        state = assign_states(
            pd.DataFrame({"lon": shapely.get_x(rep), "lat": shapely.get_y(rep)}), states
        )
    gdf = gpd.GeoDataFrame(
        {
            "zcta": zcta,
            "state": state,
            "land_km2": pd.to_numeric(raw[find_column(raw, r"aland\d*", what=what)]) / 1e6,
            "water_km2": pd.to_numeric(raw[find_column(raw, r"awater\d*", what=what)]) / 1e6,
            "population": zcta.map(population).fillna(0).astype("int64"),
        },
        geometry=polygonal(raw.geometry.values),
        crs=CRS,
    )
    gdf = gdf.sort_values(["zcta", "state"]).reset_index(drop=True)
    full = np.asarray(gdf.geometry.values)
    log.info(
        f"  {len(gdf)} ZCTAs ({', '.join(sorted(gdf['state'].unique()))}), "
        f"{shapely.get_num_coordinates(full).sum():,} vertices, coverage valid: "
        f"{shapely.coverage_is_valid(full)}"
    )
    return gdf


def counties_frame(raw: gpd.GeoDataFrame, points: pd.DataFrame, what: str) -> gpd.GeoDataFrame:
    """Counties with USPS state and 2010 population (summed from ZCTA points if not given)."""
    log.info(
        f"  counties: {(~shapely.is_valid(raw.geometry.values)).sum()} invalid geometries repaired"
    )
    geoid = raw[find_column(raw, r"geoid\d*", r"county", what=what)].str.zfill(5)
    gdf = gpd.GeoDataFrame(
        {
            "county": geoid,
            "name": raw[find_column(raw, r"name\d*", what=what)],
            "state_fips": geoid.str[:2],
            "state": geoid.str[:2].map(FIPS_TO_STATE),
        },
        geometry=polygonal(raw.geometry.values),
        crs=CRS,
    )
    pop_col = next((c for c in raw.columns if "population" in c.lower()), None)
    if pop_col is not None:
        pop = pd.to_numeric(raw[pop_col], errors="coerce")
    else:  # official cartographic files carry no population: sum ZCTAs by internal point
        pts = shapely.points(points["lon"].to_numpy(), points["lat"].to_numpy())
        p_idx, c_idx = shapely.STRtree(gdf.geometry.values).query(pts, predicate="intersects")
        first = pd.Series(c_idx).groupby(p_idx).first()
        pop = points["population"].to_numpy()[first.index].astype(float)
        pop = pd.Series(pop).groupby(first.to_numpy()).sum().reindex(range(len(gdf)))
    gdf.insert(4, "population", pop.fillna(0).round().astype("int64").to_numpy())
    return gdf.sort_values("county").reset_index(drop=True)


def simplify_layer(
    gdf: gpd.GeoDataFrame,
    tolerance_m: float,
    grid_deg: float,
    *,
    before: set[tuple[int, int]] | None = None,
    max_lost: float | None = MAX_LOST_PAIRS,
) -> tuple[gpd.GeoDataFrame, tuple[int, int]]:
    """Coverage-simplify a polygon layer; also the rook-adjacent pair counts before and after.

    Raises :class:`InputError` when more than ``max_lost`` of the neighbour pairs are lost
    (``None``: no limit, e.g. for a display-only level). ``before`` reuses computed pairs.
    """
    full = np.asarray(gdf.geometry.values)
    if before is None:
        before = rook_pairs(full)
    simple = simplify_coverage(full, tolerance_m, grid_deg)
    after = rook_pairs(simple)
    lost, gained = len(before - after), len(after - before)
    log.info(
        f"  simplified at {tolerance_m:g} m: {shapely.get_num_coordinates(simple).sum():,} "
        f"vertices; valid: {shapely.is_valid(simple).all()}; coverage valid: "
        f"{shapely.coverage_is_valid(simple)}"
    )
    log.info(
        f"  rook-adjacent pairs: {len(before)} before, {len(after)} after "
        f"(lost {lost}, gained {gained})"
    )
    if max_lost is not None and lost > max_lost * max(len(before), 1):
        raise InputError(
            f"simplification lost {lost} of {len(before)} neighbour pairs; lower tolerance_m"
        )
    out = gdf.copy()
    out.geometry = simple
    return out, (len(before), len(after))


def write_parquet(df: pd.DataFrame, path: Path, **kwargs: Any) -> None:
    """Write (Geo)Parquet with zstd, atomically (temporary file, then ``os.replace``)."""
    with atomic_path(path, immediate=True) as tmp:  # a cache, read back at once
        df.to_parquet(tmp, compression="zstd", index=False, **kwargs)
        tmp.chmod(0o644)  # mkstemp creates 0600 files


# ================================================================ known vintages


@dataclasses.dataclass(frozen=True)
class Vintage:
    """One official Census file: where it lives and what a good copy of it contains."""

    kind: str
    year: int
    path: str  # relative to the Census base URL
    id_column: str
    units: tuple[int, int]  # plausible feature count, inclusive
    title: str

    @property
    def filename(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def layer(self) -> str:
        return self.filename.rsplit(".", 1)[0]

    def url(self, base_url: str | None = None) -> str:
        base = base_url or os.environ.get(BASE_URL_ENV_VAR) or CENSUS_BASE_URL
        return f"{base.rstrip('/')}/{self.path}"


def _cb(kind: str, year: int, layer: str, id_column: str, units: tuple[int, int]) -> Vintage:
    return Vintage(
        kind, year, f"GENZ{year}/shp/cb_{year}_us_{layer}_500k.zip", id_column, units,
        f"U.S. Census Bureau cartographic boundary file {year} (1:500,000), {layer}",
    )  # fmt: skip


#: Files patchmap knows, by (kind, year). The newest year of a kind is its default.
VINTAGES: dict[tuple[str, int], Vintage] = {
    ("zcta", 2010): Vintage(
        "zcta", 2010, "TIGER2010/ZCTA5/2010/tl_2010_us_zcta510.zip", "ZCTA5CE10",
        (32_500, 34_000), "U.S. Census Bureau TIGER/Line 2010, ZCTA5 (full resolution)",
    ),
    ("zcta", 2020): _cb("zcta", 2020, "zcta520", "ZCTA5CE20", (33_000, 34_500)),
    **{("county", y): _cb("county", y, "county", "GEOID", (3_100, 3_300)) for y in (2020, 2023)},
    **{("state", y): _cb("state", y, "state", "GEOID", (50, 60)) for y in (2020, 2023)},
}  # fmt: skip

#: Id columns accepted in a user-supplied ``source=`` file, by kind (the first found is used).
SOURCE_ID_COLUMNS: dict[str, tuple[str, ...]] = {
    "zcta": ("ZCTA5CE20", "ZCTA5CE10", "ZCTA5CE", "GEOID20", "GEOID10", "ZCTA5", "ZCTA", "GEOID"),
    "county": ("GEOID", "GEOID20", "GEOID10", "county"),
    "state": ("STATEFP", "GEOID", "STATEFP20", "STATEFP10", "state_fips"),
}


def known_vintages(kind: str) -> list[int]:
    """Years of ``kind`` patchmap can download, oldest first."""
    return sorted(year for k, year in VINTAGES if k == kind)


def _vintage(kind: str, year: int | None) -> Vintage:
    years = known_vintages(kind)
    year = years[-1] if year is None else int(year)
    if (kind, year) not in VINTAGES:
        raise InputError(
            f"no known {kind} vintage {year} (known: {', '.join(map(str, years))}; "
            "pass source= to use another file)"
        )
    return VINTAGES[(kind, year)]


# ================================================================ fetching


class GeodataChangedWarning(UserWarning):
    """A Census file differs from the copy whose checksum was recorded earlier."""


@dataclasses.dataclass(frozen=True)
class FetchResult:
    """What :func:`fetch_geodata` produced or found in the cache."""

    kind: str
    vintage: int
    source: str  # URL or local path the file came from
    sha256: str  # of the downloaded (or given) file
    units: int
    paths: dict[str, Path]  # level ('analysis', 'display') -> GeoParquet
    download: Path | None  # the cached download (None for a local source)
    cached: bool  # True: served from the cache, nothing downloaded or converted
    changed: bool  # True: the file differs from the one recorded before
    notes: tuple[str, ...] = ()


def fetch_geodata(
    kind: str,
    *,
    year: int | None = None,
    source: str | os.PathLike | None = None,
    cache_dir: Path | None = None,
    progress: bool = True,
    refresh: bool = False,
    base_url: str | None = None,
) -> FetchResult:
    """Download (or take from ``source``), verify, record and convert national geography.

    ``kind`` is ``'zcta'``, ``'county'`` or ``'state'``; ``year`` a known vintage (default the
    newest). ``source`` is a local zip/shapefile/GeoPackage/GeoParquet or a URL, for machines
    without internet or other files. A cached result is reused unless ``refresh`` asks to
    download again; a file whose SHA-256 differs from the recorded one raises
    :class:`InputError` (or, with ``refresh``, replaces the cache with a
    :class:`GeodataChangedWarning`). ``base_url`` (or ``$PATCHMAP_CENSUS_BASE_URL``) points
    the known vintages at a mirror. Nothing is cached unless every check passes.
    """
    kind = str(kind).strip().lower()
    if kind not in KINDS:
        raise InputError(f"unknown geography kind {kind!r} (use {', '.join(KINDS)})")
    spec = _vintage(kind, year) if source is None else None
    cache = Path(cache_dir).expanduser() if cache_dir is not None else geodata.cache_dir()
    if cache is None:
        raise InputError(f"the cache is disabled (${geodata.CACHE_ENV_VAR}=off); pass cache_dir")
    try:
        return _fetch(kind, spec, source, cache, year, progress, refresh, base_url)
    except OSError as exc:  # the cache folder cannot be written (read-only, full, not a folder)
        if exc.filename is None or not _within(Path(os.fspath(exc.filename)), cache):
            raise
        why = "no space left on the device" if exc.errno == errno.ENOSPC else exc.strerror
        raise InputError(
            f"{cache}: cannot write to the geodata cache folder ({why or type(exc).__name__}); "
            f"set ${geodata.CACHE_ENV_VAR} to a writable folder"
        ) from None


def _fetch(
    kind: str,
    spec: Vintage | None,
    source: str | os.PathLike | None,
    cache: Path,
    year: int | None,
    progress: bool,
    refresh: bool,
    base_url: str | None,
) -> FetchResult:
    """:func:`fetch_geodata` once the kind, vintage and cache folder are known."""
    manifest = _load_manifest(cache)
    notes: list[str] = []

    if spec is not None:
        origin, fname = spec.url(base_url), spec.filename
        key = _key(kind, spec.year)
        entry = manifest["entries"].get(key)
        if entry is not None and not refresh:
            hit = _cache_hit(cache, entry, notes)
            if hit is not None:
                return hit
    else:
        origin = os.fspath(source)
        fname = Path(urllib.parse.urlparse(origin).path).name if _is_url(origin) else ""

    with _staging(cache) as stage:
        download: Path | None = None
        if spec is not None:
            cached_raw = cache / "downloads" / fname
            entry = manifest["entries"].get(key)
            if (
                not refresh
                and entry is not None
                and cached_raw.is_file()
                and sha256_file(cached_raw) == entry["sha256"]
            ):
                local, download = cached_raw, cached_raw  # converting again, no need to download
            else:
                local = _download(origin, stage, fname, progress)
        elif _is_url(origin):
            local = _download(origin, stage, fname or "download", progress)
        else:
            local = Path(origin).expanduser()
            if not local.exists():
                raise InputError(f"{origin}: file not found")
        digest = sha256_file(local)
        layer, id_column, n_units = _verify(local, kind, spec, origin)
        vintage = spec.year if spec is not None else _source_vintage(origin, id_column, year)
        key = _key(kind, vintage)
        entry = manifest["entries"].get(key)
        changed = entry is not None and entry["sha256"] != digest
        if changed:
            message = (
                f"{origin}: {kind} {vintage} changed since it was recorded on "
                f"{entry.get('recorded', '?')[:10]} (sha256 {entry['sha256'][:12]}... then, "
                f"{digest[:12]}... now)"
            )
            if spec is not None and not refresh:
                raise InputError(f"{message}; refresh to accept the new file")
            warnings.warn(message, GeodataChangedWarning, stacklevel=2)
            notes.append(Note("source_changed", message, sha256=digest))
        elif entry is not None:
            hit = _cache_hit(cache, entry, notes)
            if hit is not None:
                notes.append(
                    Note(
                        "unchanged", f"{origin}: unchanged (sha256 {digest[:12]}...)", sha256=digest
                    )
                )
                if hit.download is None and entry.get("download") and local.parent == stage:
                    (cache / entry["download"]).parent.mkdir(parents=True, exist_ok=True)
                    os.replace(local, cache / entry["download"])  # restore a deleted download
                    hit = dataclasses.replace(hit, download=cache / entry["download"])
                return dataclasses.replace(hit, notes=tuple(notes))

        frame = _convert(local, layer, kind, origin)
        if spec is not None:  # a known national vintage (its unit count was checked)
            covered, partial = sorted(frame["state"].dropna().unique().tolist()), {}
        else:  # a user's file may hold a few states, or part of one: measure what it covers
            covered, partial = _coverage(frame, kind, origin, notes)
        layers, layer_info = _simplify_levels(frame, kind, stage, f"{kind}_{vintage}_{digest[:12]}")
        notes.extend(layer_info.pop("_notes"))

        # commit: files first (new names), then the manifest, then drop superseded files
        size = local.stat().st_size
        if spec is not None or _is_url(origin):
            download = cache / "downloads" / (fname or "download")
            if local != download:
                download.parent.mkdir(parents=True, exist_ok=True)
                os.replace(local, download)
        final: dict[str, Path] = {}
        for level, path in layers.items():
            final[level] = cache / path.name
            os.replace(path, final[level])
        new_entry = {
            "kind": kind,
            "vintage": vintage,
            "source": origin,
            "download": None if download is None else download.relative_to(cache).as_posix(),
            "sha256": digest,
            "bytes": size,
            "recorded": datetime.now(UTC).isoformat(timespec="seconds"),
            "layer": layer,
            "id_column": id_column,
            "units": n_units,
            "states": covered,  # the states this layer answers for
            "partial_states": partial,  # state -> share it holds (not used for those)
            "layers": layer_info,
        }
        if changed:
            new_entry["previous_sha256"] = [entry["sha256"], *entry.get("previous_sha256", [])]
        old_files = _entry_files(cache, entry) if entry is not None else set()
        manifest = _load_manifest(cache)  # again: keep entries another process added meanwhile
        manifest["entries"][key] = new_entry
        _save_manifest(cache, manifest)
        for stale in old_files - set(final.values()) - {download}:
            stale.unlink(missing_ok=True)
    log.info(f"cached {kind} {vintage}: {n_units:,} units, sha256 {digest}")
    return FetchResult(
        kind, vintage, origin, digest, n_units, final, download, cached=False, changed=changed,
        notes=tuple(notes),
    )  # fmt: skip


def list_geodata() -> pd.DataFrame:
    """What geography is bundled and what is cached, one row per file.

    Columns: ``kind``, ``vintage``, ``where`` (``bundled``/``cache``), ``level``
    (``analysis``, ``display``, ``download`` or ``table``), ``units``, ``size`` (bytes),
    ``path``, ``sha256``.
    """
    rows: list[dict[str, Any]] = []
    bundled = geodata.geodata_dir()
    if bundled.is_dir():
        for path in sorted(bundled.glob("*.parquet")):
            default = (
                ("zcta", geodata.ZCTA_VINTAGE) if path.match(geodata.ZCTA_POLYGON_GLOB) else None
            )
            kind, vintage = geodata.BUNDLED_VINTAGES.get(path.name, default) or (path.stem, None)
            is_geo = b"geo" in (pq.read_schema(path).metadata or {})
            rows.append(
                {
                    "kind": kind, "vintage": vintage, "where": "bundled",
                    "level": "analysis" if is_geo else "table",
                    "units": pq.ParquetFile(path).metadata.num_rows,
                    "size": path.stat().st_size, "path": str(path), "sha256": sha256_file(path),
                }
            )  # fmt: skip
    cache = geodata.cache_dir()
    entries = _load_manifest(cache)["entries"] if cache is not None else {}
    for entry in entries.values():
        files = [(level, info["path"], info["sha256"]) for level, info in entry["layers"].items()]
        if entry.get("download"):
            files.append(("download", entry["download"], entry["sha256"]))
        for level, rel, digest in files:
            path = cache / rel
            rows.append(
                {
                    "kind": entry["kind"], "vintage": entry["vintage"], "where": "cache",
                    "level": level, "units": entry["units"],
                    "size": path.stat().st_size if path.is_file() else pd.NA,
                    "path": str(path), "sha256": digest,
                }
            )  # fmt: skip
    columns = ["kind", "vintage", "where", "level", "units", "size", "path", "sha256"]
    return pd.DataFrame(rows, columns=columns)


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------- fetch helpers


def _within(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder``, inside it, or one of its missing parents."""
    path, folder = Path(os.path.abspath(path)), Path(os.path.abspath(folder))
    return path == folder or folder in path.parents or path in folder.parents


def _coverage(
    frame: gpd.GeoDataFrame, kind: str, what: str, notes: list[str]
) -> tuple[list[str], dict[str, float]]:
    """States a user's file covers whole, and the share of each state it holds only partly.

    ZCTAs: the share of the state's 2010 ZCTA internal points inside the file's polygons;
    counties: the share of the state's bundled counties present; states: present or not. A
    state counts as covered from :data:`MIN_COVERAGE` on; a file covering none is refused.
    """
    present = sorted(frame["state"].dropna().unique().tolist())
    if kind == "state":
        return present, {}
    if kind == "zcta":
        points = geodata.zcta_points()
        points = points[points["state"].isin(present)].reset_index(drop=True)
        xy = shapely.points(points["lon"].to_numpy(), points["lat"].to_numpy())
        tree = shapely.STRtree(np.asarray(frame.geometry.values))
        hit = np.zeros(len(points), dtype=bool)
        hit[tree.query(xy, predicate="dwithin", distance=COVERAGE_SLACK_DEG)[0]] = True
        share = pd.Series(hit).groupby(points["state"].to_numpy()).mean()
    else:
        bundled = geodata.bundled_counties()
        bundled = bundled[bundled["state"].isin(present)]
        have = bundled["county"].isin(frame["county"]).to_numpy()
        share = pd.Series(have).groupby(bundled["state"].to_numpy()).mean()
    share = share.reindex(present, fill_value=0.0)
    covered = [s for s in present if share[s] >= MIN_COVERAGE]
    partial = {s: round(float(share[s]), 4) for s in present if share[s] < MIN_COVERAGE}
    unit = "ZCTAs" if kind == "zcta" else "counties"
    parts = ", ".join(f"{s} {share[s]:.0%}" for s in partial)
    if not covered:
        raise InputError(
            f"{what}: covers no state whole ({parts} of its 2010 {unit}); a source file "
            f"is used only for states it covers (at least {MIN_COVERAGE:.0%} of their {unit})"
        )
    notes.append(Note("covers", f"{what}: covers {', '.join(covered)}", states=covered))
    if partial:
        notes.append(
            Note(
                "covers_part",
                f"{what}: holds only part of {parts} of its 2010 {unit}: not used there "
                "(bundled polygons or ZIP-point cells stay in use for those states)",
                shares=partial,
            )
        )
    return covered, partial


def _key(kind: str, vintage: int) -> str:
    return f"{kind}/{vintage}"


def _is_url(src: str) -> bool:
    return urllib.parse.urlparse(src).scheme in {"http", "https", "ftp"}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _load_manifest(cache: Path) -> dict[str, Any]:
    manifest = geodata.read_manifest(cache)
    manifest.setdefault("format", 1)
    manifest.setdefault("entries", {})
    return manifest


def _save_manifest(cache: Path, manifest: dict[str, Any]) -> None:
    with atomic_path(cache / geodata.MANIFEST_NAME, immediate=True) as tmp:
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _entry_files(cache: Path, entry: dict[str, Any]) -> set[Path]:
    files = {cache / info["path"] for info in entry.get("layers", {}).values()}
    if entry.get("download"):
        files.add(cache / entry["download"])
    return files


def _cache_hit(cache: Path, entry: dict[str, Any], notes: list[str]) -> FetchResult | None:
    """The cached entry as a result if its layers are intact (checksums match), else None."""
    paths = {level: cache / info["path"] for level, info in entry["layers"].items()}
    for level, path in paths.items():
        if not path.is_file() or sha256_file(path) != entry["layers"][level]["sha256"]:
            return None
    download = cache / entry["download"] if entry.get("download") else None
    if download is not None and download.is_file() and sha256_file(download) != entry["sha256"]:
        message = f"{download}: cached download changed on disk since it was recorded"
        warnings.warn(message, GeodataChangedWarning, stacklevel=3)
        notes.append(Note("download_changed", message))
    return FetchResult(
        entry["kind"], entry["vintage"], entry["source"], entry["sha256"], entry["units"], paths,
        download if download is not None and download.is_file() else None, cached=True,
        changed=False, notes=tuple(notes),
    )  # fmt: skip


@contextlib.contextmanager
def _staging(cache: Path) -> Iterator[Path]:
    """A scratch directory inside the cache (same file system: moves are renames), removed after."""
    cache.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".staging-", dir=cache))
    try:
        yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)


@contextlib.contextmanager
def _pooch_log_level(level: int) -> Iterator[None]:
    import pooch

    logger = pooch.get_logger()
    old = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(old)


def _download(url: str, directory: Path, fname: str, progress: bool) -> Path:
    """Download ``url`` with pooch (retrying from scratch) to ``directory/fname``."""
    import pooch
    import requests

    try:
        import tqdm  # noqa: F401  (pooch's progress bar)

        bar = progress
    except ImportError:
        bar = False
    fetcher = pooch.create(
        path=directory, base_url="", registry={fname: None}, urls={fname: url},
        retry_if_failed=DOWNLOAD_RETRIES,
    )  # fmt: skip
    downloader = pooch.HTTPDownloader(progressbar=bar, timeout=DOWNLOAD_TIMEOUT_S)
    try:
        with _pooch_log_level(logging.INFO if progress else logging.WARNING):
            return Path(fetcher.fetch(fname, downloader=downloader))
    except requests.exceptions.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "?"
        reason = exc.response.reason if exc.response is not None else _first_line(exc)
        raise InputError(f"{url}: download failed (HTTP {status} {reason})") from None
    except requests.exceptions.ChunkedEncodingError:
        raise InputError(
            f"{url}: download failed (connection broken before the end of the file)"
        ) from None
    except (requests.exceptions.RequestException, OSError, ValueError) as exc:
        raise InputError(f"{url}: download failed ({_first_line(exc)})") from None


def _verify(path: Path, kind: str, spec: Vintage | None, what: str) -> tuple[str | None, str, int]:
    """Check a file holds the expected polygon layer and id column; its layer, id column, count."""
    import pyogrio

    suffix = path.suffix.lower()
    if suffix in {".parquet", ".geoparquet"}:
        return _verify_parquet(path, kind, what)
    if suffix == ".zip" or zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
                members = archive.namelist()
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as exc:
            raise InputError(
                f"{what}: not a readable zip archive, truncated or corrupted download "
                f"({_first_line(exc)})"
            ) from None
        if bad is not None:
            raise InputError(f"{what}: corrupted archive member {bad} (checksum mismatch)")
        if spec is not None and f"{spec.layer}.shp" not in {Path(m).name for m in members}:
            raise InputError(f"{what}: expected layer {spec.layer} not in the archive")
    try:
        layers = pyogrio.list_layers(path)
    except Exception as exc:  # GDAL says why in one line
        raise InputError(f"{what}: cannot read as geodata ({_first_line(exc)})") from None
    names = [str(name) for name in layers[:, 0]]
    if spec is not None:
        if spec.layer not in names:
            raise InputError(f"{what}: expected layer {spec.layer} (layers: {', '.join(names)})")
        layer = spec.layer
    elif len(names) == 1:
        layer = names[0]
    else:
        polys = [str(n) for n, g in layers if g and "polygon" in str(g).lower()]
        if len(polys) != 1:
            raise InputError(
                f"{what}: {len(polys)} polygon layers, cannot choose (layers: {', '.join(names)})"
            )
        layer = polys[0]
    try:
        info = pyogrio.read_info(path, layer=layer)
    except Exception as exc:
        raise InputError(f"{what}: cannot read layer {layer} ({_first_line(exc)})") from None
    geom_type = str(info.get("geometry_type") or "no geometry")
    if "polygon" not in geom_type.lower():
        raise InputError(f"{what}: layer {layer} holds {geom_type} geometries, not polygons")
    fields = [str(f) for f in info["fields"]]
    id_column = _id_column(fields, kind, spec, what)
    count = int(info["features"])
    if count < 0:  # driver cannot count cheaply
        count = len(pyogrio.read_dataframe(path, layer=layer, columns=[], read_geometry=False))
    _check_count(count, kind, spec, what)
    return layer, id_column, count


def _verify_parquet(path: Path, kind: str, what: str) -> tuple[None, str, int]:
    try:
        schema = pq.read_schema(path)
        count = pq.ParquetFile(path).metadata.num_rows
    except Exception as exc:
        raise InputError(f"{what}: not a readable Parquet file ({_first_line(exc)})") from None
    meta = json.loads((schema.metadata or {}).get(b"geo", b"{}"))
    types = [t for c in meta.get("columns", {}).values() for t in c.get("geometry_types", [])]
    if not meta:
        raise InputError(f"{what}: not GeoParquet (no geometry column)")
    if types and not all("polygon" in t.lower() for t in types):
        raise InputError(f"{what}: holds {', '.join(types)} geometries, not polygons")
    id_column = _id_column(list(schema.names), kind, None, what)
    _check_count(count, kind, None, what)
    return None, id_column, count


def _id_column(fields: Sequence[str], kind: str, spec: Vintage | None, what: str) -> str:
    wanted = (spec.id_column,) if spec is not None else SOURCE_ID_COLUMNS[kind]
    by_lower = {f.lower(): f for f in fields}
    for name in wanted:
        if name.lower() in by_lower:
            return by_lower[name.lower()]
    raise InputError(
        f"{what}: no {kind} id column {' or '.join(wanted)} (columns: {', '.join(fields)})"
    )


def _check_count(count: int, kind: str, spec: Vintage | None, what: str) -> None:
    if count <= 0:
        raise InputError(f"{what}: no {kind} features")
    if spec is not None and not spec.units[0] <= count <= spec.units[1]:
        low, high = spec.units
        raise InputError(
            f"{what}: {count:,} {kind} features, expected {low:,} to {high:,} for "
            f"{spec.kind} {spec.year} (wrong or incomplete file?)"
        )


def _source_vintage(origin: str, id_column: str, year: int | None) -> int:
    """The year of a user-supplied file: given, else from its name or its id column."""
    if year is not None:
        return int(year)
    name = Path(urllib.parse.urlparse(origin).path).name
    if m := re.search(r"(?:^|_)(?:cb|tl|gz)_(\d{4})_", name, flags=re.I):
        return int(m.group(1))
    if m := re.search(r"(\d{2})$", id_column):
        return 2000 + int(m.group(1))
    raise InputError(f"{origin}: cannot tell the vintage of this file; pass year=")


def _convert(path: Path, layer: str | None, kind: str, what: str) -> gpd.GeoDataFrame:
    """Read a verified file and build its patchmap layer (not yet simplified)."""
    try:
        raw = read_geo(str(path), layer=layer)
    except Exception as exc:
        raise InputError(f"{what}: cannot read ({_first_line(exc)})") from None
    if kind == "zcta":
        points = geodata.zcta_points()
        population = points.set_index("zcta")["population"]
        frame = zcta_frame(raw, population, geodata.states(), what)
    elif kind == "county":
        frame = counties_frame(raw, geodata.zcta_points(), what)
    else:
        frame = states_frame(raw, what)
    empty = shapely.is_empty(frame.geometry.values) | frame.geometry.isna().to_numpy()
    if empty.all():
        raise InputError(f"{what}: no polygon geometries")
    return frame[~empty].reset_index(drop=True)


def _simplify_levels(
    frame: gpd.GeoDataFrame, kind: str, stage: Path, stem: str
) -> tuple[dict[str, Path], dict[str, Any]]:
    """Write each level's GeoParquet to ``stage``; the paths, and manifest info per level."""
    full = np.asarray(frame.geometry.values)
    before = rook_pairs(full)
    # within a national file, rows grouped by state let readers skip row groups by state
    order = {"zcta": ["state", "zcta"], "county": ["county"], "state": ["state_fips"]}[kind]
    paths: dict[str, Path] = {}
    info: dict[str, Any] = {"_notes": []}
    for level, tolerance in LEVELS.items():
        log.info(f"{kind}: {level} level, coverage simplification at {tolerance:g} m")
        simple, (n_before, n_after) = simplify_layer(
            frame, tolerance, DEFAULT_GRID_DEG, before=before,
            max_lost=MAX_LOST_PAIRS if level == "analysis" else None,
        )  # fmt: skip
        simple = simple.sort_values(order, kind="stable").reset_index(drop=True)
        path = paths[level] = stage / f"{stem}_{level}.parquet"
        write_parquet(simple, path, row_group_size=4096)
        info[level] = {
            "path": path.name,
            "tolerance_m": tolerance,
            "rook_pairs": [n_before, n_after],
            "sha256": sha256_file(path),
            "bytes": path.stat().st_size,
        }
        info["_notes"].append(
            Note(
                "simplified",
                f"{level}: simplified at {tolerance:g} m, neighbour pairs {n_before} -> "
                f"{n_after}, {path.stat().st_size / 1e6:.1f} MB",
                level=level,
                tolerance_m=tolerance,
                rook_pairs=[n_before, n_after],
            )
        )
    return paths, info
