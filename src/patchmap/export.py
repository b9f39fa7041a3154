"""Exports a CRM can load: ZIP-to-rep lookup, account assignments, territory polygons, summary.

Everything works from files alone (units + PLAN.csv); an engine ``Plan`` only adds its own
view of deviation, compactness and contiguity. Every file is written atomically, so a
re-run overwrites cleanly and an interrupted one leaves the previous file in place.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from patchmap import crm, geodata
from patchmap.errors import InputError
from patchmap.geodata import STATE_TO_FIPS
from patchmap.io import (
    atomic_path,
    check_ids,
    check_known_ids,
    listed_lines,
    write_csv,
    write_markdown,
    write_units,
)
from patchmap.layers import locate_points
from patchmap.metrics import (
    account_distance_km,
    account_travel,
    deviation,
    equal_area_crs,
    is_contiguous,
    polsby_popper,
)
from patchmap.options import TOLERANCE, error
from patchmap.partition.reps import prepare_reps
from patchmap.quota import Quota
from patchmap.segments.named import add_named_totals
from patchmap.units.adjacency import build_adjacency
from patchmap.units.h3 import points_to_cells
from patchmap.units.meta import h3_resolution
from patchmap.units.meta import unit_kind as recorded_kind

__all__ = [
    "DEFAULT_BALANCE",
    "PLAN_COLUMNS",
    "Headcount",
    "assign_reps",
    "balance_columns",
    "check_rep_coverage",
    "check_reps",
    "checked_formats",
    "dissolve_territories",
    "export_plan",
    "is_valid_coverage",
    "numeric_or_zero",
    "off_target_reasons",
    "plan_frame",
    "read_plan",
    "recommended_headcount",
    "recommended_reps",
    "rep_links",
    "rep_table",
    "territory_labels",
    "territory_summary",
    "unit_kind",
    "validate_plan",
    "locate_zctas",
    "zip_to_rep",
]

PLAN_COLUMNS = ["unit_id", "territory"]
#: Balance columns assumed when only files are given (the same default as `patchmap run`).
DEFAULT_BALANCE = ("potential", "accounts")
#: Unit columns summed per territory when present.
SUM_COLUMNS = (
    "accounts", "customers", "score", "reach", "potential", "whitespace", "population", "area_km2",
)  # fmt: skip
_MAX_LISTED = 5


# ---------------------------------------------------------------------------------------------
# plans


def _listed(values: Sequence[Any]) -> str:
    shown = ", ".join(repr(str(v)) for v in values[:_MAX_LISTED])
    more = len(values) - _MAX_LISTED
    return shown + (f" and {more} more" if more > 0 else "")


def _unit_ids(units: gpd.GeoDataFrame | pd.DataFrame | Sequence[str]) -> pd.Index:
    if isinstance(units, pd.DataFrame):
        if "unit_id" not in units.columns:
            raise InputError("units: column 'unit_id' not found")
        ids = units["unit_id"]
    else:
        ids = pd.Series(list(units))
    return pd.Index(ids.astype(str))


def validate_plan(
    plan: pd.DataFrame,
    units: gpd.GeoDataFrame | pd.DataFrame | Sequence[str],
    *,
    source: str = "plan",
    first_line: int = 1,
    row_word: str = "row",
) -> pd.DataFrame:
    """Check a ``unit_id,territory`` table against the units; return it in unit order.

    Every unit must appear exactly once and nothing else may; ids are compared as text
    (leading zeros kept). Errors name the rows (``row_word`` numbered from ``first_line``).
    """
    missing_cols = [c for c in PLAN_COLUMNS if c not in plan.columns]
    if missing_cols:
        raise InputError(
            f"{source}: column {missing_cols[0]!r} not found (expected header unit_id,territory)"
        )
    text, lines = check_ids(plan, PLAN_COLUMNS, source=source, first_line=first_line, word=row_word)
    ids, terr = text["unit_id"], text["territory"]
    known = _unit_ids(units)
    check_known_ids(ids, lines, known, source=source, word=row_word, limit=_MAX_LISTED)
    absent = known[~known.isin(ids)]
    if len(absent):
        raise InputError(
            f"{source}: {len(absent)} unit(s) have no territory: {_listed(list(absent))}"
        )
    out = pd.DataFrame({"unit_id": ids.to_numpy(), "territory": terr.to_numpy()})
    order = pd.Index(out["unit_id"]).get_indexer(known)
    return out.iloc[order].reset_index(drop=True)


def read_plan(
    path: str | os.PathLike, units: gpd.GeoDataFrame | pd.DataFrame | Sequence[str]
) -> pd.DataFrame:
    """Read and validate a PLAN.csv (exact header ``unit_id,territory``); ids stay text.

    Returns ``unit_id, territory`` in the order of ``units``. Unknown ids, missing units
    and duplicates raise :class:`InputError` naming the lines.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: file not found")
    try:
        df = pd.read_csv(
            p,
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            encoding="utf-8-sig",
            skipinitialspace=True,
        )
    except pd.errors.EmptyDataError:
        raise InputError(f"{p}: file is empty (expected header unit_id,territory)") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise InputError(f"{p}: cannot read as CSV ({first})") from None
    header = [str(c).strip() for c in df.columns]
    if header != PLAN_COLUMNS:
        raise InputError(
            f"{p}: header is {','.join(header)!r}, expected exactly 'unit_id,territory'"
        )
    df.columns = header
    if df.empty:
        raise InputError(f"{p}: no rows after the header")
    return validate_plan(df, units, source=str(p), first_line=2, row_word="line")


def plan_frame(plan: Any, units: gpd.GeoDataFrame | None = None) -> pd.DataFrame:
    """``unit_id, territory`` from a DataFrame, an engine ``Plan``, a Series or a PLAN.csv path.

    With ``units`` given the plan is validated and returned in unit order.
    """
    if isinstance(plan, (str, os.PathLike)):
        if units is None:
            raise InputError(f"{plan}: reading a plan file needs the units")
        return read_plan(plan, units)
    if hasattr(plan, "to_frame") and not isinstance(plan, (pd.Series, pd.DataFrame)):
        df = plan.to_frame()
    elif hasattr(plan, "assignment") and not isinstance(plan, pd.DataFrame):
        df = plan.assignment
    else:
        df = plan
    if isinstance(df, pd.Series):
        df = pd.DataFrame({"unit_id": df.index.astype(str), "territory": df.to_numpy()})
    if not isinstance(df, pd.DataFrame):
        raise InputError(f"plan: expected a unit_id,territory table, got {type(plan).__name__}")
    if units is None:
        missing = [c for c in PLAN_COLUMNS if c not in df.columns]
        if missing:
            raise InputError(f"plan: column {missing[0]!r} not found")
        return pd.DataFrame({c: df[c].astype(str).to_numpy() for c in PLAN_COLUMNS})
    return validate_plan(df, units)


def territory_labels(units: gpd.GeoDataFrame, plan: Any) -> np.ndarray:
    """Territory label of each unit row, as text (plan validated against the units)."""
    pf = plan_frame(plan, units)
    return pf["territory"].to_numpy(dtype=object)


def _engine_territories(plan_metrics: Any) -> pd.DataFrame | None:
    """The engine's per-territory table (a ``Plan`` or a DataFrame), or None."""
    if plan_metrics is None:
        return None
    t = (
        plan_metrics
        if isinstance(plan_metrics, pd.DataFrame)
        else getattr(plan_metrics, "territories", None)
    )
    if not isinstance(t, pd.DataFrame) or "territory" not in t.columns:
        return None
    t = t.copy()
    t["territory"] = t["territory"].astype(str)
    return t


# ---------------------------------------------------------------------------------------------
# units: kind, geometry


def unit_kind(units: gpd.GeoDataFrame) -> str:
    """``'h3'``, ``'zcta'`` or ``'polygon'`` (counties and user polygons): as the layer
    records it (:mod:`patchmap.units.meta`), else guessed from the unit ids."""
    kind = recorded_kind(units)
    return "polygon" if kind == "county" else kind


def _polygonal(geoms: np.ndarray) -> np.ndarray:
    """Valid MultiPolygons (invalid input repaired, stray lines and points dropped)."""
    geoms = np.asarray(geoms, dtype=object)
    bad = ~shapely.is_valid(geoms)
    if bad.any():
        geoms = geoms.copy()
        geoms[bad] = shapely.make_valid(geoms[bad], method="structure", keep_collapsed=False)
    parts, idx = shapely.get_parts(geoms, return_index=True)
    poly = shapely.get_type_id(parts) == 3
    out = np.empty(len(geoms), dtype=object)
    if poly.any():
        shapely.multipolygons(parts[poly], indices=idx[poly], out=out)
    out[shapely.is_missing(out)] = shapely.from_wkt("MULTIPOLYGON EMPTY")
    return out


_COVERAGE_ANSWERS: OrderedDict[bytes, bool] = OrderedDict()
_COVERAGE_LOCK = threading.Lock()
_COVERAGE_KEPT = 8


def is_valid_coverage(geoms: Sequence[Any] | np.ndarray) -> bool:
    """``shapely.coverage_is_valid(geoms)``, remembered for the last few distinct inputs.

    The answer is kept by a digest of the geometries' WKB (exact coordinates and structure,
    in order): one run checks the same units for its map and for its export, and the check
    takes 0.3 s on California's 1,769 ZCTAs where the digest takes 0.02 s.
    """
    geoms = np.asarray(geoms, dtype=object)
    digest = hashlib.blake2b(digest_size=16)
    for wkb in shapely.to_wkb(geoms).tolist():
        digest.update(b"N" if wkb is None else wkb)  # WKB starts with 0 or 1: no clash
    key = digest.digest()
    with _COVERAGE_LOCK:
        if key in _COVERAGE_ANSWERS:
            _COVERAGE_ANSWERS.move_to_end(key)
            return _COVERAGE_ANSWERS[key]
    answer = bool(shapely.coverage_is_valid(geoms))
    with _COVERAGE_LOCK:
        _COVERAGE_ANSWERS[key] = answer
        while len(_COVERAGE_ANSWERS) > _COVERAGE_KEPT:
            _COVERAGE_ANSWERS.popitem(last=False)
    return answer


def dissolve_territories(
    units: gpd.GeoDataFrame, labels: Sequence[str] | np.ndarray, *, coverage: bool | None = None
) -> gpd.GeoDataFrame:
    """One valid MultiPolygon per territory, sorted by territory, index reset.

    A valid polygon coverage (ZCTAs, counties: checked unless ``coverage`` says) is merged
    by its shared edges (``coverage_union``, several times faster); anything else by a
    full unary union.
    """
    geoms = np.asarray(units.geometry.values, dtype=object)
    if coverage is None:
        coverage = is_valid_coverage(geoms)
    geo = gpd.GeoDataFrame(
        {"territory": np.asarray(labels, dtype=object)}, geometry=geoms, crs=units.crs or 4326
    )
    d = geo.dissolve(
        by="territory", sort=True, method="coverage" if coverage else "unary"
    ).reset_index()
    d = d.set_geometry(_polygonal(d.geometry.values), crs=geo.crs)
    return d[["territory", "geometry"]]


# ---------------------------------------------------------------------------------------------
# reps


def check_reps(reps: pd.DataFrame) -> pd.DataFrame:
    """A checked copy of a reps table: ``rep_id`` stripped text and unique, ``lat``/``lon``
    valid coordinates as floats, ``territory`` (if present) stripped text; else InputError."""
    missing = [c for c in ("rep_id", "lat", "lon") if c not in reps.columns]
    if missing:
        raise InputError(f"reps: column {missing[0]!r} not found (expected rep_id, lat, lon)")
    r = reps.copy()
    r["rep_id"] = r["rep_id"].astype(str).str.strip()
    for c in ("lat", "lon"):
        vals = pd.to_numeric(r[c], errors="coerce")
        bad = vals.isna() | (vals.abs() > (90 if c == "lat" else 180))
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise InputError(
                f"reps: row {i + 1}: column {c!r} is not a valid coordinate ({r[c].iloc[i]!r})"
            )
        r[c] = vals.astype(float)
    if r["rep_id"].duplicated().any():
        raise InputError(
            f"reps: rep_id {r['rep_id'][r['rep_id'].duplicated()].iloc[0]!r} appears twice"
        )
    if "territory" in r.columns:
        r["territory"] = r["territory"].astype("string").str.strip()
    return r


#: Homes this close outside every territory (a simplified coastline) take the nearest one.
HOME_SNAP_KM = 2.0


def assign_reps(
    reps: pd.DataFrame,
    territories: Sequence[str],
    dissolved: gpd.GeoDataFrame | None = None,
    *,
    shared: bool = False,
) -> pd.DataFrame:
    """Each rep's territory: one row per rep with ``territory`` and the rep's columns.

    From the reps' ``territory`` column when it has one (every row must name a territory of
    the plan; with ``shared`` a blank one leaves the rep out); else the territory labelled
    with the rep's ``rep_id`` when every territory is; else the territory holding the rep's
    home (``lat``/``lon`` or ``zip``; a home up to :data:`HOME_SNAP_KM` off a coast takes
    the nearest) among the polygons of ``dissolved`` (``territory, geometry``: one per
    territory, or the units with their territory). Errors name the lines of the file.
    """
    r = prepare_reps(reps, need_home=False)
    source = r.attrs.get("source", "reps")
    lines = r["_line"].to_numpy() if "_line" in r.columns else np.arange(len(r)) + 2
    terr = pd.Index(pd.unique(np.asarray(territories, dtype=object)).astype(str))
    if "territory" in r.columns and r["territory"].notna().any():
        t = r["territory"].astype("string")
        blank = t.isna().to_numpy()
        if shared:
            r, t, lines, blank = r[~blank], t[~blank], lines[~blank], blank[~blank]
        if blank.any():
            raise InputError(f"{source}: {listed_lines(lines[blank])}: empty territory")
        unknown = ~t.isin(terr).to_numpy()
        if unknown.any():
            raise InputError(
                f"{source}: {listed_lines(lines[unknown])}: territory "
                f"{_listed(list(pd.unique(t[unknown])))} not in the plan "
                f"(its territories: {_listed(list(terr))})"
            )
        return r.assign(territory=t.astype(str).to_numpy())
    if terr.isin(r["rep_id"]).all():
        return r[r["rep_id"].isin(terr)].assign(territory=r["rep_id"])
    no_home = r["lat"].isna().to_numpy()
    if no_home.any() or dissolved is None:
        raise InputError(
            f"{source}: cannot tell which territory is whose: give a territory column "
            "(territory,rep_id), label territories by rep_id, or give every rep a home "
            f"(lat/lon or zip; missing on {listed_lines(lines[no_home] if no_home.any() else lines)})"
        )

    geo = dissolved[dissolved["territory"].astype(str).isin(terr)]
    hit = locate_points(
        r["lon"].to_numpy(float), r["lat"].to_numpy(float),
        np.asarray(geo.geometry.values, dtype=object), nearest_m=HOME_SNAP_KM * 1000.0,
    )  # fmt: skip
    outside = hit < 0
    if outside.any():
        raise InputError(
            f"{source}: {listed_lines(lines[outside])} (rep "
            f"{_listed(list(r['rep_id'][outside]))}): home is in no territory of the plan"
        )
    return r.assign(territory=geo["territory"].astype(str).to_numpy(dtype=object)[hit])


def check_rep_coverage(
    link: pd.DataFrame, territories: Sequence[str], *, shared: bool = False, source: str = "reps"
) -> None:
    """Every territory has exactly one rep; else an InputError naming the territories
    without a rep and those with several (``shared=True`` allows both)."""
    if shared:
        return
    terr = pd.Index(pd.unique(np.asarray(territories, dtype=object)).astype(str))
    n = link.groupby("territory")["rep_id"].agg(list).reindex(terr)
    vacant = [t for t, v in n.items() if not isinstance(v, list)]
    several = [(t, v) for t, v in n.items() if isinstance(v, list) and len(v) > 1]
    if not vacant and not several:
        return
    parts = []
    if vacant:
        parts.append(f"{len(vacant)} territory(ies) have no rep: {_listed(vacant)}")
    if several:
        shown = "; ".join(f"{t!r} ({', '.join(map(str, v))})" for t, v in several[:_MAX_LISTED])
        more = f" and {len(several) - _MAX_LISTED} more" if len(several) > _MAX_LISTED else ""
        parts.append(f"{len(several)} have several reps: {shown}{more}")
    raise error(
        "export",
        f"{source}: {'; '.join(parts)} (each territory needs one rep; allow shared or vacant "
        "territories with {shared})",
        shared="shared_territories",
    )


def rep_links(
    reps: pd.DataFrame | None,
    territories: Sequence[str],
    dissolved: gpd.GeoDataFrame | None = None,
    *,
    shared: bool = False,
) -> pd.DataFrame | None:
    """One row per rep with its ``territory`` (:func:`assign_reps`), every territory
    covered by exactly one rep unless ``shared``; None without reps."""
    if reps is None or len(reps) == 0:
        return None
    terr = pd.Index(pd.unique(np.asarray(territories, dtype=object)).astype(str))
    link = assign_reps(reps, terr, dissolved, shared=shared)
    check_rep_coverage(link, terr, shared=shared, source=link.attrs.get("source", "reps"))
    return link


def rep_table(
    reps: pd.DataFrame | None,
    territories: Sequence[str],
    dissolved: gpd.GeoDataFrame | None = None,
    *,
    shared: bool = False,
) -> pd.DataFrame:
    """Who covers which territory: ``territory, rep_id, rep_name, rep_email, rep_segment,
    rep_capacity`` (see :func:`assign_reps`).

    Each territory needs exactly one rep unless ``shared`` (then several reps are joined
    with ``;``, their capacities summed, and a territory may have none: what a map shows).
    """
    terr = pd.Index(pd.unique(np.asarray(territories, dtype=object)).astype(str), name="territory")
    link = rep_links(reps, terr, dissolved, shared=shared)
    return _per_territory(link, terr)


def _per_territory(link: pd.DataFrame | None, terr: pd.Index) -> pd.DataFrame:
    out = pd.DataFrame(index=pd.Index(terr, name="territory"))
    if link is None:
        return out.reset_index()

    def joined(s: pd.Series) -> str:
        return ";".join(s.fillna("").astype(str))

    agg: dict[str, Any] = {"rep_id": ("rep_id", joined)}
    for col, name in (("name", "rep_name"), ("email", "rep_email"), ("segment", "rep_segment")):
        if col in link.columns:
            agg[name] = (col, joined)
    if "capacity" in link.columns:
        agg["rep_capacity"] = ("capacity", lambda s: s.sum(min_count=1))
    grouped = link.groupby("territory").agg(**agg)
    return out.join(grouped).reset_index()


# ---------------------------------------------------------------------------------------------
# per-territory summary


def _capacity_rule(capacity: float | Mapping[str, float] | str | None) -> dict[str, float]:
    """``150`` (accounts per rep), ``{'potential': 2e6}`` or ``'potential=2e6'`` -> {col: per rep}."""
    if capacity is None:
        return {}
    if isinstance(capacity, (int, float)):
        rule = {"accounts": float(capacity)}
    elif isinstance(capacity, str):
        name, sep, value = capacity.partition("=")
        if not sep:
            name, value = "accounts", name
        try:
            rule = {name.strip(): float(value)}
        except ValueError:
            raise InputError(
                f"capacity: expected e.g. 150 or potential=2000000, got {capacity!r}"
            ) from None
    else:
        rule = {str(k): float(v) for k, v in capacity.items()}
    bad = [k for k, v in rule.items() if not (v > 0 and math.isfinite(v))]
    if bad:
        raise InputError(f"capacity: {bad[0]} per rep must be a positive number")
    return rule


#: More reps than this from a capacity rule is a unit mistake, not a plan.
MAX_REPS = 100_000


def _check_reps(exact: float, col: str, per_rep: float) -> None:
    if not math.isfinite(exact) or exact > MAX_REPS:
        raise InputError(
            f"capacity: {col} {per_rep:g} per rep asks for {exact:.3g} reps (more than "
            f"{MAX_REPS:,}): is the amount per rep in the right unit?"
        )


@dataclass(frozen=True)
class Headcount:
    """How many reps a capacity rule asks for, and how that number was rounded.

    ``exact`` is the unrounded need (the column's total over its amount per rep; with
    several columns, the one needing most); ``reps`` rounds it up: the K to plan with.
    ``by_territory`` is the sum of each territory's own need rounded up (never less; more
    when territories are not exact multiples of a rep's capacity).
    """

    reps: int
    exact: float
    column: str
    total: float
    per_rep: float
    by_territory: int | None = None

    def sentence(self) -> str:
        """One line for the summary a sales leader reads."""
        col = self.column
        text = (
            f"{self.reps} reps ({col} {_fmt(self.total, col)} / {_fmt(self.per_rep, col)} "
            f"per rep = {self.exact:,.2f}, rounded up"
        )
        if self.by_territory is not None and self.by_territory != self.reps:
            text += f"; rounding each territory up instead gives {self.by_territory}"
        return text + ")"


def recommended_headcount(
    totals: Mapping[str, float] | pd.DataFrame,
    capacity: float | Mapping[str, float] | str,
    *,
    by_territory: int | None = None,
) -> Headcount:
    """The reps a capacity rule asks for (``150`` accounts per rep, ``'potential=2e6'`` or
    ``{column: amount per rep}``), from column totals or the units (summed)."""
    rule = _capacity_rule(capacity)
    if not rule:
        raise InputError("capacity: give accounts per rep or COLUMN=AMOUNT per rep")
    best: Headcount | None = None
    for col, per_rep in rule.items():
        if isinstance(totals, pd.DataFrame):
            if col not in totals.columns:
                raise InputError(f"capacity: column {col!r} not found in the units")
            total = float(numeric_or_zero(totals, col).sum())
        elif col in totals:
            total = float(totals[col])
        else:
            raise InputError(f"capacity: column {col!r} not available")
        exact = total / per_rep
        _check_reps(exact, col, per_rep)
        h = Headcount(max(int(math.ceil(exact - 1e-9)), 1), exact, col, total, per_rep)
        if best is None or h.exact > best.exact:
            best = h
    assert best is not None
    return dataclasses.replace(best, by_territory=by_territory)


def recommended_reps(
    table: pd.DataFrame, capacity: float | Mapping[str, float] | str
) -> np.ndarray:
    """Reps each row (territory) of ``table`` needs: its totals over what one rep carries
    (``capacity``: accounts per rep, ``'potential=2e6'`` or ``{column: per rep}``), the
    largest of the columns, rounded up, at least 1."""
    need = np.zeros(len(table))
    for col, per_rep in _capacity_rule(capacity).items():
        if col not in table.columns:
            raise InputError(
                f"capacity: column {col!r} not available (have {', '.join(table.columns)})"
            )
        need = np.maximum(need, np.ceil(table[col].to_numpy(dtype=float) / per_rep - 1e-9))
        _check_reps(float(np.nan_to_num(need, nan=0.0).sum()), col, per_rep)
    return np.maximum(need, 1).astype(int)


def balance_columns(units: pd.DataFrame, balance: str | Sequence[str] | None) -> list[str]:
    """The balance columns as a list: those given (each must be a unit column), or by default
    those of :data:`DEFAULT_BALANCE` the units have (else ``population`` if present)."""
    if balance is None:
        cols = [c for c in DEFAULT_BALANCE if c in units.columns]
        return cols or [c for c in ("population",) if c in units.columns]
    cols = [balance] if isinstance(balance, str) else list(balance)
    missing = [c for c in cols if c not in units.columns]
    if missing:
        raise InputError(f"units: balance column {missing[0]!r} not found")
    return cols


def numeric_or_zero(df: pd.DataFrame, col: str) -> pd.Series:
    """A column as floats, with blanks and non-numbers counted as 0."""
    return pd.to_numeric(df[col], errors="coerce").fillna(0.0).astype(float)


def _contiguity(units: gpd.GeoDataFrame, labels: np.ndarray, adjacency: Any | None) -> np.ndarray:
    """Per sorted territory: one connected piece of the unit adjacency (islands bridged)."""
    if adjacency is None:
        adjacency = build_adjacency(units, id_col="unit_id")
    return is_contiguous(adjacency, labels).to_numpy()


def _target_deviation(totals: np.ndarray, share: np.ndarray | None) -> np.ndarray:
    """Signed deviation of each territory's total from its target: the mean, or the total
    times ``share`` (capacity-weighted targets)."""
    if share is None:
        return deviation(totals)
    target = totals.sum() * share
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(target > 0, totals / target - 1.0, 0.0)


def territory_summary(
    units: gpd.GeoDataFrame,
    plan: Any,
    *,
    accounts: pd.DataFrame | None = None,
    reps: pd.DataFrame | None = None,
    capacity: float | Mapping[str, float] | str | None = None,
    balance: str | Sequence[str] | None = None,
    plan_metrics: Any = None,
    adjacency: Any = None,
    dissolved: gpd.GeoDataFrame | None = None,
    quota: Any = None,
    shared: bool = False,
    named: pd.DataFrame | None = None,
    named_mode: str = "exclude",
) -> pd.DataFrame:
    """One row per territory: reps, units, accounts, customers, totals, deviation, compactness.

    Columns present depend on what the units (and accounts) carry. ``deviation`` is the
    signed deviation from target of the balance column furthest from it; the target is the
    mean, or, when every territory's reps carry a ``capacity`` (FTE), the total times the
    territory's ``target_share`` (its capacity over all capacity). An engine
    ``plan_metrics`` (``Plan`` or its ``territories`` table) supplies equal-share
    deviation, Polsby-Popper and contiguity as the engine measured them. ``capacity``
    (accounts per rep, or ``{column: amount per rep}``) adds ``recommended_reps``;
    ``quota`` (a total or a :class:`patchmap.quota.Quota`) adds ``quota``, split by
    potential within its bounds. ``reps`` and ``shared``: see :func:`rep_table`.
    ``named``: named accounts (account rows, ``territory`` = their owner), added to their
    owner's totals (``named_accounts``, ``named_potential``); with ``named_mode="balance"``
    the deviations measure the totals with them (see
    :func:`patchmap.segments.named.add_named_totals`).
    """
    units = units.reset_index(drop=True)
    labels = territory_labels(units, plan)
    codes, terr = pd.factorize(pd.Series(labels, dtype=object), sort=True)
    k = len(terr)
    out = pd.DataFrame({"territory": np.asarray(terr, dtype=object).astype(str)})
    if dissolved is None:
        dissolved = dissolve_territories(units, labels)
    link = rep_links(reps, out["territory"], dissolved, shared=shared)
    reps_t = _per_territory(link, pd.Index(out["territory"]))
    for c in ("rep_id", "rep_name", "rep_email", "rep_segment", "rep_capacity"):
        if c in reps_t.columns:
            out[c] = reps_t.set_index("territory")[c].reindex(out["territory"]).to_numpy()
    share = None
    if "rep_capacity" in out.columns:
        cap = pd.to_numeric(out["rep_capacity"], errors="coerce").to_numpy(dtype=float)
        if np.isfinite(cap).all() and cap.sum() > 0:
            share = cap / cap.sum()
            out["target_share"] = share
    out["units"] = np.bincount(codes, minlength=k)

    def total(values: pd.Series | np.ndarray, c: np.ndarray = codes) -> np.ndarray:
        return np.bincount(c, weights=np.asarray(values, dtype=float), minlength=k)

    for col in SUM_COLUMNS:
        if col in units.columns:
            out[col] = _whole(total(numeric_or_zero(units, col)))
    acc = _accounts_in_units(accounts, units["unit_id"], labels) if accounts is not None else None
    if acc is not None:
        acodes = pd.Index(out["territory"]).get_indexer(acc["territory"])
        if "accounts" not in out.columns:
            out["accounts"] = np.bincount(acodes, minlength=k)
        if "customers" not in out.columns and "status" in acc.columns:
            is_cust = acc["status"].astype(str).str.strip().str.lower().eq("customer")
            out["customers"] = np.bincount(acodes[is_cust.to_numpy()], minlength=k)
        for col in ("score", "reach", "potential"):
            if col not in out.columns and col in acc.columns:
                out[col] = total(numeric_or_zero(acc, col), acodes)
        if "score" in acc.columns:
            n = np.bincount(acodes, minlength=k)
            with np.errstate(divide="ignore", invalid="ignore"):
                out["avg_score"] = np.where(
                    n > 0, total(numeric_or_zero(acc, "score"), acodes) / n, np.nan
                )
        expected = _expected_revenue(acc)
        if expected is not None:
            out["expected_revenue"] = total(expected, acodes)
        if link is not None and {"lat", "lon"} <= set(acc.columns) and link["lat"].notna().any():
            d = account_distance_km(
                pd.to_numeric(acc["lat"], errors="coerce"),
                pd.to_numeric(acc["lon"], errors="coerce"),
                acc["territory"].to_numpy(), link[["territory", "lat", "lon"]],
            )  # fmt: skip
            homed = acc["territory"].isin(link.dropna(subset=["lat"])["territory"]).to_numpy()
            t = account_travel(np.where(homed, d, np.nan), acc["territory"].to_numpy())
            for col in ("mean_account_km", "p90_account_km"):
                out[col] = t[col].reindex(out["territory"]).to_numpy()
    if "avg_score" not in out.columns and "score" in out.columns and "accounts" in out.columns:
        with np.errstate(divide="ignore", invalid="ignore"):
            out["avg_score"] = np.where(out["accounts"] > 0, out["score"] / out["accounts"], np.nan)
    if "expected_revenue" not in out.columns:
        if "expected_revenue" in units.columns:
            out["expected_revenue"] = total(numeric_or_zero(units, "expected_revenue"))
        elif "potential" in out.columns:
            out["expected_revenue"] = out["potential"]

    engine = _engine_territories(plan_metrics)
    if balance is None and getattr(plan_metrics, "balance", None):
        balance = [c for c in plan_metrics.balance if c in units.columns] or None
    cols = balance_columns(units, balance)
    devs = []
    for col in cols:
        if col not in out.columns:
            out[col] = total(numeric_or_zero(units, col))
        out[f"{col}_deviation"] = _target_deviation(out[col].to_numpy(dtype=float), share)
        devs.append(out[f"{col}_deviation"].to_numpy())
    if not devs:
        devs.append(_target_deviation(out["units"].to_numpy(dtype=float), share))
    stacked = np.vstack(devs)
    out["deviation"] = stacked[np.argmax(np.abs(stacked), axis=0), np.arange(k)]
    out["polsby_popper"] = polsby_popper(
        dissolved.set_index("territory").geometry.reindex(out["territory"])
    )
    if engine is not None:
        e = engine.set_index("territory").reindex(out["territory"])
        same = ["polsby_popper", "contiguous"]
        if share is None:  # the engine measures deviation from equal shares
            same += [c for c in out.columns if c.endswith("_deviation")]
        for col in same:
            if col in e.columns and e[col].notna().all():
                out[col] = e[col].to_numpy()
        stacked = out[[c for c in out.columns if c.endswith("_deviation")]].to_numpy().T
        if len(stacked):
            out["deviation"] = stacked[np.argmax(np.abs(stacked), axis=0), np.arange(k)]
        if adjacency is None:
            adjacency = getattr(plan_metrics, "adjacency", None)
    if "contiguous" not in out.columns:
        out["contiguous"] = _contiguity(units, labels, adjacency)
    out["contiguous"] = out["contiguous"].astype(bool)
    if named is not None:
        out = add_named_totals(out, named, balance=cols, count_in_balance=named_mode == "balance")
    if capacity is not None:
        out["recommended_reps"] = recommended_reps(out, capacity)
    if quota is not None:
        out["quota"] = Quota.coerce(quota).allocate(out, cols)
    return out


def off_target_reasons(
    units: gpd.GeoDataFrame,
    labels: Sequence[str] | np.ndarray,
    balance: Sequence[str],
    tolerance: float = TOLERANCE,
    *,
    adjacency: Any = None,
    share: np.ndarray | None = None,
) -> pd.DataFrame:
    """Why each territory outside ``tolerance`` (a fraction) on a balance measure stays there:
    ``territory, measure, deviation, why``, in words a sales leader reads.

    The causes looked for, first found first: one unit alone is bigger than the territory's
    target; the territory has no neighbour to trade with; the units on its border that it
    could give away (or take over) without overshooting the other way add up to less than
    it needs; its neighbours have too little room (to take weight, or to give it) between
    them. Anything else is a trade-off the plan made (with the other measures, compactness
    or a move budget). ``share`` gives capacity-weighted targets (fractions summing to 1).
    """
    units = units.reset_index(drop=True)
    codes, terr = pd.factorize(pd.Series(np.asarray(labels, dtype=object)).astype(str), sort=True)
    k = len(terr)
    rows: list[tuple[str, str, float, str]] = []
    devs = {}
    for col in balance:
        w = numeric_or_zero(units, col).to_numpy()
        tot = np.bincount(codes, weights=w, minlength=k)
        target = tot.sum() * (np.full(k, 1.0 / k) if share is None else np.asarray(share))
        with np.errstate(divide="ignore", invalid="ignore"):
            devs[col] = (w, tot, target, np.where(target > 0, tot / target - 1, 0.0))
    if not any((np.abs(d[3]) > tolerance + 1e-12).any() for d in devs.values()):
        return pd.DataFrame(columns=["territory", "measure", "deviation", "why"])
    if adjacency is None:
        adjacency = build_adjacency(units, id_col="unit_id")
    pos = pd.Index(np.asarray(adjacency.ids).astype(str)).get_indexer(units["unit_id"].astype(str))
    c = np.full(adjacency.n_units, -1)
    c[pos] = codes
    i, j = adjacency.edges()
    cross = (c[i] != c[j]) & (c[i] >= 0) & (c[j] >= 0)
    ei, ej = i[cross], j[cross]
    unit_ids = np.asarray(adjacency.ids).astype(str)
    names = np.asarray(terr, dtype=object).astype(str)

    def pct(x: float, t: float) -> str:
        return f"{100 * x / t:.1f}%" if t > 0 else "n/a"

    for col, (w_units, tot, target, dev) in devs.items():
        w = np.zeros(adjacency.n_units)
        w[pos] = w_units
        for t in np.flatnonzero(np.abs(dev) > tolerance + 1e-12):
            over, tt = bool(dev[t] > 0), target[t]
            mine = np.flatnonzero(c == t)
            big = mine[np.argmax(w[mine])] if len(mine) else -1
            inner = np.r_[ei[c[ei] == t], ej[c[ej] == t]]  # t's units on a border
            outer = np.r_[ej[c[ei] == t], ei[c[ej] == t]]  # the neighbours' units across it
            nbr = np.unique(c[outer])
            movable = np.unique(inner if over else outer)  # what t could give away / take over
            need = tot[t] - (1 + tolerance) * tt if over else (1 - tolerance) * tt - tot[t]
            most = tot[t] - (1 - tolerance) * tt if over else (1 + tolerance) * tt - tot[t]
            fit = movable[w[movable] <= most]  # each alone keeps t from overshooting
            verb = "give away" if over else "take over"
            if over and big >= 0 and w[big] > (1 + tolerance) * tt:
                why = f"unit {unit_ids[big]} alone holds {pct(w[big], tt)} of its target"
            elif not len(nbr):
                why = "it borders no other territory: nothing can move in or out"
            elif not len(fit):
                u = movable[np.argmin(w[movable])]
                why = (f"the smallest unit it could {verb} ({unit_ids[u]}, {pct(w[u], tt)} of "
                       f"its target) overshoots: it can move at most {pct(most, tt)}")  # fmt: skip
            elif w[fit].sum() < need:
                why = (f"the units on its border it could {verb} without overshooting add up to "
                       f"{pct(w[fit].sum(), tt)} of its target, it needs {pct(need, tt)}")  # fmt: skip
            else:
                if over:
                    room = np.clip((1 + tolerance) * target[nbr] - tot[nbr], 0, None).sum()
                else:
                    room = np.clip(tot[nbr] - (1 - tolerance) * target[nbr], 0, None).sum()
                if room < need:
                    side = "take" if over else "spare"
                    why = (f"its neighbours ({', '.join(names[nbr][:5])}) can {side} only "
                           f"{pct(room, tt)} of its target between them, it needs {pct(need, tt)}")  # fmt: skip
                else:
                    why = ("no single unit or neighbour blocks it: a trade-off the plan made with "
                           "the other measures, compactness or a move budget; re-partitioning "
                           "(or a larger move budget) can bring it in")  # fmt: skip
            rows.append((names[t], col, float(dev[t]), why))
    return pd.DataFrame(rows, columns=["territory", "measure", "deviation", "why"])


def _whole(values: np.ndarray) -> np.ndarray:
    """Totals as integers when they are whole numbers (counts), else unchanged."""
    if (
        np.all(np.isfinite(values))
        and np.all(values == np.round(values))
        and np.abs(values).max(initial=0) < 2**53
    ):
        return values.astype(np.int64)
    return values


def _expected_revenue(acc: pd.DataFrame) -> pd.Series | None:
    """Per account: ``expected_revenue``; else ``potential`` (scoring defines it as p_win times
    the expected deal size); else ``p_win`` times ``expected_deal_size``/``deal_size``/``deal``
    where a deal size is known; else None."""
    if "expected_revenue" in acc.columns:
        return numeric_or_zero(acc, "expected_revenue")
    if "potential" in acc.columns:
        return numeric_or_zero(acc, "potential")
    deal = next((c for c in ("expected_deal_size", "deal_size", "deal") if c in acc.columns), None)
    if "p_win" in acc.columns and deal is not None:
        return numeric_or_zero(acc, "p_win") * numeric_or_zero(acc, deal)
    return None


def _accounts_in_units(
    accounts: pd.DataFrame, unit_ids: pd.Series, labels: np.ndarray
) -> pd.DataFrame:
    """Accounts that sit in one of the units, with the ``territory`` of that unit."""
    if "unit_id" not in accounts.columns:
        raise InputError("accounts: column 'unit_id' not found (place accounts into units first)")
    acc = accounts.copy()
    acc["unit_id"] = acc["unit_id"].astype("string").str.strip()
    lookup = pd.Series(np.asarray(labels, dtype=object), index=pd.Index(unit_ids.astype(str)))
    acc["territory"] = acc["unit_id"].map(lookup)
    return acc[acc["territory"].notna()].reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# ZIP lookup


#: A ZCTA point this close outside every unit of its state (a coastline simplified away)
#: still joins the nearest unit of that state.
ZIP_SNAP_KM = 5.0


def zip_to_rep(
    units: gpd.GeoDataFrame,
    labels: np.ndarray,
    *,
    kind: str | None = None,
    reps_t: pd.DataFrame | None = None,
    crosswalk: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per 5-digit ZIP of the region (PO-box and unique ZIPs included, via their
    ZCTA), each with one unit and territory (and its rep, from ``reps_t``).

    ZCTA units take the ZIPs whose ZCTA is a unit. H3 and other polygons place each ZCTA's
    internal point with :func:`locate_zctas`: ZIPs whose ZCTA lies outside the region's
    units are not routed, and no ZIP is routed across a state line.
    """
    kind = kind or unit_kind(units)
    xw = geodata.zip_crosswalk() if crosswalk is None else crosswalk.copy()
    for c in ("zip", "zcta"):
        xw[c] = xw[c].astype(str).str.zfill(5)
    ids = units["unit_id"].astype(str).to_numpy()
    terr_of_unit = pd.Series(np.asarray(labels, dtype=object), index=ids)
    if kind == "zcta":
        zcta_unit = pd.Series(ids, index=ids)
    else:
        zcta_unit = locate_zctas(geodata.zcta_points(), units, kind=kind)
    zcta_unit = zcta_unit[~zcta_unit.index.duplicated()]
    z = xw[xw["zcta"].isin(zcta_unit.index)].drop_duplicates(subset="zip").copy()
    z["unit_id"] = z["zcta"].map(zcta_unit).to_numpy()
    z["territory"] = z["unit_id"].map(terr_of_unit).to_numpy()
    cols = ["zip", "zcta"] + ([] if kind == "zcta" else ["unit_id"]) + ["territory"]
    if reps_t is not None:
        for c in ("rep_id", "rep_name", "rep_email"):
            if c in reps_t.columns and reps_t[c].notna().any():
                z[c] = z["territory"].map(reps_t.set_index("territory")[c]).to_numpy()
                cols.append(c)
    cols += [c for c in ("zip_type", "city", "state") if c in z.columns]
    return z[cols].sort_values("zip", kind="stable").reset_index(drop=True)


def _unit_states(units: gpd.GeoDataFrame) -> np.ndarray | None:
    """Each unit's USPS state from its ``state`` column (ZCTA, county and H3 layers carry
    one), or None when there is no such column of state codes."""
    if "state" not in units.columns:
        return None
    st = units["state"].astype("string").str.strip().str.upper()
    if st.isna().any() or not st.isin(list(STATE_TO_FIPS)).all():
        return None
    return st.to_numpy(dtype=object)


def _overlapping_states(geoms: np.ndarray) -> list[set[str]]:
    """The states covering at least 1% of each polygon (user polygons have no state column)."""
    st = geodata.states()
    g = gpd.GeoDataFrame(geometry=list(geoms), crs=4326)
    crs = equal_area_crs(g)
    gp, sp = g.to_crs(crs).geometry.values, st.to_crs(crs).geometry.values
    tree = shapely.STRtree(sp)
    gi, si = tree.query(gp, predicate="intersects")
    share = shapely.area(shapely.intersection(gp[gi], sp[si])) / np.maximum(
        shapely.area(gp[gi]), 1e-9
    )
    out: list[set[str]] = [set() for _ in range(len(gp))]
    for a, b in zip(gi[share >= 0.01].tolist(), si[share >= 0.01].tolist(), strict=True):
        out[a].add(str(st["state"].iloc[b]))
    return out


def locate_zctas(
    points: pd.DataFrame, units: gpd.GeoDataFrame, *, kind: str = "polygon",
    snap_km: float = ZIP_SNAP_KM,
) -> pd.Series:  # fmt: skip
    """Unit id of each ZCTA internal point (``zcta, lat, lon, state``), indexed by ZCTA;
    points that belong to no unit of the region are left out.

    A point belongs to the unit holding it (for H3 units, its cell), but only when that
    unit is in the point's state where the units carry a ``state`` column (a cartographic
    county outline that strays over a state line does not take the neighbour's ZIPs). A
    point in no unit of its state joins the nearest unit of its state within ``snap_km``
    (coastal points off a simplified shore); for units without states (your own polygons)
    the nearest unit must cover part of the point's state. So no ZIP crosses a state line.
    """
    u = units if units.crs is None or units.crs.equals("EPSG:4326") else units.to_crs(4326)
    geoms = np.asarray(u.geometry.values, dtype=object)
    ids = u["unit_id"].astype(str).to_numpy()
    minx, miny, maxx, maxy = u.total_bounds
    pad = 0.1
    near = points[
        points["lon"].between(minx - pad, maxx + pad)
        & points["lat"].between(miny - pad, maxy + pad)
    ].reset_index(drop=True)
    lat, lon = near["lat"].to_numpy(float), near["lon"].to_numpy(float)
    pstate = near["state"].astype(str).to_numpy(dtype=object)
    if kind == "h3":
        import h3

        cells = points_to_cells(lat, lon, h3_resolution(u) or h3.get_resolution(ids[0]))
        hit = pd.Index(ids).get_indexer(cells)
    else:
        hit = locate_points(lon, lat, geoms)
    ustate = _unit_states(u)
    if ustate is not None:
        hit = np.where((hit >= 0) & (ustate[np.maximum(hit, 0)] == pstate), hit, -1)
    rest = np.flatnonzero(hit < 0)
    if len(rest):
        crs = equal_area_crs(u)
        proj = np.asarray(u.geometry.to_crs(crs).values, dtype=object)
        ppts = np.asarray(
            gpd.GeoSeries(shapely.points(lon[rest], lat[rest]), crs=4326).to_crs(crs).values,
            dtype=object,
        )
        if ustate is not None:  # nearest unit of the point's own state
            for st in np.unique(pstate[rest]).tolist():
                mine = np.flatnonzero(ustate == st)
                sel = np.flatnonzero(pstate[rest] == st)
                if not len(mine):
                    continue
                pi, ui = shapely.STRtree(proj[mine]).query_nearest(
                    ppts[sel], max_distance=snap_km * 1000.0, all_matches=False
                )
                hit[rest[sel[pi]]] = mine[ui]
        else:
            pi, ui = shapely.STRtree(proj).query_nearest(
                ppts, max_distance=snap_km * 1000.0, all_matches=False
            )
            if len(ui):
                cand = np.unique(ui)
                covers = dict(zip(cand.tolist(), _overlapping_states(geoms[cand]), strict=True))
                ok = np.array([pstate[rest[p]] in covers[q] for p, q in zip(pi, ui, strict=True)])
                hit[rest[pi[ok]]] = ui[ok]
    found = hit >= 0
    return pd.Series(ids[hit[found]], index=near["zcta"].to_numpy()[found])


# ---------------------------------------------------------------------------------------------
# writing


def _rounded_summary(summary: pd.DataFrame) -> pd.DataFrame:
    """Readable CSV numbers: fractions to 6 decimals, Polsby-Popper to 4, amounts to cents."""
    out = summary.copy()
    for c in out.columns:
        if not pd.api.types.is_float_dtype(out[c]):
            continue
        fraction = c == "deviation" or c.endswith("_deviation") or c == "target_share"
        out[c] = out[c].round(6 if fraction else 4 if c in ("polsby_popper", "avg_score") else 2)
    return out


def _write_geojson(gdf: gpd.GeoDataFrame, path: Path) -> Path:
    """GeoJSON (RFC 7946, 6 decimals: about 0.1 m), written atomically."""
    with atomic_path(path) as tmp:
        tmp.unlink()
        gdf.to_file(
            tmp,
            driver="GeoJSON",
            engine="pyogrio",
            layer=path.stem,  # the collection's "name" (else the temporary file's name)
            layer_options={"RFC7946": "YES", "COORDINATE_PRECISION": "6"},
        )
    return path


def _fmt(v: Any, col: str) -> str:
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "**no**"
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if col == "deviation" or col.endswith("_deviation"):
        return f"{100 * float(v):+.1f}%"
    if col in ("polsby_popper", "avg_score"):
        return f"{float(v):.3f}" if col == "polsby_popper" else f"{float(v):.1f}"
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    if isinstance(v, (float, np.floating)):
        return f"{float(v):,.0f}" if abs(v) >= 100 else f"{float(v):,.2f}"
    return str(v).replace("|", "\\|")


def _is_num(s: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)


def summary_markdown(
    summary: pd.DataFrame,
    *,
    title: str = "Territory plan",
    plan_metrics: Any = None,
    capacity: float | Mapping[str, float] | str | None = None,
    off_target: pd.DataFrame | None = None,
) -> str:
    """The summary table as Markdown, with a headline of balance and contiguity (and,
    with ``capacity``, the recommended headcount and how it was rounded; with
    ``off_target``, from :func:`off_target_reasons`, why territories stay off target)."""
    k = len(summary)
    n_cont = int(summary["contiguous"].sum())
    lines = [f"# {title}", ""]
    lines.append(f"- territories: {k}")
    for col in [c for c in summary.columns if c.endswith("_deviation")] or ["deviation"]:
        name = col[: -len("_deviation")] or "units"
        lines.append(
            f"- max deviation from target ({name}): {100 * float(summary[col].abs().max()):.2f}%"
        )
    lines.append(f"- contiguous: {n_cont} of {k}")
    lines.append(f"- mean Polsby-Popper: {summary['polsby_popper'].mean():.3f}")
    cut = getattr(plan_metrics, "cut_edge_fraction", None) if plan_metrics is not None else None
    if cut is not None:
        lines.append(f"- cut-edge fraction: {float(cut):.3f}")
    cert = getattr(plan_metrics, "certificate", None) if plan_metrics is not None else None
    if cert is not None:
        lines.append(f"- optimality (exact model, {cert.seconds:.0f} s): {cert.sentence()}")
    if "mean_account_km" in summary.columns and summary["mean_account_km"].notna().any():
        worst = summary.loc[summary["mean_account_km"].idxmax()]
        lines.append(
            f"- rep travel, home to accounts: mean {summary['mean_account_km'].mean():.1f} km "
            f"over territories, 90th percentile up to {summary['p90_account_km'].max():.1f} km "
            f"(farthest: {worst['territory']}, mean {worst['mean_account_km']:.1f} km)"
        )
    if capacity is not None and "recommended_reps" in summary.columns:
        totals = {c: summary[c].sum() for c in summary.columns if _is_num(summary[c])}
        h = recommended_headcount(
            totals, capacity, by_territory=int(summary["recommended_reps"].sum())
        )
        lines.append(f"- recommended headcount: {h.sentence()}")
        lines.append(
            f"  (plan that many territories with `patchmap partition --territories auto "
            f"--capacity {h.column}={h.per_rep:g}`)"
        )
    if "quota" in summary.columns:
        lines.append(f"- quota: {_fmt(float(summary['quota'].sum()), 'quota')} in all")
    lines.append("")
    cols = [c for c in summary.columns if not c.endswith("_deviation") or c == "deviation"]
    lines.append("| " + " | ".join(cols) + " |")
    lines.append("|" + "|".join("---:" if _is_num(summary[c]) else "---" for c in cols) + "|")
    for row in summary[cols].itertuples(index=False):
        lines.append("| " + " | ".join(_fmt(v, c) for v, c in zip(row, cols, strict=True)) + " |")
    numeric = [
        c
        for c in cols
        if c in SUM_COLUMNS or c in ("units", "expected_revenue", "recommended_reps", "quota")
    ]
    if numeric:
        tot = ["**total**" if i == 0 else "" for i in range(len(cols))]
        for c in numeric:
            tot[cols.index(c)] = _fmt(summary[c].sum(), c)
        lines.append("| " + " | ".join(tot) + " |")
    notes = list(getattr(plan_metrics, "notes", None) or [])
    if cert is not None:
        notes = [n for n in notes if getattr(n, "code", None) != "certificate"]
    if notes:
        lines += ["", "## Notes from the plan", "", *[f"- {n}" for n in notes]]
    if off_target is not None and len(off_target):
        lines += ["", "## Why territories stay off target", ""]
        lines += ["| territory | measure | deviation | why |", "|---|---|---:|---|"]
        for r in off_target.itertuples(index=False):
            lines.append(f"| {_fmt(r.territory, 'territory')} | {r.measure} | "
                         f"{100 * r.deviation:+.1f}% | {r.why} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def checked_formats(
    formats: str | Sequence[str], *, reps: pd.DataFrame | None, accounts: bool
) -> set[str]:
    """The export formats asked for (``all`` spelled out), refused before any file is
    written when they cannot be made: HubSpot needs the accounts and the reps' emails."""
    wanted = {formats} if isinstance(formats, str) else set(formats)
    unknown = sorted(wanted - set(crm.FORMATS))
    if unknown:
        raise InputError(f"format: expected {', '.join(crm.FORMATS)}, got {unknown[0]!r}")
    if "all" in wanted:
        wanted = set(crm.FORMATS)
    if "hubspot" in wanted and not accounts:
        raise error(
            "export", "format hubspot: needs the accounts ({accounts}), one row per company"
        )
    if "hubspot" in wanted and (reps is None or not {"email", "rep_email"} & set(reps.columns)):
        raise error("export", _NO_EMAIL)
    return wanted


_NO_EMAIL = (
    "format hubspot: the reps need an email column (the HubSpot owner), e.g. "
    "territory,rep_id,rep_name,email ({reps})"
)


def export_plan(
    units: gpd.GeoDataFrame,
    plan: Any,
    out_dir: str | os.PathLike,
    *,
    accounts: pd.DataFrame | None = None,
    reps: pd.DataFrame | None = None,
    capacity: float | Mapping[str, float] | str | None = None,
    unit_kind: str | None = None,
    balance: str | Sequence[str] | None = None,
    plan_metrics: Any = None,
    quota: Any = None,
    shared: bool = False,
    formats: str | Sequence[str] = "csv",
    salesforce_model: str = "Patchmap",
    salesforce_territories: str | os.PathLike | None = None,
    tolerance: float = TOLERANCE,
    named: pd.DataFrame | None = None,
    named_mode: str = "exclude",
) -> dict[str, Path]:
    """Write the CRM tables and territory polygons of a plan into ``out_dir``.

    Files: ``zip_to_rep.csv`` and ``zip_to_rep.xlsx`` (ZIPs as text), ``assignments.csv``
    (with ``accounts``), ``territories.geojson``, ``territories.gpkg``, ``summary.csv``,
    ``summary.md``; ``formats`` ``salesforce``, ``hubspot`` (or ``all``) add the
    ``salesforce/`` and ``hubspot/`` folders of :mod:`patchmap.crm` (``salesforce_model``
    names the territory model, ``salesforce_territories`` is an export of its deployed
    territories' ids). ``summary.md`` explains why any territory is more than ``tolerance``
    (a fraction) off target. Returns ``{name: path}``.
    ``capacity`` is accounts per rep (a number), ``'potential=2e6'`` or ``{column: amount
    per rep}`` and gives ``recommended_reps``; ``quota`` is a company target (a number or
    a :class:`patchmap.quota.Quota` with floor and cap) split into ``quota`` per territory.
    ``reps`` names each territory's rep (see :func:`rep_table`; one rep per territory
    unless ``shared``). ``named``: named accounts (account rows with ``territory`` = their
    owner): routed to their owner in ``assignments.csv`` (column ``named``) whatever unit
    they sit in, and counted in their owner's totals (``named_mode``: see
    :func:`territory_summary`).
    """
    wanted = checked_formats(formats, reps=reps, accounts=accounts is not None)
    kind = unit_kind
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if "unit_id" not in units.columns:
        raise InputError("units: column 'unit_id' not found")
    units = units.reset_index(drop=True).copy()
    units["unit_id"] = units["unit_id"].astype(str)
    if plan_metrics is None and not isinstance(plan, (pd.DataFrame, pd.Series, str, os.PathLike)):
        plan_metrics = plan
    labels = territory_labels(units, plan)
    pf = pd.DataFrame({"unit_id": units["unit_id"], "territory": labels})
    dissolved = dissolve_territories(units, labels)
    summary = territory_summary(
        units,
        pf,
        accounts=accounts,
        reps=reps,
        capacity=capacity,
        balance=balance,
        plan_metrics=plan_metrics,
        dissolved=dissolved,
        quota=quota,
        shared=shared,
        named=named,
        named_mode=named_mode,
    )
    if "hubspot" in wanted and "rep_email" not in summary.columns:
        raise error("export", _NO_EMAIL)
    sf_ids = None
    if "salesforce" in wanted and salesforce_territories is not None:
        sf_ids = crm.territory_ids(salesforce_territories, summary["territory"])
    rep_cols = ("territory", "rep_id", "rep_name", "rep_email")
    reps_t = summary[[c for c in rep_cols if c in summary.columns]]
    written: dict[str, Path] = {}

    zips = zip_to_rep(units, labels, kind=kind or _unit_kind(units), reps_t=reps_t)
    written["zip_to_rep"] = write_csv(zips, out / "zip_to_rep.csv")
    written["zip_to_rep_xlsx"] = crm.write_xlsx(zips, out / "zip_to_rep.xlsx", sheet="zip_to_rep")

    acc = None
    if accounts is not None:
        acc = _accounts_in_units(accounts, units["unit_id"], labels)
        if named is not None:  # routed to their owner, not by the unit they sit in
            pinned = named["account_id"].astype(str)
            acc = acc[~acc["account_id"].astype(str).isin(pinned)]
            acc = pd.concat([acc.assign(named=False), named.assign(named=True)],
                            ignore_index=True)  # fmt: skip
        if len(reps_t.columns) > 1:
            acc = acc.merge(reps_t, on="territory", how="left")
        lead = [c for c in ("account_id", "name", "unit_id", *rep_cols, "named")
                if c in acc.columns]  # fmt: skip
        extra = [
            c
            for c in (
                "status",
                "score",
                "reach",
                "potential",
                "p_win",
                "deal_size",
                "zip",
                "lat",
                "lon",
            )
            if c in acc.columns and c not in lead
        ]
        written["assignments"] = write_csv(acc[lead + extra], out / "assignments.csv")
    if "salesforce" in wanted:
        link = rep_links(reps, summary["territory"], dissolved, shared=shared)
        written.update(
            crm.write_salesforce(
                out, zips, summary, accounts=acc, reps=link, model=salesforce_model,
                ids=sf_ids,
            )
        )  # fmt: skip
    if "hubspot" in wanted:
        written.update(crm.write_hubspot(out, acc))

    geo = gpd.GeoDataFrame(
        dissolved.merge(summary, on="territory", how="left"), geometry="geometry", crs=4326
    )
    written["territories_geojson"] = _write_geojson(geo, out / "territories.geojson")
    written["territories_gpkg"] = write_units(geo, out / "territories.gpkg")
    written["summary"] = write_csv(_rounded_summary(summary), out / "summary.csv")
    measures = [c[: -len("_deviation")] for c in summary.columns if c.endswith("_deviation")]
    off = off_target_reasons(
        units, labels, measures, tolerance, adjacency=getattr(plan_metrics, "adjacency", None),
        share=summary["target_share"].to_numpy() if "target_share" in summary else None,
    )  # fmt: skip
    written["summary_md"] = write_markdown(
        summary_markdown(summary, plan_metrics=plan_metrics, capacity=capacity, off_target=off),
        out / "summary.md",
    )
    return written


_unit_kind = unit_kind
