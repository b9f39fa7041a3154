"""Synthetic but realistic B2B accounts, placed in proportion to real ZCTA population.

The generator plants a known signal (fit depends on industry, size and technographics) so
the look-alike model has something real to learn, and engagement that correlates with fit.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import shapely

from patchmap import geodata

INDUSTRIES = {
    # name: (share of accounts, fit effect on the log-odds of winning, revenue per employee $k)
    "Software": (0.12, 0.9, 260),
    "Financial Services": (0.10, 0.6, 420),
    "Healthcare": (0.14, 0.3, 150),
    "Manufacturing": (0.13, 0.2, 230),
    "Retail": (0.15, -0.5, 180),
    "Professional Services": (0.12, 0.4, 160),
    "Logistics": (0.08, 0.1, 210),
    "Education": (0.06, -0.7, 90),
    "Construction": (0.10, -0.3, 200),
}
_PREFIX = np.array(
    [
        "Pacific",
        "Golden",
        "Summit",
        "Redwood",
        "Harbor",
        "Sierra",
        "Coastal",
        "Valley",
        "Bright",
        "North",
        "Blue",
        "Cedar",
        "Granite",
        "Sun",
        "Bay",
        "Mesa",
        "Union",
        "Pioneer",
    ]
)
_CORE = np.array(
    [
        "Data",
        "Health",
        "Works",
        "Logic",
        "Supply",
        "Labs",
        "Systems",
        "Partners",
        "Foods",
        "Capital",
        "Energy",
        "Build",
        "Motion",
        "Cloud",
        "Care",
        "Freight",
        "Design",
        "Metrics",
    ]
)
_SUFFIX = np.array(["Inc", "LLC", "Co", "Group", "Corp", "Holdings"])


def _inside_own_zcta(
    chosen: pd.DataFrame, lat: np.ndarray, lon: np.ndarray, states: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Pull scattered points that left their ZCTA (into the sea, say) back to its internal point.

    Only where polygons are bundled for the region; elsewhere the scatter stands as drawn.
    """
    bundled = [s for s in states if s in geodata.zcta_states()]
    if not bundled:
        return lat, lon
    polygons = geodata.zcta_polygons(bundled).set_index("zcta").geometry
    geoms = polygons.reindex(chosen["zcta"]).to_numpy()
    has_polygon = ~pd.isna(geoms)
    inside = np.zeros(len(lat), dtype=bool)
    inside[has_polygon] = shapely.contains_xy(
        geoms[has_polygon], lon[has_polygon], lat[has_polygon]
    )
    back = has_polygon & ~inside
    return np.where(back, chosen["lat"].to_numpy(), lat), np.where(
        back, chosen["lon"].to_numpy(), lon
    )


def sample_accounts(
    region: str | Sequence[str] = "CA",
    n: int = 20_000,
    seed: int = 7,
    *,
    latlon_share: float = 0.85,
    bad_share: float = 0.0,
) -> pd.DataFrame:
    """Make ``n`` synthetic accounts in ``region`` (USPS state codes).

    Every account has a ZIP; ``latlon_share`` of them also carry coordinates (a point near
    the ZCTA's internal point). ``bad_share`` of the rows get a realistic defect (no
    location, an unknown ZIP, coordinates out of range) to exercise the rejects path.
    """
    if n < 1:
        raise ValueError("n must be >= 1")
    rng = np.random.default_rng(seed)
    states = geodata.normalize_states(region)
    points = geodata.zcta_points()
    points = points[points["state"].isin(states) & (points["population"] > 0)].reset_index(
        drop=True
    )
    crosswalk = geodata.zip_crosswalk()
    crosswalk = crosswalk[crosswalk["zcta"].isin(points["zcta"])].sort_values(["zcta", "zip"])

    # Where: a ZCTA drawn in proportion to population, then one of its ZIPs (PO boxes too).
    weights = points["population"].to_numpy(dtype=float)
    pick = rng.choice(len(points), size=n, p=weights / weights.sum())
    chosen = points.iloc[pick].reset_index(drop=True)
    zips_by_zcta = crosswalk.groupby("zcta", sort=True)["zip"]
    first = zips_by_zcta.cumcount() == 0
    starts = pd.Series(
        np.flatnonzero(first.to_numpy()), index=crosswalk.loc[first.to_numpy(), "zcta"].to_numpy()
    )
    counts = zips_by_zcta.size()
    start = starts.reindex(chosen["zcta"]).to_numpy()
    count = counts.reindex(chosen["zcta"]).to_numpy()
    has_zip = ~np.isnan(start)
    offset = np.floor(rng.random(n) * np.where(has_zip, count, 1)).astype(int)
    row_idx = np.where(has_zip, np.nan_to_num(start).astype(int) + offset, 0)
    zip_codes = np.where(has_zip, crosswalk["zip"].to_numpy()[row_idx], chosen["zcta"].to_numpy())
    city = np.where(has_zip, crosswalk["city"].to_numpy()[row_idx], "")

    # Coordinates scattered around the internal point, by the ZCTA's size.
    spread_km = 0.25 * np.sqrt(chosen["land_km2"].to_numpy(dtype=float).clip(0.5, 400))
    lat0 = chosen["lat"].to_numpy()
    dlat = rng.normal(0, 1, n) * spread_km / 111.0
    dlon = rng.normal(0, 1, n) * spread_km / (111.0 * np.cos(np.radians(lat0)))
    lat = np.round(lat0 + dlat, 6)
    lon = np.round(chosen["lon"].to_numpy() + dlon, 6)
    lat, lon = _inside_own_zcta(chosen, lat, lon, states)
    no_coords = rng.random(n) >= latlon_share

    # What: firmographics, skewed like real company size distributions.
    names = list(INDUSTRIES)
    shares = np.array([v[0] for v in INDUSTRIES.values()])
    industry_idx = rng.choice(len(names), size=n, p=shares / shares.sum())
    industry = np.array(names)[industry_idx]
    employees = np.maximum(1, np.round(rng.lognormal(mean=3.6, sigma=1.3, size=n))).astype(int)
    rev_per_emp = np.array([v[2] for v in INDUSTRIES.values()])[industry_idx] * 1_000
    annual_revenue = np.round(employees * rev_per_emp * rng.lognormal(0, 0.5, n), -3).astype(
        np.int64
    )
    uses_crm = (rng.random(n) < 0.25 + 0.3 * (employees > 100)).astype(int)
    uses_cloud = (rng.random(n) < 0.45).astype(int)

    # Fit: the planted signal the look-alike model should recover.
    effect = np.array([v[1] for v in INDUSTRIES.values()])[industry_idx]
    size_fit = -0.15 * (np.log(employees) - 4.5) ** 2 + 0.5
    logit = -0.6 + effect + size_fit + 0.8 * uses_crm + 0.4 * uses_cloud + rng.normal(0, 0.6, n)
    p_win = 1 / (1 + np.exp(-logit))

    # History: a third of the accounts went through a sales cycle, won or lost.
    decided = rng.random(n) < 0.35
    won = decided & (rng.random(n) < p_win)
    outcome = np.where(decided, np.where(won, "won", "lost"), "")
    status = np.where(won, "customer", "prospect")
    deal_size = np.where(
        decided, np.round(2_000 * employees**0.55 * rng.lognormal(0, 0.35, n), -2), np.nan
    )

    # Engagement: more where fit is higher; product usage for customers only.
    intent = np.clip(rng.normal(35 + 25 * (p_win - 0.5), 18, n), 0, 100).round()
    mqls = rng.poisson(0.4 + 2.5 * p_win * (1 + np.log1p(employees) / 6))
    opps = rng.poisson(0.05 + 0.4 * p_win, n)
    usage = np.where(won, np.clip(rng.normal(60, 20, n), 0, 100).round(), np.nan)

    company = (
        pd.Series(_PREFIX[rng.integers(0, len(_PREFIX), n)])
        + " "
        + _CORE[rng.integers(0, len(_CORE), n)]
        + " "
        + _SUFFIX[rng.integers(0, len(_SUFFIX), n)]
    )
    df = pd.DataFrame(
        {
            "account_id": [f"A{i:07d}" for i in range(1, n + 1)],
            "name": company,
            "industry": industry,
            "employees": employees,
            "annual_revenue": annual_revenue,
            "status": status,
            "outcome": outcome,
            "deal_size": deal_size,
            "mqls_90d": mqls,
            "opportunities_12m": opps,
            "intent_score": intent,
            "product_usage": usage,
            "uses_crm": uses_crm,
            "uses_cloud": uses_cloud,
            "city": city,
            "state": chosen["state"].to_numpy(),
            "zip": zip_codes,
            "lat": np.where(no_coords, np.nan, lat),
            "lon": np.where(no_coords, np.nan, lon),
        }
    )
    if bad_share > 0:
        bad = np.flatnonzero(rng.random(n) < bad_share)
        kind = rng.integers(0, 3, len(bad))
        no_loc, unknown, out_of_range = bad[kind == 0], bad[kind == 1], bad[kind == 2]
        df.loc[no_loc, ["lat", "lon"]] = np.nan
        df.loc[no_loc, "zip"] = ""
        df.loc[unknown, ["lat", "lon"]] = np.nan
        df.loc[unknown, "zip"] = "00000"
        df.loc[out_of_range, "lat"] = 137.5
    return df
