"""Re-splitting pairs of territories (partition.recom), balancing along chains and flows
(partition.flows), relocating territories (partition.relocate): connected parts, homes kept."""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from patchmap.partition.flows import chain_balance, flow_balance, flow_plan, probe
from patchmap.partition.objective import imbalance, max_deviation
from patchmap.partition.problem import Graph, Problem
from patchmap.partition.recom import give, resplit
from patchmap.partition.relocate import far_side, hanging, relocations, transplants
from patchmap.partition.schedule import steadier, transplanted
from patchmap.partition.state import SearchState


def grid(nx: int, ny: int, lab: np.ndarray, homes: list[int], w: np.ndarray) -> SearchState:
    """A SearchState on an nx x ny grid of unit squares (rook adjacency)."""
    idx = np.arange(nx * ny).reshape(nx, ny)
    e = np.r_[
        np.c_[idx[:-1].ravel(), idx[1:].ravel()], np.c_[idx[:, :-1].ravel(), idx[:, 1:].ravel()]
    ]
    n = nx * ny
    m = sparse.coo_matrix((np.ones(2 * len(e)), (np.r_[e[:, 0], e[:, 1]], np.r_[e[:, 1], e[:, 0]])),
                          shape=(n, n)).tocsr()  # fmt: skip
    xy = np.c_[np.repeat(np.arange(nx), ny), np.tile(np.arange(ny), nx)].astype(float)
    k = len(homes)
    locked = np.full(n, -1)
    locked[homes] = np.arange(k)
    pb = Problem(Graph(m), w[:, None], xy, np.ones(n), [1.0 / k] * k, [0.01], locked, 0.5)
    return SearchState(pb, lab, np.random.default_rng(0))


def parts_connected(s: SearchState) -> bool:
    ei, ej = s.g.ei, s.g.ej
    same = s.labn[ei] == s.labn[ej]
    n = s.g.n
    sub = sparse.coo_matrix((np.ones(int(same.sum())), (ei[same], ej[same])), shape=(n, n))
    _, comp = connected_components(sub, directed=False)
    return all(len(np.unique(comp[s.labn == t])) == 1 for t in range(s.k))


def test_resplit_reaches_the_wanted_total_with_both_parts_whole():
    rng = np.random.default_rng(3)
    w = rng.uniform(0.5, 1.5, 12 * 5)
    lab = (np.arange(60) // 5 >= 3).astype(int)  # p: the first 3 columns, q: the other 9
    s = grid(12, 5, lab, [2, 57], w)  # homes: (0, 2) for p, (11, 2) for q
    for want in (0.5 * w.sum(), 0.3 * w.sum(), 0.8 * w.sum()):
        assert resplit(s, 0, 1, want, np.random.default_rng(1))
        assert abs(s.tot[1][0] - want) <= w.max()  # within a unit of the wanted total
        assert s.labn[2] == 0 and s.labn[57] == 1
        assert parts_connected(s)
        assert np.isclose(s.tot[0][0] + s.tot[1][0], w.sum())


def test_resplit_cuts_a_territory_from_a_group():
    w = np.ones(60)
    lab = np.minimum(np.arange(60) // 20, 2)  # three strips of 4 columns
    s = grid(12, 5, lab, [2, 32, 57], w)
    assert resplit(s, [1, 0], 2, 30.0, np.random.default_rng(1))
    assert s.tot[2][0] == 30.0 and s.cnt[0] + s.cnt[1] == 30
    # the units q gave up went to the first of the group; territories 0 and 2 stay whole
    assert s.labn[2] == 0 and s.labn[32] == 1 and s.labn[57] == 2


def test_chain_balance_passes_weight_along_a_path():
    # three strips (2, 3 and 7 columns wide) with homes at their far ends: the heavy strip
    # passes weight through the middle one to the light one
    w = np.ones(12 * 4)
    col = np.arange(48) // 4
    lab = np.where(col < 2, 0, np.where(col < 5, 1, 2))
    s = grid(12, 4, lab, [0, 9, 47], w)
    before = imbalance(s)
    chain_balance(s, np.random.default_rng(0), goal=0.5)
    assert imbalance(s) < before
    assert max(abs(t[0] - 16) for t in s.tot) <= 1  # 16 units each, give or take one
    assert parts_connected(s)
    assert [s.labn[0], s.labn[9], s.labn[47]] == [0, 1, 2]


def test_undo_to_a_mark_takes_back_only_the_later_moves():
    lab = np.repeat([0, 1], 8)
    s = grid(4, 4, lab.copy(), [0, 15], np.ones(16))
    s.begin()
    s.move(7, 0, 1)
    mark = len(s.log)
    s.move(8, 1, 0)
    s.move(9, 1, 0)
    s.undo(to=mark)
    assert s.log == [(7, 0, 1)]  # still recording, the earlier move kept
    assert s.labn[7] == 1 and s.labn[8] == 1 and s.labn[9] == 1
    assert [s.tot[t][0] for t in range(2)] == [7.0, 9.0]
    s.undo()
    assert (s.labn == lab).all() and s.log is None


def grown(nx: int, ny: int, homes: list[int], rng: np.random.Generator) -> np.ndarray:
    """A random labelling of the grid into connected territories grown from the homes."""
    n = nx * ny
    lab = np.full(n, -1)
    lab[homes] = np.arange(len(homes))
    nb = lambda u: [v for v in (u - ny, u + ny, u - 1, u + 1)  # noqa: E731
                    if 0 <= v < n and (abs(v - u) == ny or v // ny == u // ny)]  # fmt: skip
    while (lab < 0).any():
        u = int(rng.choice(np.flatnonzero(lab >= 0)))
        free = [v for v in nb(u) if lab[v] < 0]
        if free:
            lab[int(rng.choice(free))] = lab[u]
    return lab


def test_give_keeps_both_parts_whole_and_the_homes():
    # random pairs of territories on a grid, random weights and amounts: q gains up to
    # about the amount (never more than twice it), both stay connected, homes stay put
    for trial in range(30):
        rng = np.random.default_rng(trial)
        homes = [int(h) for h in rng.choice(80, size=2, replace=False)]
        w = rng.uniform(0.2, 3.0, 80)
        s = grid(10, 8, grown(10, 8, homes, rng), homes, w)
        amount = float(rng.uniform(0.5, 0.6 * s.tot[0][0]))
        before = [s.tot[0][0], s.tot[1][0]]
        moved = give(s, 0, 1, amount)
        gain = s.tot[1][0] - before[1]
        assert moved == (gain > 0)
        assert 0 <= gain <= 2 * amount + 1e-9
        assert np.isclose(s.tot[0][0], before[0] - gain)
        assert parts_connected(s)
        assert s.labn[homes[0]] == 0 and s.labn[homes[1]] == 1


def test_give_takes_a_tentacle_and_leaves_the_heavy_body():
    # p: the two left columns (heavy) plus a tentacle along q's bottom row; the amount
    # is the tentacle's weight: q takes it from the tip back, p keeps its body and home
    nx, ny = 6, 3
    col, row = np.arange(18) // ny, np.arange(18) % ny
    lab = np.where((col <= 1) | (row == 0), 0, 1)
    w = np.ones(18)
    w[[1, 2, 4, 5]] = 5.0
    s = grid(nx, ny, lab, [0, 17], w)
    assert give(s, 0, 1, 4.0)
    assert s.tot[1][0] == 8.0 + 4.0  # q had 8 units of weight 1
    assert (s.labn[[6, 9, 12, 15]] == 1).all() and (s.labn[:6] == 0).all()
    assert parts_connected(s)


def test_flow_plan_evens_every_territory_out_and_respects_bounds():
    # four 4 x 4 blocks, one heavy: the plan's flows leave every territory on its goal
    nx = ny = 8
    u = np.arange(64)
    lab = (u // ny >= 4) * 2 + (u % ny >= 4)
    w = np.where(lab == 0, 3.0, 1.0)
    s = grid(nx, ny, lab, [0, 7, 56, 63], w)
    adj = s.territory_graph()
    goal = np.array([s.bands.goal[t][0] for t in range(4)])
    left = np.array([s.tot[t][0] for t in range(4)]) - goal
    plan = flow_plan(s, adj)
    for p, q, a in plan:
        assert q in adj[p] and a > 0
        left[p] -= a
        left[q] += a
    assert np.abs(left).max() < 1e-6 * goal.max()
    # a bound of 0 on the heavy block's pair with its right neighbour: it all goes down
    cap = {(p, q): 1e9 for p in range(4) for q in adj[p]} | {(0, 1): 0.0}
    assert all((p, q) != (0, 1) for p, q, _ in flow_plan(s, adj, cap))


def test_flow_balance_passes_weight_through_the_middle():
    # a 3 x 3 block map with all the weight surplus in one corner block and the deficit
    # in the opposite one: the flow runs through the middle blocks
    nx = ny = 9
    u = np.arange(81)
    lab = (u // ny) // 3 * 3 + (u % ny) // 3
    w = np.ones(81)
    w[lab == 0] = 1.5
    w[lab == 8] = 0.5
    homes = [int(np.flatnonzero(lab == t)[4]) for t in range(9)]  # block centres
    s = grid(nx, ny, lab, homes, w)
    before = imbalance(s)
    cap = probe(s, s.territory_graph(), 5.0)
    assert all(v >= 0 for v in cap.values()) and (s.labn == lab).all()  # probing undoes
    flow_balance(s)
    assert imbalance(s) < before
    assert max(abs(t[0] - 9.0) for t in s.tot) < 4.5 - 1.0  # the corners were 4.5 off
    assert parts_connected(s)
    assert all(s.labn[h] == t for t, h in enumerate(homes))


def test_transplants_hand_a_heavy_unit_to_the_territory_nearest_it():
    # a row of 9 units: p's home at 0, q's at 8; p holds 0..6 with the heavy unit 6
    # (10 of 18); q's path to it (8, 7, 6) is lighter than all p holds
    w = np.ones(9)
    w[6] = 10.0
    lab = np.r_[np.zeros(7, dtype=int), np.ones(2, dtype=int)]
    s = grid(9, 1, lab, [0, 8], w)
    plans = transplants(s)
    assert len(plans) == 1
    new = plans[0]
    assert list(new) == [0] * 6 + [1] * 3  # the unit and the path to it go to q, whole
    assert s.labn[6] == 0  # the state itself is left as it was
    # a unit below the heavy share, or a taker whose path is no lighter: no plan
    assert transplants(grid(9, 1, lab, [0, 8], np.ones(9))) == []
    w2 = w.copy()
    w2[7] = 9.0  # q's path now weighs 20 > p's 16
    assert transplants(grid(9, 1, lab, [0, 8], w2)) == []


def test_transplants_also_strip_the_taker_down_to_its_path():
    # a row of 10 units, homes at 0 (p), 5 (q) and 9 (r); p holds 0..3 with the heavy
    # unit 3 (10 of 19), q 4..7, r 8 and 9. q's path to it (5, 4, 3) is lighter than all
    # p holds; taking it on top of its own units puts q at 14 against a goal of 6.3,
    # while q giving up its other units to its neighbours first holds 12
    w = np.ones(10)
    w[3] = 10.0
    lab = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2])
    plans = [list(p) for p in transplants(grid(10, 1, lab, [0, 5, 9], w))]
    assert [0, 0, 0, 1, 1, 1, 1, 1, 2, 2] in plans  # the path added to what q holds
    assert [0, 0, 0, 1, 1, 1, 2, 2, 2, 2] in plans  # q stripped to its path
    assert len(plans) == 2


def test_transplants_reroute_the_holder_along_its_lightest_path():
    # a 3 x 3 grid, p's home at 0 and q's at 4; p holds the ring 0, 3, 6, 7, 8, 5, 2
    # round q's 4, 1 and reaches the heavy unit 2 the long way (1+1+1+1+5+1+10 = 20);
    # its own lightest path to it is 0, 1, 2 (12): p stripped to that path, q the rest
    #   0 1 2
    #   3 4 5
    #   6 7 8
    w = np.ones(9)
    w[2] = 10.0
    w[8] = 5.0
    lab = np.array([0, 1, 0, 0, 1, 0, 0, 0, 0])
    plans = [list(p) for p in transplants(grid(3, 3, lab, [0, 4], w))]
    assert [0, 0, 0, 1, 1, 1, 1, 1, 1] in plans


def test_steadier_keeps_the_start_when_the_search_worsens_the_worst_territory():
    # a row of 4 units, two territories with homes at the ends: with unit weights a 2 + 2
    # split is exact and 1 + 3 or 3 + 1 are 50% off; with weights 1, 1, 2, 1 the split
    # 2 | 2 is 20% off and 3 | 1 is 60% off
    w = np.ones(4)
    pb = grid(4, 1, np.array([0, 1, 1, 1]), [0, 3], w).problem
    exact = np.array([0, 0, 1, 1])
    off = np.array([0, 1, 1, 1])
    worse = np.array([0, 0, 0, 1])
    w5 = np.array([1.0, 1.0, 2.0, 1.0])
    pb5 = grid(4, 1, off, [0, 3], w5).problem
    # inside the band: the search's plan stays
    assert list(steadier(pb, off, exact)) == list(exact)
    # off the band and no better than the start: the start
    assert list(steadier(pb5, exact, worse)) == list(exact)
    # off the band but better than the start: the search's plan
    assert list(steadier(pb5, worse, exact)) == list(exact)
    assert list(steadier(pb, off, worse)) == list(worse)  # equal worst: the found plan


def test_relocations_move_a_short_territory_next_to_the_surplus():
    # an 8 x 2 grid of unit weights: t (home (0, 0)) holds 2 units behind p's home at
    # (1, 0); p holds 6, q 8 (goal 16 / 3 each): t is short, p and q over
    lab = np.r_[[0, 0], [1] * 6, [2] * 8]
    s = grid(8, 2, lab, [0, 2, 14], np.ones(16))
    plans = relocations(s)
    assert plans
    for new in plans:
        t = grid(8, 2, new, [0, 2, 14], np.ones(16))
        assert parts_connected(t)
        assert [t.labn[h] for h in (0, 2, 14)] == [0, 1, 2]
        assert abs(t.tot[0][0] - 16 / 3) < abs(s.tot[0][0] - 16 / 3)  # t gained
        assert (t.labn[[1, 3]] == 0).all()  # by its path around p's home
    assert list(s.labn) == list(lab)  # the state itself is left as it was
    # every territory on its goal (the last unit weighs 0): no plan
    w = np.r_[np.ones(15), 0.0]
    even = np.array([0, 0, 1, 0, 1, 0, 1, 0, 1, 1, 2, 2, 2, 2, 2, 2])
    assert relocations(grid(8, 2, even, [0, 2, 14], w)) == []


def test_hanging_is_what_a_units_removal_cuts_off_from_its_home():
    # a row of 6 units: territory 0 (home 0) holds 0..3, territory 1 (home 5) holds 4, 5;
    # removing 1 cuts off 2 and 3, removing 2 cuts off 3; the ends cut nothing off
    w = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    s = grid(6, 1, np.array([0, 0, 0, 0, 1, 1]), [0, 5], w)
    csr = s.g.matrix.tocsr()
    locked = np.asarray(s.problem.locked)
    assert list(hanging(csr, s.labn, locked, w)) == [0.0, 7.0, 4.0, 0.0, 0.0, 0.0]
    # on a grid with a ring and a tail, every unit's figure matches removing it
    lab = np.r_[[0] * 9, [1] * 7]
    s = grid(4, 4, lab, [0, 15], np.arange(1.0, 17.0))
    csr = s.g.matrix.tocsr()
    w = s.W[:, 0]
    got = hanging(csr, s.labn, np.asarray(s.problem.locked), w)
    for u in range(16):
        if u in (0, 15):
            assert got[u] == 0.0
            continue
        t = s.labn[u]
        idx = np.flatnonzero(s.labn == t)
        idx = idx[idx != u]
        _, comp = connected_components(csr[idx][:, idx], directed=False)
        home = comp[list(idx).index(0 if t == 0 else 15)]
        assert got[u] == w[idx[comp != home]].sum()


def test_far_side_is_the_half_of_a_territory_furthest_from_its_home():
    # a row of 6: territory 0 (home 0) holds 0..3, territory 1 (home 5) holds 4, 5; the
    # weights put half of territory 0 within unit 1 (1 + 4 of 10)
    w = np.array([1.0, 4.0, 2.0, 3.0, 1.0, 1.0])
    s = grid(6, 1, np.array([0, 0, 0, 0, 1, 1]), [0, 5], w)
    assert list(far_side(s, 0)) == [2, 3]
    assert list(far_side(s, 1)) == [4]  # the home alone holds half of territory 1
    # a territory of its home alone has no far side
    assert list(far_side(grid(6, 1, np.array([0, 0, 0, 0, 0, 1]), [0, 5], w), 1)) == []


def far_ring() -> tuple[Problem, np.ndarray, dict[str, int]]:
    # a ring of 11 units round a centre q0 (each on the circle at 30 degrees):
    #   t0 - o1 - o0 - c1 - c2 - b1 - b2 - b3 - b4 - z1 - z2 - t0, and q0 - z1, q0 - z2
    # territories: T (home t0) holds t0 alone, 3 of its goal 6; O (home o0) holds o1,
    # c1, c2 and b1..b4, 9; Q (home q0) holds q0 (6) and the weightless z1, z2. O's
    # surplus is its far end b2..b4; the over-band unit nearest T is o1, behind which
    # lies only O's home, so landing there T cannot take any more of O: only landing
    # on O's far side (at b4, by the path through z2 and z1) lets T take b3 and b2
    names = ["t0", "o1", "o0", "c1", "c2", "b1", "b2", "b3", "b4", "z1", "z2", "q0"]
    at = {x: i for i, x in enumerate(names)}
    ring = names[:11] + ["t0"]
    e = [(at[a], at[b]) for a, b in zip(ring[:-1], ring[1:], strict=True)]
    e += [(at["q0"], at["z1"]), (at["q0"], at["z2"])]
    n = len(names)
    ei, ej = np.array(e).T
    m = sparse.coo_matrix((np.ones(2 * len(e)), (np.r_[ei, ej], np.r_[ej, ei])), shape=(n, n))
    ang = np.radians(30.0 * np.arange(11))
    xy = np.r_[np.c_[np.cos(ang), np.sin(ang)], [[1.3 * np.cos(ang[9:11]).mean(),
                                                  1.3 * np.sin(ang[9:11]).mean()]]]  # fmt: skip
    w = np.array([3, 0.5, 1, 1, 1, 2.5, 1, 1, 1, 0, 0, 6], dtype=float)
    locked = np.full(n, -1)
    locked[[at["t0"], at["o0"], at["q0"]]] = [0, 1, 2]
    pb = Problem(Graph(m.tocsr()), w[:, None], xy, np.ones(n), [1 / 3] * 3, [0.01], locked, 0.5)
    lab = np.array([0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2])
    return pb, lab, at


def test_relocations_land_on_the_far_side_of_a_territory_reaching_out():
    # the ring of far_ring: T short at t0, O over with its surplus at its far end b2..b4
    pb, lab, at = far_ring()
    names = list(at)
    s = SearchState(pb, lab, np.random.default_rng(0))
    assert list(far_side(s, 1)) == [at["b2"], at["b3"], at["b4"]]

    def worst(plan):
        t = SearchState(pb, plan, np.random.default_rng(0))
        assert parts_connected(t)
        assert [t.labn[at[h]] for h in ("t0", "o0", "q0")] == [0, 1, 2]
        return max(abs(t.tot[i][0] / 6 - 1) for i in range(3))

    near = relocations(s, far=0)
    assert near and min(worst(p) for p in near) > 0.1  # landing at o1: T still short
    plans = relocations(s)
    assert min(worst(p) for p in plans) < 1e-9  # on the far side: every territory on 6
    best = plans[int(np.argmin([worst(p) for p in plans]))]
    assert [names[i] for i in np.flatnonzero(best == 0)] == ["t0", "b2", "b3", "b4", "z1", "z2"]


def test_transplanted_stops_at_its_deadline_and_its_rounds():
    # far_ring's plan is 50% off (T holds 3 of 6, O 9); the repair lands T on O's far side
    pb, lab, _ = far_ring()

    def worst(plan):
        return max_deviation(SearchState(pb, plan, np.random.default_rng(0)))

    plan, left = transplanted(pb, lab, seed=0)
    assert worst(plan) < 1e-9 and left == 0
    # a deadline already past: no plan is searched, the start comes back, and the
    # candidates left unsearched are counted (the relocations of far_ring: 3)
    plan, left = transplanted(pb, lab, seed=0, deadline=float("-inf"))
    assert list(plan) == list(lab) and left == 3
    # the deterministic knob: no rounds, no repair
    plan, left = transplanted(pb, lab, seed=0, rounds=0)
    assert list(plan) == list(lab) and left == 0


def test_a_tiny_time_limit_stops_the_rep_home_starts_and_repair_with_notes(dumbbell_reps):
    # a time limit already past after the first start (1e-6 s): the first home start
    # still runs (there is a plan, every home in its territory), the other home starts,
    # the chain rounds and every restart are skipped, and the repair searches nothing
    from patchmap.notes import with_code
    from patchmap.partition import Partitioner
    from patchmap.partition.schedule import HOME_STARTS, RETRIES

    units, reps = dumbbell_reps
    free = Partitioner(4, "population", seed=0, effort=0).fit(units, reps=reps)
    assert not with_code(free.notes, "repair_stopped")
    assert not with_code(free.notes, "starts_stopped")
    cut = Partitioner(4, "population", seed=0, effort=0, time_limit=1e-6).fit(units, reps=reps)
    (note,) = with_code(cut.notes, "repair_stopped")
    assert note.data["skipped"] > 0 and note.data["time_limit"] == 1e-6
    assert "time limit" in note
    (note,) = with_code(cut.notes, "starts_stopped")
    # the dumbbell cannot be balanced, so every restart would run: n_init ("auto": 3 on
    # 55 units) and the retries, besides the two home starts after the first
    assert note.data["skipped"] == len(HOME_STARTS) - 1 + 3 + RETRIES
    assert note.data["chain_cut"] and note.data["time_limit"] == 1e-6
    assert f"{note.data['skipped']} start(s) not begun" in note
    assert cut.territories["contiguous"].all()
    home_of = cut.assignment.reindex(cut.homes.to_numpy()).to_numpy()
    assert list(home_of) == list(cut.homes.index)


def test_a_tiny_time_limit_stops_the_restarts_of_a_plain_plan(dumbbell_reps):
    # without reps the restarts honour a given limit too (the first always runs)
    from patchmap.notes import with_code
    from patchmap.partition import Partitioner

    units, _ = dumbbell_reps
    free = Partitioner(4, "population", seed=0, effort=0).fit(units)
    assert not with_code(free.notes, "starts_stopped")
    cut = Partitioner(4, "population", seed=0, effort=0, time_limit=1e-6).fit(units)
    (note,) = with_code(cut.notes, "starts_stopped")
    assert note.data["skipped"] >= 2 and not note.data["chain_cut"]  # n_init 3, one ran
    assert len(cut.assignment) == len(units) and cut.territories["contiguous"].all()
