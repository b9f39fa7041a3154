"""`partition --adjacency EDGES.csv` and `--target PCT`: a given graph replaces the polygons'.

The graph used here is a chain of New Mexico's counties ordered west to east: on a path,
the contiguous territories are exactly the runs of consecutive counties, which a plan
built on the polygon graph would almost never produce. Plans that check what the given
graph allows are searched with effort 0 (restarts only); the anytime search's own tests
keep a small effort.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import run_cli
from patchmap import geodata
from patchmap.config import load_config
from patchmap.notes import with_code
from patchmap.partition import Partitioner
from patchmap.units.adjacency import edge_adjacency, read_edges


@pytest.fixture(scope="module")
def nm(tmp_path_factory) -> tuple[Path, list[str]]:
    """NM counties as a unit file, and their ids in west-to-east order."""
    d = tmp_path_factory.mktemp("nm")
    units = geodata.counties(["NM"]).rename(columns={"county": "unit_id"})
    units.to_parquet(d / "nm.parquet")
    x = units.geometry.representative_point().x.to_numpy()
    return d / "nm.parquet", units["unit_id"].to_numpy()[np.argsort(x)].tolist()


def _chain(path: Path, order: list[str], extra: list[tuple[str, str]] = ()) -> Path:
    rows = list(zip(order[:-1], order[1:], strict=True)) + list(extra)
    pd.DataFrame(rows, columns=["unit_a", "unit_b"]).to_csv(path, index=False)
    return path


def _runs(plan: pd.DataFrame, order: list[str]) -> int:
    """Number of runs of equal territory along the chain (K when each is one interval)."""
    t = plan.set_index("unit_id").loc[order, "territory"].to_numpy()
    return int(1 + (t[1:] != t[:-1]).sum())


def test_cli_plans_on_the_given_graph(tmp_path, nm):
    units, order = nm
    # a self-edge and an edge repeated the other way round are noted, not fatal
    edges = _chain(tmp_path / "edges.csv", order, [(order[3], order[3]), (order[1], order[0])])
    r = run_cli(
        "partition", units, "--out", tmp_path / "plan.csv", "--territories", "3",
        "--balance", "population", "--adjacency", edges, "--target", "15", "--effort", "0",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    plan = pd.read_csv(tmp_path / "plan.csv", dtype=str)
    assert _runs(plan, order) == 3  # every territory a run of the chain: 2 cut edges
    pop = geodata.counties(["NM"]).set_index("county")["population"]
    tot = pop.groupby(plan.set_index("unit_id")["territory"]).sum()
    # the best any three runs can do is 14.2% (Bernalillo alone is a third of the state)
    assert (tot / tot.mean() - 1).abs().max() <= 0.15 + 1e-9
    assert "line 34: a unit paired with itself" in r.stderr  # 32 chain edges, then
    assert "itself" in r.stderr
    assert "line 35 repeat" in r.stderr and "counted once" in r.stderr


def test_plan_file_keys(tmp_path, nm):
    units, order = nm
    _chain(tmp_path / "edges.csv", order)
    (tmp_path / "a.csv").write_text("account_id,zip\n1,87101\n")
    (tmp_path / "plan.toml").write_text(
        f'[accounts]\npath = "a.csv"\n[units]\nkind = "{units.as_posix()}"\nunit_id = "unit_id"\n'
        '[partition]\nterritories = 3\nbalance = "population"\n'
        'adjacency = "edges.csv"\ntarget = 2\neffort = 2\ntime_limit = 30\n'
    )
    cfg = load_config(tmp_path / "plan.toml")
    assert Path(cfg.partition["adjacency"]) == tmp_path / "edges.csv"
    assert cfg.partition["target"] == pytest.approx(0.02)
    assert cfg.partition["effort"] == 2 and cfg.partition["time_limit"] == 30


def test_library_takes_an_edge_list(nm):
    units_path, order = nm
    import geopandas as gpd

    units = gpd.read_parquet(units_path)
    edges = pd.DataFrame({"unit_a": order[:-1], "unit_b": order[1:]})
    plan = Partitioner(2, "population", target=0.25, seed=0, effort=0).fit(units, adjacency=edges)
    assert _runs(plan.to_frame().reset_index(), order) == 2
    assert plan.contiguous


def test_a_graph_in_pieces_is_bridged_by_the_shapes(nm):
    units_path, order = nm
    import geopandas as gpd

    units = gpd.read_parquet(units_path)
    # two chains: the west half and the east half, not joined
    half = len(order) // 2
    rows = list(zip(order[: half - 1], order[1:half], strict=True))
    rows += list(zip(order[half:-1], order[half + 1 :], strict=True))
    adj = edge_adjacency(units, pd.DataFrame(rows, columns=["unit_a", "unit_b"]), id_col="unit_id")
    assert adj.n_components_before == 2 and len(adj.bridges) == 1
    assert adj.n_edges == len(rows) + 1
    assert adj.shared_km is not None and adj.shared_km.nnz > 2 * len(rows)  # real shapes kept


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("unit_a,unit_b\n35001,35043\n35001,99999\n", "unit_b not among the units on line 3"),
        ("a,b\n35001,35043\n", "column 'unit_a' not found"),
        ("unit_a,unit_b\n35001,35043\n,35001\n", "line 3: empty unit_a or unit_b"),
    ],
)
def test_bad_edge_files_exit_2_naming_the_line(tmp_path, nm, text, expected):
    units, _ = nm
    edges = tmp_path / "edges.csv"
    edges.write_text(text)
    r = run_cli(
        "partition", units, "--out", tmp_path / "plan.csv", "--territories", "3",
        "--balance", "population", "--adjacency", edges,
    )  # fmt: skip
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and str(edges) in lines[0] and expected in lines[0], r.stderr
    assert not (tmp_path / "plan.csv").exists()


def test_bad_target_exits_2_naming_the_flag(tmp_path, nm):
    units, _ = nm
    r = run_cli(
        "partition", units, "--out", tmp_path / "plan.csv", "--territories", "3",
        "--balance", "population", "--target", "0",
    )  # fmt: skip
    assert r.returncode == 2 and "--target" in r.stderr and "Traceback" not in r.stderr


def test_read_edges_without_geometry_in_pieces_is_an_error():
    from patchmap.errors import InputError

    units = pd.DataFrame({"unit_id": ["a", "b", "c"], "w": [1, 1, 1]})
    i, j, notes = read_edges(
        pd.DataFrame({"unit_a": ["a", "b"], "unit_b": ["b", "a"]}), ["a", "b", "c"]
    )
    assert i.tolist() == [0] and j.tolist() == [1]
    (note,) = with_code(notes, "repeated_edge")
    assert "counted once" in note and note.data["lines"] == [1]  # the second row
    with pytest.raises(InputError, match="falls apart into 2 pieces"):
        edge_adjacency(units, pd.DataFrame({"unit_a": ["a"], "unit_b": ["b"]}), id_col="unit_id")


def test_anytime_search_is_deterministic_and_reports_its_best(tmp_path, nm):
    """Same seed and effort, same plan; the closing note states the written plan's cut."""
    units, _ = nm
    plans = []
    for name in ("a.csv", "b.csv"):
        r = run_cli(
            "partition", units, "--out", tmp_path / name, "--territories", "3",
            "--balance", "population", "--effort", "0.1", "--time-limit", "600",
        )  # fmt: skip
        assert r.returncode == 0, r.stderr[-2000:]
        plans.append(pd.read_csv(tmp_path / name, dtype=str))
        note = next(x for x in r.stderr.splitlines() if x.startswith("note: search: best"))
        import re

        cut, dev = re.search(r"best (\d+) cut edges, max deviation ([\d.]+)%", note).groups()
        plan = Partitioner(3, "population").evaluate(
            gpd_read(units), plans[-1].set_index("unit_id")["territory"]
        )
        assert int(cut) == round(plan.cut_edge_fraction * plan.adjacency.n_edges)
        assert float(dev) == pytest.approx(100 * plan.max_deviation, abs=0.006)
    assert plans[0].equals(plans[1])


def gpd_read(path):
    import geopandas as gpd

    return gpd.read_parquet(path)


@pytest.mark.parametrize(("flag", "value"), [("--time-limit", "0"), ("--effort", "-1")])
def test_bad_budget_exits_2_naming_the_flag(tmp_path, nm, flag, value):
    units, _ = nm
    r = run_cli(
        "partition", units, "--out", tmp_path / "plan.csv", "--territories", "3",
        "--balance", "population", flag, value,
    )  # fmt: skip
    assert r.returncode == 2 and flag in r.stderr and "Traceback" not in r.stderr


def test_default_cap_is_cpu_time_so_a_busy_machine_gives_the_same_plan(nm, monkeypatch):
    """With no time limit the search stops at its step budget, capped in the process's
    CPU time: a machine so busy that wall-clock time races ahead (here: an hour per
    reading) gives the plan an idle one gives."""
    import time

    import geopandas as gpd

    units = gpd.read_parquet(nm[0])
    idle = Partitioner(3, "population", seed=0, effort=0.1).fit(units)  # 16 cut edges, 20 at 0
    wall = time.perf_counter
    ticks = iter(range(1, 10**9))
    monkeypatch.setattr(time, "perf_counter", lambda: wall() + 3600.0 * next(ticks))
    busy = Partitioner(3, "population", seed=0, effort=0.1).fit(units)
    pd.testing.assert_series_equal(busy.assignment, idle.assignment)


def test_within_groups_keep_the_given_graph(tmp_path, nm):
    """A --within group that falls apart in the given graph keeps the user's edges (plus
    bridges between its pieces): its territories are runs of the chain, as on the whole
    map, not blobs of the polygons' graph."""
    import geopandas as gpd

    units_path, order = nm
    units = gpd.read_parquet(units_path)
    # group A: the west half of the chain and the easternmost county (two pieces in the chain)
    a = set(order[:16]) | {order[-1]}
    units["g"] = np.where(units["unit_id"].isin(a), "A", "B")
    units.to_parquet(tmp_path / "units.parquet")
    edges = _chain(tmp_path / "edges.csv", order)
    r = run_cli(
        "partition", tmp_path / "units.parquet", "--out", tmp_path / "plan.csv",
        "--territories", "4", "--balance", "population", "--adjacency", edges,
        "--within", "g", "--target", "30", "--tolerance", "30", "--effort", "0",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    plan = pd.read_csv(tmp_path / "plan.csv", dtype=str)
    t = plan.set_index("unit_id")["territory"]
    west, middle = order[:16], order[16:-1]
    for part in (west, middle):
        assert _runs(plan, part) == t.loc[part].nunique(), t.loc[part].tolist()
    assert t.loc[west].nunique() >= 2  # the west piece is really split (else nothing is shown)


def test_evaluate_measures_on_the_given_graph(tmp_path, nm):
    """`evaluate --adjacency`: contiguity and cut edges on the user's graph, as partition
    --adjacency drew them; the library takes the same edge list."""
    import geopandas as gpd

    units, order = nm
    edges = _chain(tmp_path / "edges.csv", order)
    # a plan of runs on the chain: one piece each on the chain, two cut edges of 32
    t = np.repeat(["T1", "T2", "T3"], [11, 11, len(order) - 22])
    pd.DataFrame({"unit_id": order, "territory": t}).to_csv(tmp_path / "runs.csv", index=False)
    # the chain's odd and even counties: neither is one piece on the chain
    alt = np.where(np.arange(len(order)) % 2 == 0, "T1", "T2")
    pd.DataFrame({"unit_id": order, "territory": alt}).to_csv(tmp_path / "alt.csv", index=False)
    r = run_cli("evaluate", units, tmp_path / "runs.csv", "--balance", "population",
                "--adjacency", edges)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert "every territory one piece; cut-edge fraction 0.062" in r.stdout  # 2 of 32 edges
    r = run_cli("evaluate", units, tmp_path / "alt.csv", "--balance", "population",
                "--adjacency", edges)  # fmt: skip
    assert (
        r.returncode == 0 and "NOT every territory one piece; cut-edge fraction 1.000" in r.stdout
    )
    r = run_cli("evaluate", units, tmp_path / "runs.csv", "--balance", "population")
    assert "cut-edge fraction 0.062" not in r.stdout  # the polygons' graph differs
    plan = Partitioner(3, "population").evaluate(
        gpd.read_parquet(units), pd.Series(t, index=order), adjacency=edges
    )
    assert plan.contiguous and plan.cut_edge_fraction == pytest.approx(2 / 32)
    (tmp_path / "bad.csv").write_text("unit_a,unit_b\n35001,99999\n")
    r = run_cli("evaluate", units, tmp_path / "runs.csv", "--balance", "population",
                "--adjacency", tmp_path / "bad.csv")  # fmt: skip
    assert r.returncode == 2 and "bad.csv: unit_b not among the units on line 2" in r.stderr
    assert "Traceback" not in r.stderr
