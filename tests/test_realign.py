"""What-if planning on real Census ZCTAs: realignment with a move budget, rep home bases,
locked units, hard boundaries and regions, quotas, headcount, plan comparison, and the
one-line errors of each input through the CLI.

These tests check constraints (balance bands, contiguity, locks, homes, budgets), not how
few edges a plan cuts, so their plans are searched with ``effort=0`` (``--effort 0``): the
restarts only, no anytime search. tests/test_golden.py pins the default search with reps,
locks, ``within``, regions and realignment.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from scipy.sparse.csgraph import connected_components

from conftest import run_cli
from patchmap import geodata, metrics
from patchmap.config import load_config
from patchmap.errors import InputError
from patchmap.notes import with_code
from patchmap.partition import Partitioner, split_count
from patchmap.pipeline import run_plan
from patchmap.quota import allocate_quota
from patchmap.units import build_adjacency

RI_DE_DC = ["RI", "DE", "DC"]


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small() -> gpd.GeoDataFrame:
    return geodata.zcta_polygons(RI_DE_DC).rename(columns={"zcta": "unit_id"})


@pytest.fixture(scope="module")
def small_adj(small):
    return build_adjacency(small, id_col="unit_id")


@pytest.fixture(scope="module")
def ca_adj(ca):
    return build_adjacency(ca, id_col="unit_id")


@pytest.fixture(scope="module")
def files(tmp_path_factory, small):
    """Units (today's and after a year of growth), a 4-territory plan and reps, as files."""
    d = tmp_path_factory.mktemp("whatif")
    small.to_parquet(d / "units.parquet")
    grown = small.copy()
    rng = np.random.default_rng(0)
    grown["population"] = (grown["population"] * rng.lognormal(0, 0.3, len(grown))).round()
    grown.to_parquet(d / "grown.parquet")
    plan = Partitioner(4, "population", seed=0, effort=0).fit(small)
    plan.to_csv(d / "plan.csv")
    pts = small.set_index("unit_id").geometry.representative_point()
    homes = {"ana": "02903", "ben": "02840", "cy": "19901", "dee": "20001"}
    pd.DataFrame(
        {
            "rep_id": list(homes),
            "lat": [round(pts[z].y, 5) for z in homes.values()],
            "lon": [round(pts[z].x, 5) for z in homes.values()],
            "capacity": [1, 1, 1, 1],
        }
    ).to_csv(d / "reps.csv", index=False)
    return d


def _cli_error(r) -> str:
    assert r.returncode == 2, (r.returncode, r.stdout[-500:], r.stderr[-2000:])
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    return lines[0]


# --- realignment: the California target -----------------------------------------------------


def test_california_realignment_within_budget_and_tolerance(ca, ca_adj):
    """20 CA territories, every unit's population grown by lognormal(0, 0.3): realign with
    at most 10% of the population moved and every territory within 2%, all contiguous."""
    adj = ca_adj
    before = Partitioner(20, "population", seed=0, effort=0).fit(ca, adjacency=adj)
    grown = ca.copy()
    grown["population"] = ca["population"] * np.random.default_rng(11).lognormal(0, 0.3, len(ca))
    stale = grown.groupby(before.assignment.reindex(ca["unit_id"]).to_numpy())["population"].sum()
    assert (stale / stale.mean() - 1).abs().max() > 0.05  # growth broke the balance

    plan = Partitioner(20, "population", tolerance=0.02, seed=0).realign(
        grown, before.assignment, max_moved=0.10, adjacency=adj
    )
    # judged independently of the plan's own numbers
    after = plan.assignment.reindex(ca["unit_id"]).to_numpy()
    was = before.assignment.reindex(ca["unit_id"]).to_numpy()
    w = grown["population"].to_numpy()
    moved = w[after != was].sum() / w.sum()
    totals = pd.Series(w).groupby(after).sum()
    assert moved <= 0.10
    assert (totals / totals.mean() - 1).abs().max() <= 0.02
    assert metrics.is_contiguous(adj, after).all()
    assert set(after) == set(was)  # territories keep their labels
    assert plan.moved_share == pytest.approx(moved)
    assert set(plan.moves["unit_id"]) == set(ca["unit_id"][after != was])
    assert (plan.moves["from"] != plan.moves["to"]).all()
    assert plan.constraints["moved<=10.00%"] and plan.constraints["balance:population<=2.00%"]
    (note,) = with_code(plan.notes, "realigned")
    assert plan.relaxed is None and note.startswith("realigned: ")
    assert note.data["moved"] == pytest.approx(moved) and note.data["max_moved"] == 0.10
    # the same assignment measured afresh gives the same figures
    again = Partitioner(20, "population", tolerance=0.02).evaluate(
        grown, plan.assignment, adjacency=adj
    )
    assert again.max_deviation == pytest.approx(plan.max_deviation)
    assert again.cut_edge_fraction == pytest.approx(plan.cut_edge_fraction)


def test_budget_and_tolerance_conflict_is_reported(small, small_adj, files):
    grown = gpd.read_parquet(files / "grown.parquet")
    current = pd.read_csv(files / "plan.csv", dtype=str).set_index("unit_id")["territory"]
    part = Partitioner(4, "population", tolerance=0.01, seed=0)
    keep_budget = part.realign(grown, current, max_moved=0.02, adjacency=small_adj)
    assert keep_budget.moved_share <= 0.02
    assert keep_budget.max_deviation > 0.01
    assert "relaxed the tolerance from 1.00% to" in keep_budget.relaxed
    assert keep_budget.relaxed in keep_budget.notes
    keep_tol = part.realign(grown, current, max_moved=0.02, adjacency=small_adj, relax="budget")
    assert keep_tol.max_deviation <= 0.01 and keep_tol.moved_share > 0.02
    assert "relaxed the move budget from 2.00% to" in keep_tol.relaxed
    assert keep_tol.contiguous and keep_budget.contiguous


def test_realign_cli_writes_moves(files, tmp_path):
    out = tmp_path / "plan.csv"
    r = run_cli(
        "partition", files / "grown.parquet", "--id", "unit_id", "--balance", "population",
        "--current", files / "plan.csv", "--max-moved", "10", "--tolerance", "2", "--out", out,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert "realigned: " in r.stdout
    plan = pd.read_csv(out, dtype=str)
    assert list(plan.columns) == ["unit_id", "territory"]
    old = pd.read_csv(files / "plan.csv", dtype=str).set_index("unit_id")["territory"]
    new = plan.set_index("unit_id")["territory"].reindex(old.index)
    moves = pd.read_csv(tmp_path / "plan.moves.csv", dtype={"unit_id": str})
    assert list(moves.columns) == ["unit_id", "from", "to", "measure"]
    assert set(moves["unit_id"]) == set(old.index[old != new])
    grown = gpd.read_parquet(files / "grown.parquet").set_index("unit_id")
    assert moves["measure"].sum() <= 0.10 * grown["population"].sum()


# --- reps -----------------------------------------------------------------------------------


def test_reps_seed_their_territories(small, small_adj, files):
    reps = pd.read_csv(files / "reps.csv")
    plan = Partitioner(4, "population", seed=0, effort=0).fit(small, adjacency=small_adj, reps=reps)
    assert sorted(plan.labels) == ["ana", "ben", "cy", "dee"]
    homes = {"ana": "02903", "ben": "02840", "cy": "19901", "dee": "20001"}
    for rep, unit in homes.items():
        assert plan.assignment[unit] == rep
    assert plan.contiguous and plan.max_deviation <= 0.005
    assert plan.constraints["home bases:4 reps"]
    d = plan.reps.set_index("rep_id")
    assert (d["mean_distance_km"] > 0).all() and (
        d["max_distance_km"] >= d["mean_distance_km"]
    ).all()
    # independent check of one rep's weighted mean distance
    xy = plan.adjacency.xy_km
    from patchmap.partition.reps import home_xy_km

    hx, hy = home_xy_km(reps.iloc[[2]].assign(_line=4), small)[0]
    mine = plan.assignment.reindex(small["unit_id"]).to_numpy() == "cy"
    w = small["population"].to_numpy()[mine]
    expect = (np.hypot(xy[mine, 0] - hx, xy[mine, 1] - hy) * w).sum() / w.sum()
    assert d.loc["cy", "mean_distance_km"] == pytest.approx(expect)
    # the units nearest each home, in territory shares: DC's are all nearest to dee's home
    assert d["nearest_load"].sum() == pytest.approx(4)
    dc = small.loc[small["state"] == "DC", "population"].sum()
    assert d.loc["dee", "nearest_load"] == pytest.approx(dc / (small["population"].sum() / 4))


def test_rep_capacity_sets_target_shares(small, small_adj, files, tmp_path):
    """A 0.5 FTE rep's territory aims at half a share: balance is judged against the
    capacity-weighted targets, in the library, the CLI and with ``shares=``."""
    reps = pd.read_csv(files / "reps.csv").assign(capacity=[1, 1, 0.5, 1])
    plan = Partitioner(4, "population", seed=0, effort=0).fit(small, adjacency=small_adj, reps=reps)
    pop = small.set_index("unit_id")["population"]
    tot = pop.groupby(plan.assignment.reindex(pop.index).to_numpy()).sum()
    want = pop.sum() * pd.Series([1, 1, 0.5, 1], index=reps["rep_id"]) / 3.5
    assert ((tot / want.reindex(tot.index) - 1).abs() <= 0.005).all()
    assert tot["cy"] == pytest.approx(tot["ana"] / 2, rel=0.011)
    assert plan.max_deviation <= 0.005 and plan.contiguous
    dev = plan.territories.set_index("territory")["population_deviation"]
    assert dev.abs().max() == pytest.approx(plan.max_deviation)
    # explicit shares win over the reps' capacity
    eq = Partitioner(4, "population", seed=0, effort=0).fit(
        small, adjacency=small_adj, reps=reps, shares=[0.25] * 4
    )
    tot = pop.groupby(eq.assignment.reindex(pop.index).to_numpy()).sum()
    assert (tot / tot.mean() - 1).abs().max() <= 0.005
    # the CLI reads capacity from the reps file
    path = tmp_path / "reps_cap.csv"
    reps.to_csv(path, index=False)
    out = tmp_path / "p" / "plan.csv"
    r = run_cli("partition", files / "units.parquet", "--id", "unit_id", "--balance",
                "population", "--reps", path, "--effort", "0", "--out", out)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    cli = pd.read_csv(out, dtype=str).set_index("unit_id")["territory"]
    tot = pop.groupby(cli.reindex(pop.index).to_numpy()).sum()
    assert ((tot / want.reindex(tot.index) - 1).abs() <= 0.005).all()


def test_realign_follows_a_capacity_change(small, small_adj, files):
    """A rep going half-time: realigning the reps' plan with cy's capacity at 0.5 brings
    every territory within the tolerance (5%) of its capacity-weighted target."""
    reps = pd.read_csv(files / "reps.csv")
    plan = Partitioner(4, "population", seed=0, effort=0).fit(small, adjacency=small_adj, reps=reps)
    half = reps.assign(capacity=[1, 1, 0.5, 1])
    new = Partitioner(4, "population", tolerance=0.05, seed=0).realign(
        small, plan.assignment, adjacency=small_adj, reps=half
    )
    pop = small.set_index("unit_id")["population"]
    tot = pop.groupby(new.assignment.reindex(pop.index).to_numpy()).sum()
    want = pop.sum() * pd.Series([1, 1, 0.5, 1], index=reps["rep_id"]) / 3.5
    assert ((tot / want.reindex(tot.index) - 1).abs() <= 0.05).all()
    assert tot["cy"] < 0.55 * tot["ana"]  # the half-time rep's territory is about half
    assert new.contiguous and new.constraints["home bases:4 reps"]
    assert 0 < new.moved_share < 0.25


@pytest.mark.parametrize("seed", [0, 2])
def test_clustered_rep_homes_in_california(seed, ca, ca_adj):
    """20 reps drawn by population (several in one metro): every territory within 2%,
    contiguous, each home in its rep's territory."""
    adj = ca_adj
    w = ca["population"].to_numpy(dtype=float)
    pts = ca.geometry.representative_point()
    rng = np.random.default_rng(seed)
    while True:
        idx = rng.choice(len(ca), size=20, p=w / w.sum())
        if len(set(idx.tolist())) == 20:
            break
    names = [f"r{i:02d}" for i in range(20)]
    reps = pd.DataFrame(
        {"rep_id": names, "lat": pts.y.to_numpy()[idx], "lon": pts.x.to_numpy()[idx]}
    )
    plan = Partitioner(20, "population", seed=0, effort=0).fit(ca, adjacency=adj, reps=reps)
    lab = plan.assignment.reindex(ca["unit_id"]).to_numpy()
    totals = pd.Series(w).groupby(lab).sum()
    assert (totals / totals.mean() - 1).abs().max() <= 0.02
    assert metrics.is_contiguous(adj, lab).all()
    assert (lab[idx] == np.array(names)).all()


def test_reps_cli_by_zip_with_report(files, tmp_path):
    reps = tmp_path / "reps_zip.csv"
    pd.DataFrame({"rep_id": ["ana", "cy", "dee"], "zip": ["2903", "19901", "20001-1234"],
                  "segment": ["smb", "ent", "ent"]}).to_csv(reps, index=False)  # fmt: skip
    out = tmp_path / "p" / "plan.csv"
    r = run_cli("partition", files / "units.parquet", "--id", "unit_id", "--balance",
                "population", "--reps", reps, "--effort", "0", "--out", out)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert "rep travel: mean" in r.stdout
    plan = pd.read_csv(out, dtype=str)
    assert sorted(plan["territory"].unique()) == ["ana", "cy", "dee"]
    report = pd.read_csv(out.parent / "plan.reps.csv", dtype={"home_unit": str})
    assert list(report["home_unit"]) == ["02903", "19901", "20001"]
    assert {"segment", "mean_distance_km", "units", "population"} <= set(report.columns)


# --- locked units, groups, regions ----------------------------------------------------------


def test_locked_units_of_a_territory_are_joined(small, small_adj):
    # two Delaware ZCTAs far apart, locked to one territory: it must reach both
    locked = {"19930": "North", "19701": "North", "02903": "South"}
    plan = Partitioner(4, "population", seed=2, effort=0).fit(
        small, adjacency=small_adj, locked=locked
    )
    for unit, terr in locked.items():
        assert plan.assignment[unit] == terr
    assert plan.contiguous and plan.constraints["locked:3 units"]


def test_within_state_and_regions(small, small_adj):
    plan = Partitioner(6, "population", seed=0, effort=0).fit(
        small, adjacency=small_adj, within="state"
    )
    state = small.set_index("unit_id")["state"]
    per = state.reindex(plan.assignment.index).groupby(plan.assignment.to_numpy()).nunique()
    assert (per == 1).all() and plan.constraints["within:state"]
    # K split by largest remainder of population, at least one each
    counts = state.reindex(plan.assignment.index).groupby(plan.assignment.to_numpy()).first()
    tot = small.groupby("state")["population"].sum()
    assert (
        counts.value_counts().reindex(tot.index).tolist() == split_count(tot.to_numpy(), 6).tolist()
    )
    assert plan.contiguous
    assert any("gets 1 of 6 territories" in n for n in plan.notes)


def test_regions_gather_whole_states_and_notes_are_true():
    """Two regions over New England's six states: each region is a set of whole states
    (connected), territories stay inside states; a unit is only said to be too heavy for
    its own state's territories (Middlesex, MA is; Fairfield, CT is not)."""
    ne = geodata.counties(["CT", "MA", "ME", "NH", "RI", "VT"]).rename(
        columns={"county": "unit_id"}
    )
    plan = Partitioner(12, "population", seed=0, effort=0).fit(ne, within="state", regions=2)
    state = ne.set_index("unit_id")["state"].reindex(plan.assignment.index)
    assert (state.groupby(plan.assignment.to_numpy()).nunique() == 1).all()
    region = plan.assignment.map(plan.regions)
    assert region.nunique() == 2
    assert (region.groupby(state.to_numpy()).nunique() == 1).all()  # whole states
    # each region is one piece of the territory map (territories touch when units do)
    adj = plan.adjacency
    lab = plan.assignment.reindex(adj.ids).to_numpy()
    codes = pd.Index(plan.labels).get_indexer(lab)
    a, b = codes[adj.matrix.tocoo().row], codes[adj.matrix.tocoo().col]
    for r in region.unique():
        mine = np.flatnonzero(plan.regions.reindex(plan.labels).to_numpy() == r)
        keep = np.isin(a, mine) & np.isin(b, mine)
        t = pd.DataFrame({"a": a[keep], "b": b[keep]})
        m = np.zeros((len(plan.labels),) * 2)
        m[t["a"], t["b"]] = 1
        assert connected_components(m[np.ix_(mine, mine)], directed=False)[0] == 1
    heavy = [n for n in plan.notes if "alone holds" in n]
    assert heavy == [
        "unit '25017' alone holds 1,490,884 population (114% of its territory's share): its "
        "territory cannot meet the target"
    ]


def test_locked_units_within_state(small, small_adj):
    locked = {"19930": "North", "19701": "North", "02903": "T01", "02840": "Newport"}
    plan = Partitioner(6, "population", seed=0, effort=0).fit(
        small, adjacency=small_adj, locked=locked, within="state"
    )
    assert {u: plan.assignment[u] for u in locked} == locked
    assert plan.constraints["locked:4 units"] and plan.constraints["within:state"]
    assert plan.contiguous
    # the other territories are numbered around the labels the locks use
    assert sorted(plan.labels) == ["Newport", "North", "T01", "T02", "T03", "T04"]
    with pytest.raises(InputError, match="several state values"):
        Partitioner(6, "population").fit(
            small, adjacency=small_adj, locked={"19930": "X", "02903": "X"}, within="state"
        )
    # with regions too (as in the README): territories first, then regions of whole ones
    plan = Partitioner(6, "population", seed=0, effort=0).fit(
        small, adjacency=small_adj, locked=locked, within="state", regions=3
    )
    assert {u: plan.assignment[u] for u in locked} == locked
    assert plan.regions.groupby(plan.regions).size().sum() == 6
    state = small.set_index("unit_id")["state"]
    region = plan.assignment.map(plan.regions)
    assert (state.reindex(region.index).groupby(region.to_numpy()).nunique() == 1).all()
    too_many = {"02903": "A", "02840": "B", "02908": "C", "02860": "D"}
    with pytest.raises(InputError, match="'RI' gets 3 territories but holds locked units of 4"):
        Partitioner(6, "population").fit(
            small, adjacency=small_adj, locked=too_many, within="state"
        )


def test_locked_within_regions_cli(tmp_path, files):
    """The README's example: key accounts stay put, no state line crossed, regions on top."""
    locked = tmp_path / "locked.csv"
    locked.write_text("unit_id,territory\n19930,North\n19701,North\n02903,T01\n")
    out = tmp_path / "plan.csv"
    r = run_cli("partition", files / "units.parquet", "--id", "unit_id", "--balance",
                "population", "--territories", "6", "--locked", locked, "--within", "state",
                "--regions", "3", "--effort", "0", "--out", out)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    plan = pd.read_csv(out, dtype=str).set_index("unit_id")["territory"]
    assert plan[["19930", "19701", "02903"]].tolist() == ["North", "North", "T01"]
    regions = pd.read_csv(tmp_path / "plan.regions.csv", dtype=str)
    assert sorted(regions["territory"]) == sorted(plan.unique())


def test_regions_nest_territories(tmp_path, files):
    out = tmp_path / "plan.csv"
    r = run_cli("partition", files / "units.parquet", "--id", "unit_id", "--balance",
                "population", "--territories", "6", "--regions", "2", "--effort", "0",
                "--out", out)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    plan = pd.read_csv(out, dtype=str)
    assert list(plan.columns) == ["unit_id", "territory"]
    regions = pd.read_csv(tmp_path / "plan.regions.csv", dtype=str)
    assert list(regions.columns) == ["territory", "region"]
    assert sorted(regions["territory"]) == sorted(plan["territory"].unique())
    assert regions["region"].value_counts().tolist() == [3, 3]
    # each region is one connected piece made of whole territories
    units = gpd.read_parquet(files / "units.parquet")
    adj = build_adjacency(units, id_col="unit_id")
    region = plan.set_index("unit_id")["territory"].map(regions.set_index("territory")["region"])
    assert metrics.is_contiguous(adj, region.reindex(adj.ids).to_numpy()).all()


def test_split_count_largest_remainder():
    assert split_count([50, 30, 20], 10).tolist() == [5, 3, 2]
    assert split_count([0.9, 0.05, 0.05], 5).tolist() == [3, 1, 1]  # at least one each
    assert split_count([1, 1, 1], 4).sum() == 4
    with pytest.raises(InputError):
        split_count([1, 1, 1], 2)


# --- quota and headcount --------------------------------------------------------------------


def test_allocate_quota_floor_cap_exact_total():
    w = np.array([10.0, 1, 1, 1, 50, 0])
    q = allocate_quota(w, 1_000_000, floor="50%", cap="150%", decimals=2)
    assert round(q.sum() * 100) == 100_000_000  # exactly the total, to the cent
    mean = 1_000_000 / 6
    assert q.min() >= 0.5 * mean - 0.01 and q.max() <= 1.5 * mean + 0.01
    free = (q > 0.5 * mean + 0.01) & (q < 1.5 * mean - 0.01)
    ratio = q[free] / w[free]
    assert np.allclose(ratio, ratio[0], rtol=1e-4)  # proportional where unbounded
    plain = allocate_quota([1, 3], 400)
    assert plain.tolist() == [100, 300]
    with pytest.raises(InputError, match="floor"):
        allocate_quota([1, 1], 100, floor=60)
    with pytest.raises(InputError, match="cap"):
        allocate_quota([1, 1], 100, cap="40%")


def test_export_quota_and_headcount(files, tmp_path):
    units = gpd.read_parquet(files / "units.parquet")
    units["accounts"] = (units["population"] / 1000).round().astype(int)
    units.to_parquet(tmp_path / "u.parquet")
    r = run_cli("export", tmp_path / "u.parquet", files / "plan.csv", "--out", tmp_path / "x",
                "--capacity", "150", "--quota", "2500000", "--quota-floor", "90%",
                "--reps", files / "reps.csv")  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    s = pd.read_csv(tmp_path / "x" / "summary.csv")
    assert round(s["quota"].sum(), 2) == 2_500_000
    assert (s["quota"] >= 0.9 * 2_500_000 / 4 - 0.01).all()
    assert (s["recommended_reps"] == np.ceil(s["accounts"] / 150)).all()
    assert "recommended headcount" in (tmp_path / "x" / "summary.md").read_text()


# --- compare --------------------------------------------------------------------------------


def test_compare_two_plans(files, tmp_path):
    plan = pd.read_csv(files / "plan.csv", dtype=str)
    renamed = plan.assign(territory=plan["territory"].map(lambda t: f"Z{t}"))
    moved = renamed.copy()
    moved.loc[moved.index[:5], "territory"] = moved["territory"].iloc[-1]
    moved.to_csv(tmp_path / "b.csv", index=False)
    r = run_cli("compare", files / "plan.csv", tmp_path / "b.csv", "--units",
                files / "units.parquet", "--no-tiles", "--out", tmp_path / "cmp")  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    table = pd.read_csv(tmp_path / "cmp" / "compare.csv").set_index("metric")
    for row in ("max deviation population (%)", "mean Polsby-Popper", "cut-edge fraction",
                "travel (km)", "units changed (%)", "population changed (%)"):  # fmt: skip
        assert row in table.index
    # labels differ: matched by overlap, so only the 5 reassigned units count as changed
    changed = (plan["territory"].iloc[:5] != plan["territory"].iloc[-1]).sum()
    assert table.loc["units changed (%)"].iloc[1] == pytest.approx(100 * changed / len(plan))
    md = (tmp_path / "cmp" / "compare.md").read_text()
    assert "matched" in md and "| travel (km) |" in md
    page = (tmp_path / "cmp" / "compare.html").read_text()
    assert '"compare":{"names":["plan","b"]' in page  # the page's data; shown by its script
    assert "<script src=" not in page


# --- run: the config file -------------------------------------------------------------------


def test_run_with_reps_quota_capacity_then_realign(tmp_path, ri_accounts_csv):
    reps = tmp_path / "reps.csv"
    pd.DataFrame({"rep_id": ["north", "south"], "zip": ["02904", "02882"],
                  "capacity": [400, 400]}).to_csv(reps, index=False)  # fmt: skip
    body = f"""
[accounts]
path = "{ri_accounts_csv.as_posix()}"
[scoring]
model = "rules"
[units]
kind = "zcta"
region = ["RI"]
[partition]
balance = "accounts"
reps = "reps.csv"
effort = 0
quota = 1000000
quota_cap = "120%"
[export]
capacity = 300
[map]
tiles = false
[output]
dir = "out"
"""
    (tmp_path / "plan.toml").write_text(body)
    r = run_cli("run", tmp_path / "plan.toml")
    assert r.returncode == 0, r.stderr[-2000:]
    out = tmp_path / "out"
    plan = pd.read_csv(out / "plan.csv", dtype=str)
    assert sorted(plan["territory"].unique()) == ["north", "south"]
    report = pd.read_csv(out / "plan.reps.csv")
    assert (report["mean_account_km"] > 0).all()
    s = pd.read_csv(out / "summary.csv")
    assert round(s["quota"].sum(), 2) == 1_000_000 and s["quota"].max() <= 600_000.01
    assert {"recommended_reps", "rep_id", "rep_capacity"} <= set(s.columns)
    # next year: realign the plan just made, with a move budget
    (tmp_path / "current.csv").write_bytes((out / "plan.csv").read_bytes())
    body2 = body.replace("quota = 1000000", 'current = "current.csv"\nmax_moved = 5\ntolerance = 2')
    body2 = body2.replace('quota_cap = "120%"\n', "")
    body2 = body2.replace('dir = "out"', 'dir = "out2"')
    (tmp_path / "plan2.toml").write_text(body2)
    result = run_plan(load_config(tmp_path / "plan2.toml"))
    assert result.plan.moved_share <= 0.05
    assert (tmp_path / "out2" / "plan.moves.csv").exists()
    moved = pd.read_csv(tmp_path / "out2" / "plan.moved_accounts.csv", dtype=str)
    moves = pd.read_csv(tmp_path / "out2" / "plan.moves.csv", dtype=str)
    assert set(moved["unit_id"]) <= set(moves["unit_id"])
    assert {"account_id", "from", "to"} <= set(moved.columns)


# --- bad input: one line naming the rows, exit 2 --------------------------------------------


def test_rep_outside_the_units_names_its_line(files, tmp_path):
    reps = pd.read_csv(files / "reps.csv")
    reps.loc[2, ["lat", "lon"]] = [34.05, -118.25]  # Los Angeles: not in RI/DE/DC
    reps.to_csv(tmp_path / "reps.csv", index=False)
    msg = _cli_error(run_cli("partition", files / "units.parquet", "--id", "unit_id",
                             "--balance", "population", "--reps", tmp_path / "reps.csv",
                             "--out", tmp_path / "p.csv"))  # fmt: skip
    assert "line 4 (rep 'cy')" in msg and "outside the units' area" in msg


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda p: p.iloc[3:], "have no territory"),
        (
            lambda p: pd.concat([p, pd.DataFrame({"unit_id": ["99999"], "territory": ["T01"]})]),
            "line 200 ('99999')",
        ),
    ],
    ids=["misses-units", "unknown-unit"],
)
def test_bad_current_plan(files, tmp_path, make, expected):
    make(pd.read_csv(files / "plan.csv", dtype=str)).to_csv(tmp_path / "cur.csv", index=False)
    msg = _cli_error(run_cli("partition", files / "grown.parquet", "--id", "unit_id",
                             "--balance", "population", "--current", tmp_path / "cur.csv",
                             "--out", tmp_path / "p.csv"))  # fmt: skip
    assert "cur.csv" in msg and expected in msg


def test_locked_unknown_unit_names_line(files, tmp_path):
    pd.DataFrame({"unit_id": ["02903", "00000"], "territory": ["T01", "T02"]}).to_csv(
        tmp_path / "locked.csv", index=False
    )
    msg = _cli_error(run_cli("partition", files / "units.parquet", "--id", "unit_id",
                             "--balance", "population", "--territories", "4", "--locked",
                             tmp_path / "locked.csv", "--out", tmp_path / "p.csv"))  # fmt: skip
    assert "locked.csv" in msg and "line 3 ('00000')" in msg


def test_conflicting_locks_name_lines(files, tmp_path, small, small_adj):
    # a ring of units locked to B around one unit locked to A, plus another A unit outside
    inner = "02903"
    ring = small_adj.neighbors(int(np.flatnonzero(small_adj.ids == inner)[0]))
    rows = [(inner, "A"), ("19901", "A")] + [(small_adj.ids[i], "B") for i in ring]
    pd.DataFrame(rows, columns=["unit_id", "territory"]).to_csv(tmp_path / "locked.csv",
                                                                index=False)  # fmt: skip
    msg = _cli_error(run_cli("partition", files / "units.parquet", "--id", "unit_id",
                             "--balance", "population", "--territories", "4", "--locked",
                             tmp_path / "locked.csv", "--out", tmp_path / "p.csv"))  # fmt: skip
    assert "locked.csv: lines 2, 3" in msg and "'A'" in msg and "cannot" in msg


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--territories", "5"], "territories: 5 asked but"),
        (["--max-moved", "10"], "--max-moved needs --current"),
    ],
)
def test_inconsistent_options(files, tmp_path, extra, expected):
    msg = _cli_error(run_cli("partition", files / "units.parquet", "--id", "unit_id",
                             "--balance", "population", "--reps", files / "reps.csv", *extra,
                             "--out", tmp_path / "p.csv"))  # fmt: skip
    assert expected in msg


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("[partition]\nmax-moved = 10\n", "[partition] unknown key 'max-moved'"),
        ("[partition]\nmax_moved = 10\n", "[partition] max_moved needs current"),
        ("[partition]\nrelax = 'both'\n", "relax: expected one of tolerance, budget, got 'both'"),
        ("[export]\ncapacity = true\n", "[export] capacity: expected a number"),
    ],
)
def test_whatif_config_errors(tmp_path, body, expected):
    path = tmp_path / "plan.toml"
    path.write_text("[accounts]\npath = 'a.csv'\n" + body)
    with pytest.raises(InputError) as err:
        load_config(path)
    assert expected in str(err.value)
