"""Bundled Census reference geography: ZCTA polygons and points, ZIP crosswalk, counties, states.

The files live in ``geodata/`` (built by ``scripts/build_geodata.py``, see its README) and are
read lazily, once per process; every public function returns a fresh copy so callers may mutate
what they get.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pyarrow.parquet as pq
import shapely
from shapely.geometry.base import BaseGeometry

import patchmap
from patchmap.errors import InputError

ENV_VAR = "PATCHMAP_GEODATA"

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


def _path(name: str) -> Path:
    path = geodata_dir() / name
    if not path.is_file():
        raise InputError(
            f"{path}: bundled geodata file not found (rebuild with `make geodata` or set {ENV_VAR})"
        )
    return path


@functools.lru_cache(maxsize=16)
def _read_geo(path: Path) -> gpd.GeoDataFrame:
    return gpd.read_parquet(path)


@functools.lru_cache(maxsize=8)
def _read_table(path: Path) -> pd.DataFrame:
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


def states() -> gpd.GeoDataFrame:
    """U.S. states, DC and territories (``state_fips``, ``state``, ``name``, geometry; EPSG:4326)."""
    return _read_geo(_path(STATES_FILE)).copy()


def counties(states: Sequence[str] | None = None) -> gpd.GeoDataFrame:
    """Counties (``county`` FIPS, ``name``, ``state_fips``, ``state``, ``population``, geometry).

    ``states`` restricts to those states (any form :func:`normalize_states` accepts).
    """
    gdf = _read_geo(_path(COUNTIES_FILE))
    if states is not None:
        gdf = gdf[gdf["state"].isin(normalize_states(states))]
    return gdf.reset_index(drop=True)  # a new frame: callers never touch the cached one


def bundled_zcta_states() -> list[str]:
    """States whose ZCTA polygons are bundled, sorted (``['CA', 'DC', 'DE', 'RI']``)."""
    return sorted(_zcta_files(geodata_dir()))


def zcta_polygons(states: Sequence[str] | None = None) -> gpd.GeoDataFrame:
    """Simplified ZCTA polygons (``zcta``, ``state``, ``land_km2``, ``water_km2``, ``population``).

    ``None`` means every bundled state; asking for a state without bundled polygons raises
    :class:`InputError` naming it and listing the bundled ones.
    """
    index = _zcta_files(geodata_dir())
    wanted = sorted(index) if states is None else normalize_states(states)
    missing = [s for s in wanted if s not in index]
    if missing:
        raise InputError(
            f"no bundled ZCTA polygons for {', '.join(missing)} "
            f"(bundled: {', '.join(sorted(index)) or 'none'})"
        )
    if not wanted:
        raise InputError(f"no ZCTA polygon files in {geodata_dir()}")
    files = dict.fromkeys(index[s] for s in wanted)
    frames = [_read_geo(path) for path in files]
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
    layer = _read_geo(_path(STATES_FILE))
    rows = layer[layer["state"].isin(codes)]
    missing = sorted(set(codes) - set(rows["state"]))
    if missing:
        raise InputError(f"no state boundary bundled for {', '.join(missing)}")
    return shapely.union_all(rows.geometry.values)
