"""What a unit layer is, recorded with it: the unit kind and the H3 resolution.

``layers`` writes both into the layer (``GeoDataFrame.attrs``, which GeoParquet keeps in
the file's metadata and geopandas reads back), so later stages read them instead of
guessing from the ids. Guessing stays only for files that carry no record (a user's own
polygons, layers written by an older patchmap): five-digit county FIPS codes such as
Delaware's ``10001`` are also ZCTAs, so a guess can be wrong where the record is not.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from patchmap import geodata

__all__ = ["KINDS", "META_KEY", "h3_resolution", "recorded", "tag_units", "unit_kind"]

#: Key of the record in ``attrs`` (and so in the GeoParquet file's metadata).
META_KEY = "patchmap"
#: Unit kinds a layer may record: the built-in kinds and ``polygon`` (a user's own).
KINDS = ("h3", "zcta", "county", "polygon")


def tag_units(frame: pd.DataFrame, kind: str, resolution: int | None = None) -> pd.DataFrame:
    """Record ``kind`` (and the H3 ``resolution``) on a unit layer, in place; returns it."""
    if kind not in KINDS:
        raise ValueError(f"unit kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if kind == "h3" and resolution is None:
        raise ValueError("an H3 unit layer records its resolution")
    frame.attrs[META_KEY] = {
        "unit_kind": kind,
        "h3_resolution": int(resolution) if kind == "h3" else None,
    }
    return frame


def recorded(frame: pd.DataFrame) -> dict[str, Any] | None:
    """The record written by :func:`tag_units` (``unit_kind``, ``h3_resolution``), or None."""
    meta = frame.attrs.get(META_KEY)
    if isinstance(meta, dict) and meta.get("unit_kind") in KINDS:
        return meta
    return None


def unit_kind(frame: pd.DataFrame, id_col: str = "unit_id") -> str:
    """``h3``, ``zcta``, ``county`` or ``polygon``: as recorded, else guessed from the ids
    (all H3 cells of one resolution: ``h3``; 90 % known ZCTAs: ``zcta``; else ``polygon``)."""
    meta = recorded(frame)
    if meta is not None:
        return str(meta["unit_kind"])
    return _guess_kind(frame[id_col].astype(str))


def h3_resolution(frame: pd.DataFrame, id_col: str = "unit_id") -> int | None:
    """The H3 resolution of an H3 layer (as recorded, else that of its first cell)."""
    meta = recorded(frame)
    if meta is not None:
        return meta["h3_resolution"]
    import h3

    ids = frame[id_col].astype(str)
    if not len(ids) or _guess_kind(ids) != "h3":
        return None
    return int(h3.get_resolution(ids.iloc[0]))


def _guess_kind(ids: pd.Series) -> str:
    import h3

    sample = ids.iloc[: min(len(ids), 200)]
    try:
        if (
            len(sample)
            and all(h3.is_valid_cell(i) for i in sample)
            and len({h3.get_resolution(i) for i in sample}) == 1
        ):
            return "h3"
    except (TypeError, ValueError):
        pass
    if len(sample) and sample.str.fullmatch(r"\d{5}").all():
        known = pd.Index(geodata.zcta_points()["zcta"])  # unique; not isin (slow on str)
        if (known.get_indexer(ids) >= 0).mean() >= 0.9:
            return "zcta"
    return "polygon"
