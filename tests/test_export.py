"""Exports: ZIP-to-rep lookup, assignments, territory polygons, summary, and PLAN.csv checks."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from patchmap import geodata
from patchmap.errors import InputError
from patchmap.export import (
    export_plan,
    is_valid_coverage,
    read_plan,
    territory_summary,
    zip_to_rep,
)

K = 5


def _kmeans_plan(units: gpd.GeoDataFrame, k: int = K) -> pd.DataFrame:
    from sklearn.cluster import KMeans

    pts = units.geometry.representative_point()
    xy = np.column_stack([pts.x, pts.y])
    lab = KMeans(k, n_init=1, random_state=0).fit_predict(xy)
    return pd.DataFrame({"unit_id": units["unit_id"], "territory": [f"T{i + 1:02d}" for i in lab]})


@pytest.fixture(scope="module")
def units() -> gpd.GeoDataFrame:
    """Rhode Island, Delaware and DC ZCTAs with deterministic measures."""
    from patchmap.units.zcta import zcta_units

    u = zcta_units(["RI", "DE", "DC"])
    rng = np.random.default_rng(7)
    n = len(u)
    u["accounts"] = rng.poisson(6, n)
    u["customers"] = np.minimum(u["accounts"], rng.poisson(2, n))
    u["score"] = u["accounts"] * rng.uniform(20, 80, n)
    u["reach"] = u["accounts"] * rng.uniform(0, 10, n)
    u["potential"] = rng.gamma(2.0, 1e5, n)
    return u


@pytest.fixture(scope="module")
def plan(units) -> pd.DataFrame:
    return _kmeans_plan(units)


@pytest.fixture(scope="module")
def accounts(units) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    n = 300
    unit_ids = rng.choice(units["unit_id"].to_numpy(), n)
    unit_ids[:3] = "99999"  # not a unit: not placed in any territory
    return pd.DataFrame(
        {
            "account_id": [f"{i:06d}" for i in range(n)],
            "unit_id": unit_ids,
            "status": rng.choice(["customer", "prospect"], n),
            "score": rng.uniform(0, 100, n),
            "potential": rng.gamma(2.0, 1e4, n),
            "p_win": rng.uniform(0, 1, n),
            "deal_size": rng.uniform(1e3, 5e4, n),
        }
    )


@pytest.fixture(scope="module")
def exported(units, plan, accounts, tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    reps = pd.DataFrame(
        {
            "rep_id": [f"R{i}" for i in range(1, K + 1)],
            "name": [f"Rep {i}" for i in range(1, K + 1)],
            "lat": [41.8, 39.7, 38.9, 39.2, 41.5],
            "lon": [-71.4, -75.6, -77.0, -75.5, -71.3],
            "territory": [f"T{i:02d}" for i in range(1, K + 1)],
        }
    )
    paths = export_plan(units, plan, out, accounts=accounts, reps=reps, capacity=100)
    return out, paths


def test_every_file_written(exported):
    out, paths = exported
    names = {p.name for p in paths.values()}
    assert names == {
        "zip_to_rep.csv",
        "zip_to_rep.xlsx",
        "assignments.csv",
        "territories.geojson",
        "territories.gpkg",
        "summary.csv",
        "summary.md",
    }
    assert all(p.parent == out and p.stat().st_size > 0 for p in paths.values())
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "temporary files left behind"


def test_zip_to_rep_covers_every_crosswalk_zip_once(exported, units):
    out, _ = exported
    z = pd.read_csv(out / "zip_to_rep.csv", dtype=str)
    assert list(z.columns[:3]) == ["zip", "zcta", "territory"]
    assert {"rep_id", "zip_type", "city", "state"} <= set(z.columns)
    assert not z["zip"].duplicated().any()
    assert z["zip"].str.fullmatch(r"\d{5}").all()
    xw = geodata.zip_crosswalk()
    expected = set(xw.loc[xw["zcta"].isin(units["unit_id"]), "zip"])
    assert set(z["zip"]) == expected
    po_boxes = z[z["zip"] != z["zcta"]]
    assert len(po_boxes) > 10  # PO-box and unique ZIPs that have no polygon of their own
    assert z["territory"].notna().all() and z["rep_id"].notna().all()
    # leading zeros survive: Rhode Island ZIPs start with 0
    assert z["zip"].str.startswith("02").any()


def test_assignments_one_row_per_placed_account(exported, accounts, units):
    out, _ = exported
    a = pd.read_csv(out / "assignments.csv", dtype=str)
    placed = accounts[accounts["unit_id"].isin(units["unit_id"])]
    assert len(a) == len(placed)
    assert not a["account_id"].duplicated().any()
    assert a["account_id"].str.len().eq(6).all()  # ids kept as text
    assert {"unit_id", "territory", "rep_id"} <= set(a.columns)


def test_territory_geometries_valid_with_totals(exported, units):
    out, _ = exported
    for name in ("territories.geojson", "territories.gpkg"):
        t = gpd.read_file(out / name)
        assert len(t) == K
        assert shapely.is_valid(t.geometry.values).all()
        assert set(t.geom_type) <= {"Polygon", "MultiPolygon"}
        assert t["accounts"].sum() == units["accounts"].sum()
    # the collection is named after the file, not the temporary file it was written to
    assert json.loads((out / "territories.geojson").read_text())["name"] == "territories"
    t = gpd.read_file(out / "territories.gpkg")
    area = t.to_crs(6933).area.sum()
    assert area == pytest.approx(units.to_crs(6933).area.sum(), rel=1e-6)


def test_summary_totals_equal_unit_totals(exported, units, accounts):
    out, _ = exported
    s = pd.read_csv(out / "summary.csv")
    assert len(s) == K
    assert s["units"].sum() == len(units)
    for col in ("accounts", "customers", "score", "reach", "potential"):
        assert s[col].sum() == pytest.approx(units[col].sum()), col
    placed = accounts[accounts["unit_id"].isin(units["unit_id"])]
    assert s["expected_revenue"].sum() == pytest.approx(placed["potential"].sum())
    assert (s["recommended_reps"] == np.ceil(s["accounts"] / 100).clip(lower=1)).all()
    assert {"deviation", "polsby_popper", "contiguous", "rep_id", "avg_score"} <= set(s.columns)
    assert s["polsby_popper"].between(0, 1).all()
    md = (out / "summary.md").read_text()
    assert "| T01 |" in md and "**total**" in md


def test_expected_revenue_from_p_win_and_deal_size(units, plan, accounts):
    acc = accounts.drop(columns="potential")
    s = territory_summary(units, plan, accounts=acc)
    placed = acc[acc["unit_id"].isin(units["unit_id"])]
    assert s["expected_revenue"].sum() == pytest.approx(
        (placed["p_win"] * placed["deal_size"]).sum()
    )


def test_rerun_overwrites_cleanly(units, plan, tmp_path):
    first = export_plan(units, plan, tmp_path)
    before = pd.read_csv(first["summary"])
    other = plan.assign(territory=plan["territory"].replace({"T05": "T04"}))
    second = export_plan(units, other, tmp_path)
    after = pd.read_csv(second["summary"])
    assert len(before) == K and len(after) == K - 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in second.values())


def test_engine_plan_object_is_accepted(units, tmp_path):
    from patchmap.partition import Partitioner

    plan = Partitioner(4, ["potential"], id_col="unit_id", seed=0, effort=0).fit(units)
    paths = export_plan(units, plan, tmp_path)
    s = pd.read_csv(paths["summary"])
    assert s["contiguous"].tolist() == plan.territories["contiguous"].tolist()
    assert s["potential_deviation"].abs().max() == pytest.approx(plan.max_deviation, abs=1e-6)


def test_h3_units_carry_zips_over(tmp_path):
    from patchmap.units.h3 import h3_units

    cells = h3_units(geodata.region_geometry("RI"), 6)
    plan = _kmeans_plan(cells, 3)
    z = zip_to_rep(cells, plan["territory"].to_numpy(), kind="h3")
    assert not z["zip"].duplicated().any()
    assert z["unit_id"].isin(cells["unit_id"]).all()
    ri = geodata.zip_crosswalk().query("state == 'RI'")
    assert set(ri["zip"]) - set(z["zip"]) == set()  # every Rhode Island ZIP lands in a hexagon


def test_county_units_use_spatial_join():
    from patchmap.units.county import county_units

    counties = county_units(["DE"])  # 10001 Kent, 10003 New Castle, 10005 Sussex
    assert counties["unit_id"].tolist() == ["10001", "10003", "10005"]
    labels = np.array(["South", "North", "South"])
    z = zip_to_rep(counties, labels, kind="polygon")
    de = geodata.zip_crosswalk().query("state == 'DE'")
    assert not z["zip"].duplicated().any()
    assert set(de["zip"]) <= set(z["zip"])
    assert set(z["territory"]) == {"North", "South"}


def test_summary_degrades_for_bare_polygons(units, plan):
    bare = units[["unit_id", "geometry"]]
    s = territory_summary(bare, plan)
    assert set(s.columns) >= {"territory", "units", "deviation", "polsby_popper", "contiguous"}
    assert "accounts" not in s.columns


# ---------------------------------------------------------------------------------------------
# read_plan


def _write(tmp_path, text: str):
    p = tmp_path / "plan.csv"
    p.write_text(text)
    return p


def test_read_plan_keeps_leading_zeros(units, plan, tmp_path):
    p = tmp_path / "plan.csv"
    plan.to_csv(p, index=False)
    got = read_plan(p, units)
    assert list(got.columns) == ["unit_id", "territory"]
    assert got["unit_id"].tolist() == units["unit_id"].tolist()
    assert got["unit_id"].str.startswith("0").any()


def test_read_plan_errors_name_the_lines(units, plan, tmp_path):
    ids = units["unit_id"].tolist()
    body = "\n".join(f"{u},T01" for u in ids)
    with pytest.raises(InputError, match="expected exactly 'unit_id,territory'"):
        read_plan(_write(tmp_path, "zcta,territory\n" + body), units)
    with pytest.raises(InputError, match=rf"unit_id '{ids[0]}' appears on lines 2, {len(ids) + 2}"):
        read_plan(_write(tmp_path, "unit_id,territory\n" + body + f"\n{ids[0]},T02"), units)
    with pytest.raises(InputError, match=r"not among the units on line \d+ \('99999'\)"):
        read_plan(_write(tmp_path, "unit_id,territory\n" + body + "\n99999,T02"), units)
    with pytest.raises(InputError, match=rf"1 unit\(s\) have no territory: '{ids[-1]}'"):
        read_plan(_write(tmp_path, "unit_id,territory\n" + "\n".join(body.split("\n")[:-1])), units)
    with pytest.raises(InputError, match="line 3: empty unit_id or territory"):
        read_plan(
            _write(
                tmp_path, "unit_id,territory\n" + body.replace(f"{ids[1]},T01", f"{ids[1]},", 1)
            ),
            units,
        )
    stripped = body.replace(
        ids[0], ids[0].lstrip("0"), 1
    )  # '02801' written as 2801 by a spreadsheet
    with pytest.raises(InputError, match=r"line 2 \('2"):
        read_plan(_write(tmp_path, "unit_id,territory\n" + stripped), units)
    with pytest.raises(InputError, match="file is empty"):
        read_plan(_write(tmp_path, ""), units)
    with pytest.raises(InputError, match="file not found"):
        read_plan(tmp_path / "nope.csv", units)


def test_coverage_answer_is_kept_by_content_only():
    """The remembered coverage check answers as shapely does for each input: the same
    polygons again, an overlapping copy of them, a gap, and a missing geometry."""
    grid = np.array([shapely.box(x, y, x + 1, y + 1) for x in range(3) for y in range(3)])
    overlap = grid.copy()
    overlap[4] = shapely.box(0.5, 0.5, 2.5, 2.5)  # the middle square grown over its neighbours
    gap = grid.copy()
    gap[4] = shapely.box(1.2, 1.2, 1.8, 1.8)  # interior ring left open: still a coverage
    missing = grid.astype(object)
    missing[0] = None
    for geoms in (grid, overlap, grid, gap, overlap, missing, grid):
        assert is_valid_coverage(geoms) == bool(shapely.coverage_is_valid(geoms))
    assert is_valid_coverage(grid) and not is_valid_coverage(overlap)
    assert is_valid_coverage(list(grid))  # any sequence of geometries
