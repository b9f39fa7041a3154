"""Reading tables and unit files, and writing every output atomically."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd

from patchmap.errors import InputError

TABLE_SUFFIXES = {".csv", ".txt", ".tsv", ".parquet", ".pq", ".xlsx", ".xls"}


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only on success.

    An interrupted or failed write never leaves a half-written file where a good one was.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=target.suffix, dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():  # mkstemp makes 0600 files; give the output ordinary permissions
            os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_csv(df: pd.DataFrame, path: str | os.PathLike, **kwargs) -> Path:
    """Write a CSV atomically (no index unless asked)."""
    kwargs.setdefault("index", False)
    with atomic_path(path) as tmp:
        df.to_csv(tmp, **kwargs)
    return Path(path)


def write_text(text: str, path: str | os.PathLike) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_units(units: gpd.GeoDataFrame, path: str | os.PathLike) -> Path:
    """Write a unit GeoDataFrame; the format follows the suffix (GeoParquet by default)."""
    target = Path(path)
    suffix = target.suffix.lower()
    with atomic_path(target) as tmp:
        if suffix in {".parquet", ".geoparquet", ".pq"}:
            units.to_parquet(tmp, compression="zstd", index=False)
        elif suffix == ".gpkg":
            tmp.unlink()
            units.to_file(tmp, driver="GPKG", engine="pyogrio", layer=target.stem)
        elif suffix in {".geojson", ".json"}:
            tmp.unlink()
            units.to_file(tmp, driver="GeoJSON", engine="pyogrio")
        else:
            raise InputError(
                f"{target}: unsupported unit file type {suffix!r} (use .parquet, .gpkg or .geojson)"
            )
    return target


def _require_file(path: Path) -> None:
    if not path.exists():
        raise InputError(f"{path}: file not found")
    if path.is_file() and path.stat().st_size == 0:
        raise InputError(f"{path}: file is empty")


def read_table(path: str | os.PathLike, *, dtype: dict | None = None) -> pd.DataFrame:
    """Read a CSV, Parquet or Excel table into a DataFrame; errors name the file."""
    p = Path(path)
    _require_file(p)
    suffix = p.suffix.lower()
    try:
        if suffix in {".parquet", ".pq"} or p.is_dir():
            df = pd.read_parquet(p)
        elif suffix in {".xlsx", ".xls"}:
            df = pd.read_excel(p, dtype=dtype)
        elif suffix == ".tsv":
            df = pd.read_csv(p, sep="\t", dtype=dtype)
        else:
            df = pd.read_csv(
                p,
                dtype=dtype,
                sep=None if suffix == ".txt" else ",",
                engine="python" if suffix == ".txt" else "c",
            )
    except InputError:
        raise
    except pd.errors.EmptyDataError:
        raise InputError(f"{p}: file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{p}: cannot read as a table ({first})") from None
    if df.empty:
        raise InputError(f"{p}: no rows")
    df.columns = [str(c).strip() for c in df.columns]
    return df


def listed_lines(lines: Iterable[int], word: str = "line", limit: int = 5) -> str:
    """``line 3`` or ``lines 3, 7, 9 and 4 more``, for a one-line error message."""
    lines = [int(n) for n in lines]
    more = f" and {len(lines) - limit} more" if len(lines) > limit else ""
    return f"{word}{'s' if len(lines) > 1 else ''} {', '.join(map(str, lines[:limit]))}{more}"


def check_ids(
    df: pd.DataFrame,
    columns: Sequence[str],
    *,
    source: str,
    first_line: int = 2,
    word: str = "line",
) -> tuple[pd.DataFrame, np.ndarray]:
    """Stripped text of ``columns`` and each row's line number; ``columns[0]`` is the id.

    A blank cell in any of ``columns``, or an id on more than one row, raises a one-line
    InputError naming ``source`` and the lines (numbered from ``first_line``: 2 in a file
    whose header is line 1; ``word`` names them, e.g. ``row`` for a table in memory).
    """
    lines = np.arange(len(df)) + first_line
    text = pd.DataFrame({c: df[c].astype("string").str.strip() for c in columns}, index=df.index)
    blank = (text.isna() | (text == "")).any(axis=1).to_numpy()
    if blank.any():
        raise InputError(
            f"{source}: {listed_lines(lines[blank], word)}: empty {' or '.join(columns)}"
        )
    text = text.astype(str)
    ids = text[columns[0]]
    dup = ids.duplicated(keep=False).to_numpy()
    if dup.any():
        first = ids[dup].iloc[0]
        n = int(ids.duplicated().sum())
        raise InputError(
            f"{source}: {columns[0]} {first!r} appears on "
            f"{listed_lines(lines[(ids == first).to_numpy()], word)} "
            f"({n} duplicate row{'s' if n > 1 else ''} in all)"
        )
    return text, lines


def check_known_ids(
    ids: pd.Series,
    lines: np.ndarray,
    known: Iterable[str],
    *,
    source: str,
    word: str = "line",
    limit: int = 5,
) -> None:
    """Raise a one-line InputError when an id of ``ids`` is not among ``known`` (the units).

    ``ids`` and ``lines`` are as :func:`check_ids` returns them; the message names
    ``source`` and up to ``limit`` offending lines with their ids, e.g.
    ``plan.csv: unit_id not among the units on line 3 ('99999') and 2 more``.
    """
    known = known if isinstance(known, pd.Index) else pd.Index(pd.Series(list(known)).astype(str))
    unknown = ~ids.isin(known).to_numpy()
    if not unknown.any():
        return
    shown = ", ".join(
        f"{word} {ln} ({u!r})"
        for ln, u in zip(lines[unknown][:limit], ids[unknown].iloc[:limit], strict=True)
    )
    n = int(unknown.sum())
    more = f" and {n - limit} more" if n > limit else ""
    raise InputError(f"{source}: {ids.name or 'unit_id'} not among the units on {shown}{more}")


def read_polygon_file(path: str | os.PathLike) -> gpd.GeoDataFrame:
    """Read any file geopandas reads (GeoParquet, GeoPackage, GeoJSON, Shapefile), CRS as is."""
    p = Path(path)
    _require_file(p)
    try:
        if p.suffix.lower() in {".parquet", ".geoparquet", ".pq"}:
            gdf = gpd.read_parquet(p)
        else:
            gdf = gpd.read_file(p, engine="pyogrio")
    except Exception as exc:  # any reader failure is the user's file, reported in one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{p}: cannot read as polygons ({first})") from None
    if len(gdf) == 0:
        raise InputError(f"{p}: no units")
    return gdf


def read_units(path: str | os.PathLike) -> gpd.GeoDataFrame:
    """Read a unit file in EPSG:4326 (a file without a CRS is taken as lon/lat)."""
    gdf = read_polygon_file(path)
    if gdf.crs is None:
        return gdf.set_crs(4326)
    return gdf if gdf.crs.equals("EPSG:4326") else gdf.to_crs(4326)
