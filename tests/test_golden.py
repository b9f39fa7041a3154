"""Golden plans: seeded plans on small real instances, pinned to the exact assignment.

These pin the engine's behaviour (cut edges, max deviation, contiguity and a digest of
the unit -> territory assignment) so a refactor is provably behaviour-preserving. When an
algorithm change is meant to change plans, update the values here in the same commit,
with the before/after in its message: ``python tests/test_golden.py`` prints them.

Every schedule path is pinned: the flat restarts and the anytime search (plain, with a
secondary column, locks, within groups, regions), rep homes, realignment, and the
multilevel solve (all US counties, with the multilevel thresholds lowered so a
3,230-unit map takes that path; a spy checks that it did).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator
from functools import cache

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest

from patchmap import geodata, metrics
from patchmap.partition import Partitioner, Plan, schedule
from patchmap.partition import multilevel as ml


@cache
def _ri() -> gpd.GeoDataFrame:
    """Rhode Island, Delaware and DC ZCTAs (198 units, three pieces plus islands)."""
    return geodata.zcta_polygons(["RI", "DE", "DC"]).rename(columns={"zcta": "unit_id"})


@cache
def _county(state: str) -> gpd.GeoDataFrame:
    return geodata.counties([state]).rename(columns={"county": "unit_id"}).reset_index(drop=True)


@cache
def _us_counties() -> gpd.GeoDataFrame:
    """Every US county with a polygon (3,230 units: Falls Church has none in the file)."""
    c = geodata.counties().rename(columns={"county": "unit_id"})
    return c[~c.geometry.is_empty].reset_index(drop=True)


def _reps(units: gpd.GeoDataFrame, homes: dict[str, str]) -> pd.DataFrame:
    pts = units.set_index("unit_id").geometry.representative_point()
    return pd.DataFrame(
        {
            "rep_id": list(homes),
            "lat": [round(pts[z].y, 5) for z in homes.values()],
            "lon": [round(pts[z].x, 5) for z in homes.values()],
        }
    )


def _grown() -> gpd.GeoDataFrame:
    grown = _ri().copy()
    rng = np.random.default_rng(0)
    grown["population"] = (grown["population"] * rng.lognormal(0, 0.3, len(grown))).round()
    return grown


# the anytime search stops at its step budget (``effort``), never at a clock, so the plans
# here do not depend on the machine's load. A fifth of the default effort runs every
# stage of the search (its four tabu runs included) and, on these maps, ends on the
# same plans as the default in all but one case (ia_counties_k4: 33 cut edges at the
# default effort, 35 here) at a sixth of the time.
LIMIT = 600.0
EFFORT = 0.2


def _p(*args, **kwargs) -> Partitioner:
    return Partitioner(*args, time_limit=LIMIT, effort=EFFORT, **kwargs)


MULTILEVEL = {"us_counties_k3": 300}  # case: units per territory from which to go multilevel


@contextlib.contextmanager
def _schedule_for(name: str) -> Iterator[list]:
    """For a multilevel case, thresholds low enough for its map (and a record of each
    multilevel solve); otherwise the schedule as it is."""
    calls: list = []
    if name not in MULTILEVEL:
        yield calls
        return
    real = schedule.multilevel

    def spy(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ml, "COARSEN_MIN_UNITS", 1000)
        mp.setattr(ml, "COARSEN_MIN_PER_TERRITORY", MULTILEVEL[name])
        mp.setattr(schedule, "multilevel", spy)
        yield calls


CASES: dict[str, Callable[[], Plan]] = {
    "ri_k4": lambda: _p(4, "population", seed=1).fit(_ri()),
    "ri_k3_secondary": lambda: _p(3, ["population", "land_km2"], seed=0).fit(_ri()),
    "ri_k5_locked": lambda: _p(5, "population", seed=2).fit(
        _ri(), locked={"02903": "T01", "19901": "T02", "20001": "T03"}
    ),
    "ri_reps": lambda: _p(4, "population", seed=0).fit(
        _ri(), reps=_reps(_ri(), {"ana": "02903", "ben": "02840", "cy": "19901", "dee": "20001"})
    ),
    "ri_within": lambda: _p(6, "population", seed=0).fit(_ri(), within="state"),
    "ri_regions": lambda: _p(6, "population", seed=0).fit(_ri(), regions=2),
    "ri_realign": lambda: _p(4, "population", tolerance=0.02, seed=0).realign(
        _grown(), _p(4, "population", seed=0).fit(_ri()).assignment, max_moved=0.10
    ),
    "nm_counties_k3": lambda: _p(3, "population", seed=0).fit(_county("NM")),
    "wv_counties_k3": lambda: _p(3, "population", seed=0).fit(_county("WV")),
    "ia_counties_k4": lambda: _p(4, "population", seed=0).fit(_county("IA")),
    "us_counties_k3": lambda: _p(3, "population", seed=0).fit(_us_counties()),
}

# name: (cut edges, primary max deviation, every territory contiguous, assignment digest)
GOLDEN: dict[str, tuple[int, float, bool, str]] = {
    "ia_counties_k4": (35, 0.003205, True, "cb8965941ea2"),
    "nm_counties_k3": (16, 0.004015, True, "4b5478211507"),
    "ri_k3_secondary": (64, 0.002782, True, "99a516091528"),
    "ri_k4": (30, 0.004666, True, "ee2c20707759"),
    "ri_k5_locked": (35, 0.00774, True, "710b34d673f0"),
    "ri_realign": (40, 0.016569, True, "d0d35e3096e3"),
    "ri_regions": (50, 0.007684, True, "74ac1c7cc945"),
    "ri_reps": (30, 0.004666, True, "a4dda44a91bb"),
    "ri_within": (31, 0.006118, True, "3c64067d486c"),
    "us_counties_k3": (146, 0.004841, True, "a3ae311e6d23"),
    "wv_counties_k3": (23, 0.003614, True, "4dc92f697105"),
}


def measure(plan: Plan) -> tuple[int, float, bool, str]:
    """The pinned figures of a plan, measured independently of the plan's own numbers."""
    adj = plan.adjacency
    i, j = adj.edges()
    lab = plan.assignment.reindex(adj.ids).to_numpy()
    cut = int((lab[i] != lab[j]).sum())
    codes = pd.Index(sorted(set(lab))).get_indexer(lab)
    contiguous = bool(metrics.is_contiguous(adj, codes).all())
    pairs = plan.assignment.sort_index()
    text = "|".join(f"{u}={t}" for u, t in pairs.items())
    return (
        cut,
        round(plan.max_deviation, 6),
        contiguous,
        hashlib.sha1(text.encode()).hexdigest()[:12],
    )


def run(name: str) -> tuple[int, float, bool, str]:
    """A case's pinned figures; a multilevel case must have been solved multilevel."""
    with _schedule_for(name) as calls:
        figures = measure(CASES[name]())
    assert bool(calls) == (name in MULTILEVEL), f"{name}: multilevel ran {len(calls)} times"
    return figures


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_plan(name):
    assert run(name) == GOLDEN[name]


if __name__ == "__main__":
    for name in sorted(CASES):
        print(f'    "{name}": {run(name)!r},')
