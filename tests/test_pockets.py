"""The pocket bound (certify.pockets): units reach a territory only past no other home."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from patchmap.certify.pockets import home_paths, pocket_bound


def grid(cols: int, rows: int) -> sparse.csr_matrix:
    """Rook adjacency of a cols x rows grid (unit c * rows + r)."""
    edges = [(c * rows + r, (c + dc) * rows + r + dr) for c in range(cols) for r in range(rows)
             for dc, dr in ((1, 0), (0, 1)) if c + dc < cols and r + dr < rows]  # fmt: skip
    e = np.array(edges)
    m = sparse.coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(cols * rows,) * 2)
    return (m + m.T).tocsr()


def path(n: int) -> sparse.csr_matrix:
    return grid(n, 1)


def test_a_home_walled_in_by_another_home_gets_only_itself():
    # 0 - 1 - 2 - 3 - 4, homes at 0 and 1: territory 0 is unit 0 alone (1 of 2.5)
    b = pocket_bound(path(5), np.ones(5), np.array([0, 1]))
    assert b.deviation == pytest.approx(0.6, abs=1e-6)
    assert b.home == 0 and b.walls == (1,) and b.reach == pytest.approx(0.4)
    assert "walled in" in b.sentence() and "60.00%" in b.sentence()


def test_home_paths_pass_no_other_home():
    d = home_paths(path(5), np.array([1.0, 2, 3, 4, 5]), np.array([0, 2]))
    assert np.isinf(d[0, 3]) and d[0, 1] == pytest.approx(3.0)
    assert d[1, 4] == pytest.approx(12.0) and d[1, 1] == pytest.approx(5.0)


def test_a_heavy_unit_far_from_the_homes_drags_its_path_along():
    # 0 - 1 - 2 - 3 - 4 - 5 with unit 5 heavy: whoever takes it holds the path to it
    w = np.array([1.0, 1, 1, 1, 1, 5])
    b = pocket_bound(path(6), w, np.array([0, 1]))  # home 0 walled in: 1 of 5
    assert b.deviation == pytest.approx(0.8, abs=1e-6)
    ring = path(6).tolil()
    ring[0, 5] = ring[5, 0] = 1
    # a ring, homes 0 and 2, unit 4 (weight 5) opposite: either territory holds a path
    # of weight 7 to it (goal 5), 40% over; neither home is walled in
    b = pocket_bound(ring.tocsr(), np.array([1.0, 1, 1, 1, 5, 1]), np.array([0, 2]))
    assert b.deviation == pytest.approx(0.4, abs=1e-6) and b.home == -1
    assert "40.00%" in b.sentence()
    assert pocket_bound(path(6), np.ones(6), np.array([0, 5])).deviation == 0.0


def _best_plan(m: sparse.csr_matrix, w: np.ndarray, homes: np.ndarray) -> float:
    """The smallest max deviation over every contiguous plan with these homes (brute force)."""
    n, k = len(w), len(homes)
    goal = w.sum() / k
    free = np.setdiff1d(np.arange(n), homes)
    best = np.inf
    coo = m.tocoo()
    for combo in itertools.product(range(k), repeat=len(free)):
        lab = np.empty(n, dtype=np.int64)
        lab[homes] = np.arange(k)
        lab[free] = combo
        dev = np.abs(np.bincount(lab, weights=w, minlength=k) / goal - 1).max()
        if dev >= best:
            continue
        same = lab[coo.row] == lab[coo.col]
        g = sparse.coo_matrix((np.ones(int(same.sum())), (coo.row[same], coo.col[same])),
                              shape=(n, n))  # fmt: skip
        if connected_components(g, directed=False)[0] == k:
            best = dev
    return best


@pytest.mark.parametrize("seed", range(6))
def test_no_plan_beats_the_bound(seed):
    rng = np.random.default_rng(seed)
    m = grid(3, 3)
    w = rng.choice([1.0, 1.0, 2.0, 9.0], size=9)
    homes = rng.choice(9, size=3, replace=False)
    b = pocket_bound(m, w, homes)
    assert b.deviation <= _best_plan(m, w, homes) + 1e-6


def test_a_missed_rep_plan_names_the_walled_in_home_as_its_proof():
    import geopandas as gpd
    import pandas as pd
    import shapely

    from patchmap.partition import Partitioner

    cells = [(c, r) for c in range(8) for r in range(4) if c > 1 or r == 0]  # a 2-cell spur
    units = gpd.GeoDataFrame(
        {"unit_id": [f"u{c}_{r}" for c, r in cells], "population": 1.0},
        geometry=[shapely.box(c * 0.01, r * 0.01, (c + 1) * 0.01, (r + 1) * 0.01) for c, r in cells],
        crs=4326,
    )  # fmt: skip
    at = [(0, 0), (1, 0), (5, 2)]  # a lives at the spur's end, b at its root
    reps = pd.DataFrame({"rep_id": ["a", "b", "c"],
                         "lat": [r * 0.01 + 0.005 for _, r in at],
                         "lon": [c * 0.01 + 0.005 for c, _ in at]})  # fmt: skip
    plan = Partitioner(3, "population", seed=0, effort=0).fit(units, reps=reps)
    note = next(n for n in plan.notes if getattr(n, "code", "") == "crowded_homes")
    assert "cannot be met" in note and "a's home is walled in" in note and "u1_0" in note
    assert note.data["bound"] == pytest.approx(1 - 3 / len(cells), abs=1e-6)
    assert plan.max_deviation >= note.data["bound"] - 1e-9
