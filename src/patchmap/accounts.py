"""Ingest: read an accounts table, validate it, geocode every row or reject it with a reason.

Nothing is lost: every input row ends up either in ``IngestResult.accounts`` (placed, with
``lat``/``lon``) or in ``IngestResult.rejects`` (with its 1-based row number and a reason).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from patchmap.errors import InputError
from patchmap.geocode import normalize_zip, zip_locations
from patchmap.io import read_table, write_csv
from patchmap.logs import log
from patchmap.notes import Note
from patchmap.options import error

REJECT_COLUMNS = ["row", "account_id", "reason"]


def tally_line(
    n_read: int, n_placed: int, n_rejected: int, rejects_path: str | os.PathLike | None = None
) -> str:
    """The one-line tally every command prints: ``N read, M placed, R rejected (PATH)``."""
    where = f" ({rejects_path})" if rejects_path is not None else ""
    return f"{n_read} read, {n_placed} placed, {n_rejected} rejected{where}"


@dataclass
class IngestResult:
    """Placed accounts, rejected rows, and how many rows were read."""

    accounts: pd.DataFrame
    rejects: pd.DataFrame
    n_read: int
    source: str = "accounts"
    notes: list[str] = field(default_factory=list)  # what ingest tells the user

    @property
    def n_placed(self) -> int:
        return len(self.accounts)

    @property
    def n_rejected(self) -> int:
        return len(self.rejects)

    def tally(self, rejects_path: str | os.PathLike | None = None) -> str:
        """The one-line tally every command prints (see :func:`tally_line`)."""
        return tally_line(self.n_read, self.n_placed, self.n_rejected, rejects_path)

    def write_rejects(self, path: str | os.PathLike) -> Path:
        return write_csv(self.rejects, path)


def empty_rejects() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "row": pd.Series(dtype="int64"),
            "account_id": pd.Series(dtype="string"),
            "reason": pd.Series(dtype="string"),
        }
    )


def zip_fallback_note(count: int, source: str, example: str) -> Note:
    """Rows whose lat/lon were unusable, placed by their ZIP (``example``: the first one)."""
    return Note(
        "zip_fallback",
        f"{source}: {count} row(s) with unusable lat/lon placed by their ZIP instead "
        f"(e.g. {example})",
        count=count,
        source=source,
        example=example,
    )


def rename_columns(df: pd.DataFrame, column_map: Mapping[str, str], source: str) -> pd.DataFrame:
    """Apply a ``--column`` map (name -> source column); a missing source column raises."""
    missing = [src for src in column_map.values() if src not in df.columns]
    if missing:
        raise InputError(
            f"{source}: mapped column {missing[0]!r} not found (columns: {', '.join(map(str, df.columns[:12]))})"
        )
    renamed = df.rename(columns={src: name for name, src in column_map.items()})
    # A column both present natively and mapped from elsewhere: the mapping wins.
    return renamed.loc[:, ~renamed.columns.duplicated(keep="last")]


def _numeric(df: pd.DataFrame, column: str, source: str, first_row: int = 1) -> pd.Series:
    """Coerce a column to float; a column with values but none numeric is a wrong type."""
    raw = df[column]
    values = pd.to_numeric(raw, errors="coerce").astype("float64")
    if pd.api.types.is_numeric_dtype(raw):  # already numbers: nothing can be a wrong type
        return values
    given = raw.notna() & (raw.astype("string").str.strip() != "")
    if given.any() and values[given].isna().all():
        first = raw[given].iloc[0]
        raise InputError(
            f"{source}: column {column!r} must be numeric "
            f"(row {int(given.idxmax()) + first_row}: {first!r})"
        )
    return values


#: Account columns that cannot be negative (counts, amounts, scores).
NONNEGATIVE = (
    "employees", "annual_revenue", "potential", "deal_size", "score", "reach", "p_win",
    "mqls_90d", "opportunities_12m", "intent_score", "product_usage", "customers",
)  # fmt: skip
#: Larger magnitudes are typos or overflow bait: sums of them stop being exact.
NUMBER_LIMIT = 1e15
_NOT_MEASURES = {"account_id", "zip", "lat", "lon", "source_row", "zcta"}


def _reject_bad_numbers(df: pd.DataFrame, reason: pd.Series) -> None:
    """Give a reason to rows whose numbers cannot be used: ``inf``/``nan`` spelled out,
    beyond +/-1e15, or negative in a column of counts and amounts (:data:`NONNEGATIVE`)."""
    for col in df.columns:
        if col in _NOT_MEASURES:
            continue
        raw = df[col]
        if pd.api.types.is_bool_dtype(raw):
            continue
        if pd.api.types.is_numeric_dtype(raw):
            values = raw.astype("float64")
            spelled_nan = pd.Series(False, index=df.index)
        elif col in NONNEGATIVE:
            values = pd.to_numeric(raw, errors="coerce").astype("float64")
            spelled_nan = (
                raw.astype("string")
                .str.strip()
                .str.lower()
                .isin(["nan", "inf", "-inf"])
                .fillna(False)
            )
        else:
            continue
        arr = values.to_numpy()
        infinite = pd.Series(np.isinf(arr), index=df.index) | (spelled_nan & values.isna())
        huge = pd.Series(
            np.abs(np.nan_to_num(arr, posinf=0, neginf=0)) > NUMBER_LIMIT, index=df.index
        )
        negative = pd.Series(
            (arr < 0) if col in NONNEGATIVE else np.zeros(len(arr), bool), index=df.index
        )
        free = reason.isna()
        reason[free & infinite] = f"{col} is not a finite number"
        reason[free & ~infinite & huge] = f"{col} beyond {NUMBER_LIMIT:.0e} in size"
        reason[free & ~infinite & ~huge & negative] = f"negative {col}"


def duplicate_ids_error(source: str, ids: pd.Series, rows: pd.Series) -> InputError | None:
    """The error naming repeated account ids (``ids`` in row order, ``rows`` their row
    numbers), or None when every given id is unique."""
    ids, rows = ids.reset_index(drop=True), rows.reset_index(drop=True)
    dup = (ids.duplicated(keep=False) & ids.notna() & (ids != "")).to_numpy(dtype=bool)
    if not dup.any():
        return None
    first = ids[dup].iloc[0]
    where = rows[(ids == first).fillna(False).to_numpy(dtype=bool)].tolist()[:3]
    return InputError(
        f"{source}: column 'account_id' has {int(ids[dup].nunique())} duplicated ids "
        f"(e.g. {first!r} on rows {', '.join(map(str, where))})"
    )


def validate_accounts(
    df: pd.DataFrame, source: str = "accounts", *, first_row: int = 1
) -> IngestResult:
    """Validate and geocode an accounts DataFrame already in memory (its notes in
    ``IngestResult.notes``, not logged: :func:`load_accounts` logs them).

    ``first_row``: the row number of ``df``'s first row (1; a later number for a slice of a
    larger table, e.g. one partition of a Parquet dataset), so messages and rejects name
    rows of the whole table.
    """
    n_read = len(df)
    if n_read == 0:
        raise InputError(f"{source}: no rows")
    if "account_id" not in df.columns:
        raise error(
            "layers",
            f"{source}: missing required column 'account_id' (map one with {{column_map}} "
            "account_id=NAME)",
            column_map="columns",
        )
    has_latlon = {"lat", "lon"} <= set(df.columns)
    if not has_latlon and ("lat" in df.columns or "lon" in df.columns):
        present = "lat" if "lat" in df.columns else "lon"
        other = "lon" if present == "lat" else "lat"
        raise InputError(f"{source}: column {present!r} given without {other!r}")
    if not has_latlon and "zip" not in df.columns:
        raise error(
            "layers",
            f"{source}: no location columns: need 'lat' and 'lon', or 'zip' (map with "
            "{column_map} lat=NAME)",
            column_map="columns",
        )

    df = df.reset_index(drop=True).copy()
    row = pd.Series(np.arange(first_row, first_row + n_read), index=df.index, dtype="int64")
    ids = df["account_id"].astype("string").str.strip()
    ids = (
        ids.str.replace(r"\.0$", "", regex=True)
        if pd.api.types.is_float_dtype(df["account_id"])
        else ids
    )
    df["account_id"] = ids
    reason = pd.Series(pd.NA, index=df.index, dtype="string")
    reason[ids.isna() | (ids == "")] = "missing account_id"

    duplicated = duplicate_ids_error(source, ids, row)
    if duplicated is not None:
        raise duplicated

    notes: list[str] = []
    lat = pd.Series(np.nan, index=df.index)
    lon = pd.Series(np.nan, index=df.index)
    location_source = pd.Series(pd.NA, index=df.index, dtype="string")
    # unusable coordinates: the row falls back to its ZIP, else is rejected with this reason
    coord_problem = pd.Series(pd.NA, index=df.index, dtype="string")
    if has_latlon:
        lat = _numeric(df, "lat", source, first_row)
        lon = _numeric(df, "lon", source, first_row)
        given = lat.notna() | lon.notna()
        in_range = lat.between(-90, 90) & lon.between(-180, 180)
        bad_range = given & lat.notna() & lon.notna() & ~in_range
        coord_problem[bad_range] = "coordinates out of range"
        half = given & (lat.isna() | lon.isna())
        coord_problem[half] = "lat/lon incomplete or not numeric"
        ok = lat.notna() & lon.notna() & in_range
        lat, lon = lat.where(ok), lon.where(ok)
        location_source[ok] = "latlon"

    zcta = pd.Series(pd.NA, index=df.index, dtype="string")
    if "zip" in df.columns:
        raw_zip = df["zip"]
        zip5 = normalize_zip(raw_zip)
        df["zip"] = zip5
        resolved = zip_locations(zip5)
        zcta = resolved["zcta"]
        need = lat.isna() & reason.isna()
        raw_given = raw_zip.notna() & (raw_zip.astype("string").str.strip() != "")
        reason[need & raw_given & zip5.isna()] = (
            "invalid ZIP " + raw_zip.astype("string").str.strip()
        )
        reason[need & zip5.notna() & zcta.isna()] = "unknown ZIP " + zip5
        use = need & zcta.notna()
        lat = lat.where(~use, resolved["lat"])
        lon = lon.where(~use, resolved["lon"])
        location_source[use] = "zip"
        fell_back = use & coord_problem.notna()
        if fell_back.any():
            example = f"row {int(row[fell_back].iloc[0])}: {coord_problem[fell_back].iloc[0]}"
            notes.append(zip_fallback_note(int(fell_back.sum()), source, example))
    unplaced = reason.isna() & lat.isna()
    reason[unplaced & coord_problem.notna()] = coord_problem
    reason[reason.isna() & lat.isna()] = "no location (lat/lon or zip)"
    _reject_bad_numbers(df, reason)

    df["lat"] = lat.astype("float64")
    df["lon"] = lon.astype("float64")
    df["zcta"] = zcta
    df["location_source"] = location_source
    rejected = reason.notna()
    rejects = pd.DataFrame(
        {"row": row[rejected], "account_id": ids[rejected], "reason": reason[rejected]}
    )
    accounts = df[~rejected].reset_index(drop=True)
    # a file patchmap wrote (e.g. `score`'s output) carries the rows of its own input:
    # this read's rows replace them
    accounts = accounts.drop(columns=["source_row"], errors="ignore")
    accounts.insert(0, "source_row", row[~rejected].to_numpy())
    return IngestResult(
        accounts=accounts,
        rejects=rejects.reset_index(drop=True),
        n_read=n_read,
        source=source,
        notes=notes,
    )


def load_accounts(
    path: str | os.PathLike,
    column_map: Mapping[str, str] | None = None,
    *,
    sheet: str | None = None,
    encoding: str | None = None,
) -> IngestResult:
    """Read CSV / Parquet / Excel accounts, map column names, validate and geocode.

    ``sheet`` reads one Excel sheet (default: every sheet with data, same columns);
    ``encoding`` is the text encoding of a CSV (default UTF-8)."""
    column_map = dict(column_map or {})
    keep_text = {column_map.get(c, c): "string" for c in ("account_id", "zip")}
    df = read_table(path, dtype=keep_text, sheet=sheet, encoding=encoding)
    df = rename_columns(df, column_map, str(path))
    result = validate_accounts(df, source=str(path))
    if result.notes:
        for note in result.notes:
            log.info(note)
    return result
