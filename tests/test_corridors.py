"""The corridor bound (certify.corridors): too few links between two parts of the map."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse

from patchmap.certify.corridors import corridor_bound, corridor_deviation


def dumbbell(side: int = 5):
    """Two side x side grids joined by one unit (index 2 side^2) between their middles."""
    n = 2 * side * side + 1
    pos = {}
    for b in range(2):
        for c in range(side):
            for r in range(side):
                pos[(b * (side + 1) + c, r)] = len(pos)
    mid = side // 2
    neck = n - 1
    pos[(side, mid)] = neck
    edges = [(pos[(x, y)], pos[(x + dx, y + dy)]) for (x, y) in pos for dx, dy in ((1, 0), (0, 1))
             if (x + dx, y + dy) in pos]  # fmt: skip
    e = np.array(edges)
    m = sparse.coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n))
    xy = np.zeros((n, 2))
    for (x, y), i in pos.items():
        xy[i] = (x, y)
    return (m + m.T).tocsr(), xy, neck


def test_one_link_caps_the_balance_of_crowded_homes():
    m, xy, neck = dumbbell()
    n = m.shape[0]
    w = np.ones(n)
    # three homes on the left (25 units), one on the right (25): the left's reps need
    # 3 x 12.75 (1 - e) units, the two that do not cross have the left's 25 at most and
    # only one territory can cross the single link, so 38.25 (1 - e) <= 25 + 12.75 (1 + e)
    side = np.array([0, 0, 0, 2])
    in_a = xy[:, 0] < 5
    in_cut = np.arange(n) == neck
    goal = np.full(4, w.sum() / 4)
    assert corridor_deviation(w, goal, side, in_a, in_cut) == pytest.approx(0.5 / 51, rel=1e-6)
    b = corridor_bound(m, xy, w, np.array([0, 6, 12, 30]))
    # the sweeps find this neck or a better one (the crosser's path from its home to the
    # link also holds units of the left)
    assert b.deviation >= 0.5 / 51 - 1e-9
    assert b.homes[0] + b.homes[1] + b.homes[2] == 4
    assert f"{b.deviation:.2%}" in b.sentence()


def test_no_bound_when_homes_match_the_weight():
    m, xy, neck = dumbbell()
    w = np.ones(m.shape[0])
    w[neck] = 0.0
    b = corridor_bound(m, xy, w, np.array([12, 37]))  # one home a side, 25 units each
    assert b.deviation == 0.0
    assert "no neck" in b.sentence()


def test_capacity_shares_move_the_bound():
    m, xy, neck = dumbbell()
    w = np.ones(m.shape[0])
    w[neck] = 0.0
    homes = np.array([0, 6, 12, 37])
    assert corridor_bound(m, xy, w, homes).deviation > 0.01  # equal shares: the left is short
    # the right-hand rep full time, the three on the left a third each: each side holds
    # what its reps need, nothing has to cross
    assert corridor_bound(m, xy, w, homes, shares=np.array([1, 1, 1, 3]) / 6).deviation == 0.0


def test_a_missed_rep_plan_names_the_neck_as_its_proof(dumbbell_reps):
    from patchmap.partition import Partitioner

    units, reps = dumbbell_reps
    plan = Partitioner(4, "population", seed=0, effort=0).fit(units, reps=reps)
    note = next(n for n in plan.notes if getattr(n, "code", "") == "crowded_homes")
    assert "cannot be met" in note and "only links" in note
    assert plan.max_deviation >= note.data["bound"] - 1e-9  # the proof holds for this plan
    assert note.data["bound"] > 0.005
