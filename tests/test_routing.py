"""Routing: every ZIP of the region once, never across a state line, each with one rep."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest

from conftest import run_cli
from patchmap import geodata
from patchmap.errors import InputError
from patchmap.export import locate_zctas, rep_table, zip_to_rep
from patchmap.options import CLI


def _ri_zips() -> set[str]:
    xw = geodata.zip_crosswalk()
    return set(xw.loc[xw["state"] == "RI", "zip"])


@pytest.fixture(scope="module")
def scored_csv(tmp_path_factory, ri_accounts_csv):
    """The shared RI/DE/DC accounts with a score and potential already (no model to fit)."""
    acc = pd.read_csv(ri_accounts_csv, dtype=str)
    rng = np.random.default_rng(5)
    acc["score"] = rng.uniform(0, 100, len(acc)).round(2)
    acc["potential"] = rng.gamma(2.0, 1e4, len(acc)).round(2)
    path = tmp_path_factory.mktemp("scored") / "accounts.csv"
    acc.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def ri_county_chain(tmp_path_factory, scored_csv):
    """`layers --units county --region RI` and a 2-territory plan, through the CLI."""
    out = tmp_path_factory.mktemp("ri_county")
    units, plan = out / "units.parquet", out / "plan.csv"
    r = run_cli("layers", scored_csv, "--units", "county", "--region", "RI", "--out", units)
    assert r.returncode == 0, r.stderr
    r = run_cli("partition", units, "--id", "unit_id", "--balance", "population",
                "--territories", "2", "--effort", "0", "--out", plan)  # fmt: skip
    assert r.returncode == 0, r.stderr
    return out, units, plan


def test_ri_county_units_route_no_massachusetts_or_connecticut_zip(ri_county_chain, tmp_path):
    _, units, plan = ri_county_chain
    reps = tmp_path / "reps.csv"
    labels = sorted(pd.read_csv(plan, dtype=str)["territory"].unique())
    pd.DataFrame({"territory": labels, "rep_id": ["r1", "r2"], "rep_name": ["Ann", "Bo"],
                  "email": ["ann@example.com", "bo@example.com"]}).to_csv(reps, index=False)  # fmt: skip
    r = run_cli("export", units, plan, "--reps", reps, "--out", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    z = pd.read_csv(tmp_path / "out" / "zip_to_rep.csv", dtype=str)
    assert set(z["state"]) == {"RI"}  # Fall River, Uxbridge, Pawcatuck... stay out
    assert set(z["zip"]) == _ri_zips() and z["zip"].is_unique
    assert z["territory"].notna().all() and z["rep_id"].isin(["r1", "r2"]).all()
    rep_of = dict(zip(labels, ["r1", "r2"], strict=True))
    assert (z["rep_id"] == z["territory"].map(rep_of)).all()  # the file's territory column
    assert set(z["rep_email"]) == {"ann@example.com", "bo@example.com"}


def test_h3_units_keep_border_zips_in_their_state():
    from patchmap.units.h3 import h3_units

    cells = h3_units(geodata.region_geometry("RI"), 7)
    cells["state"] = "RI"
    z = zip_to_rep(cells, np.array(["T1"] * len(cells), dtype=object), kind="h3")
    assert set(z["state"]) == {"RI"}
    assert set(z["zip"]) == _ri_zips()  # coastal and island ZIPs snap to a hexagon of RI


def test_own_polygons_without_states_snap_only_within_a_state():
    """User polygons (RI counties without a state column): a ZCTA point 5 km over the
    Massachusetts line is not snapped in, a coastal RI point is."""
    counties = geodata.counties(["RI"])[["county", "geometry"]].rename(
        columns={"county": "unit_id"}
    )
    pts = geodata.zcta_points()
    got = locate_zctas(pts, counties)
    states = pts.set_index("zcta").loc[got.index, "state"]
    assert set(states) == {"RI"}
    ri_zctas = set(pts.loc[pts["state"] == "RI", "zcta"])
    assert set(got.index) == ri_zctas


# ---------------------------------------------------------------------------------------------
# reps <-> territories


@pytest.fixture(scope="module")
def squares() -> tuple[gpd.GeoDataFrame, np.ndarray]:
    """Four 1-degree squares over Rhode Island's latitude, two territories."""
    import shapely

    geoms = [shapely.box(-74 + i, 41, -73 + i, 42) for i in range(4)]
    dissolved = gpd.GeoDataFrame(
        {"territory": ["A", "B"]},
        geometry=[shapely.union_all(geoms[:2]), shapely.union_all(geoms[2:])],
        crs=4326,
    )
    return dissolved, np.array(["A", "B"], dtype=object)


def test_plain_territory_file_needs_no_home(squares):
    dissolved, terr = squares
    reps = pd.DataFrame({"territory": ["B", "A"], "rep_id": ["r2", "r1"],
                         "rep_name": ["Bo", "Ann"], "email": ["b@x.org", "a@x.org"]})  # fmt: skip
    t = rep_table(reps, terr, dissolved)
    assert t.to_dict("list") == {
        "territory": ["A", "B"], "rep_id": ["r1", "r2"], "rep_name": ["Ann", "Bo"],
        "rep_email": ["a@x.org", "b@x.org"],
    }  # fmt: skip


def test_territory_column_wins_over_homes(squares):
    dissolved, terr = squares
    reps = pd.DataFrame({"rep_id": ["r1", "r2"], "territory": ["B", "A"],
                         "lat": [41.5, 41.5], "lon": [-73.5, -71.5]})  # fmt: skip
    t = rep_table(reps, terr, dissolved)
    assert t.set_index("territory")["rep_id"].to_dict() == {"A": "r2", "B": "r1"}


def test_homes_link_reps_when_no_territory_column(squares):
    dissolved, terr = squares
    reps = pd.DataFrame({"rep_id": ["r1", "r2"], "lat": [41.5, 41.5], "lon": [-73.5, -71.5]})
    t = rep_table(reps, terr, dissolved)
    assert t.set_index("territory")["rep_id"].to_dict() == {"A": "r1", "B": "r2"}


def test_vacant_and_doubled_territories_are_named(squares):
    dissolved, terr = squares
    reps = pd.DataFrame({"rep_id": ["r1", "r2"], "lat": [41.5, 41.6], "lon": [-73.5, -73.4]})
    with pytest.raises(InputError, match=r"no rep: 'B'.*'A' \(r1, r2\).*with shared\)") as err:
        rep_table(reps, terr, dissolved)  # library words: the keyword; the CLI says the flag
    assert err.value.worded(CLI).endswith("territories with --shared-territories)")
    t = rep_table(reps, terr, dissolved, shared=True)
    assert t.set_index("territory")["rep_id"].fillna("").to_dict() == {"A": "r1;r2", "B": ""}


def test_capacity_sums_per_territory_and_sets_target_shares(squares):
    dissolved, terr = squares
    reps = pd.DataFrame({"territory": ["A", "B", "B"], "rep_id": ["r1", "r2", "r3"],
                         "capacity": ["1", "0.5", "0.5"]})  # fmt: skip
    t = rep_table(reps, terr, dissolved, shared=True)
    assert t["rep_capacity"].tolist() == [1.0, 1.0]


def test_export_rep_errors_exit_2_naming_lines(ri_county_chain, tmp_path):
    _, units, plan = ri_county_chain
    labels = sorted(pd.read_csv(plan, dtype=str)["territory"].unique())
    bad = tmp_path / "reps.csv"
    bad.write_text(f"territory,rep_id\n{labels[0]},a\n{labels[0]},b\n")
    r = run_cli("export", units, plan, "--reps", bad, "--out", tmp_path / "o1")
    assert r.returncode == 2
    assert f"no rep: {labels[1]!r}" in r.stderr and f"{labels[0]!r} (a, b)" in r.stderr
    assert "Traceback" not in r.stderr
    r = run_cli("export", units, plan, "--reps", bad, "--shared-territories",
                "--out", tmp_path / "o2")  # fmt: skip
    assert r.returncode == 0, r.stderr
    z = pd.read_csv(tmp_path / "o2" / "zip_to_rep.csv", dtype=str, keep_default_na=False)
    assert set(z["rep_id"]) == {"a;b", ""}
    bad.write_text("territory,rep_id\nT99,a\n")
    r = run_cli("export", units, plan, "--reps", bad, "--out", tmp_path / "o3")
    assert r.returncode == 2 and "line 2: territory 'T99' not in the plan" in r.stderr


def test_summary_judges_balance_against_capacity_weighted_targets(squares):
    import shapely

    from patchmap.export import territory_summary

    units = gpd.GeoDataFrame(
        {"unit_id": ["u1", "u2", "u3", "u4"], "potential": [100.0, 100.0, 50.0, 50.0]},
        geometry=[shapely.box(-74 + i, 41, -73 + i, 42) for i in range(4)],
        crs=4326,
    )
    plan = pd.DataFrame({"unit_id": units["unit_id"], "territory": ["A", "A", "B", "B"]})
    reps = pd.DataFrame({"territory": ["A", "B"], "rep_id": ["r1", "r2"], "capacity": [1, 0.5]})
    s = territory_summary(units, plan, reps=reps, balance="potential").set_index("territory")
    assert s["target_share"].round(6).tolist() == [0.666667, 0.333333]
    assert s["potential_deviation"].abs().max() < 1e-12  # 200 vs 100 is on target for 1 : 0.5
    even = territory_summary(units, plan, balance="potential").set_index("territory")
    assert even["potential_deviation"].round(6).tolist() == [0.333333, -0.333333]


# ---------------------------------------------------------------------------------------------
# travel


def test_account_travel_mean_and_p90_from_home():
    from patchmap.metrics import account_distance_km, account_travel, haversine_km

    lat = np.array([0.0, 1.0, 2.0, 10.0, 10.0])
    lon = np.zeros(5)
    labels = np.array(["A", "A", "A", "B", "B"], dtype=object)
    homes = pd.DataFrame({"territory": ["A", "A"], "lat": [0.0, 2.0], "lon": [0.0, 0.0]})
    d = account_distance_km(lat, lon, labels, homes)
    deg = float(haversine_km(np.array([0.0]), np.array([0.0]), np.array([1.0]), np.array([0.0]))[0])
    # A: two homes, each account from the nearer; B: no home, its accounts' centroid
    assert d == pytest.approx([0.0, deg, 0.0, 0.0, 0.0], abs=1e-9)
    t = account_travel(d, labels)
    assert t.loc["A", "mean_account_km"] == pytest.approx(deg / 3)
    assert t.loc["A", "p90_account_km"] == pytest.approx(0.8 * deg)  # numpy's linear rule
    assert t["accounts"].tolist() == [3, 2]


def test_export_summary_and_compare_show_travel(ri_county_chain, tmp_path, scored_csv):
    from patchmap.metrics import haversine_km

    _, units, plan = ri_county_chain
    labels = sorted(pd.read_csv(plan, dtype=str)["territory"].unique())
    reps = tmp_path / "reps.csv"
    pd.DataFrame({"territory": labels, "rep_id": ["r1", "r2"],
                  "lat": [41.82, 41.49], "lon": [-71.41, -71.31]}).to_csv(reps, index=False)  # fmt: skip
    r = run_cli("export", units, plan, "--reps", reps, "--accounts", scored_csv,
                "--out", tmp_path / "x")  # fmt: skip
    assert r.returncode == 0, r.stderr
    s = pd.read_csv(tmp_path / "x" / "summary.csv").set_index("territory")
    a = pd.read_csv(tmp_path / "x" / "assignments.csv", dtype={"territory": str})
    home = pd.read_csv(reps).set_index("territory")
    d = haversine_km(home.loc[a["territory"], "lat"].to_numpy(), home.loc[a["territory"], "lon"].to_numpy(),
                     a["lat"].to_numpy(), a["lon"].to_numpy())  # fmt: skip
    by = pd.Series(d).groupby(a["territory"].to_numpy())
    assert s["mean_account_km"].to_numpy() == pytest.approx(by.mean().to_numpy(), abs=0.01)
    assert s["p90_account_km"].to_numpy() == pytest.approx(by.quantile(0.9).to_numpy(), abs=0.01)
    assert "rep travel, home to accounts" in (tmp_path / "x" / "summary.md").read_text()
    # the same plan with its reps swapped: compare shows the travel change
    swapped = tmp_path / "swapped.csv"
    p = pd.read_csv(plan, dtype=str)
    p.assign(territory=p["territory"].map(dict(zip(labels, labels[::-1], strict=True)))).to_csv(
        swapped, index=False
    )
    r = run_cli("compare", plan, swapped, "--units", units, "--reps", reps,
                "--accounts", scored_csv, "--out", tmp_path / "cmp")  # fmt: skip
    assert r.returncode == 0, r.stderr
    t = pd.read_csv(tmp_path / "cmp" / "compare.csv").set_index("metric")
    overall = d.mean()
    row = t.loc["mean account travel (km)"]
    assert float(row.iloc[0]) == pytest.approx(overall, abs=0.01)
    assert float(row.iloc[1]) > float(row.iloc[0]) + 5  # each rep now far from the accounts
    assert float(row["change"]) == pytest.approx(float(row.iloc[1]) - float(row.iloc[0]))
    assert float(t.loc["units changed (%)"].iloc[1]) == 0.0  # relabelled: nothing moved


def test_compare_same_plan_relabelled_reports_nothing_changed(tmp_path):
    plan = pd.DataFrame({"unit_id": [f"u{i}" for i in range(6)],
                         "territory": ["a", "a", "b", "b", "c", "c"]})  # fmt: skip
    plan.to_csv(tmp_path / "a.csv", index=False)
    plan.assign(territory=plan["territory"].map({"a": "c", "b": "a", "c": "b"})).to_csv(
        tmp_path / "b.csv", index=False
    )
    r = run_cli("compare", tmp_path / "a.csv", tmp_path / "b.csv", "--out", tmp_path / "o")
    assert r.returncode == 0, r.stderr
    t = pd.read_csv(tmp_path / "o" / "compare.csv").set_index("metric")
    assert float(t.loc["units changed (%)"].iloc[1]) == 0.0
    moved = plan.assign(territory=["a", "b", "b", "b", "c", "c"])  # one unit really moves
    moved.to_csv(tmp_path / "c.csv", index=False)
    r = run_cli("compare", tmp_path / "a.csv", tmp_path / "c.csv", "--out", tmp_path / "o2")
    t = pd.read_csv(tmp_path / "o2" / "compare.csv").set_index("metric")
    assert float(t.loc["units changed (%)"].iloc[1]) == pytest.approx(100 / 6)


# ---------------------------------------------------------------------------------------------
# headcount


def test_headcount_states_its_rounding():
    from patchmap.export import recommended_headcount

    h = recommended_headcount({"potential": 43_000_000.0, "accounts": 900}, "potential=2000000",
                              by_territory=23)  # fmt: skip
    assert (h.reps, h.exact, h.column) == (22, 21.5, "potential")
    assert h.sentence() == (
        "22 reps (potential 43,000,000 / 2,000,000 per rep = 21.50, rounded up; "
        "rounding each territory up instead gives 23)"
    )
    both = recommended_headcount({"potential": 43e6, "accounts": 900}, {"potential": 2e6,
                                                                        "accounts": 30})  # fmt: skip
    assert (both.reps, both.column) == (30, "accounts")  # the column needing most reps


def test_partition_territories_auto_plans_the_recommended_headcount(ri_county_chain, tmp_path):
    _, units, _ = ri_county_chain
    plan = tmp_path / "plan.csv"
    r = run_cli("partition", units, "--id", "unit_id", "--balance", "population",
                "--territories", "auto", "--capacity", "population=400000", "--effort", "0",
                "--out", plan)  # fmt: skip
    assert r.returncode == 0, r.stderr
    pop = gpd.read_parquet(units)["population"].sum()
    assert pd.read_csv(plan)["territory"].nunique() == int(np.ceil(pop / 400_000)) == 3
    assert "territories: auto -> 3 reps" in r.stderr
    r = run_cli("export", units, plan, "--capacity", "population=400000", "--out", tmp_path / "x")
    assert r.returncode == 0, r.stderr
    md = (tmp_path / "x" / "summary.md").read_text()
    assert f"recommended headcount: 3 reps (population {pop:,.0f} / 400,000 per rep" in md
    assert "--territories auto --capacity population=400000" in md
    assert "## Why territories stay off target" in md and "unit 44007 alone holds" in md
    r = run_cli("partition", units, "--id", "unit_id", "--balance", "population",
                "--territories", "auto", "--out", plan)  # fmt: skip
    assert r.returncode == 2 and "--territories auto needs --capacity" in r.stderr
