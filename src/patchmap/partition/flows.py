"""Balancing the primary column along paths and flows of territories.

:func:`chain_balance` passes weight along paths of territories by re-splitting pairs
(:func:`~patchmap.partition.recom.resplit`), from the territory furthest over its goal to
the nearest one under (or the reverse), one pair at a time from the receiving end.
:func:`flow_balance` plans how much each territory must pass to each neighbour at once (a
flow on the territory graph, a linear programme, :func:`flow_plan`) and realizes it with
:func:`~patchmap.partition.recom.give` (a territory whose home sits at the end of a
narrow neck cannot pass weight through it: the plan routes around such pairs, bounded by
what each pair can pass, :func:`probe`)."""

from __future__ import annotations

import numpy as np
from scipy import sparse

from patchmap.partition.balance import pick_step
from patchmap.partition.objective import imbalance
from patchmap.partition.recom import TRIES, give, resplit
from patchmap.partition.state import SearchState

__all__ = ["chain_balance", "flow_balance", "flow_plan", "probe"]

ATTEMPTS = 6  # plans per round of flow_balance (each bounding the pairs that fell short)
STEP = 0.5  # share of the planned flows a round of flow_balance passes


def chain_balance(
    s: SearchState, rng: np.random.Generator, goal: float = 0.5, max_iter: int | None = None,
    tries: int = TRIES,
) -> None:  # fmt: skip
    """Even out the primary column by re-splitting pairs along paths of territories.

    Each step takes the territory furthest from its goal and the nearest one deviating
    the other way (:func:`~patchmap.partition.balance.pick_step`) and passes the amount
    along the path between them, each pair re-split by :func:`resplit` from the
    receiving end back, each hop passing on what the one after it took. A step that does
    not reduce the imbalance is undone; the descent ends when none helps.
    """
    best = imbalance(s, goal)
    max_iter = max_iter if max_iter is not None else 20 * s.k
    tried: set = set()
    for _ in range(max_iter):
        if best[0] <= 0:
            break
        step = pick_step(s, s.territory_graph(), tried)
        if step is None:
            break
        key, path, amount = step
        s.begin()
        window = 0.25 * goal * s.bands.tol[0] * s.bands.goal[path[-1]][0]
        want = amount
        hops = list(zip(path[:-1], path[1:], strict=False))
        h = len(hops) - 1
        while h >= 0:
            p, q = hops[h]
            before = s.tot[q][0]
            s_mark = len(s.log)
            resplit(s, p, q, before + want, rng, tries=tries, window=window)
            got = s.tot[q][0] - before
            if got < 0.5 * want and h > 0:
                # blocked: cut q from p and the territory upstream together, then split
                # those two so that the upstream one gives up the amount
                s.undo(to=s_mark)
                pp = hops[h - 1][0]
                pp_before = s.tot[pp][0]
                if resplit(s, [p, pp], q, before + want, rng, tries=tries, window=window):
                    resplit(s, p, pp, pp_before - want, rng, tries=tries, window=window)
                want = pp_before - s.tot[pp][0]  # what pp gave, for upstream to make up
                h -= 2
                if want <= 0:
                    break
                continue
            want = got
            h -= 1
            if want <= 0:
                break
        now = imbalance(s, goal)
        if now >= best:
            s.undo()
            tried.add(key)
            continue
        best = now
        s.log = None
        tried.clear()
    s.log = None


def flow_plan(
    s: SearchState, adj: list[set[int]], cap: dict | None = None
) -> list[tuple[int, int, float]]:
    """How much of the primary column each territory should pass to each neighbour so
    that the largest deviation left is smallest: a flow on the territory graph, at most
    ``cap[(p, q)]`` from p to q (what :func:`give` could pass, probed; unbounded when not
    given), ties broken by the least flow times the distance between the territories'
    centroids; a linear programme (HiGHS). Returns ``(giver, taker, amount)`` for the
    arcs carrying flow, ordered so that a territory is filled before it passes its
    outflow on (givers first)."""
    from scipy.optimize import linprog

    k = s.k
    arcs = [(p, q) for p in range(k) for q in sorted(adj[p])]
    if not arcs:
        return []
    na = len(arcs)
    goal = np.array([s.bands.goal[t][0] for t in range(k)])
    excess = np.array([s.tot[t][0] for t in range(k)]) - goal
    sa = np.maximum(np.asarray(s.sa), 1e-300)
    cx, cy = np.asarray(s.sx) / sa, np.asarray(s.sy) / sa
    pa, qa = np.array(arcs).T
    dist = np.hypot(cx[pa] - cx[qa], cy[pa] - cy[qa]) + 1e-3
    # variables: the arc flows, then t (the largest deviation left, as a share of goal);
    # excess_i - out_i + in_i within +- t goal_i
    g = np.maximum(goal, 1e-300)
    flow = sparse.csr_matrix(
        (np.r_[np.ones(na), -np.ones(na)], (np.r_[pa, qa], np.r_[np.arange(na), np.arange(na)])),
        shape=(k, na),
    )  # fmt: skip
    tcol = sparse.csr_matrix(-g[:, None])
    a_ub = sparse.vstack([sparse.hstack([-flow, tcol]), sparse.hstack([flow, tcol])])
    b_ub = np.r_[-excess, excess]
    scale = max(np.abs(excess).max(), 1e-300)
    cost = np.r_[1e-6 * dist / max(dist.max(), 1e-300) / scale, 1.0]
    hi = [cap.get(a, 0.0) if cap is not None else None for a in arcs]
    res = linprog(cost, A_ub=a_ub, b_ub=b_ub, bounds=[(0, h) for h in hi] + [(0, None)],
                  method="highs")  # fmt: skip
    if res.status != 0:
        return []
    f = res.x[:na]
    keep = np.flatnonzero(f > 1e-7 * scale)
    # order the flow's territories so that every arc runs forwards, and take the arcs in
    # that order (territories on a cycle, which the distance term makes rare, come last)
    indeg = np.zeros(k, dtype=np.int64)
    out: list[list[int]] = [[] for _ in range(k)]
    for i in keep.tolist():
        out[pa[i]].append(i)
        indeg[qa[i]] += 1
    order, ready = [], [t for t in range(k) if indeg[t] == 0]
    while ready:
        t = ready.pop()
        order.append(t)
        for i in out[t]:
            indeg[qa[i]] -= 1
            if indeg[qa[i]] == 0:
                ready.append(int(qa[i]))
    rank = np.full(k, k, dtype=np.int64)
    rank[order] = np.arange(len(order))
    steps = sorted(keep.tolist(), key=lambda i: (rank[pa[i]], rank[qa[i]]))
    return [(int(pa[i]), int(qa[i]), float(f[i])) for i in steps]


def probe(s: SearchState, adj: list[set[int]], most: float) -> dict:
    """What :func:`give` can pass from each territory to each neighbour, up to ``most``
    (tried and taken back)."""
    cap = {}
    for p in range(s.k):
        for q in sorted(adj[p]):
            before = s.tot[q][0]
            s.begin()
            give(s, p, q, most)
            cap[(p, q)] = s.tot[q][0] - before
            s.undo()
    return cap


def flow_balance(
    s: SearchState, goal: float = 0.5, max_iter: int | None = None, step: float = STEP,
    attempts: int = ATTEMPTS,
) -> None:  # fmt: skip
    """Even out the primary column along a plan of flows between neighbouring territories
    (:func:`flow_plan`, bounded by what each pair can pass, :func:`probe`): each round
    passes ``step`` of every planned amount by handing the taker part of the giver next
    to it (:func:`give`), givers first, and is kept when it lowers the imbalance. A
    round that does not is undone, the pairs that passed less than half their amount
    are bounded by what they passed, and the round is planned again (up to ``attempts``
    times); the rounds end when no attempt helps."""
    best = imbalance(s, goal)
    max_iter = max_iter if max_iter is not None else s.k
    for _ in range(max_iter):
        if best[0] <= 0:
            break
        adj = s.territory_graph()
        worst = max(abs(s.tot[t][0] - s.bands.goal[t][0]) for t in range(s.k))
        cap = probe(s, adj, worst)
        for _ in range(attempts):
            plan = flow_plan(s, adj, cap)
            s.begin()
            short = {}
            for p, q, amount in plan:
                window = 0.25 * goal * s.bands.tol[0] * s.bands.goal[q][0]
                if amount * step <= window:
                    continue
                before = s.tot[q][0]
                give(s, p, q, amount * step, window=window)
                if s.tot[q][0] - before < 0.5 * amount * step:
                    short[(p, q)] = max(s.tot[q][0] - before, 0.0) / step
            now = imbalance(s, goal)
            if now < best:
                break
            s.undo()
            if not short:
                break
            cap.update(short)
        if now < best:
            best = now
            s.log = None
            continue
        break
    s.log = None
