"""Balancing the primary column: passing weight along paths of territories.

The territory furthest from its share is paired with the nearest territory (in hops over
the territory graph) deviating the other way (:func:`pick_step`), and the difference is
passed along the path between them (:func:`shift`): single boundary units (fewest cut
edges first, :func:`push`), then whole blocks that leave the donor connected and reach
amounts no single unit can (:func:`move_block`), then one-for-one exchanges
(:func:`swap`). A step that does not reduce the imbalance is undone (:func:`balance`);
a pair of territories that passed nothing is avoided, and a territory whose steps keep
failing is passed over, until a step changes either. :func:`settle` adds random kicks
when the descent is stuck.
"""

from __future__ import annotations

import heapq

import numpy as np

from patchmap.partition.contiguity import can_remove, removable_blocks, subtree_nodes
from patchmap.partition.objective import compactness_gain, cut_gain, imbalance, violation_delta
from patchmap.partition.state import SearchState, incidence

__all__ = [
    "MAX_FAILURES",
    "SOURCE_FAILURES",
    "balance",
    "kick",
    "move_block",
    "pick_step",
    "push",
    "settle",
    "shift",
    "swap",
]

MAX_FAILURES = 0.5  # failed balancing steps allowed per territory before giving up
SOURCE_FAILURES = 8  # failed steps from one territory before balance passes it over
SMALL_BLOCK = 200  # blocks up to this many units have their cut counted over the lists


def push(s: SearchState, p: int, q: int, amount: float, j: int) -> float:
    """Move boundary units p -> q totalling at most about ``amount`` of column j."""
    lab, nbrs, rows = s.lab, s.nbrs, s.rows
    heap: list = []
    seen: set[int] = set()

    def offer(u: int) -> None:
        if u in seen or s.locked[u] or lab[u] != p:
            return
        g = cut_gain(s, u, p, q)
        if not any(lab[v] == q for v in nbrs[u]):
            return
        seen.add(u)
        sc = g + s.beta * compactness_gain(s, u, p, q) - 20.0 * violation_delta(s, u, p, q, first=1)
        heapq.heappush(heap, (-sc, -rows[u][j], u))

    for u in s.boundary_of(p, q):
        offer(u)
    moved = 0.0
    rem = amount
    while heap and rem > 0:
        _, _, u = heapq.heappop(heap)
        if lab[u] != p:
            continue
        wu = rows[u][j]
        if wu > rem:
            continue
        if not can_remove(s, u, p):
            continue
        s.move(u, p, q)
        moved += wu
        rem -= wu
        for v in nbrs[u]:
            if lab[v] == p:
                seen.discard(v)
                offer(v)
    return moved


def swap(s: SearchState, p: int, q: int, amount: float, j: int) -> bool:
    """Shift about ``amount`` of column j from p to q by one move or a two-way exchange.

    Exchanges (a: p -> q, b: q -> p) reach amounts far below any single unit's weight,
    which is what lets dense areas balance to a fraction of a percent. Of the options
    that close at least half the gap, the one cutting fewest edges wins.
    """
    lab, nbrs = s.lab, s.nbrs
    A = [u for u in s.boundary_of(p, q) if not s.locked[u]]
    B = [u for u in s.boundary_of(q, p) if not s.locked[u]]
    if not A:
        return False
    wa = np.array([s.rows[u][j] for u in A])
    wb = np.array([s.rows[u][j] for u in B] + [0.0])  # last column: no return move
    ga = np.array([cut_gain(s, u, p, q) + s.beta * compactness_gain(s, u, p, q) for u in A])
    gb = np.array([cut_gain(s, u, q, p) + s.beta * compactness_gain(s, u, q, p) for u in B] + [0.0])
    err = np.abs(wa[:, None] - wb[None, :] - amount)
    score = ga[:, None] + gb[None, :]
    ok = err < 0.5 * amount
    if not ok.any():
        ok = err < 0.999 * amount
    if not ok.any():
        return False
    flat = np.flatnonzero(ok.ravel())
    order = flat[np.lexsort((err.ravel()[flat], -score.ravel()[flat]))][:12]
    for f in order.tolist():
        ia, ib = divmod(f, len(wb))
        a = A[ia]
        if lab[a] != p or not can_remove(s, a, p):
            continue
        s.move(a, p, q)
        if ib == len(B):
            return True
        b = B[ib]
        if lab[b] == q and any(lab[v] == p for v in nbrs[b]) and can_remove(s, b, q):
            s.move(b, q, p)
            return True
        s.move(a, q, p)
    return False


def move_block(
    s: SearchState, p: int, q: int, amount: float, j: int, window: float,
    limit: float | None = None,
) -> bool:  # fmt: skip
    """Move one connected block of p into q weighing about ``amount`` of column j.

    See :func:`~patchmap.partition.contiguity.removable_blocks`; this reaches amounts no
    single move can. Within ``window`` of the amount the block cutting fewest edges wins.
    """
    limit = amount if limit is None else limit
    blocks = removable_blocks(s, p, q, [j])
    if blocks is None:
        return False
    roots, w, tree = blocks
    err = np.abs(w[:, 0] - amount)
    ok = np.flatnonzero(err < limit)
    if len(ok) == 0:
        return False
    ok = ok[np.argsort(err[ok], kind="stable")][:6]
    if err[ok[0]] <= window:
        ok = ok[err[ok] <= window]
    ptr, eid = incidence(s.g)
    ei, ej, labn = s.g.ei, s.g.ej, s.labn
    lab, nbrs = s.lab, s.nbrs
    best = None
    for i in ok.tolist():
        nodes = subtree_nodes(roots[i], tree)
        # the block's edges: to q no longer cut, to the rest of p cut from now on
        if len(nodes) <= SMALL_BLOCK:
            inside = set(nodes)
            gain = 0
            for u in nodes:
                for v in nbrs[u]:
                    lv = lab[v]
                    if lv == q:
                        gain += 1
                    elif lv == p and v not in inside:
                        gain -= 1
        else:
            at = np.asarray(nodes)
            lens = ptr[at + 1] - ptr[at]
            e = eid[np.repeat(ptr[at] - np.cumsum(lens) + lens, lens) + np.arange(int(lens.sum()))]
            other = ei[e] + ej[e] - np.repeat(at, lens)
            lo = labn[other]
            gain = int((lo == q).sum()) - int(((lo == p) & ~np.isin(other, at)).sum())
        key = (-gain, err[i]) if err[ok[0]] <= window else (err[i], -gain)
        if best is None or key < best[0]:
            best = (key, nodes)
    for u in best[1]:
        s.move(u, p, q)
    return True


def shift(
    s: SearchState, path: list[int], amount: float, j: int, window: float
) -> tuple[int, int] | None:
    """Pass about ``amount`` of column j along a path of territories.

    Hops run from the receiving end back to the donor, and each passes on what the hop
    after it actually moved: a hop into a territory with coarse units may move more or
    less than asked (it only has to improve the receiver), and the hops upstream, usually
    with finer choice, make up exactly that. Under a move budget every hop moves about
    ``amount`` (often more), so it asks for at most half what the budget has left.
    Returns the hop (giver, taker) that passed nothing, if one did (the rest of the path
    then stays as it was).
    """
    room = 0.5 * (s.budget - s.moved) / max(len(path) - 1, 1)
    if j == 0 and room < amount:
        amount = max(room, 0.0)
        window = min(window, 0.5 * amount)
    if amount <= 0:
        return None
    hops = list(zip(path[:-1], path[1:], strict=False))
    want = amount
    # the receiver improves with anything below twice its shortfall
    goal = s.bands.goal
    gap = goal[path[-1]][j] - s.tot[path[-1]][j]
    first_limit = max(2.0 * gap - amount, amount)
    for n, (p, q) in enumerate(reversed(hops)):
        limit = first_limit if n == 0 else want
        before = s.tot[q][j]
        # p keeps the units touching the territory upstream, which passes to p next
        up = len(hops) - 1 - n
        guard = [u for u in s.boundary_of(p, path[up - 1]) if not s.locked[u]] if up else []
        s.pin(guard, True)
        try:
            rem = want - push(s, p, q, want, j)
            if rem > 0.1 * window and not move_block(s, p, q, rem, j, window, limit=limit):
                swap(s, p, q, rem, j)
        finally:
            s.pin(guard, False)
        want = s.tot[q][j] - before
        if want <= 0:
            return p, q
    return None


def balance(
    s: SearchState,
    goal: float = 0.5,
    max_iter: int | None = None,
    failures: float = MAX_FAILURES,
    in_a_row: bool = False,
) -> None:
    """Even out totals until every column is within ``goal`` times its tolerance.

    Each step takes the territory furthest from its goal and the nearest territory
    (fewest hops in the territory graph) deviating the other way, and passes the
    smaller of the two gaps along the path between them. A step that does not reduce
    the imbalance is undone; the descent ends when no step helps, or after ``failures``
    x K failed steps (in all, or ``in_a_row``: a long descent from a poor start).
    """
    best = imbalance(s, goal)
    max_iter = max_iter if max_iter is not None else 4 * s.k + 8
    tried: set[tuple[int, int, int]] = set()
    stuck: dict[int, int] = {}  # failed steps from each source since it or a neighbour changed
    blocked: set[tuple[int, int]] = set()  # pairs that passed nothing since either changed
    n_failed = 0
    for _ in range(max_iter):
        if best[0] <= 0:
            break
        adj = s.territory_graph()
        passed = {t for t, f in stuck.items() if f >= SOURCE_FAILURES}
        step = pick_step(s, adj, tried, passed, blocked)
        if step is None:
            break
        key, path, amount = step
        j = key[0]
        s.begin()
        window = 0.5 * goal * s.bands.tol[j] * s.bands.goal[path[0]][j]
        stop = shift(s, path, amount, j, window)
        now = imbalance(s, goal)
        if now >= best:
            s.undo()
            tried.add(key)
            if stop is not None:
                blocked.add(stop)
            stuck[key[1]] = stuck.get(key[1], 0) + 1
            n_failed += 1
            if n_failed > failures * s.k:
                break
            continue
        best = now
        s.log = None
        tried.clear()
        for t in path:  # a source next to what changed may move again
            stuck.pop(t, None)
            for x in adj[t]:
                stuck.pop(x, None)
        on = set(path)
        blocked = {(p, q) for p, q in blocked if p not in on and q not in on}
        if in_a_row:
            n_failed = 0
    s.log = None


def pick_step(
    s: SearchState, adj: list[set[int]], tried: set, passed: set[int] | frozenset = frozenset(),
    blocked: set[tuple[int, int]] | frozenset = frozenset(),
) -> tuple[tuple, list[int], float] | None:  # fmt: skip
    """Next balancing step: (key, territory path from donor to receiver, amount).

    The most deviating territory (not ``passed`` over) is paired with the nearest
    territory (fewest hops, then largest deviation) deviating the other way that has not
    failed already, over paths that avoid the ``blocked`` pairs (giver, taker): a pair
    joined by a neck (an island bridge whose ends neither can give up) passes nothing,
    and every path through it would fail the same way.
    """
    j = 0
    goal = s.bands.goal
    devs = sorted(
        ((abs(s.tot[t][j] / goal[t][j] - 1), t) for t in range(s.k) if goal[t][j] > 0),
        reverse=True,
    )
    for _, src in devs:
        es = s.tot[src][j] - goal[src][j]
        if es == 0 or src in passed:
            continue
        prev = {src: -1}
        hops = {src: 0}
        frontier = [src]
        found = []
        while frontier:
            nxt = []
            for x in frontier:
                for y in sorted(adj[x]):
                    if blocked and ((x, y) if es > 0 else (y, x)) in blocked:
                        continue
                    if y not in prev:
                        prev[y] = x
                        hops[y] = hops[x] + 1
                        nxt.append(y)
                        ey = s.tot[y][j] - goal[y][j]
                        if ey * es < 0 and (j, src, y) not in tried:
                            found.append((hops[y], -abs(ey), y))
            frontier = nxt
        if not found:
            continue
        _, _, t = min(found)
        path = [t]
        while path[-1] != src:
            path.append(prev[path[-1]])
        path.reverse()  # src ... t
        et = s.tot[t][j] - goal[t][j]
        amount = 0.5 * (abs(es) + abs(et))  # evens src and t out; never overshoots src
        if es < 0:  # src is short: flow runs from t to src
            path.reverse()
        return (j, src, t), path, amount
    return None


def kick(s: SearchState) -> bool:
    """Perturb a stuck balance: move one unit into or out of the worst territory even
    when that overshoots, choosing at random among the least damaging moves."""
    lab, nbrs = s.lab, s.nbrs
    goal = s.bands.goal
    devs = [(abs(s.tot[t][0] / goal[t][0] - 1), t) for t in range(s.k) if goal[t][0] > 0]
    _, t = max(devs)
    over = s.tot[t][0] > goal[t][0]
    ext = set()
    for u in range(s.g.n) if s.g.n < 2000 else s.boundary().tolist():
        if (lab[u] == t) == over:
            for v in nbrs[u]:
                if lab[v] != lab[u] and (lab[v] == t or over):
                    ext.add((u, lab[u], lab[v]) if over else (u, lab[u], t))
    opts = []
    for u, p, q in ext:
        if s.locked[u] or (not over and q != t):
            continue
        w = s.rows[u][0]
        dp = abs((s.tot[p][0] - w) / goal[p][0] - 1)
        dq = abs((s.tot[q][0] + w) / goal[q][0] - 1)
        opts.append((max(dp, dq) - 0.1 * (cut_gain(s, u, p, q)) * s.bands.tol[0], u, p, q))
    if not opts:
        return False
    opts.sort()
    pick = opts[: max(3, len(opts) // 4)]
    for i in s.rng.permutation(len(pick)).tolist():
        _, u, p, q = pick[i]
        if can_remove(s, u, p):
            s.move(u, p, q)
            return True
    return False


def settle(s: SearchState, goal: float = 0.5, kicks: int = 3) -> None:
    """Balance; when stuck outside the goal, kick and rebalance, keeping the best state."""
    balance(s, goal)
    best = (imbalance(s, goal)[0], s.cut_edges())
    best_lab = s.labels()
    for _ in range(kicks):
        if best[0] <= 0 or not kick(s):
            break
        balance(s, goal)
        now = (imbalance(s, goal)[0], s.cut_edges())
        if now < best:
            best, best_lab = now, s.labels()
    if (imbalance(s, goal)[0], s.cut_edges()) != best:
        s.load(best_lab)
