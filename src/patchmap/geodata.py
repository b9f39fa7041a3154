"""Census reference geography: ZCTA polygons and points, ZIP crosswalk, counties, states.

The bundled files live in ``geodata/`` (built by ``scripts/build_geodata.py``, see its README).
National layers fetched with :func:`patchmap.geofetch.fetch_geodata` live in the user cache
(``$PATCHMAP_CACHE``, ``off`` to ignore it) and are registered in its ``manifest.json``; when
present they take the place of the bundled polygons (newest vintage first). Files are read
lazily, once per process and file version; every public function returns a fresh copy so
callers may mutate what they get.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import shapely
from shapely.geometry.base import BaseGeometry

import patchmap
from patchmap.errors import InputError

ENV_VAR = "PATCHMAP_GEODATA"
CACHE_ENV_VAR = "PATCHMAP_CACHE"
MANIFEST_NAME = "manifest.json"

#: State FIPS code -> USPS abbreviation (50 states, DC, Puerto Rico and four territories).
FIPS_TO_STATE: dict[str, str] = {
    "01": "AL", "02": "AK", "04": "AZ", "05": "AR", "06": "CA", "08": "CO", "09": "CT",
    "10": "DE", "11": "DC", "12": "FL", "13": "GA", "15": "HI", "16": "ID", "17": "IL",
    "18": "IN", "19": "IA", "20": "KS", "21": "KY", "22": "LA", "23": "ME", "24": "MD",
    "25": "MA", "26": "MI", "27": "MN", "28": "MS", "29": "MO", "30": "MT", "31": "NE",
    "32": "NV", "33": "NH", "34": "NJ", "35": "NM", "36": "NY", "37": "NC", "38": "ND",
    "39": "OH", "40": "OK", "41": "OR", "42": "PA", "44": "RI", "45": "SC", "46": "SD",
    "47": "TN", "48": "TX", "49": "UT", "50": "VT", "51": "VA", "53": "WA", "54": "WV",
    "55": "WI", "56": "WY", "60": "AS", "66": "GU", "69": "MP", "72": "PR", "78": "VI",
}  # fmt: skip

#: USPS abbreviation -> state FIPS code.
STATE_TO_FIPS: dict[str, str] = {usps: fips for fips, usps in FIPS_TO_STATE.items()}

#: USPS abbreviation -> name.
STATE_NAMES: dict[str, str] = {
    "AL": "Alabama", "AK": "Alaska", "AZ": "Arizona", "AR": "Arkansas", "CA": "California",
    "CO": "Colorado", "CT": "Connecticut", "DE": "Delaware", "DC": "District of Columbia",
    "FL": "Florida", "GA": "Georgia", "HI": "Hawaii", "ID": "Idaho", "IL": "Illinois",
    "IN": "Indiana", "IA": "Iowa", "KS": "Kansas", "KY": "Kentucky", "LA": "Louisiana",
    "ME": "Maine", "MD": "Maryland", "MA": "Massachusetts", "MI": "Michigan",
    "MN": "Minnesota", "MS": "Mississippi", "MO": "Missouri", "MT": "Montana",
    "NE": "Nebraska", "NV": "Nevada", "NH": "New Hampshire", "NJ": "New Jersey",
    "NM": "New Mexico", "NY": "New York", "NC": "North Carolina", "ND": "North Dakota",
    "OH": "Ohio", "OK": "Oklahoma", "OR": "Oregon", "PA": "Pennsylvania", "RI": "Rhode Island",
    "SC": "South Carolina", "SD": "South Dakota", "TN": "Tennessee", "TX": "Texas",
    "UT": "Utah", "VT": "Vermont", "VA": "Virginia", "WA": "Washington",
    "WV": "West Virginia", "WI": "Wisconsin", "WY": "Wyoming", "AS": "American Samoa",
    "GU": "Guam", "MP": "Northern Mariana Islands", "PR": "Puerto Rico",
    "VI": "U.S. Virgin Islands",
}  # fmt: skip

_NAME_TO_STATE: dict[str, str] = {name.casefold(): usps for usps, name in STATE_NAMES.items()}
_NAME_TO_STATE.update({"virgin islands": "VI", "washington dc": "DC", "washington d.c.": "DC"})

STATES_FILE = "states.parquet"
COUNTIES_FILE = "counties.parquet"
ZCTA_POINTS_FILE = "zcta_points.parquet"
ZIP_ZCTA_FILE = "zip_zcta.parquet"
ZCTA_POLYGON_GLOB = "zcta_*.parquet"

ZCTA_VINTAGE = 2010  # bundled ZCTA polygons and points (TIGER/Line and gazetteer 2010)
CROSSWALK_VINTAGE = 2015  # bundled USPS ZIP -> ZCTA 2010 crosswalk (UDS Mapper)
#: Bundled file -> (kind, vintage), as listed by ``patchmap geodata list``.
BUNDLED_VINTAGES: dict[str, tuple[str, int]] = {
    STATES_FILE: ("state", 2017),
    COUNTIES_FILE: ("county", 2017),
    ZCTA_POINTS_FILE: ("zcta_points", ZCTA_VINTAGE),
    ZIP_ZCTA_FILE: ("zip_crosswalk", CROSSWALK_VINTAGE),
}


def geodata_dir() -> Path:
    """Directory of the reference geography.

    ``$PATCHMAP_GEODATA`` if set; else ``geodata/`` inside the installed package (wheels);
    else ``geodata/`` at the repository root (editable installs and checkouts).
    """
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    packaged = Path(patchmap.__file__).parent / "geodata"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "geodata"


def cache_dir() -> Path | None:
    """Directory of fetched national geography: ``$PATCHMAP_CACHE``, else the user cache.

    ``PATCHMAP_CACHE=off`` disables the cache (only the bundled geography is used).
    """
    env = os.environ.get(CACHE_ENV_VAR)
    if env:
        return None if env.strip().lower() in {"off", "none", "0"} else Path(env).expanduser()
    try:
        import pooch
    except ImportError:  # pooch only downloads; the cache location rule is the same
        base = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
        return Path(base).expanduser() / "patchmap"
    return Path(pooch.os_cache("patchmap")).expanduser()


def read_manifest(directory: Path | None = None) -> dict[str, Any]:
    """The cache manifest (``{'format': 1, 'entries': {'zcta/2020': {...}}}``); empty if none."""
    directory = directory if directory is not None else cache_dir()
    if directory is None:
        return {"format": 1, "entries": {}}
    path = directory / MANIFEST_NAME
    try:
        stat = path.stat()
    except OSError:
        return {"format": 1, "entries": {}}
    return json.loads(_read_manifest_text(path, stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=4)
def _read_manifest_text(path: Path, mtime_ns: int, size: int) -> str:
    try:
        text = path.read_text(encoding="utf-8")
        manifest = json.loads(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: unreadable geodata cache manifest ({exc}); delete it") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("entries", {}), dict):
        raise InputError(f"{path}: not a patchmap geodata cache manifest; delete it")
    for key, entry in manifest.get("entries", {}).items():
        problem = _entry_problem(entry)
        if problem:
            raise InputError(f"{path}: entry {key!r} {problem}: the cache was edited; delete it")
    return text


def _entry_problem(entry: Any) -> str | None:
    """What is wrong with one manifest entry (None if it has the shape patchmap writes)."""
    if not isinstance(entry, dict):
        return "is not a table"
    for field, kind in (("kind", str), ("sha256", str), ("layers", dict)):
        if not isinstance(entry.get(field), kind):
            return f"has no valid {field!r}"
    try:
        int(entry.get("vintage"))
        int(entry.get("units", 0))
    except (TypeError, ValueError):
        return "has no valid 'vintage'"
    if not isinstance(entry.get("states", []), list):
        return "has no valid 'states'"
    if not isinstance(entry.get("partial_states", {}), dict):
        return "has no valid 'partial_states'"
    for level, info in entry["layers"].items():
        if not isinstance(info, dict) or not isinstance(info.get("path"), str):
            return f"layer {level!r} has no valid 'path'"
        if Path(info["path"]).is_absolute() or ".." in Path(info["path"]).parts:
            return f"layer {level!r} points outside the cache"
    if entry.get("download") is not None and not isinstance(entry["download"], str):
        return "has no valid 'download'"
    return None


@dataclasses.dataclass(frozen=True)
class CachedLayer:
    """A fetched national layer registered in the cache manifest."""

    kind: str
    vintage: int
    level: str
    path: Path
    states: tuple[str, ...]


def cached_layers(kind: str, level: str = "analysis") -> list[CachedLayer]:
    """Cached layers of ``kind`` at ``level`` whose file exists, newest vintage first."""
    directory = cache_dir()
    if directory is None:
        return []
    out = []
    for entry in read_manifest(directory).get("entries", {}).values():
        info = entry.get("layers", {}).get(level)
        if entry.get("kind") != kind or not info:
            continue
        path = directory / info["path"]
        if path.is_file():
            out.append(
                CachedLayer(
                    kind, int(entry["vintage"]), level, path, tuple(entry.get("states", ()))
                )
            )
    return sorted(out, key=lambda layer: layer.vintage, reverse=True)


def _cached_layer(kind: str, level: str, vintage: int | None) -> CachedLayer | None:
    """The newest cached layer (or the one of ``vintage``); None means use the bundled one."""
    if level not in {"analysis", "display"}:
        raise InputError(f"unknown geography level {level!r} (use analysis or display)")
    layers = cached_layers(kind, level)
    if vintage is None:
        return layers[0] if layers else None
    for layer in layers:
        if layer.vintage == int(vintage):
            return layer
    bundled = {v for k, v in BUNDLED_VINTAGES.values() if k == kind}
    if kind == "zcta":
        bundled.add(ZCTA_VINTAGE)
    if int(vintage) in bundled:
        return None
    have = sorted({layer.vintage for layer in layers} | bundled)
    raise InputError(
        f"no {kind} polygons of vintage {vintage} (available: {', '.join(map(str, have))}; "
        f"fetch with `patchmap geodata fetch {kind} --year {vintage}`)"
    )


def _path(name: str) -> Path:
    path = geodata_dir() / name
    if not path.is_file():
        raise InputError(
            f"{path}: bundled geodata file not found (rebuild with `make geodata` or set {ENV_VAR})"
        )
    return path


def _stamp(path: Path) -> tuple[int, int]:
    """File version for the read caches: a replaced file is read again."""
    stat = path.stat()
    return stat.st_mtime_ns, stat.st_size


def _read_geo(path: Path, states: tuple[str, ...] | None = None) -> gpd.GeoDataFrame:
    """A GeoParquet file (only the rows of ``states`` if given), cached per file version."""
    return _read_geo_cached(path, _stamp(path), states)


@functools.lru_cache(maxsize=16)
def _read_geo_cached(
    path: Path, stamp: tuple[int, int], states: tuple[str, ...] | None
) -> gpd.GeoDataFrame:
    if states is None:
        return gpd.read_parquet(path)
    return gpd.read_parquet(path, filters=[("state", "in", list(states))])


def _read_table(path: Path) -> pd.DataFrame:
    return _read_table_cached(path, _stamp(path))


@functools.lru_cache(maxsize=8)
def _read_table_cached(path: Path, stamp: tuple[int, int]) -> pd.DataFrame:
    return pd.read_parquet(path)


@functools.lru_cache(maxsize=4)
def _zcta_files(directory: Path) -> dict[str, Path]:
    """Map each bundled state to its ZCTA polygon file (GeoParquet files named ``zcta_*``)."""
    index: dict[str, Path] = {}
    for path in sorted(directory.glob(ZCTA_POLYGON_GLOB)):
        if path.name.startswith(".") or b"geo" not in (pq.read_schema(path).metadata or {}):
            continue  # zcta_points.parquet (plain table) and temporary files
        for state in pq.read_table(path, columns=["state"]).column("state").unique().to_pylist():
            index[state] = path
    return index


def normalize_states(states: str | Sequence[str]) -> list[str]:
    """USPS codes for ``'CA'``, ``'ca'``, ``'California'``, ``'06'`` or ``'CA,RI'`` (or a list).

    Order is kept and duplicates dropped; anything unrecognized raises :class:`InputError`.
    """
    tokens = [states] if isinstance(states, str) else list(states)
    parts = [p.strip() for t in tokens for p in str(t).split(",") if p.strip()]
    if not parts:
        raise InputError("no state given (use USPS codes such as CA,RI)")
    out: list[str] = []
    for part in parts:
        if part.isdigit():
            code = FIPS_TO_STATE.get(part.zfill(2))
        elif part.upper() in STATE_NAMES:
            code = part.upper()
        else:
            code = _NAME_TO_STATE.get(" ".join(part.split()).casefold())
        if code is None:
            raise InputError(
                f"unknown state {part!r} (use a USPS code like CA, a name like California, "
                "or a FIPS code like 06)"
            )
        if code not in out:
            out.append(code)
    return out


def _layer(kind: str, bundled_name: str, order: str) -> gpd.GeoDataFrame:
    """The cached layer of ``kind`` for the states it covers, the bundled one for the rest."""
    bundled = _read_geo(_path(bundled_name))
    cached = _cached_layer(kind, "analysis", None)
    if cached is None:
        return bundled
    if set(bundled["state"].dropna()) <= set(cached.states):
        return _read_geo(cached.path)
    rest = bundled[~bundled["state"].isin(cached.states)]
    both = pd.concat([_read_geo(cached.path, tuple(cached.states)), rest], ignore_index=True)
    return both.sort_values(order, kind="stable").reset_index(drop=True)


def states() -> gpd.GeoDataFrame:
    """U.S. states, DC and territories (``state_fips``, ``state``, ``name``, geometry; EPSG:4326).

    Fetched state polygons where the cache has them, else the bundled ones.
    """
    return _layer("state", STATES_FILE, "state_fips").copy()


def counties(states: Sequence[str] | None = None) -> gpd.GeoDataFrame:
    """Counties (``county`` FIPS, ``name``, ``state_fips``, ``state``, ``population``, geometry).

    ``states`` restricts to those states (any form :func:`normalize_states` accepts). Fetched
    counties for the states the cache covers, the bundled ones for the rest.
    """
    gdf = _layer("county", COUNTIES_FILE, "county")
    if states is not None:
        gdf = gdf[gdf["state"].isin(normalize_states(states))]
    return gdf.reset_index(drop=True)  # a new frame: callers never touch the cached one


def bundled_counties() -> gpd.GeoDataFrame:
    """The bundled counties (what a fetched county file's coverage is measured against)."""
    return _read_geo(_path(COUNTIES_FILE)).copy()


def bundled_zcta_states() -> list[str]:
    """States whose ZCTA polygons are bundled, sorted (``['CA', 'DC', 'DE', 'RI']``)."""
    return sorted(_zcta_files(geodata_dir()))


def zcta_states() -> list[str]:
    """States with ZCTA polygons available, bundled or fetched into the cache, sorted."""
    return sorted(_zcta_sources("analysis", None)[0])


def _zcta_sources(level: str, vintage: int | None) -> tuple[dict[str, Path], CachedLayer | None]:
    """State -> ZCTA polygon file: the cached national layer where it has the state."""
    cached = _cached_layer("zcta", level, vintage)
    index = {} if vintage is not None and cached is not None else dict(_zcta_files(geodata_dir()))
    if cached is not None:
        index.update(dict.fromkeys(cached.states, cached.path))
    return index, cached


def zcta_polygons(
    states: Sequence[str] | None = None, *, level: str = "analysis", vintage: int | None = None
) -> gpd.GeoDataFrame:
    """Simplified ZCTA polygons (``zcta``, ``state``, ``land_km2``, ``water_km2``, ``population``).

    National polygons fetched into the cache are used when present (newest vintage, or
    ``vintage``), the bundled ones otherwise; ``level`` picks the cached ``analysis`` (50 m)
    or ``display`` simplification. ``None`` means every available state; asking for a state
    without polygons raises :class:`InputError` naming it and listing the available ones.
    """
    index, cached = _zcta_sources(level, vintage)
    wanted = sorted(index) if states is None else normalize_states(states)
    missing = [s for s in wanted if s not in index]
    if missing:
        raise InputError(
            f"no ZCTA polygons for {', '.join(missing)} "
            f"(available: {', '.join(sorted(index)) or 'none'}; "
            "fetch every state with `patchmap geodata fetch zcta`)"
        )
    if not wanted:
        raise InputError(f"no ZCTA polygon files in {geodata_dir()}")
    frames = []
    for path in dict.fromkeys(index[s] for s in wanted):
        if cached is not None and path == cached.path:  # national file: read only these states
            part = _read_geo(path, tuple(s for s in wanted if index[s] == path))
            frames.append(part.sort_values("zcta", kind="stable"))
        else:
            frames.append(_read_geo(path))
    gdf = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    return gdf[gdf["state"].isin(wanted)].reset_index(drop=True)


def zcta_points() -> pd.DataFrame:
    """Every U.S. ZCTA as a point (``zcta``, ``lat``, ``lon``, ``land_km2``, ``population``, ``state``)."""
    return _read_table(_path(ZCTA_POINTS_FILE)).copy()


def zip_crosswalk() -> pd.DataFrame:
    """USPS ZIP -> ZCTA (``zip``, ``zcta``, ``zip_type``, ``city``, ``state``); PO boxes included."""
    return _read_table(_path(ZIP_ZCTA_FILE)).copy()


def region_geometry(states: str | Sequence[str]) -> BaseGeometry:
    """Union of the given states' polygons as one shapely geometry (e.g. for an H3 polyfill)."""
    codes = normalize_states(states)
    layer = _layer("state", STATES_FILE, "state_fips")
    rows = layer[layer["state"].isin(codes)]
    missing = sorted(set(codes) - set(rows["state"]))
    if missing:
        raise InputError(f"no state boundary bundled for {', '.join(missing)}")
    return shapely.union_all(rows.geometry.values)


def normalize_zip(values: pd.Series) -> pd.Series:
    """Return 5-digit ZIP strings (NA where the value is not a ZIP).

    Accepts 5 digits, ZIP+4 (``12345-6789`` or 9 digits; 8 digits when Excel dropped the
    leading zero: ``10050393`` → ``01005``), numbers whose leading zeros were dropped by
    Excel (``2903`` → ``02903``) and float renderings (``2903.0``).
    """
    s = values.astype("string").str.strip()
    s = s.str.replace(r"\.0+$", "", regex=True)
    s = s.str.replace(r"^(\d{5})-?\d{4}$", r"\1", regex=True)
    # ZIP+4 as a number whose leading zero Excel dropped: 10050393 is 01005-0393
    s = s.str.replace(r"^(\d{4})(\d{4})$", r"0\1", regex=True)
    ok = s.str.fullmatch(r"\d{3,5}").fillna(False).astype(bool)
    out = s.where(ok).str.zfill(5)
    return out.astype("string")


#: ``zip_status`` statuses, from usable to unusable.
ZIP_STATUSES = ("ok", "retired", "not_in_crosswalk", "unknown", "invalid")


def zip_status(zips: pd.Series | Sequence[str]) -> pd.DataFrame:
    """Why each ZIP does or does not resolve: ``zip``, ``zcta``, ``status``, ``reason``.

    ``status`` is one of :data:`ZIP_STATUSES`: ``ok`` (resolves, as in
    :func:`patchmap.geocode.zip_locations`); ``retired`` (resolves to a 2010 ZCTA that a newer
    cached ZCTA vintage no longer has); ``not_in_crosswalk`` (a plausible ZIP absent from the
    2015 crosswalk: retired, newer or mistyped; ``zcta`` is set when a newer cached ZCTA
    vintage has it); ``unknown`` (no ZIP starts with its first three digits); ``invalid``
    (not a ZIP). ``reason`` is a short text for reject files, empty for ``ok``. Values are
    normalized as in :func:`patchmap.geocode.normalize_zip`; the index follows ``zips``.
    """
    raw = zips if isinstance(zips, pd.Series) else pd.Series(list(zips), dtype="object")
    zip5 = normalize_zip(raw)
    keys = zip5.fillna("").to_numpy(dtype=object)
    crosswalk = zip_crosswalk().set_index("zip")["zcta"]
    points = zcta_points().set_index("zcta")["state"]
    zcta = crosswalk.reindex(keys).to_numpy(dtype=object)
    direct = points.index.get_indexer(keys) >= 0  # a ZIP that is itself a 2010 ZCTA
    zcta = np.where(pd.isna(zcta) & direct, keys, zcta)
    found = ~pd.isna(zcta)
    valid = zip5.notna().to_numpy()

    newer = _cached_layer("zcta", "analysis", None)
    retired = np.zeros(len(keys), dtype=bool)
    newer_only = np.zeros(len(keys), dtype=bool)
    if newer is not None and newer.vintage != ZCTA_VINTAGE:
        table = pq.read_table(
            newer.path, columns=["zcta"], filters=[("state", "in", list(newer.states))]
        )
        ids = pd.Index(table.column("zcta").to_pylist())  # of the states the layer covers
        zcta_state = points.reindex(np.where(found, zcta, "")).to_numpy(dtype=object)
        covered = np.isin(zcta_state.astype(str), list(newer.states))
        retired = found & covered & (ids.get_indexer(np.where(found, zcta, "")) < 0)
        newer_only = valid & ~found & (ids.get_indexer(keys) >= 0)
        zcta = np.where(newer_only, keys, zcta)
    prefixes = set(crosswalk.index.str[:3]) | set(points.index.str[:3])
    known_prefix = pd.Series(keys).str[:3].isin(prefixes).to_numpy()

    status = np.select(
        [~valid, found & ~retired, retired, newer_only | known_prefix],
        ["invalid", "ok", "retired", "not_in_crosswalk"],
        default="unknown",
    )
    vintage = newer.vintage if newer is not None else ZCTA_VINTAGE
    zcta_text = pd.Series(zcta, dtype="object").fillna("").astype(str).to_numpy(dtype=object)
    reason = np.select(
        [status == "invalid", status == "ok", status == "retired", newer_only,
         status == "not_in_crosswalk"],
        [
            "not a ZIP code (5 digits or ZIP+4)",
            "",
            "ZIP retired: its ZCTA " + zcta_text + f" no longer exists in ZCTA {vintage}",
            f"ZIP not in the {CROSSWALK_VINTAGE} crosswalk vintage (newer ZIP; "
            f"ZCTA {vintage} polygon exists)",
            f"ZIP retired / not in the {CROSSWALK_VINTAGE} crosswalk vintage",
        ],
        default="unknown ZIP (no ZIP code starts with " + pd.Series(keys).str[:3].to_numpy(
            dtype=object) + ")",
    )  # fmt: skip
    return pd.DataFrame(
        {
            "zip": zip5.to_numpy(),
            "zcta": pd.array(np.where(pd.isna(zcta), None, zcta), dtype="string"),
            "status": status.astype(object),
            "reason": reason.astype(object),
        },
        index=raw.index,
    ).astype({"zip": "string", "status": "string", "reason": "string"})
