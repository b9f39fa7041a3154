"""The territory engine on real Census geography: balance, contiguity, bridges, errors."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from patchmap import geodata, metrics
from patchmap.errors import InputError
from patchmap.partition import BalanceTolerance, Contiguity, Partitioner, Plan
from patchmap.partition.tabu import induced
from patchmap.units import build_adjacency


@pytest.fixture(scope="module")
def small() -> gpd.GeoDataFrame:
    """Rhode Island, Delaware and DC ZCTAs (198 units, three separate pieces plus islands)."""
    return geodata.zcta_polygons(["RI", "DE", "DC"]).rename(columns={"zcta": "unit_id"})


@pytest.fixture(scope="module")
def small_adj(small):
    return build_adjacency(small, id_col="unit_id")


@pytest.fixture(scope="module")
def small_plan(small, small_adj) -> Plan:
    return Partitioner(4, "population", seed=1, effort=0).fit(small, adjacency=small_adj)


@pytest.fixture(scope="module")
def ca_plan(ca) -> Plan:
    """The California plan, with a fifth of the default search (its cut-edge fraction is
    0.092 at that effort, 0.090 at the default and 0.098 with no anytime search)."""
    return Partitioner(20, "population", seed=0, effort=0.2).fit(ca)


def squares(nx: int, ny: int, x0: float = 0.0, prefix: str = "u") -> gpd.GeoDataFrame:
    cells = [(c, r) for c in range(nx) for r in range(ny)]
    geoms = [
        shapely.box(x0 + c * 0.01, r * 0.01, x0 + (c + 1) * 0.01, (r + 1) * 0.01) for c, r in cells
    ]
    return gpd.GeoDataFrame(
        {"unit_id": [f"{prefix}{c}_{r}" for c, r in cells], "w": 1.0, "v": 2.0},
        geometry=geoms,
        crs=4326,
    )


# --- the plan ------------------------------------------------------------------------------


def test_every_unit_once_and_labels(small, small_plan):
    frame = small_plan.to_frame()
    assert list(frame.columns) == ["unit_id", "territory"]
    assert len(frame) == len(small)
    assert frame["unit_id"].is_unique
    assert set(frame["unit_id"]) == set(small["unit_id"])
    assert sorted(frame["territory"].unique()) == ["T01", "T02", "T03", "T04"]
    assert small_plan.labels == ["T01", "T02", "T03", "T04"]


def test_contiguous_and_balanced(small, small_plan):
    assert small_plan.contiguous
    assert small_plan.territories["contiguous"].all()
    # recompute independently of the plan's own numbers
    adj = small_plan.adjacency
    assert metrics.is_contiguous(adj, small_plan.assignment.to_numpy()).all()
    totals = small.groupby(small_plan.assignment.reindex(small["unit_id"]).to_numpy())[
        "population"
    ].sum()
    dev = np.abs(totals / totals.mean() - 1)
    assert dev.max() == pytest.approx(small_plan.max_deviation)
    assert small_plan.max_deviation <= 0.005
    assert small_plan.constraints == {"balance:population<=0.50%": True, "contiguity": True}


def test_territory_table(small_plan):
    t = small_plan.territories
    for col in [
        "territory",
        "units",
        "population",
        "population_deviation",
        "polsby_popper",
        "contiguous",
    ]:
        assert col in t.columns
    assert t["units"].sum() == len(small_plan.assignment)
    assert t["population_deviation"].sum() == pytest.approx(0, abs=1e-9)
    assert ((t["polsby_popper"] > 0) & (t["polsby_popper"] <= 1)).all()
    assert 0 < small_plan.mean_polsby_popper <= 1
    assert 0 < small_plan.cut_edge_fraction < 0.5
    s = small_plan.summary()
    assert s["territories"] == 4 and s["non_contiguous_territories"] == 0
    assert s["bridges"] == len(small_plan.bridges) >= 2


def test_separate_states_are_bridged_and_reported(small_plan):
    # RI, DE and DC do not touch: the plan names the bridge edges it relied on
    b = small_plan.bridges
    assert list(b.columns) == ["unit_a", "unit_b", "distance_km", "tree"]
    assert int(b["tree"].sum()) == small_plan.adjacency.n_components_before - 1 >= 2
    assert any("bridge" in n for n in small_plan.notes)
    # Delaware (19703) is about as near to mainland Rhode Island as to Block Island: both
    more = len(b) - int(b["tree"].sum())
    assert more >= 1 and any(f"and {more} more between pieces" in n for n in small_plan.notes)


def test_deterministic_for_a_seed(small, small_adj, small_plan):
    again = Partitioner(4, "population", seed=1, effort=0).fit(small, adjacency=small_adj)
    pd.testing.assert_series_equal(again.assignment, small_plan.assignment)


def test_to_csv_is_the_plan_contract(tmp_path, small_plan):
    path = small_plan.to_csv(tmp_path / "plan.csv")
    text = path.read_text().splitlines()
    assert text[0] == "unit_id,territory"
    assert len(text) == len(small_plan.assignment) + 1
    back = pd.read_csv(path, dtype=str)
    assert back["unit_id"].tolist() == small_plan.assignment.index.tolist()
    assert not list(tmp_path.glob(".plan.csv*"))  # no temporary left behind


def test_california_end_to_end(ca, ca_plan):
    # 1,769 ZCTAs, 20 territories: tight balance, all contiguous, Channel Islands bridged
    assert len(ca_plan.assignment) == len(ca)
    assert ca_plan.contiguous
    assert ca_plan.max_deviation <= 0.005
    assert ca_plan.cut_edge_fraction <= 0.152  # 1.2x METIS's 0.127 on this instance
    bridged = set(ca_plan.bridges["unit_a"]) | set(ca_plan.bridges["unit_b"])
    assert "90704" in bridged  # Avalon, Santa Catalina Island


def test_several_balance_columns(ca):
    # a second measure that follows population loosely, like an account count does
    rng = np.random.default_rng(0)
    units = ca.assign(accounts=rng.poisson(ca["population"].to_numpy() / 500.0))
    plan = Partitioner(8, ["population", "accounts"], seed=2, effort=0).fit(units)
    assert plan.contiguous
    assert plan.max_deviation <= 0.005
    assert plan.max_deviations["accounts"] <= 0.05
    assert {"population_deviation", "accounts_deviation"} <= set(plan.territories.columns)
    assert plan.constraints["balance:accounts<=5.00%"]


def test_disconnected_synthetic_input_still_contiguous():
    # two 6x6 grids 1 degree apart: the bridge between them is the only link
    units = pd.concat([squares(6, 6), squares(6, 6, x0=1.0, prefix="e")], ignore_index=True)
    units = gpd.GeoDataFrame(units, geometry="geometry", crs=4326)
    plan = Partitioner(3, "w", seed=0, effort=0).fit(units)
    assert plan.contiguous
    assert len(plan.bridges) == 1
    assert plan.adjacency.n_components_before == 2
    assert plan.max_deviation <= 1 / 24 + 1e-9  # 24 units per territory: one unit is 4.2%


def test_unit_larger_than_target_is_named():
    units = squares(4, 4)
    units.loc[5, "w"] = 40.0  # more than a quarter of the total of 55
    plan = Partitioner(4, "w", seed=0, effort=0).fit(units)
    assert plan.contiguous
    assert any("u1_1" in n and "alone" in n for n in plan.notes)


def test_locked_units_stay_put(small, small_adj):
    locked = {"02903": "T02", "19901": "T01"}
    plan = Partitioner(4, "population", seed=3, effort=0).fit(
        small, adjacency=small_adj, locked=locked
    )
    assert plan.assignment["02903"] == "T02"
    assert plan.assignment["19901"] == "T01"
    assert plan.contiguous


def test_warm_start_from_initial_plan(small, small_adj, small_plan):
    plan = Partitioner(4, "population", seed=5, effort=0).fit(
        small, adjacency=small_adj, initial=small_plan.assignment
    )
    moved = metrics.disruption(
        small_plan.assignment, plan.assignment, small["population"].to_numpy()
    )
    assert moved < 0.2
    assert plan.contiguous


# --- metrics -------------------------------------------------------------------------------


def test_metric_functions():
    assert metrics.deviation([90, 110]) == pytest.approx([-0.1, 0.1])
    grid = squares(2, 1)
    adj = build_adjacency(grid, id_col="unit_id")
    assert metrics.cut_edge_fraction(adj, ["a", "b"]) == 1.0
    assert metrics.cut_edge_fraction(adj, ["a", "a"]) == 0.0
    pp = metrics.polsby_popper(gpd.GeoSeries([shapely.box(0, 0, 0.01, 0.01)], crs=4326))
    assert pp[0] == pytest.approx(np.pi / 4, rel=1e-3)
    assert metrics.disruption(["a", "b", "c"], ["a", "b", "b"], [1, 1, 2]) == 0.5
    line = squares(3, 1)
    adj3 = build_adjacency(line, id_col="unit_id")
    cont = metrics.is_contiguous(adj3, ["a", "b", "a"])
    assert cont.to_dict() == {"a": False, "b": True}
    tm = metrics.territory_metrics(line, ["a", "a", "b"], ["w"], adj3)
    assert tm["w"].tolist() == [2.0, 1.0]
    assert tm["contiguous"].all()
    # dissolving (no adjacency) and the coverage shortcut agree on compactness
    tm2 = metrics.territory_metrics(line, ["a", "a", "b"], "w")
    assert tm2["polsby_popper"].to_numpy() == pytest.approx(
        tm["polsby_popper"].to_numpy(), rel=1e-6
    )


def test_constraint_objects(small_plan):
    assert BalanceTolerance("population", 0.005).check(small_plan)
    assert not BalanceTolerance("population", 1e-9).check(small_plan)
    assert Contiguity().check(small_plan)


# --- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_territories": 1}, "n_territories must be >= 2"),
        ({"n_territories": 2.5}, "n_territories must be an integer"),
        ({"balance": []}, "balance must be a column name"),
        ({"tolerance": 5}, "tolerance must be a fraction"),
        ({"compactness": -1}, "compactness must be"),
        ({"labels": "T{:d}{:d}"}, "labels must be a format string"),
    ],
)
def test_bad_parameters(kwargs, message):
    # scikit-learn's contract: the constructor stores, fit validates
    args = {"n_territories": 3, "balance": "w", **kwargs}
    part = Partitioner(args.pop("n_territories"), args.pop("balance"), **args)
    with pytest.raises(InputError, match=message):
        part.fit(squares(6, 6))


def test_estimator_contract():
    from sklearn.base import clone

    part = Partitioner(4, ["w", "v"], tolerance=0.03, seed=5, effort=0)
    params = part.get_params()
    assert params["n_territories"] == 4 and params["balance"] == ["w", "v"]
    assert params["tolerance"] == 0.03 and params["seed"] == 5 and params["effort"] == 0
    copy = clone(part).set_params(n_territories=3, labels="Z{:d}")
    assert copy.get_params()["n_territories"] == 3 and part.n_territories == 4
    plan = copy.fit(squares(6, 6))
    assert plan.labels == ["Z1", "Z2", "Z3"] and plan.contiguous
    assert "n_territories=3" in repr(copy)


@pytest.mark.parametrize(
    ("mutate", "k", "message"),
    [
        (lambda u: u, 40, "40 territories asked for but only 36 units to share"),
        (lambda u: u.assign(w="x"), 3, "balance column 'w' is not numeric"),
        (
            lambda u: u.assign(w=np.where(u.index == 3, -1.0, 1.0)),
            3,
            "balance column 'w' has negative",
        ),
        (
            lambda u: u.assign(w=np.where(u.index == 3, np.nan, 1.0)),
            3,
            "balance column 'w' has 1 missing",
        ),
        (lambda u: u.drop(columns="w"), 3, "balance column 'w' not found"),
        (lambda u: u.assign(unit_id="same"), 3, "duplicate id 'same'"),
        (lambda u: u.iloc[:0], 3, "no units"),
        (lambda u: u.assign(w=0.0), 3, "balance column 'w' sums to zero"),
    ],
)
def test_bad_units(mutate, k, message):
    units = mutate(squares(6, 6))
    with pytest.raises(InputError, match=message) as err:
        Partitioner(k, "w").fit(units)
    assert "\n" not in str(err.value)


def test_induced_pairs_are_scipys_submatrix(small_adj):
    """The search's induced subgraph (partition.tabu.induced) holds the entries of scipy's
    ``A[idx][:, idx]``: as a set when ``idx`` repeats units, in scipy's order when not
    (the ReCom kick draws one random weight per edge in that order)."""
    A = small_adj.matrix.copy()
    rng = np.random.default_rng(0)
    A.data = rng.integers(1, 5, A.nnz).astype(float)  # weighted, as a coarse graph's
    n = A.shape[0]
    for trial in range(200):
        m = int(rng.integers(0, 60))
        repeats = trial % 2 == 1
        idx = rng.integers(0, n, m) if repeats else rng.choice(n, m, replace=False)
        want = A[idx][:, idx].tocoo()
        row, col, data = induced(A, idx)
        got = list(zip(row.tolist(), col.tolist(), data.tolist(), strict=True))
        ref = list(zip(want.row.tolist(), want.col.tolist(), want.data.tolist(), strict=True))
        if repeats:
            got, ref = sorted(got), sorted(ref)
        assert got == ref, trial
