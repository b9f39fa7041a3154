"""The set-partitioning (column generation) bound of patchmap.certify.columns is a true
bound: never above the fewest cut edges found by exhaustive enumeration, and
equal to it where the set-partitioning relaxation is exact on these small pieces."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from patchmap import geodata
from patchmap.certify import Instance, lower_bound
from patchmap.certify import bound as bound_module
from patchmap.certify import columns as columns_module
from patchmap.certify import pricing as pricing_module
from patchmap.certify.columns import column_bound
from patchmap.units.adjacency import build_adjacency
from test_certify import DISTRICTING, _brute, _districting, _feasible_plans, _piece

pytest.importorskip("highspy")


@pytest.fixture(scope="module")
def county_graph():
    """Counties of a few north-eastern states with their rook graph (as test_certify's;
    a fixture of this module, so pytest keeps each file's tests together)."""
    units = geodata.counties(["NY", "PA", "NJ"]).rename(columns={"county": "unit_id"})
    return units, build_adjacency(units, id_col="unit_id")


@pytest.mark.parametrize(
    ("seed", "n", "k", "tol"),
    [(1, 9, 2, 0.10), (3, 9, 3, 0.30), (7, 11, 2, 0.02), (13, 10, 3, 0.20), (14, 8, 4, 0.30)],
)
def test_never_above_brute_force(county_graph, seed, n, k, tol):
    ei, ej, pop = _piece(county_graph, seed, n)
    inst = Instance.from_bands(ei, ej, pop, shares=np.full(k, 1 / k), tolerances=[tol])
    best = _brute(inst)
    res = column_bound(inst, time_limit=20)
    assert best is not None
    assert res.lower_bound is not None and res.lower_bound <= best
    # at convergence the bound is the master's value, counted once per cut edge
    assert res.lp_optimal and abs(res.lp - best) < 1e-6 and res.lower_bound == best


def test_bound_counts_each_cut_edge_once():
    # a path a-b-c-d, weights 1 each, two territories of exactly 2: the only plan cuts
    # 1 edge, its two sets' boundaries sum to 2
    ei, ej = np.array([0, 1, 2]), np.array([1, 2, 3])
    inst = Instance.from_bands(ei, ej, np.ones(4), shares=np.full(2, 0.5), tolerances=[0.0])
    res = column_bound(inst, time_limit=20)
    assert res.lower_bound == 1 and abs(res.lp - 1) < 1e-9


def test_no_set_in_the_band_is_no_plan():
    ei, ej = np.array([0, 1]), np.array([1, 2])
    inst = Instance.from_bands(ei, ej, np.array([5.0, 1.0, 5.0]), shares=np.full(2, 0.5),
                               tolerances=[0.01])  # fmt: skip
    assert column_bound(inst, time_limit=20).infeasible


def _plans_of_a_piece(county_graph, seed, n, k, tol):
    """A county piece's instance, every feasible plan, their cut edges and the least."""
    ei, ej, pop = _piece(county_graph, seed, n)
    inst = Instance.from_bands(ei, ej, pop, shares=np.full(k, 1 / k), tolerances=[tol])
    plans = _feasible_plans(inst)
    cuts = [int((p[ei] != p[ej]).sum()) for p in plans]
    return inst, plans, cuts, min(cuts)


@pytest.mark.parametrize(("seed", "n", "k", "tol"), [(3, 9, 3, 0.30), (13, 10, 3, 0.20)])
def test_with_a_plan_in_hand(county_graph, seed, n, k, tol):
    # the optimal plan is proven optimal; a worse plan is never "proven"
    inst, plans, cuts, best = _plans_of_a_piece(county_graph, seed, n, k, tol)
    res = column_bound(inst, time_limit=20, incumbent=plans[int(np.argmin(cuts))])
    assert res.optimal and res.lower_bound == best
    worse = [p for p, c in zip(plans, cuts, strict=True) if c > best]
    assert worse
    res = column_bound(inst, time_limit=20, incumbent=worse[0])
    assert not res.optimal and res.lower_bound is not None and res.lower_bound <= best


@pytest.mark.skipif(not DISTRICTING.exists(), reason="districting instances not present")
@pytest.mark.parametrize("state", ["AR", "MS", "IA"])
def test_never_above_the_published_optimum(state):
    inst, opt = _districting(state)
    res = column_bound(inst, time_limit=3)
    assert res.lower_bound is None or res.lower_bound <= opt


@pytest.mark.skipif(not bound_module._can_fork(), reason="no fork on this platform")
@pytest.mark.parametrize(("seed", "n", "k", "tol"), [(3, 9, 3, 0.30), (13, 10, 3, 0.20)])
def test_beside_the_model_in_lower_bound(county_graph, monkeypatch, seed, n, k, tol):
    # with the set-partitioning child on, lower_bound stays exact: the optimal plan is
    # proven, a worse plan is not passed, no plan at all still gets the optimum
    monkeypatch.setattr(bound_module, "COLUMNS", True)
    inst, plans, cuts, best = _plans_of_a_piece(county_graph, seed, n, k, tol)
    res = lower_bound(inst, time_limit=20, incumbent=plans[int(np.argmin(cuts))])
    assert res.status == "optimal" and res.lower_bound == best
    worse = plans[int(np.argmax(cuts))]
    res = lower_bound(inst, time_limit=20, incumbent=worse)
    assert res.lower_bound == best and res.labels is not None
    res = lower_bound(inst, time_limit=20)
    assert res.status == "optimal" and res.lower_bound == best


@pytest.mark.parametrize(
    ("seed", "n", "k", "tol"), [(1, 9, 2, 0.10), (7, 11, 2, 0.02), (14, 8, 4, 0.30)]
)
def test_local_search_keeps_a_connected_set_in_the_band(county_graph, seed, n, k, tol):
    # the cheap pricing's moves never leave the band nor split the set, and never raise
    # c(S) - pi(S); started from every territory of every plan, with random multipliers
    inst, plans, _cuts, _best = _plans_of_a_piece(county_graph, seed, n, k, tol)
    mat = inst.matrix
    nbrs = [mat.indices[mat.indptr[v] : mat.indptr[v + 1]] for v in range(inst.n)]
    deg = np.diff(mat.indptr).astype(float)
    rng = np.random.default_rng(seed)
    pop = inst.weights[:, 0]
    moved = 0
    for plan in plans[:20]:
        pi = rng.uniform(0, 6, inst.n)
        for j in range(k):
            start = plan == j
            out = pricing_module.improve(inst, nbrs, deg, pi, start)
            assert inst.lo[0, 0] <= pop[out].sum() <= inst.hi[0, 0]
            assert pricing_module.is_connected(nbrs, out)
            value = pricing_module.boundary(inst, out) - pi[out].sum()
            assert value <= pricing_module.boundary(inst, start) - pi[start].sum() + 1e-9
            moved += int((out != start).any())
    assert moved  # the search does move somewhere


@pytest.mark.parametrize(("seed", "n", "k", "tol"), [(1, 9, 2, 0.10), (7, 11, 2, 0.02)])
def test_every_plan_in_hand_keeps_the_bound_true(county_graph, seed, n, k, tol):
    # whatever plan seeds the master and the smoothed pricing, the bound stays at most the
    # brute-force optimum, and it is "optimal" only for a plan at that optimum
    inst, plans, cuts, best = _plans_of_a_piece(county_graph, seed, n, k, tol)
    for i in np.argsort(cuts)[::-1][:6]:
        res = column_bound(inst, time_limit=20, incumbent=plans[i])
        assert res.lower_bound is not None and res.lower_bound <= best
        assert res.optimal == (cuts[i] == best)


def _connected_sets_in_band(inst):
    """Every connected set of units meeting the primary band (exhaustive enumeration)."""
    mat = inst.matrix
    pop = inst.weights[:, 0]
    out = []
    for bits in itertools.product([False, True], repeat=inst.n):
        s = np.array(bits)
        if inst.lo[0, 0] <= pop[s].sum() <= inst.hi[0, 0] and pricing_module.is_connected(
            [mat.indices[mat.indptr[v] : mat.indptr[v + 1]] for v in range(inst.n)], s
        ):
            out.append(s)
    return out


@pytest.mark.parametrize("size", [1, 2, 3])
@pytest.mark.parametrize(
    ("seed", "n", "k", "tol"),
    [(1, 9, 2, 0.10), (7, 11, 2, 0.02), (14, 8, 4, 0.30), (5, 10, 3, 0.2)],
)
def test_pricing_least_value_is_the_enumerated_one(
    county_graph, monkeypatch, seed, n, k, tol, size
):
    # the pricing program (its light-piece rows of every size, the rows added for pieces it
    # met) never cuts off a connected set in the band: its proven least value of
    # c(S) - pi(S) is at most, and in the end equal to, the least over every such set
    monkeypatch.setattr(pricing_module, "PIECE_UNITS", size)
    ei, ej, pop = _piece(county_graph, seed, n)
    inst = Instance.from_bands(ei, ej, pop, shares=np.full(k, 1 / k), tolerances=[tol])
    sets = _connected_sets_in_band(inst)
    assert sets
    rng = np.random.default_rng(seed)
    highspy = pytest.importorskip("highspy")

    for trial in range(4):
        # duals like the master's: a part in proportion to the population, and noise
        pi = rng.uniform(-3, 3, inst.n) - trial * 4 * pop / pop.mean()
        least = min(pricing_module.boundary(inst, s) - pi[s].sum() for s in sets)
        pricer = pricing_module.Pricer(inst, highspy, 1, math.inf)
        for _ in range(30):
            found, lb = pricer.price(pi)
            assert lb is not None and lb <= least + 1e-6
            values = [pricing_module.boundary(inst, s) - pi[s].sum() for s in found]
            assert all(v >= least - 1e-6 for v in values)
            if values and abs(min(values) - lb) < 1e-6:
                break
        assert abs(lb - least) < 1e-6


def test_light_pieces_are_every_light_connected_set(county_graph):
    ei, ej, pop = _piece(county_graph, 7, 11)
    inst = Instance.from_bands(ei, ej, pop, shares=np.full(2, 0.5), tolerances=[0.02])
    mat = inst.matrix
    nbrs = [mat.indices[mat.indptr[v] : mat.indptr[v + 1]] for v in range(inst.n)]
    want = set()
    for r in (1, 2, 3):
        for c in itertools.combinations(range(inst.n), r):
            s = np.zeros(inst.n, dtype=bool)
            s[list(c)] = True
            if pop[s].sum() < inst.lo[0, 0] and pricing_module.is_connected(nbrs, s):
                want.add(c)
    got = pricing_module.light_pieces(inst, 3)
    assert {tuple(c) for c, _ in got} == want and len(got) == len(want)
    for c, border in got:
        assert set(border) == {int(w) for v in c for w in nbrs[v]} - set(c)


def _in_slot(s, anchors, slot):
    """Whether the set ``s`` (a mask) is in ``slot``: it holds that anchor (and no other
    one), no anchor at all (-1), or one anchor, any (-2)."""
    held = anchors[s[anchors]]
    if slot in (-1, -2):
        return len(held) == -1 - slot
    return held.tolist() == [slot]


ANCHORED = [(1, 9, 2, 0.10), (7, 11, 2, 0.02), (14, 8, 4, 0.30), (5, 10, 3, 0.2), (3, 9, 3, 0.3)]


@pytest.mark.parametrize("split", [True, False])
@pytest.mark.parametrize(("seed", "n", "k", "tol"), ANCHORED)
def test_anchors_never_share_a_set_and_slots_cover_every_set(county_graph, seed, n, k, tol, split):
    # the pricing's anchors are pairwise too far apart for one connected set in the band,
    # so every such set is in one slot at most (in one exactly unless there are K
    # anchors: then no territory is without one); and these pieces do have anchors
    highspy = pytest.importorskip("highspy")
    ei, ej, pop = _piece(county_graph, seed, n)
    inst = Instance.from_bands(ei, ej, pop, shares=np.full(k, 1 / k), tolerances=[tol])
    anchors = pricing_module.Pricer(inst, highspy, 1, math.inf).anchors
    assert 1 <= len(anchors) <= k
    for s in _connected_sets_in_band(inst):
        assert s[anchors].sum() <= 1
        inside = sum(
            _in_slot(s, anchors, slot)
            for slot, _ in columns_module.slot_counts(inst.k, anchors, split)
        )
        # a set holding no anchor has no slot only when every territory holds an anchor
        assert inside == 1 or (len(anchors) == k and not s[anchors].any())


@pytest.mark.parametrize("split", [True, False])
@pytest.mark.parametrize(("seed", "n", "k", "tol"), ANCHORED)
def test_slot_bound_never_above_any_plan(county_graph, seed, n, k, tol, split):
    # at any multipliers, the anchor-split bound, from the pricing's proven least value
    # in each slot, is at most every plan's cut edges (brute force), and each slot's
    # proven least value is the enumerated one; it is never below Farley's bound (one
    # slot of K), and above it somewhere (it does split)
    highspy = pytest.importorskip("highspy")
    inst, plans, cuts, best = _plans_of_a_piece(county_graph, seed, n, k, tol)
    sets = _connected_sets_in_band(inst)
    pop = inst.weights[:, 0]
    rng = np.random.default_rng(seed)
    pricer = pricing_module.Pricer(inst, highspy, 1, math.inf)
    anchors = pricer.anchors
    slots = columns_module.slot_counts(inst.k, anchors, split)
    stronger = 0
    for trial in range(6):
        pi = rng.uniform(-3, 3, inst.n) + trial * pop / pop.mean()
        mu = float(rng.uniform(-5, 20)) if trial % 2 else math.inf
        value = {i: pricing_module.boundary(inst, s) - pi[s].sum() for i, s in enumerate(sets)}
        proven = []
        for slot, count in slots:
            least = min(v for i, v in value.items() if _in_slot(sets[i], anchors, slot))
            for _ in range(30):
                found, lb = pricer.price(pi, slot=slot)
                assert lb is not None and lb <= least + 1e-6
                vals = [pricing_module.boundary(inst, s) - pi[s].sum() for s in found]
                assert all(_in_slot(s, anchors, slot) for s in found)
                if vals and abs(min(vals) - lb) < 1e-6:
                    break
            assert abs(lb - least) < 1e-6
            proven.append((count, lb))
        bound = columns_module.lagrangian(float(pi.sum()), mu, proven)
        assert bound <= best + 1e-6
        # every plan, term by term: each territory is in a slot, and the plan fills every
        # slot's count exactly (what the bound assumes)
        for plan in plans:
            held = [[slot for slot, _ in slots if _in_slot(plan == j, anchors, slot)]
                    for j in range(k)]  # fmt: skip
            assert all(len(h) == 1 for h in held)
            filled = [sum(h == [slot] for h in held) for slot, _ in slots]
            assert filled == [count for _, count in slots]
        farley = columns_module.lagrangian(float(pi.sum()), mu, [(k, min(value.values()))])
        assert farley <= bound + 1e-6
        stronger += bound > farley + 1e-6
    assert stronger or (not split and len(anchors) > 1)


@pytest.mark.parametrize(
    ("slots", "split", "early"),
    [(True, True, True), (True, True, False), (True, False, True), (False, True, True)],
)
@pytest.mark.parametrize(("seed", "n", "k", "tol"), [(14, 8, 4, 0.30), (5, 10, 3, 0.2)])
def test_column_bound_with_and_without_slots(
    county_graph, monkeypatch, seed, n, k, tol, slots, split, early
):
    # the whole column generation, anchor slots on or off (split per anchor or not, a
    # round ended at the first slot with columns or not), from every plan in hand: never
    # above the brute-force optimum, "optimal" only at it
    monkeypatch.setattr(columns_module, "SLOTS", slots)
    monkeypatch.setattr(columns_module, "SPLIT", split)
    monkeypatch.setattr(columns_module, "EARLY", early)
    inst, plans, cuts, best = _plans_of_a_piece(county_graph, seed, n, k, tol)
    res = column_bound(inst, time_limit=20)
    assert res.lower_bound is not None and res.lower_bound <= best
    for i in np.argsort(cuts)[::-1][:4]:
        res = column_bound(inst, time_limit=20, incumbent=plans[i])
        assert res.lower_bound is not None and res.lower_bound <= best
        assert res.optimal == (cuts[i] == best)


@pytest.mark.parametrize(("seed", "n", "k", "tol"), ANCHORED)
def test_pricing_with_a_limit_proves_no_more_than_the_least(county_graph, seed, n, k, tol):
    # with a limit below the least value, HiGHS prunes at it and may report a dual bound
    # past the least: the pricing's proven bound stays at most the least (every slot)
    highspy = pytest.importorskip("highspy")
    ei, ej, pop = _piece(county_graph, seed, n)
    inst = Instance.from_bands(ei, ej, pop, shares=np.full(k, 1 / k), tolerances=[tol])
    sets = _connected_sets_in_band(inst)
    rng = np.random.default_rng(seed)
    pricer = pricing_module.Pricer(inst, highspy, 1, math.inf)
    anchors = pricer.anchors
    for trial in range(8):
        pi = rng.uniform(-3, 3, inst.n) + trial * pop / pop.mean()
        every = columns_module.slot_counts(k, anchors) + columns_module.slot_counts(
            k, anchors, False
        )
        for slot, _count in [(None, k), *every]:
            inside = [s for s in sets if slot is None or _in_slot(s, anchors, slot)]
            least = min(pricing_module.boundary(inst, s) - pi[s].sum() for s in inside)
            for below in (0.1, 1.0, 3.0):
                found, lb = pricer.price(pi, limit=least - below, slot=slot)
                assert not found
                assert lb is not None and lb <= least + 1e-6
