"""Geocoding: lat/lon as given, ZIP codes through the ZIP→ZCTA crosswalk to the ZCTA internal point.

ZIPs arrive damaged from spreadsheets (``2903`` for ``02903``, ``02903-1234``, ``2903.0``);
``normalize_zip`` repairs what can be repaired, and everything else is reported, never guessed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from patchmap import geodata
from patchmap.geodata import normalize_zip

__all__ = ["normalize_zip", "zip_locations"]


def zip_locations(zips: pd.Series) -> pd.DataFrame:
    """Resolve normalized ZIPs to ``zcta``, ``lat``, ``lon`` (the ZCTA internal point).

    PO-box and unique ZIPs without a polygon of their own resolve to the ZCTA that
    contains them. Unknown ZIPs come back with NA.
    """
    crosswalk = geodata.zip_crosswalk()[["zip", "zcta"]]
    points = geodata.zcta_points()[["zcta", "lat", "lon"]]
    # A ZIP that is itself a ZCTA but missing from the crosswalk still resolves. (A hash
    # lookup, not Series.isin: pandas' isin on Arrow strings converts every one of the
    # crosswalk's 41,000 values to a Python object first, half a second a call.)
    direct = points[["zcta"]].assign(zip=points["zcta"])
    listed = pd.Index(crosswalk["zip"].unique()).get_indexer(direct["zip"]) >= 0
    lookup = (
        pd.concat([crosswalk, direct[~listed]], ignore_index=True)
        .merge(points, on="zcta", how="inner")
        .set_index("zip")
    )
    keys = zips.astype("string")
    idx = lookup.index.get_indexer(keys.fillna(""))
    found = idx >= 0
    take = np.where(found, idx, 0)
    result = pd.DataFrame(
        {
            "zcta": pd.Series(lookup["zcta"].to_numpy()[take], index=zips.index, dtype="string"),
            "lat": np.where(found, lookup["lat"].to_numpy()[take], np.nan),
            "lon": np.where(found, lookup["lon"].to_numpy()[take], np.nan),
        },
        index=zips.index,
    )
    result.loc[~found, "zcta"] = pd.NA
    return result
