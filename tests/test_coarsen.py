"""Multilevel coarsening: levels that keep weights, cuts and connectivity; large-map plans."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from patchmap.partition import coarsen as co
from patchmap.partition import multilevel as ml
from patchmap.partition import schedule
from patchmap.partition.contiguity import can_remove
from patchmap.partition.objective import score
from patchmap.partition.problem import Graph, Problem
from patchmap.partition.seeding import fitting_count
from patchmap.partition.state import SearchState


def grid_problem(nx: int, ny: int, k: int, seed: int = 0, locked=None) -> Problem:
    """A rook grid with uneven weights (a heavy corner), unit areas, k territories."""
    idx = np.arange(nx * ny).reshape(nx, ny)
    ei = np.r_[idx[:-1, :].ravel(), idx[:, :-1].ravel()]
    ej = np.r_[idx[1:, :].ravel(), idx[:, 1:].ravel()]
    n = nx * ny
    m = sparse.coo_matrix((np.ones(2 * len(ei)), (np.r_[ei, ej], np.r_[ej, ei])), shape=(n, n))
    xy = np.column_stack([np.repeat(np.arange(nx), ny), np.tile(np.arange(ny), nx)]).astype(float)
    rng = np.random.default_rng(seed)
    w = rng.uniform(0.5, 1.5, n) * (1 + 4 * np.exp(-(xy**2).sum(axis=1) / 200))
    return Problem(
        Graph(m.tocsr()), w[:, None], xy, np.ones(n), [1 / k] * k, [0.0045],
        np.full(n, -1) if locked is None else locked, 0.5,
    )  # fmt: skip


def fine_components(graph: Graph, lab: np.ndarray) -> np.ndarray:
    """Number of connected pieces of each label on ``graph``."""
    same = lab[graph.ei] == lab[graph.ej]
    g = sparse.coo_matrix(
        (np.ones(int(same.sum())), (graph.ei[same], graph.ej[same])), shape=(graph.n, graph.n)
    )
    _, comp = connected_components(g, directed=False)
    return np.array([len(np.unique(comp[lab == t])) for t in np.unique(lab)])


def test_levels_keep_weights_cuts_and_connected_nodes():
    p = grid_problem(60, 50, 6)
    levels = co.coarsen(p, np.random.default_rng(0))
    assert len(levels) >= 3
    sizes = [p.graph.n] + [lv.problem.graph.n for lv in levels]
    assert all(b < a for a, b in zip(sizes, sizes[1:], strict=False))
    assert sizes[-1] <= max(co.NODES_PER_TERRITORY * 6, co.MIN_NODES) * 2
    # every node of every level stands for a connected set of units
    to_fine = np.arange(p.graph.n)
    for lv in levels:
        to_fine = lv.parent[to_fine]
        assert (fine_components(p.graph, to_fine) == 1).all()
    coarse = levels[-1].problem
    assert np.isclose(coarse.weights.sum(), p.weights.sum())
    assert np.isclose(coarse.area.sum(), p.area.sum())
    # a coarse plan cuts exactly the fine edges of the plan it stands for
    lab = np.random.default_rng(1).integers(0, 6, coarse.graph.n)
    s_coarse = SearchState(coarse, lab, np.random.default_rng(0))
    s_fine = SearchState(p, lab[to_fine], np.random.default_rng(0))
    assert s_coarse.cut_edges() == s_fine.cut_edges()
    assert sum(len(x) for x in coarse.graph.nbrs) == 2 * len(coarse.graph.ei)


def test_locked_units_are_never_merged():
    locked = np.full(40 * 40, -1)
    locked[[0, 1, 2, 799, 1599]] = [0, 0, 1, 2, 3]
    p = grid_problem(40, 40, 4, locked=locked)
    levels = co.coarsen(p, np.random.default_rng(0))
    to_fine = np.arange(p.graph.n)
    for lv in levels:
        to_fine = lv.parent[to_fine]
    pinned = np.flatnonzero(locked >= 0)
    nodes = to_fine[pinned]
    assert len(np.unique(nodes)) == len(pinned)
    assert (np.bincount(to_fine)[nodes] == 1).all()
    assert (levels[-1].problem.locked[nodes] == locked[pinned]).all()


def test_node_weight_cap_holds():
    p = grid_problem(50, 50, 5)
    cap = co.MAX_SHARE * float(p.weights[:, 0].sum()) / 5
    for lv in co.coarsen(p, np.random.default_rng(0)):
        merged = np.bincount(lv.parent) > 1
        assert merged.any()
        assert (lv.problem.weights[merged, 0] <= cap + 1e-9).all()


@pytest.mark.parametrize("k", [3, 8])
def test_multilevel_plan_contiguous_and_balanced(monkeypatch, k):
    p = grid_problem(80, 60, k)
    monkeypatch.setattr(ml, "COARSEN_MIN_UNITS", 1000)
    monkeypatch.setattr(ml, "COARSEN_MIN_PER_TERRITORY", 100)
    lab = ml.multilevel(p, seed=0, effort=0.0, solve=schedule.solve)
    assert lab is not None and lab.shape == (p.graph.n,)
    assert (fine_components(p.graph, lab) == 1).all()
    tot = np.bincount(lab, weights=p.weights[:, 0], minlength=k)
    assert np.abs(tot / (tot.sum() / k) - 1).max() <= 0.005
    # solve() takes the multilevel plan as a candidate: what it returns ranks no worse
    best = schedule.solve(p, seed=0, effort=0.0)
    rank = [score(SearchState(p, x, np.random.default_rng(0))) for x in (best, lab)]
    assert rank[0] <= rank[1]


def test_many_territories_take_the_multilevel_plan(monkeypatch):
    # below the per-territory gate but above MANY_UNITS: the multilevel plan alone, no
    # flat restart (one costs more than the whole multilevel solve at K=200, 140k units)
    p = grid_problem(80, 60, 24)
    monkeypatch.setattr(ml, "COARSEN_MIN_UNITS", 1000)
    monkeypatch.setattr(ml, "MANY_UNITS", 4000)
    seeded = []
    seed = schedule.recursive_seed

    def spy(graph, *a, **kw):
        seeded.append(graph.n)
        return seed(graph, *a, **kw)

    monkeypatch.setattr(schedule, "recursive_seed", spy)
    lab = schedule.solve(p, seed=0, effort=0.0)
    assert seeded and p.graph.n not in seeded  # the coarsest level only
    assert (fine_components(p.graph, lab) == 1).all()
    tot = np.bincount(lab, weights=p.weights[:, 0], minlength=24)
    assert np.abs(tot / (tot.sum() / 24) - 1).max() <= 0.005


@pytest.mark.parametrize("k, runs", [(24, 1), (3, None)])
def test_coarsest_level_runs_one_anytime_run_with_many_territories(monkeypatch, k, runs):
    # with fewer units per territory than the gate, the coarsest level's anytime phase
    # is one run from its best plan (no fresh restarts); with more, the default runs
    p = grid_problem(80, 60, k)
    monkeypatch.setattr(ml, "COARSEN_MIN_UNITS", 1000)
    asked = []

    class Stop(Exception):
        pass

    def spy(problem, **kw):
        asked.append((problem.graph.n, kw.get("runs")))
        raise Stop

    with pytest.raises(Stop):
        ml.multilevel(p, seed=0, effort=1.0, solve=spy)
    assert len(asked) == 1 and asked[0][0] < p.graph.n  # the coarsest level
    assert asked[0][1] == runs


def test_vcycle_refines_a_plan_without_losing_it(monkeypatch):
    # a V-cycle searches every level of a coarsening within the plan's territories in
    # the exact band: never a worse plan, always contiguous and inside the band
    p = grid_problem(80, 60, 5)
    monkeypatch.setattr(ml, "COARSEN_MIN_UNITS", 1000)
    monkeypatch.setattr(ml, "COARSEN_MIN_PER_TERRITORY", 100)
    start = ml.multilevel(p, seed=0, effort=0.0, solve=schedule.solve)

    def cut(lab):
        return int((lab[p.graph.ei] != lab[p.graph.ej]).sum())

    searched = []
    real = ml.pair_search

    def spy(s, *a, **kw):
        searched.append(s.g.n)
        return real(s, *a, **kw)

    monkeypatch.setattr(ml, "pair_search", spy)
    key, lab = ml.vcycle(p, start, seed=0, steps=60)
    assert len(searched) >= 3 and searched[-1] == p.graph.n  # coarse levels, then the map
    assert searched == sorted(searched)
    assert key[0] == 0 and key[1] == cut(lab) <= cut(start)
    assert (fine_components(p.graph, lab) == 1).all()
    tot = np.bincount(lab, weights=p.weights[:, 0], minlength=5)
    assert np.abs(tot / (tot.sum() / 5) - 1).max() <= 0.005 + 1e-12
    # more cycles never lose what the first found (the one above); none at effort 0
    assert ml.vcycles(p, start, seed=0, effort=0.0) is start
    more = ml.vcycles(p, start, seed=0, effort=0.6)
    assert cut(more) <= cut(lab)
    assert (fine_components(p.graph, more) == 1).all()


def two_multilevel_plans(monkeypatch):
    """An 80 x 60 grid into 5 with the multilevel thresholds lowered, and two of its
    multilevel plans (seeds 0 and 5): a start and a rival for the V-cycles."""
    p = grid_problem(80, 60, 5)
    monkeypatch.setattr(ml, "COARSEN_MIN_UNITS", 1000)
    monkeypatch.setattr(ml, "COARSEN_MIN_PER_TERRITORY", 100)
    start = ml.multilevel(p, seed=0, effort=0.0, solve=schedule.solve)
    rival = ml.multilevel(p, seed=5, effort=0.0, solve=schedule.solve)
    return p, start, rival


def test_vcycles_screen_every_start_and_go_on_from_the_best(monkeypatch):
    # with rivals, each start gets one cycle, and the next cycle starts from the best
    # result (here the rival's own start is a different multilevel plan)
    p, start, rival = two_multilevel_plans(monkeypatch)
    assert not np.array_equal(start, rival)
    given, found = [], []
    real = ml.vcycle

    def spy(problem, lab, **kw):
        given.append(lab)
        out = real(problem, lab, **kw)
        found.append(out)
        return out

    monkeypatch.setattr(ml, "vcycle", spy)
    out = ml.vcycles(p, start, seed=0, effort=0.6, rivals=[rival])
    assert given[0] is start and given[1] is rival and len(given) >= 3
    first = min(found[:2], key=lambda f: f[0])
    assert np.array_equal(given[2], first[1])
    best = min(found, key=lambda f: f[0])
    assert best[0] <= first[0] and np.array_equal(out, best[1])  # the best plan found
    assert (fine_components(p.graph, out) == 1).all()


def test_combine_coarsens_within_both_plans_and_keeps_the_first(monkeypatch):
    # a combine cycle merges nodes only where both plans agree (every coarse node lies
    # within one territory of each), and returns a plan no worse than the one it started
    p = grid_problem(80, 60, 5)
    monkeypatch.setattr(ml, "COARSEN_MIN_UNITS", 1000)
    monkeypatch.setattr(ml, "COARSEN_MIN_PER_TERRITORY", 100)
    start = ml.multilevel(p, seed=0, effort=0.0, solve=schedule.solve)
    other = ml.multilevel(p, seed=5, effort=0.0, solve=schedule.solve)
    assert not np.array_equal(start, other)
    stacks = []
    real = ml.coarsen

    def spy(*a, **kw):
        stacks.append(real(*a, **kw))
        return stacks[-1]

    monkeypatch.setattr(ml, "coarsen", spy)
    key, lab = ml.vcycle(p, start, seed=0, steps=60, other=other)
    (stack,) = stacks
    assert len(stack) >= 2
    for plan in (start, other):
        fine = np.asarray(plan)
        for level in stack:  # each coarse node holds units of one territory only
            n = level.problem.graph.n
            lo = np.full(n, fine.max() + 1)
            hi = np.full(n, -1)
            np.minimum.at(lo, level.parent, fine)
            np.maximum.at(hi, level.parent, fine)
            assert (lo == hi).all()
            fine = lo

    def cut(x):
        return int((x[p.graph.ei] != x[p.graph.ej]).sum())

    assert key[0] == 0 and key[1] == cut(lab) <= cut(start)
    assert (fine_components(p.graph, lab) == 1).all()


def test_vcycles_combine_the_best_with_the_runner_up(monkeypatch):
    # after the screening, every other cycle combines the best plan with the second-best
    # screened one (the other lineage); the cycles in between are plain
    p, start, rival = two_multilevel_plans(monkeypatch)
    calls = []
    real = ml.vcycle

    def spy(problem, lab, **kw):
        out = real(problem, lab, **kw)
        calls.append((kw.get("other"), out))
        return out

    monkeypatch.setattr(ml, "vcycle", spy)
    ml.vcycles(p, start, seed=0, effort=0.6, rivals=[rival])
    assert len(calls) >= 3
    assert calls[0][0] is None and calls[1][0] is None  # the screening
    runner = max((calls[0][1], calls[1][1]), key=lambda f: f[0])
    assert calls[2][0] is not None and np.array_equal(calls[2][0], runner[1])
    assert all((c[0] is None) == (i % 2 == 1) for i, c in enumerate(calls[2:]))


@pytest.mark.parametrize("weighted", [False, True])
def test_can_remove_on_a_coarse_graph_with_repeated_neighbours(weighted):
    """A coarse graph lists a neighbour once per fine edge: the unit whose neighbours in
    its territory meet only around the far side of a ring can still leave it."""
    # ring 0-1-2-3-4-5-0 in territory 0 (6 hangs off 3, territory 1): 1's neighbours 0
    # and 2 meet only around the ring, via 3-4-5
    ring = [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 0), (3, 6)]
    weight = {(0, 1): 3.0} if weighted else {}
    rows, cols = zip(*ring, strict=True)
    data = [weight.get(e, 1.0) for e in ring]
    m = sparse.coo_matrix((data + data, (rows + cols, cols + rows)), shape=(7, 7)).tocsr()
    xy = np.c_[np.cos(np.arange(7)), np.sin(np.arange(7))]
    problem = Problem(
        Graph(m, weighted=weighted), np.ones((7, 1)), xy, np.ones(7), [0.5, 0.5], [0.1],
        np.full(7, -1), 0.5,
    )  # fmt: skip
    s = SearchState(problem, np.array([0, 0, 0, 0, 0, 0, 1]), np.random.default_rng(0))
    assert can_remove(s, 1, 0)
    s.load(np.array([0, 0, 0, 0, 1, 0, 1]))  # 4 taken out: 1 is now a cut vertex of the rest
    assert not can_remove(s, 1, 0)


def test_a_split_off_its_ratio_takes_the_territory_count_its_weight_fits():
    equal = np.full(10, 0.1)
    assert fitting_count(equal, 0.5) == 5
    assert fitting_count(equal, 0.37) == 4  # 0.37 of the weight: 4 of 10 (7.5% light)
    assert fitting_count(equal, 0.02) == 1  # every side keeps at least one territory
    assert fitting_count(equal, 0.99) == 9
    # unequal shares: the count whose cumulative share the weight matches
    assert fitting_count(np.array([0.5, 0.1, 0.1, 0.3]), 0.6) == 2


def necks_problem(k: int = 5) -> tuple[Problem, int, int, float]:
    """A 30x30 grid and two towns (4x4 grids) each of 0.6 territory, hanging off two
    neighbouring bridge ends x and y of almost no weight: (problem, x, y, territory)."""
    side, town = 30, 4
    edges, w = [], [1.0] * (side * side)

    def grid(start: int, m: int) -> None:
        for r in range(m):
            for c in range(m):
                u = start + r * m + c
                if c + 1 < m:
                    edges.append((u, u + 1))
                if r + 1 < m:
                    edges.append((u, u + m))

    grid(0, side)
    heavy = 0.6 * side * side / (k - 0.6 * 2) / (town * town)  # each town 0.6 of a territory
    a0 = len(w)
    w += [heavy] * (town * town)
    grid(a0, town)
    b0 = len(w)
    w += [heavy] * (town * town)
    grid(b0, town)
    x, y = len(w), len(w) + 1
    w += [1e-6, 1e-6]
    edges += [(x, 0), (y, 1), (x, y), (x, a0), (y, b0)]
    n = len(w)
    i, j = np.array(edges).T
    m = sparse.coo_matrix((np.ones(2 * len(i)), (np.r_[i, j], np.r_[j, i])), shape=(n, n))
    xy = np.zeros((n, 2))
    xy[: side * side] = np.column_stack(
        [np.repeat(np.arange(side), side), np.tile(np.arange(side), side)]
    )
    xy[a0:b0] = [-3.0, 0.0]
    xy[b0:x] = [-3.0, 3.0]
    xy[x:] = [-1.0, 0.0]
    wa = np.asarray(w)
    p = Problem(
        Graph(m.tocsr()), wa[:, None], xy, np.ones(n), [1 / k] * k, [0.0045], np.full(n, -1), 0.5
    )
    return p, x, y, float(wa.sum()) / k


def test_coarsening_keeps_room_at_necks():
    p, x, y, unit = necks_problem()
    tol = p.tol[0]
    need = co.neck_need(p.graph, p.weights[:, 0], unit, tol)
    # each town is lighter than a territory: all of it goes with its bridge end, and
    # the rest of the map (4.4 territories) gives that territory what four cannot hold
    rest = co.least_through(np.array([4.4 * unit]), unit, tol)[0]
    assert rest > 0
    assert need[x] == pytest.approx(0.6 * unit + rest, rel=1e-4)
    assert need[y] == pytest.approx(need[x], rel=1e-4)
    levels = co.coarsen(p, np.random.default_rng(0))
    assert levels
    # x and y (each other's best match) stay apart: one node would hold both towns,
    # 1.2 territories that only its own territory could take
    assert levels[0].parent[x] != levels[0].parent[y]
    for lv in levels:
        w = lv.problem.weights[:, 0]
        need = co.neck_need(lv.problem.graph, w, unit, tol)
        assert need is None or (need + w <= (1 - tol) * unit + 1e-9).all()


def test_least_through():
    unit, tol = 100.0, 0.005
    got = co.least_through(np.array([60.0, 100.0, 130.0, 199.0, 250.0]), unit, tol)
    # lighter than a territory: all; one territory fits: none; more: what is left over
    assert got == pytest.approx([60.0, 0.0, 29.5, 0.0, 49.0])
