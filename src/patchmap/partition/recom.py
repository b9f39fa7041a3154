"""Re-splitting pairs of territories along shortest-path distances from their homes.

Balancing by boundary moves (:mod:`~patchmap.partition.balance`) passes weight only where
a territory can give up the units on one side while keeping its locked units (a rep's
home) joined; homes crowded in one metro with surplus far away leave chains of
territories where every such move is blocked. :func:`resplit` redraws two neighbouring
territories at once, in the spirit of the recombination step of ReCom (DeFord, Duchin
and Solomon 2021): their union's units are ordered by the difference of their distances
from each territory's locked units and cut at the threshold closest to the wanted total,
so both parts are connected and keep their locked units for every threshold.
:func:`chain_balance` passes weight along paths of territories this way, from the
territory furthest over its goal to the nearest one under (or the reverse), one pair at
a time from the receiving end. :func:`flow_balance` plans how much each territory must
pass to each neighbour at once (a flow on the territory graph, a linear programme) and
realizes it with :func:`give`, which hands a neighbour the giver's units next to it one
at a time, taking along any piece the unit would cut off from the giver's home (a
territory whose home sits at the end of a narrow neck cannot pass weight through it:
the plan routes around such pairs)."""

from __future__ import annotations

import heapq

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import connected_components, dijkstra

from patchmap.partition.balance import pick_step
from patchmap.partition.contiguity import settle_locks
from patchmap.partition.objective import imbalance
from patchmap.partition.state import SearchState

__all__ = [
    "TRIES",
    "chain_balance",
    "flow_balance",
    "flow_plan",
    "far_side",
    "give",
    "hanging",
    "hung_paths",
    "probe",
    "relocations",
    "resplit",
    "transplants",
]

TRIES = 6  # orderings tried per re-split (plain distances, then stretched edges)
ATTEMPTS = 6  # plans per round of flow_balance (each bounding the pairs that fell short)
STEP = 0.5  # share of the planned flows a round of flow_balance passes
CHECKS = 40  # units give may pass over (their removal would cut the giver) before it stops
HEAVY = 0.2  # a unit above this share of a mean goal is heavy (see transplants)
HEAVY_UNITS = 2  # heavy units tried by transplants
HEAVY_TAKERS = 2  # territories each is offered to
RELOCATE = 3  # short territories tried by relocations
RELOCATE_FAR = 3  # ... and over territories whose far side a short territory lands in
RELOCATE_SIDES = 0.5  # ... only when the shortest and the most over are this close in size


def resplit(
    s: SearchState, p: int | list[int], q: int, want_q: float, rng: np.random.Generator,
    tries: int = TRIES, window: float = 0.0,
) -> bool:  # fmt: skip
    """Redraw territories p and q so that q's primary total comes close to ``want_q``,
    each keeping its locked units, both connected; True when the labels changed.

    Within the pair's units, ``key = d_q - d_p`` (shortest-path distances from each
    territory's locked units, edges as long as the distance between unit centres) orders
    the units from q's home outwards; q takes the units with key below a threshold.
    Both parts are connected for every threshold (a unit's predecessor on the path from
    its own side's home has a key at least as far on that side), so sliding the
    threshold reaches q totals one unit at a time. The first try uses the plain
    distances, the others randomly stretched edges (other boundaries); the cut closest
    to the wanted total wins (within ``window`` of it: the one cutting fewest edges).
    With a list of territories for ``p``, q is cut from their union (which must stay
    connected) and the units q gives up go to the first of them.
    """
    group = [p] if isinstance(p, int) else list(p)
    in_p = np.isin(s.labn, group)
    idx = np.flatnonzero(in_p | (s.labn == q))
    lab = s.labn[idx]
    locked = s.lockn[idx]
    in_p = in_p[idx]
    src_p = np.flatnonzero(locked & in_p)
    src_q = np.flatnonzero(locked & (lab == q))
    if len(idx) < 3 or len(src_p) == 0 or len(src_q) == 0:
        return False
    m = sparse.triu(s.g.matrix[idx][:, idx], k=1).tocoo()
    ei, ej = m.row, m.col
    xy = s.xy[idx]
    length = np.hypot(*(xy[ei] - xy[ej]).T) + 1e-6
    w = s.W[idx, 0]
    n = len(idx)
    multi = len(src_p) > 1 or len(src_q) > 1  # several locks a side: check they stay joined
    best = None
    for t in range(tries):
        ln = length if t == 0 else length * rng.uniform(0.3, 1.7, len(length))
        g = sparse.csr_matrix((np.r_[ln, ln], (np.r_[ei, ej], np.r_[ej, ei])), shape=(n, n))
        d = dijkstra(g, indices=np.r_[src_p, src_q], min_only=False)
        dp, dq = d[: len(src_p)].min(axis=0), d[len(src_p) :].min(axis=0)
        if not (np.isfinite(dp).all() and np.isfinite(dq).all()):
            return False
        key = dq - dp
        order = np.argsort(key, kind="stable")
        ks = key[order]
        cum = np.cumsum(w[order])
        # cuts between distinct keys (ties within rounding stay together): q takes
        # order[:c]
        eps = 1e-9 * (np.abs(ks).max() + 1.0)
        c = np.flatnonzero(ks[1:] - ks[:-1] > eps) + 1
        # q's locked units inside its part, p's outside
        c = c[(ks[c - 1] >= key[src_q].max() - eps) & (ks[c] <= key[src_p].min() + eps)]
        if len(c) == 0:
            continue
        err = np.abs(cum[c - 1] - want_q)
        near = np.flatnonzero(err <= max(window, err.min()))
        for i in near[np.argsort(err[near])][:4].tolist():
            inq = np.zeros(n, dtype=bool)
            inq[order[: c[i]]] = True
            if multi and not _whole(inq, ei, ej, src_p, src_q):
                continue
            cut = int((inq[ei] != inq[ej]).sum())
            key_i = (max(err[i], window), cut)
            if best is None or key_i < best[0]:
                best = (key_i, inq)
        if best is not None and best[0][0] <= window:
            break
    if best is None:
        return False
    new = np.where(best[1], q, np.where(in_p, lab, group[0]))
    changed = np.flatnonzero(new != lab)
    if len(changed) == 0:
        return False
    for i in changed.tolist():
        s.move(int(idx[i]), int(lab[i]), int(new[i]))
    return True


def give(
    s: SearchState, p: int, q: int, amount: float, window: float = 0.0,
    checks: int = CHECKS,
) -> bool:  # fmt: skip
    """Pass about ``amount`` of the primary column from territory p to its neighbour q,
    one unit of p at a time along their boundary; True when units moved.

    The units of p next to q go first that are furthest from p's locked units and
    nearest q (``key = d_q - d_p``, shortest-path distances through the pair from q's
    units and within p from p's locked units); a unit whose removal cuts p takes along
    the pieces it cuts off from p's locked units (a tentacle of p reaching along q goes
    whole), and one that would separate p's locked units is passed over. Every unit
    joins q next to it or next to a unit joining with it, so both stay connected. It
    stops once q has gained the amount (within ``window``) or no unit can go without
    overshooting more than it gains. Unlike :func:`resplit`, q keeps all it has, so the
    pair's other boundaries stay put.
    """
    if amount <= 0:
        return False
    in_pair = (s.labn == p) | (s.labn == q)
    idx = np.flatnonzero(in_pair)
    is_p = s.labn[idx] == p
    locked = s.lockn[idx] & is_p
    if not locked.any() or not is_p.any() or is_p.all():
        return False
    n = len(idx)
    m = s.g.matrix[idx][:, idx].tocsr()
    mc = m.tocoo()
    length = np.hypot(*(s.xy[idx][mc.row] - s.xy[idx][mc.col]).T) + 1e-6
    g = sparse.csr_matrix((length, (mc.row, mc.col)), shape=(n, n))
    dq = dijkstra(g, indices=np.flatnonzero(~is_p), min_only=True)
    inside = is_p[mc.row] & is_p[mc.col]
    gp = sparse.csr_matrix((length[inside], (mc.row[inside], mc.col[inside])), shape=(n, n))
    dp = dijkstra(gp, indices=np.flatnonzero(locked), min_only=True)
    key = dq - dp
    w = s.W[idx, 0]
    mine = is_p.copy()  # p's units left
    got, moved, bad = 0.0, [], 0
    heap = sorted(
        (float(key[i]), i) for i in np.flatnonzero(is_p & ~locked).tolist()
        if (~is_p[m.indices[m.indptr[i] : m.indptr[i + 1]]]).any()
    )  # fmt: skip
    skipped: set[int] = set()
    heapq.heapify(heap)
    while heap and got < amount - window:
        _, i = heapq.heappop(heap)
        if not mine[i] or i in skipped:
            continue
        mine[i] = False
        rest = np.flatnonzero(mine)
        _, comp = connected_components(m[rest][:, rest], directed=False)
        home = np.unique(comp[locked[rest]])
        take = np.r_[i, rest[comp != home[0]]] if len(home) == 1 else None
        if take is None or got + w[take].sum() - amount > amount - got:
            # cuts p's locked units apart, or overshoots more than it gains
            mine[i] = True
            skipped.add(i)
            bad += 1
            if bad > checks:
                break
            continue
        mine[take] = False
        got += float(w[take].sum())
        moved.extend(take.tolist())
        for u in take.tolist():
            for j in m.indices[m.indptr[u] : m.indptr[u + 1]].tolist():
                if mine[j] and not locked[j]:
                    skipped.discard(j)
                    heapq.heappush(heap, (float(key[j]), j))
    for i in moved:
        s.move(int(idx[i]), p, q)
    return bool(moved)


def _whole(inq: np.ndarray, ei: np.ndarray, ej: np.ndarray, src_p, src_q) -> bool:
    """Both parts of a split are connected (``inq``: q's units)."""
    n = len(inq)
    same = inq[ei] == inq[ej]
    sub = sparse.coo_matrix((np.ones(int(same.sum())), (ei[same], ej[same])), shape=(n, n))
    _, comp = connected_components(sub, directed=False)
    return len(np.unique(comp[inq])) == 1 and len(np.unique(comp[~inq])) == 1


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


def transplants(
    s: SearchState, heavy: float = HEAVY, units: int = HEAVY_UNITS, per_unit: int = HEAVY_TAKERS
) -> list[np.ndarray]:  # fmt: skip
    """Plans that hand a heavy unit of a territory off its target to another territory,
    with the lightest path to it from that territory's locked units (a path passing no
    other territory's locked units; the pieces it cuts off join their neighbours,
    :func:`~patchmap.partition.contiguity.settle_locks`). A unit that makes a quarter of
    a territory's goal cannot be passed by boundary moves: the territory holding it
    (Los Angeles County, no rep living in it, held by a rep in Kansas along a thread of
    counties through San Bernardino) keeps its whole path to it however the others
    balance. Takers: the ``per_unit`` territories whose path to the unit is lightest
    against their goal, when lighter than the holder's total; ``units``: the heaviest
    such units of off-target territories, ``heavy``: the least weight (share of a mean
    goal).

    Each taker is tried three ways: the path added to what it holds, and stripped first
    (its other units go to their neighbours, as in :func:`relocations`) so that it holds
    the path alone, once along the lightest path and once along :func:`hung_paths`
    (which cuts fewer territories apart on its way). A taker with a
    territory of its own is far over with the heavy unit on top of it, and the
    refinement hands the unit back; stripped, it holds about its lightest path, the
    figure the pocket bound (:mod:`patchmap.certify.pockets`) allows it. The holder is
    tried stripped too when its own lightest path to the unit is lighter than the one
    through the units it holds (a territory reaching the county the long way round)."""
    k, w = s.k, s.W[:, 0]
    goal = np.array([s.bands.goal[t][0] for t in range(k)])
    tot = np.array([s.tot[t][0] for t in range(k)])
    off = np.abs(tot / np.maximum(goal, 1e-300) - 1) > s.bands.tol[0]
    locked = np.asarray(s.problem.locked)
    cand = np.flatnonzero((w > heavy * goal.mean()) & (locked < 0) & off[s.labn])
    cand = cand[np.argsort(-w[cand], kind="stable")][:units]
    if not len(cand):
        return []
    m = s.g.matrix.tocoo()
    step = 1e-9 * max(float(w.max()), 1.0)
    plans = []
    paths = []
    for h in range(k):
        src = np.flatnonzero(locked == h)
        if not len(src):
            paths.append(None)
            continue
        keep = ((locked[m.row] < 0) | (locked[m.row] == h)) & (
            (locked[m.col] < 0) | (locked[m.col] == h)
        )
        g = sparse.csr_matrix((w[m.col[keep]] + step, (m.row[keep], m.col[keep])), shape=m.shape)
        d, pred, _ = dijkstra(g, indices=src, min_only=True, return_predecessors=True)
        paths.append((d + w[src].min(), pred))
    csr = s.g.matrix.tocsr()
    hang = None
    for u in cand.tolist():
        t = int(s.labn[u])
        cost = np.array([p[0][u] / max(goal[h], 1e-300) if p is not None else np.inf
                         for h, p in enumerate(paths)])  # fmt: skip
        held = tot[t] / max(goal[t], 1e-300)
        takers = [h for h in np.argsort(cost, kind="stable").tolist() if h != t][:per_unit]
        if np.isfinite(cost[t]) and cost[t] < _held_path(s, t, u) / max(goal[t], 1e-300) * (
            1 - 1e-9
        ):
            takers.append(t)
        for h in takers:
            if not np.isfinite(cost[h]) or cost[h] >= held:
                continue
            for strip, hung in ((False, False), (True, False), (True, True)):
                if h == t and not strip:
                    continue
                new = s.labels()
                pred = paths[h][1]
                if strip:
                    new[(new == h) & (locked < 0)] = -1
                    _dissolve(csr, new, h)
                if hung:
                    if hang is None:
                        hang = hanging(csr, s.labn, locked, w)
                    pred = hung_paths(s, h, hang)[1]
                v = u
                while v >= 0 and locked[v] != h:
                    new[v] = h
                    v = int(pred[v])
                new = settle_locks(s.g, new, w, k, locked)
                if not any(np.array_equal(new, p) for p in plans):
                    plans.append(new)
    return plans


def hung_paths(s: SearchState, h: int, hang: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distances and predecessors of the lightest paths from territory h's locked units
    passing no other territory's locked units, each unit entered costing its weight plus
    what its removal cuts off from its territory's locked units (:func:`hanging`; h's own
    units go anyway)."""
    w = s.W[:, 0]
    locked = np.asarray(s.problem.locked)
    m = s.g.matrix.tocoo()
    keep = ((locked[m.row] < 0) | (locked[m.row] == h)) & (
        (locked[m.col] < 0) | (locked[m.col] == h)
    )
    cost = w + np.where(s.labn == h, 0.0, hang) + 1e-9 * max(float(w.max()), 1.0)
    g = sparse.csr_matrix((cost[m.col[keep]], (m.row[keep], m.col[keep])), shape=m.shape)
    d, pred, _ = dijkstra(g, indices=np.flatnonzero(locked == h), min_only=True,
                          return_predecessors=True)  # fmt: skip
    return d, pred


def _held_path(s: SearchState, t: int, u: int) -> float:
    """The lightest path from territory t's locked units to its unit u through its own
    units (both ends counted, as :func:`transplants` counts paths)."""
    idx = np.flatnonzero(s.labn == t)
    w = s.W[idx, 0]
    m = s.g.matrix[idx][:, idx].tocoo()
    step = 1e-9 * max(float(s.W[:, 0].max()), 1.0)
    g = sparse.csr_matrix((w[m.col] + step, (m.row, m.col)), shape=(len(idx), len(idx)))
    src = np.flatnonzero(s.lockn[idx])
    d = dijkstra(g, indices=src, min_only=True)
    return float(d[np.searchsorted(idx, u)] + w[src].min())


def relocations(s: SearchState, most: int = RELOCATE, far: int = RELOCATE_FAR) -> list[np.ndarray]:
    """Plans that move a short territory next to the surplus: its units (all but the
    locked ones) go to its neighbours, it takes the lightest path from its locked units
    to the nearest unit of a territory over its band (passing no other territory's
    locked units; the pieces the path cuts off join their neighbours,
    :func:`~patchmap.partition.contiguity.settle_locks`), and that territory hands it
    about its goal along their new boundary (:func:`give`).

    With rep homes crowded in one metro and surplus elsewhere, the territories reaching
    out of the metro (each holding a corridor from its home) carry the surplus in; when
    too few reach out, every one of them and every territory beyond is over, the metro's
    are all short, and boundary moves, flows and re-splits only even out each side: one
    more territory must reach out, a change no step of those makes. Each unit the path
    enters costs its weight plus what its removal cuts off from its territory's locked
    units (:func:`hanging`): the path goes around another territory's corridor instead of
    cutting it, which would only swap which territory reaches out. Tried for the
    ``most`` short territories whose path is lightest against their goal, and only when
    the plan is off on both sides alike (the shortest territory and the most over within
    :data:`RELOCATE_SIDES` of each other in size): one territory far over with the rest
    near their goals is a heavy unit's doing (:func:`transplants`), not a divide.

    Besides, for each of the ``far`` territories most over their band, the short
    territory with the lightest such path to the half of it furthest from its home
    (:func:`far_side`) lands there: the nearest over-band unit to a metro's short
    territories is often one of a territory reaching out of the same metro, whose
    surplus lies at its far end."""
    k, w = s.k, s.W[:, 0]
    goal = np.array([s.bands.goal[t][0] for t in range(k)])
    tot = np.array([s.tot[t][0] for t in range(k)])
    dev = tot / np.maximum(goal, 1e-300) - 1
    tol = s.bands.tol[0]
    locked = np.asarray(s.problem.locked)
    landing = np.flatnonzero((dev[s.labn] > tol) & (locked < 0))
    if not len(landing) or min(-dev.min(), dev.max()) < RELOCATE_SIDES * np.abs(dev).max():
        return []
    csr = s.g.matrix.tocsr()
    hang = hanging(csr, s.labn, locked, w)
    cands = []
    paths: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for t in np.flatnonzero(dev < -tol).tolist():
        src = np.flatnonzero(locked == t)
        if not len(src):
            continue
        d, pred = hung_paths(s, t, hang)
        paths[t] = (d, pred)
        u = int(landing[np.argmin(d[landing])])
        if np.isfinite(d[u]):
            cands.append((float(d[u]) / max(goal[t], 1e-300), t, u, pred))
    cands.sort(key=lambda c: (c[0], c[1]))
    picked = cands[:most]
    if far > 0 and paths:
        seen = {(t, u) for _, t, u, _ in picked}
        for o in np.argsort(-dev, kind="stable").tolist():
            if dev[o] <= tol or len(picked) >= most + far:
                break
            side = far_side(s, o)
            if not len(side):
                continue
            best = min(
                ((float(d[side].min()) / max(goal[t], 1e-300), t) for t, (d, _) in paths.items()
                 if np.isfinite(d[side]).any()), default=None,
            )  # fmt: skip
            if best is None:
                continue
            t = best[1]
            d, pred = paths[t]
            u = int(side[np.argmin(d[side])])
            if (t, u) not in seen:
                seen.add((t, u))
                picked.append((best[0], t, u, pred))
    plans = []
    for _, t, u, pred in picked:
        new = s.labels()
        new[(new == t) & (locked < 0)] = -1
        _dissolve(csr, new, t)
        v = u
        while v >= 0 and locked[v] != t:
            new[v] = t
            v = int(pred[v])
        new = settle_locks(s.g, new, w, k, locked)
        o = int(s.labn[u]) if new[u] == t else -1
        st = SearchState(s.problem, new, s.rng)
        if o >= 0 and o != t:
            give(st, o, t, goal[t] - st.tot[t][0])
        plans.append(st.labels())
    return plans


def far_side(s: SearchState, o: int) -> np.ndarray:
    """Territory o's unlocked units beyond the distance from its locked units (along its
    own units, straight-line lengths) within which half its weight lies."""
    idx = np.flatnonzero(s.labn == o)
    lk = s.lockn[idx]
    if not lk.any() or lk.all():
        return np.zeros(0, dtype=np.int64)
    m = s.g.matrix[idx][:, idx].tocoo()
    length = np.hypot(*(s.xy[idx][m.row] - s.xy[idx][m.col]).T) + 1e-6
    g = sparse.csr_matrix((length, (m.row, m.col)), shape=(len(idx), len(idx)))
    d = dijkstra(g, indices=np.flatnonzero(lk), min_only=True)
    w = s.W[idx, 0]
    order = np.argsort(d, kind="stable")
    half = int(np.searchsorted(np.cumsum(w[order]), 0.5 * w.sum()))
    out = np.zeros(len(idx), dtype=bool)
    out[order[half + 1 :]] = True
    return idx[out & ~lk]


def hanging(
    csr: sparse.csr_matrix, lab: np.ndarray, locked: np.ndarray, w: np.ndarray
) -> np.ndarray:
    """What each unit's removal alone cuts off from its territory's locked units (the
    weight of the pieces left without them; 0 for a unit whose territory has none, and
    for locked units): a depth-first search of each territory from its locked units
    (Tarjan's cut vertices, the locked units together as the root)."""
    n = len(lab)
    out = np.zeros(n)
    ip, ix = csr.indptr, csr.indices
    disc = np.full(n, -1, dtype=np.int64)
    low = np.zeros(n, dtype=np.int64)
    sub = np.zeros(n)
    clock = 0
    for t in np.unique(lab[locked >= 0]).tolist():
        roots = np.flatnonzero((lab == t) & (locked >= 0)).tolist()
        disc[roots] = clock  # one root: a piece is cut off only when no locked unit holds it
        low[roots] = clock
        clock += 1
        rootset = set(roots)
        for r in roots:
            sub[r] = w[r]
            stack = [(r, -1, iter(ix[ip[r] : ip[r + 1]].tolist()))]
            while stack:
                u, parent, it = stack[-1]
                for v in it:
                    if lab[v] != t:
                        continue
                    if disc[v] < 0:
                        disc[v] = low[v] = clock
                        clock += 1
                        sub[v] = w[v]
                        stack.append((v, u, iter(ix[ip[v] : ip[v + 1]].tolist())))
                        break
                    if v != parent:
                        low[u] = min(low[u], disc[v])
                else:
                    stack.pop()
                    if stack:
                        p = stack[-1][0]
                        low[p] = min(low[p], low[u])
                        sub[p] += sub[u]
                        if low[u] >= disc[p] and p not in rootset:
                            out[p] += sub[u]
    return out


def _dissolve(csr: sparse.csr_matrix, lab: np.ndarray, t: int) -> None:
    """Units labelled -1 join a neighbouring territory other than t (the one most of
    their labelled neighbours are in, lowest first on a tie), nearest ones first; any
    left with no such neighbour go back to t."""
    while True:
        todo = np.flatnonzero(lab == -1)
        if not len(todo):
            return
        got = {}
        for x in todo.tolist():
            nb = lab[csr.indices[csr.indptr[x] : csr.indptr[x + 1]]]
            nb = nb[(nb >= 0) & (nb != t)]
            if len(nb):
                got[x] = int(np.argmax(np.bincount(nb)))
        if not got:
            lab[todo] = t
            return
        for x, q in got.items():
            lab[x] = q
