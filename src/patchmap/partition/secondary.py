"""Balancing the secondary columns while the primary stays inside its band.

The territory furthest outside a secondary band trades with a neighbour: a whole block
for a block (:func:`block_exchange`), or one unit for one unit (:func:`exchange`), chosen
so both primaries stay inside their band while the secondary excess falls. The descent
stops when the excess stops falling (the two columns pull apart, and the primary comes
first).
"""

from __future__ import annotations

import numpy as np

from patchmap.partition.contiguity import (
    can_remove,
    is_connected,
    removable_blocks,
    subtree_nodes,
)
from patchmap.partition.objective import secondary_excess
from patchmap.partition.state import SearchState

__all__ = ["SECONDARY_WINDOW", "block_exchange", "exchange", "secondary"]

SECONDARY_WINDOW = 40  # exchanges over which the secondary excess must fall by 2%


def secondary(s: SearchState, goal: float = 0.5, max_iter: int | None = None) -> None:
    """Bring secondary columns inside their tolerance by exchanges between neighbours.

    An exchange moves one unit a from p to q and optionally one unit b back, chosen so
    the primary column of both stays inside its band while the secondary excess falls.
    """
    if s.m == 1:
        return
    max_iter = max_iter if max_iter is not None else 30 * s.k
    stuck: set[int] = set()
    trail: list[float] = []
    bands = s.bands
    for _ in range(max_iter):
        cur = secondary_excess(s)
        if cur <= 0:
            return
        trail.append(cur)
        if len(trail) > SECONDARY_WINDOW and cur > 0.98 * trail[-SECONDARY_WINDOW - 1]:
            return  # under 2% better than a window ago: out of reach beside the primary
        worst = None
        for j in range(1, s.m):
            for t in range(s.k):
                if t in stuck or bands.goal[t][j] <= 0:
                    continue
                d = abs(s.tot[t][j] / bands.goal[t][j] - 1) / bands.tol[j]
                if d > 0.9 and (worst is None or d > worst[0]):
                    worst = (d, t)
        if worst is None:
            return
        t = worst[1]
        nbr = sorted({s.lab[v] for u in s.members(t) for v in s.nbrs[u]} - {t})
        if any(block_exchange(s, t, q, goal) for q in nbr) or exchange(s, t, goal, cur):
            if secondary_excess(s) < cur - 1e-9:
                stuck.clear()  # progress: territories stuck before may move now
        else:
            stuck.add(t)


def block_exchange(s: SearchState, t: int, q: int, goal: float) -> bool:
    """Trade a block of t for a block of q (either may be empty) so the secondary
    columns' excess falls while both primaries stay inside their band."""
    cols = list(range(s.m))
    bt = removable_blocks(s, t, q, cols)
    bq = removable_blocks(s, q, t, cols)
    if bt is None and bq is None:
        return False
    m = s.m
    rt, wt, ct = bt if bt is not None else ([], np.zeros((0, m)), {})
    rq, wq, cq = bq if bq is not None else ([], np.zeros((0, m)), {})
    bands = s.bands
    # keep blocks modest (a quarter of a territory) and the search small
    cap_t = 0.25 * np.array(bands.goal[t])
    cap_q = 0.25 * np.array(bands.goal[q])
    st = np.flatnonzero((wt <= cap_t + 1e-9).all(axis=1))[:300]
    sq = np.flatnonzero((wq <= cap_q + 1e-9).all(axis=1))[:300]
    wt = np.vstack([wt[st], np.zeros((1, m))])
    wq = np.vstack([wq[sq], np.zeros((1, m))])
    net = wt[:, None, :] - wq[None, :, :]  # leaves t, joins q
    gt, gq = np.array(bands.goal[t]), np.array(bands.goal[q])
    dt = np.abs((np.array(s.tot[t]) - net) / gt - 1)
    dq = np.abs((np.array(s.tot[q]) + net) / gq - 1)
    band = bands.tol[0] * max(goal, 1.0)
    cur0 = max(abs(s.tot[t][0] / gt[0] - 1), abs(s.tot[q][0] / gq[0] - 1))
    ok = np.maximum(dt[..., 0], dq[..., 0]) <= max(band, cur0) + 1e-12
    tolv = np.array(bands.tol[1:])
    after = (np.maximum(dt[..., 1:] / tolv - 0.9, 0) + np.maximum(dq[..., 1:] / tolv - 0.9, 0)).sum(
        -1
    )
    now_t = np.abs(np.array(s.tot[t][1:]) / gt[1:] - 1) / tolv - 0.9
    now_q = np.abs(np.array(s.tot[q][1:]) / gq[1:] - 1) / tolv - 0.9
    before = float(np.maximum(now_t, 0).sum() + np.maximum(now_q, 0).sum())
    gain = before - after
    ok &= gain > 1e-6
    ok[-1, -1] = False
    if not ok.any():
        return False
    flat = np.flatnonzero(ok.ravel())
    for f in flat[np.argsort(-gain.ravel()[flat], kind="stable")][:3].tolist():
        it, iq = divmod(f, len(wq))
        moved: list[tuple[int, int, int]] = []
        if it < len(st):
            for u in subtree_nodes(rt[st[it]], ct):
                s.move(u, t, q)
                moved.append((u, t, q))
        if iq < len(sq):
            for u in subtree_nodes(rq[sq[iq]], cq):
                if s.lab[u] == q:
                    s.move(u, q, t)
                    moved.append((u, q, t))
        if s.cnt[t] and s.cnt[q] and is_connected(s, t) and is_connected(s, q):
            return True
        for u, a, b in reversed(moved):
            s.move(u, b, a)
    return False


def exchange(s: SearchState, t: int, goal: float, cur: float) -> bool:
    """Best single exchange between t and a neighbour lowering the secondary excess."""
    lab = s.lab
    nbr_terr = sorted({lab[v] for u in s.members(t) for v in s.nbrs[u] if lab[v] != t})
    m = s.m
    bands = s.bands
    tol0 = bands.tol[0] * goal
    best = None
    for q in nbr_terr:
        A = [u for u in s.boundary_of(t, q) if not s.locked[u]]
        B = [u for u in s.boundary_of(q, t) if not s.locked[u]]
        if not A and not B:
            continue
        # options: a alone (t -> q), b alone (q -> t), or a with b
        wa = np.array([s.rows[u] for u in A] + [[0.0] * m])
        wb = np.array([s.rows[u] for u in B] + [[0.0] * m])
        net = wa[:, None, :] - wb[None, :, :]  # moved from t to q, per column
        tt = np.array(s.tot[t])[None, None, :] - net
        tq = np.array(s.tot[q])[None, None, :] + net
        gt, gq = np.array(bands.goal[t]), np.array(bands.goal[q])
        dt = np.abs(tt / gt - 1)
        dq = np.abs(tq / gq - 1)
        # the primary stays inside its band, or at least gets no worse
        p_now = max(abs(s.tot[t][0] / gt[0] - 1), abs(s.tot[q][0] / gq[0] - 1), tol0)
        ok = np.maximum(dt[..., 0], dq[..., 0]) <= p_now + 1e-12
        tolv = np.array(bands.tol)[None, None, 1:]
        ex = (
            np.maximum(dt[..., 1:] / tolv - 0.9, 0) + np.maximum(dq[..., 1:] / tolv - 0.9, 0)
        ).sum(-1)
        before = 0.0
        for j in range(1, m):
            for x, g in ((s.tot[t][j], gt[j]), (s.tot[q][j], gq[j])):
                before += max(abs(x / g - 1) / bands.tol[j] - 0.9, 0)
        gain = before - ex
        ok &= gain > 1e-9
        ok[-1, -1] = False
        if not ok.any():
            continue
        flat = np.flatnonzero(ok.ravel())
        order = flat[np.argsort(-gain.ravel()[flat], kind="stable")][:8]
        for f in order.tolist():
            ia, ib = divmod(f, len(B) + 1)
            g = float(gain.ravel()[f])
            if best is None or g > best[0]:
                best = (g, q, A[ia] if ia < len(A) else -1, B[ib] if ib < len(B) else -1)
            break
    if best is None:
        return False
    _, q, a, b = best
    before_lab = None
    if a >= 0:
        if not can_remove(s, a, t):
            return False
        s.move(a, t, q)
        before_lab = (a, t, q)
    if b >= 0:
        if lab[b] == q and any(lab[v] == t for v in s.nbrs[b]) and can_remove(s, b, q):
            s.move(b, q, t)
        elif before_lab is not None:
            s.move(a, q, t)
            return False
        else:
            return False
    return True
