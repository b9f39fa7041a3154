"""Rook adjacency on real Census polygons, H3 cells and synthetic grids; island bridges."""

from __future__ import annotations

import geopandas as gpd
import h3
import numpy as np
import pytest
import shapely
from scipy.sparse.csgraph import connected_components

from patchmap import geodata
from patchmap.errors import InputError
from patchmap.units import Adjacency, build_adjacency, h3_adjacency


def squares(cells: list[tuple[int, int]], size: float = 0.01, **cols) -> gpd.GeoDataFrame:
    """Unit squares on a lon/lat grid near (0, 0) (one per (col, row) cell)."""
    geoms = [shapely.box(c * size, r * size, (c + 1) * size, (r + 1) * size) for c, r in cells]
    data = {"unit_id": [f"u{c}_{r}" for c, r in cells], **cols}
    return gpd.GeoDataFrame(data, geometry=geoms, crs=4326)


@pytest.fixture(scope="module")
def small() -> gpd.GeoDataFrame:
    return geodata.zcta_polygons(["RI", "DE", "DC"])


@pytest.fixture(scope="module")
def small_adj(small) -> Adjacency:
    return build_adjacency(small, id_col="zcta")


def test_graph_is_symmetric_binary_and_connected(small, small_adj):
    m = small_adj.matrix
    assert m.shape == (len(small), len(small))
    assert (m != m.T).nnz == 0
    assert set(np.unique(m.data)) == {1.0}
    assert m.diagonal().sum() == 0
    assert connected_components(m, directed=False)[0] == 1
    assert list(small_adj.ids) == small["zcta"].tolist()
    i, j = small_adj.edges()
    assert (i < j).all() and len(i) == small_adj.n_edges


def test_states_apart_are_bridged_and_reported(small_adj):
    # RI, DE and DC do not touch each other: at least two bridges join them
    assert small_adj.n_components_before >= 3
    b = small_adj.bridges
    assert list(b.columns) == ["unit_a", "unit_b", "distance_km", "tree"]
    # a shortest tree joins the pieces; links besides it come after it
    assert int(b["tree"].sum()) == small_adj.n_components_before - 1
    assert b["tree"].is_monotonic_decreasing
    assert (b["distance_km"] >= 0).all()
    ids = set(small_adj.ids)
    assert set(b["unit_a"]) <= ids and set(b["unit_b"]) <= ids
    # the long bridges between states are tens of km or more
    assert b["distance_km"].max() > 50


def test_adjacency_matches_real_neighbours(small, small_adj):
    # Providence 02903 and 02906 share a street boundary; Newport 02840 does not touch 02903
    nbrs = {small_adj.ids[j] for j in small_adj.neighbors(list(small_adj.ids).index("02903"))}
    assert "02906" in nbrs
    assert "02840" not in nbrs


def test_rook_not_queen():
    # a 2x2 block: diagonal squares share only a corner point
    gdf = squares([(0, 0), (1, 0), (0, 1), (1, 1)])
    adj = build_adjacency(gdf, id_col="unit_id")
    ids = list(adj.ids)
    m = adj.matrix
    assert m[ids.index("u0_0"), ids.index("u1_1")] == 0
    assert m[ids.index("u0_0"), ids.index("u1_0")] == 1
    assert adj.n_edges == 4
    assert adj.bridges.empty and adj.n_components_before == 1
    # shared boundary length of a 0.01 degree square side near the equator is ~1.1 km
    assert adj.shared_km[ids.index("u0_0"), ids.index("u1_0")] == pytest.approx(1.11, rel=0.02)


def test_corner_only_contact_is_bridged_with_zero_distance():
    gdf = squares([(0, 0), (1, 1)])
    adj = build_adjacency(gdf, id_col="unit_id")
    assert adj.n_components_before == 2
    assert len(adj.bridges) == 1
    assert adj.bridges["distance_km"].iloc[0] == 0


def test_synthetic_islands_join_by_shortest_gap():
    mainland = [(c, r) for c in range(5) for r in range(5)]
    island_a = [(8, 2)]  # 3 cells east of the mainland
    island_b = [(8, 9), (9, 9)]  # a two-cell island far to the north-east
    gdf = squares(mainland + island_a + island_b)
    adj = build_adjacency(gdf, id_col="unit_id")
    assert adj.n_components_before == 3
    assert int(adj.bridges["tree"].sum()) == 2
    assert connected_components(adj.matrix, directed=False)[0] == 1
    first = adj.bridges.sort_values("distance_km").iloc[0]
    ends = {first["unit_a"], first["unit_b"]}
    assert "u8_2" in ends and (ends - {"u8_2"}).pop().startswith("u4_")  # the east coast
    assert first["distance_km"] == pytest.approx(3 * 1.11, rel=0.03)
    # the far island is about as near to the near one (6.6 km) as to the mainland (5.5
    # km, its tree link): it is linked to both
    far = adj.bridges[(adj.bridges["unit_a"] == "u8_9") | (adj.bridges["unit_b"] == "u8_9")]
    assert len(far) == 2 and len(adj.bridges) == 3


def test_channel_islands_are_bridged():
    ca = geodata.zcta_polygons(["CA"])
    adj = build_adjacency(ca, id_col="zcta")
    assert connected_components(adj.matrix, directed=False)[0] == 1
    bridged = set(adj.bridges["unit_a"]) | set(adj.bridges["unit_b"])
    assert "90704" in bridged  # Avalon, Santa Catalina Island
    catalina = adj.bridges[(adj.bridges["unit_a"] == "90704") | (adj.bridges["unit_b"] == "90704")]
    assert catalina["distance_km"].min() > 15  # the San Pedro Channel


def test_h3_fast_path_uses_hexagon_neighbours():
    center = h3.latlng_to_cell(38.5, -121.5, 7)
    cells = sorted(h3.grid_disk(center, 2))
    adj = h3_adjacency(cells)
    deg = np.asarray(adj.matrix.sum(axis=1)).ravel()
    assert deg[cells.index(center)] == 6
    assert adj.n_edges == (19 * 6 - 6 * 2 - 6 * 3) // 2 + 0  # 42 edges in a radius-2 disk
    # the same cells as polygons in a GeoDataFrame take the fast path and agree
    polys = [shapely.Polygon([(lon, lat) for lat, lon in h3.cell_to_boundary(c)]) for c in cells]
    gdf = gpd.GeoDataFrame({"unit_id": cells}, geometry=polys, crs=4326)
    adj2 = build_adjacency(gdf, id_col="unit_id")
    assert (adj2.matrix != adj.matrix).nnz == 0


def test_h3_clusters_far_apart_are_bridged():
    a = h3.grid_disk(h3.latlng_to_cell(38.5, -121.5, 7), 1)
    b = h3.grid_disk(h3.latlng_to_cell(38.9, -121.0, 7), 1)
    adj = h3_adjacency(sorted(a) + sorted(b))
    assert adj.n_components_before == 2
    assert len(adj.bridges) == 1
    assert 40 < adj.bridges["distance_km"].iloc[0] < 80


def test_polygon_adjacency_agrees_with_h3_on_hexagons():
    cells = sorted(h3.grid_disk(h3.latlng_to_cell(37.0, -120.0, 6), 3))
    polys = [shapely.Polygon([(lon, lat) for lat, lon in h3.cell_to_boundary(c)]) for c in cells]
    gdf = gpd.GeoDataFrame({"name": [f"c{i}" for i in range(len(cells))]}, geometry=polys, crs=4326)
    geo = build_adjacency(gdf, id_col="name")
    assert (geo.matrix != h3_adjacency(cells).matrix).nnz == 0


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (squares([(0, 0), (1, 0)]).assign(unit_id=["a", "a"]), "duplicate id 'a'"),
        (squares([(0, 0)]).iloc[:0], "no units"),
        (squares([(0, 0)]).drop(columns="unit_id"), "id column 'unit_id' not found"),
        (
            gpd.GeoDataFrame({"unit_id": ["p"]}, geometry=[shapely.Point(0, 0)], crs=4326),
            "not a polygon",
        ),
        (
            gpd.GeoDataFrame({"unit_id": ["e"]}, geometry=[shapely.Polygon()], crs=4326),
            "empty or missing geometry",
        ),
    ],
)
def test_bad_input_is_one_line_input_error(frame, message):
    with pytest.raises(InputError, match=message) as err:
        build_adjacency(frame, id_col="unit_id")
    assert "\n" not in str(err.value)


def test_bridges_are_geodesic_across_the_antimeridian():
    """Hawaii and Alaska (the Aleutians cross 180 degrees): bridge lengths are geodesic,
    measured independently with pyproj between the units' nearest points."""
    from pyproj import Geod

    c = geodata.counties(["HI", "AK"])
    adj = build_adjacency(c, id_col="county")
    b = adj.bridges.set_index(["unit_a", "unit_b"])["distance_km"]
    # Oahu (Honolulu) to Kauai: the Kaieie Waho channel, about 117 km
    assert b[("15003", "15007")] == pytest.approx(117, abs=5)
    # Hawaii joins Alaska across some 3,500 km of ocean, measured on the ellipsoid
    (a, z), far = max(b.items(), key=lambda kv: kv[1])
    assert {a[:2], z[:2]} == {"02", "15"}
    g = c.set_index("county").geometry
    p, q = shapely.get_coordinates(shapely.shortest_line(g[a], g[z]))
    _, _, d = Geod(ellps="WGS84").inv(p[0], p[1], q[0], q[1])
    assert 3000 < far < 4500
    # the nearest points in lon/lat differ a little from those in the projection
    assert far == pytest.approx(d / 1000, rel=0.05)


def test_many_islands_join_by_a_shortest_spanning_tree():
    """Forty scattered clusters of squares: the bridges form a shortest tree joining the
    clusters, checked against every pair of units measured directly."""
    from pyproj import Geod
    from scipy.sparse.csgraph import minimum_spanning_tree

    rng = np.random.default_rng(7)
    geoms, names = [], []
    for c in range(40):
        x0, y0 = rng.uniform(0, 2.0, size=2)
        for k in range(int(rng.integers(1, 4))):
            s = rng.uniform(0.005, 0.02)
            geoms.append(shapely.box(x0 + k * s, y0, x0 + (k + 1) * s, y0 + s))
            names.append(f"c{c}_{k}")
    gdf = gpd.GeoDataFrame({"unit_id": names}, geometry=geoms, crs=4326)
    adj = build_adjacency(gdf, id_col="unit_id")
    assert connected_components(adj.matrix, directed=False)[0] == 1
    ncomp = adj.n_components_before
    tree_links = adj.bridges[adj.bridges["tree"]]
    assert len(tree_links) == ncomp - 1
    assert len(adj.bridges) > ncomp - 1  # scattered clusters have more than one neighbour
    # the same tree from all pairs of units, gaps measured on the ellipsoid
    rook = adj.matrix.copy().tolil()
    ids = list(adj.ids)
    for a, b in zip(adj.bridges["unit_a"], adj.bridges["unit_b"], strict=True):
        rook[ids.index(a), ids.index(b)] = rook[ids.index(b), ids.index(a)] = 0
    _, comp = connected_components(rook.tocsr(), directed=False)
    n = len(geoms)
    gap = np.full((ncomp, ncomp), np.inf)
    ii, jj = np.triu_indices(n, k=1)
    ii, jj = ii[comp[ii] != comp[jj]], jj[comp[ii] != comp[jj]]
    pts = shapely.get_coordinates(
        shapely.shortest_line(np.asarray(geoms)[ii], np.asarray(geoms)[jj])
    ).reshape(-1, 4)
    _, _, d = Geod(ellps="WGS84").inv(pts[:, 0], pts[:, 1], pts[:, 2], pts[:, 3])
    np.minimum.at(gap, (comp[ii], comp[jj]), d / 1000)
    gap = np.minimum(gap, gap.T)
    # (a gap of 0, overlapping squares, is an edge: shifted off scipy's 'no edge')
    tree = minimum_spanning_tree(np.where(np.isinf(gap), 0, gap + 1e-6))
    assert tree.nnz == ncomp - 1
    assert tree_links["distance_km"].sum() == pytest.approx(tree.sum(), rel=1e-3)


def _scattered(seed: int, clusters: int = 60, sizes=(1, 4)) -> gpd.GeoDataFrame:
    """Clusters of ``sizes`` (numpy's integers range) squares scattered over two degrees."""
    rng = np.random.default_rng(seed)
    geoms, names = [], []
    for c in range(clusters):
        x0, y0 = rng.uniform(0, 2.0, size=2)
        for k in range(int(rng.integers(*sizes))):
            s = rng.uniform(0.005, 0.02)
            geoms.append(shapely.box(x0 + k * s, y0, x0 + (k + 1) * s, y0 + s))
            names.append(f"c{c}_{k}")
    return gpd.GeoDataFrame({"unit_id": names}, geometry=geoms, crs=4326)


def _pieces(adj: Adjacency) -> np.ndarray:
    """Each unit's piece (component of the graph without its bridges)."""
    rook = adj.matrix.copy().tolil()
    pos = {u: k for k, u in enumerate(adj.ids)}
    for a, b in zip(adj.bridges["unit_a"], adj.bridges["unit_b"], strict=True):
        rook[pos[a], pos[b]] = rook[pos[b], pos[a]] = 0
    return connected_components(rook.tocsr(), directed=False)[1]


def test_a_town_as_near_to_two_neighbours_is_linked_to_both():
    """Two blocks two squares apart, and a square two squares from each: the shortest
    tree takes two of the three equal gaps, the third is kept beside it; with
    ``bridge_factor=0`` the tree alone remains."""
    west = [(c, r) for c in range(3) for r in range(3)]
    east = [(c, r) for c in range(5, 8) for r in range(3)]
    town = [(3, 5)]  # two squares north of the gap's end
    gdf = squares(west + east + town)
    adj = build_adjacency(gdf, id_col="unit_id")
    b = adj.bridges
    assert adj.n_components_before == 3
    assert int(b["tree"].sum()) == 2 and len(b) == 3
    town_links = b[(b["unit_a"] == "u3_5") | (b["unit_b"] == "u3_5")]
    assert len(town_links) >= 2 or len(town_links) == 1 and not town_links["tree"].all()
    ends = set(b["unit_a"]) | set(b["unit_b"])
    assert any(e.startswith("u2_") for e in ends) and any(e.startswith("u5_") for e in ends)
    assert connected_components(adj.matrix, directed=False)[0] == 1
    # every gap is two squares (about 2.2 km): no link differs much from the others
    assert b["distance_km"].max() < 1.5 * b["distance_km"].min()
    alone = build_adjacency(gdf, id_col="unit_id", bridge_factor=0)
    assert len(alone.bridges) == 2 and alone.bridges["tree"].all()
    assert adj.n_edges == alone.n_edges + 1


def test_a_link_that_only_shortcuts_short_hops_is_left_out():
    """A mainland and two islands in a row, one square apart: the far island's own gap to
    the mainland (three squares) is three times the tree's longest hop between them
    (one square), more than the factor 1.5 allows; a factor of 3.5 keeps it."""
    mainland = [(c, r) for c in range(5) for r in range(5)]
    gdf = squares([*mainland, (6, 2), (8, 2)])
    adj = build_adjacency(gdf, id_col="unit_id")
    assert len(adj.bridges) == 2 and adj.bridges["tree"].all()
    wide = build_adjacency(gdf, id_col="unit_id", bridge_factor=3.5)
    assert len(wide.bridges) == 3
    extra = wide.bridges[~wide.bridges["tree"]].iloc[0]
    # the nearest pair the triangulation offers past the near island (3 to 3.2 squares)
    assert extra["unit_b"] == "u8_2" and extra["unit_a"].startswith("u4_")
    assert 3 * 1.1 < extra["distance_km"] < 3.2 * 1.12


@pytest.mark.parametrize("factor", [1.2, 1.5, 3.0])
def test_no_link_is_longer_than_the_factor_allows(factor):
    """Scattered clusters: every link besides the tree is at most ``factor`` times the
    longest tree link on the tree path between its pieces, the tree still spans them
    and the graph is connected."""
    import networkx as nx

    adj = build_adjacency(_scattered(11), id_col="unit_id", bridge_factor=factor)
    assert connected_components(adj.matrix, directed=False)[0] == 1
    comp = _pieces(adj)
    pos = {u: k for k, u in enumerate(adj.ids)}
    b = adj.bridges
    ca = comp[[pos[u] for u in b["unit_a"]]]
    cb = comp[[pos[u] for u in b["unit_b"]]]
    assert (ca != cb).all()
    # one link per pair of pieces
    assert len({(min(x, y), max(x, y)) for x, y in zip(ca, cb, strict=True)}) == len(b)
    tree = nx.Graph()
    tree.add_nodes_from(range(adj.n_components_before))
    for x, y, d, t in zip(ca, cb, b["distance_km"], b["tree"], strict=True):
        if t:
            tree.add_edge(int(x), int(y), d=float(d))
    assert nx.is_tree(tree)
    extra = b[~b["tree"]]
    assert len(extra) > 0
    for x, y, d in zip(ca[~b["tree"]], cb[~b["tree"]], extra["distance_km"], strict=True):
        path = nx.shortest_path(tree, int(x), int(y))
        hop = max(tree.edges[p, q]["d"] for p, q in zip(path, path[1:], strict=False))
        assert d <= factor * hop + 2e-3  # lengths are rounded to metres
        assert d >= hop - 2e-3  # a shortest tree: no link undercuts its path's longest hop


def test_bridges_do_not_depend_on_the_units_order():
    """The same units give the same bridges, in whatever order (one square per cluster:
    no two gaps tie)."""
    gdf = _scattered(5, sizes=(1, 2))
    adj = build_adjacency(gdf, id_col="unit_id")
    again = build_adjacency(gdf, id_col="unit_id")
    pd_b = adj.bridges
    assert pd_b.equals(again.bridges)
    shuffled = gdf.sample(frac=1.0, random_state=3).reset_index(drop=True)
    other = build_adjacency(shuffled, id_col="unit_id")

    def links(b):
        return {
            (min(a, z), max(a, z), round(d, 3), bool(t))
            for a, z, d, t in zip(
                b["unit_a"], b["unit_b"], b["distance_km"], b["tree"], strict=True
            )
        }

    assert links(other.bridges) == links(adj.bridges)


def _town(tmp_path):
    """test_a_town_as_near_to_two_neighbours_is_linked_to_both's map as a unit file:
    3 bridges by default, 2 (the tree) with bridge factor 0."""
    west = [(c, r) for c in range(3) for r in range(3)]
    east = [(c, r) for c in range(5, 8) for r in range(3)]
    path = tmp_path / "town.parquet"
    squares(west + east + [(3, 5)], population=1.0).to_parquet(path)
    return path


def test_cli_bridge_factor(tmp_path):
    from conftest import run_cli

    units = _town(tmp_path)
    base = ["partition", units, "--balance", "population", "--territories", "2", "--effort", "0"]
    for extra, bridges in (((), 3), (("--bridge-factor", "0"), 2), (("--bridge-factor", "9"), 3)):
        r = run_cli(*base, "--out", tmp_path / "p.csv", *extra)
        assert r.returncode == 0, r.stderr[-2000:]
        assert f"{bridges} bridge edge(s)" in r.stdout + r.stderr
    for bad in ("0.5", "-1", "nan", "wide"):
        r = run_cli(*base, "--out", tmp_path / "bad.csv", "--bridge-factor", bad)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and "bridge-factor" in lines[0], r.stderr
        assert not (tmp_path / "bad.csv").exists()


def test_cli_evaluate_measures_on_the_graph_of_the_bridge_factor(tmp_path):
    # a plan made with --bridge-factor 0 is measured on the same graph by evaluate
    from conftest import run_cli

    units = _town(tmp_path)
    plan = tmp_path / "p.csv"
    r = run_cli("partition", units, "--balance", "population", "--territories", "2",
                "--effort", "0", "--bridge-factor", "0", "--out", plan)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    for extra, bridges in (((), 3), (("--bridge-factor", "0"), 2)):
        r = run_cli("evaluate", units, plan, "--balance", "population", *extra)
        assert r.returncode == 0, r.stderr[-2000:]
        assert f"{bridges} bridge edge(s)" in r.stdout
    r = run_cli("evaluate", units, plan, "--balance", "population", "--bridge-factor", "0.5")
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "bridge-factor" in lines[0], r.stderr


def test_cli_bridge_factor_bridges_the_pieces_of_a_given_graph(tmp_path):
    # --adjacency with the blocks' own edges but nothing joining the three pieces: the
    # given graph is bridged by the shapes, with the factor given
    from conftest import run_cli

    units = _town(tmp_path)
    adj = build_adjacency(gpd.read_parquet(units), id_col="unit_id", bridge_factor=0)
    m = adj.matrix.tocoo()
    ids = np.asarray(adj.ids)
    bridged = set(zip(adj.bridges["unit_a"], adj.bridges["unit_b"], strict=True))
    pairs = [(a, b) for a, b in zip(ids[m.row], ids[m.col], strict=True) if a < b]
    rows = [f"{a},{b}\n" for a, b in pairs if (a, b) not in bridged and (b, a) not in bridged]
    assert len(rows) == adj.n_edges - 2
    edges = tmp_path / "edges.csv"
    edges.write_text("unit_a,unit_b\n" + "".join(rows))
    base = ["partition", units, "--balance", "population", "--territories", "2", "--effort", "0",
            "--adjacency", edges, "--out", tmp_path / "p.csv"]  # fmt: skip
    for extra, bridges in (((), 3), (("--bridge-factor", "0"), 2)):
        r = run_cli(*base, *extra)
        assert r.returncode == 0, r.stderr[-2000:]
        assert f"{bridges} bridge edge(s)" in r.stdout + r.stderr


def test_plan_file_and_library_bridge_factor(tmp_path):
    from patchmap.config import load_config
    from patchmap.pipeline import partition_file, plan_units

    units = _town(tmp_path)
    (tmp_path / "a.csv").write_text("account_id,zip\n1,87101\n")
    head = (
        f'[accounts]\npath = "a.csv"\n[units]\nkind = "{units.as_posix()}"\nunit_id = "unit_id"\n'
        '[partition]\nterritories = 2\nbalance = "population"\n'
    )
    (tmp_path / "plan.toml").write_text(head + "bridge_factor = 0\n")
    assert load_config(tmp_path / "plan.toml").partition["bridge_factor"] == 0
    (tmp_path / "plan.toml").write_text(head + "bridge_factr = 0\n")
    with pytest.raises(InputError, match="unknown key 'bridge_factr'.*bridge_factor"):
        load_config(tmp_path / "plan.toml")
    (tmp_path / "plan.toml").write_text(head + 'bridge_factor = "wide"\n')
    with pytest.raises(InputError, match="bridge_factor"):
        load_config(tmp_path / "plan.toml")
    # a value out of range: the plan file's words name the key
    (tmp_path / "plan.toml").write_text(head + "bridge_factor = 0.5\n")
    cfg = load_config(tmp_path / "plan.toml")
    from patchmap.options import PLAN, OptionError

    with pytest.raises(OptionError) as exc:
        plan_units(gpd.read_parquet(units), id_col="unit_id", settings=cfg.partition)
    assert exc.value.worded(PLAN).startswith("bridge_factor: expected 0")
    # the library: the pipeline function and build_adjacency take it
    plan = partition_file(units, tmp_path / "p.csv", balance="population", territories=2,
                          effort=0, bridge_factor=0)  # fmt: skip
    assert len(plan.bridges) == 2
    with pytest.raises(InputError, match=r"^bridge_factor: expected 0 .* got 0\.5"):
        partition_file(units, tmp_path / "q.csv", balance="population", territories=2,
                       bridge_factor=0.5)  # fmt: skip
    with pytest.raises(InputError, match="bridge_factor"):
        build_adjacency(gpd.read_parquet(units), id_col="unit_id", bridge_factor=0.5)
