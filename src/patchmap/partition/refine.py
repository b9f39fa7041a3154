"""Refinement: boundary moves that cut fewer edges or make territories more compact.

:func:`refine` takes greedy single moves (every balance column inside its band, the
primary band optionally widened for a rebalance to tighten afterwards);
:func:`swap_refine` exchanges pairs of units where balance is too tight for single
moves; :func:`fm` runs Fiduccia–Mattheyses passes, which walk over ridges greedy moves
stop at. Every move keeps every territory connected.
"""

from __future__ import annotations

import heapq

import numpy as np

from patchmap.partition.contiguity import can_remove
from patchmap.partition.objective import compactness_gain, cut_gain, violation_delta
from patchmap.partition.state import SearchState

__all__ = ["FM_COMPACTNESS", "best_move", "fm", "greedy", "refine", "swap_refine"]

FM_COMPACTNESS = 0.1  # share of the compactness weight FM passes use


def refine(s: SearchState, passes: int = 8, slack: float = 1.0) -> int:
    """Greedy boundary moves that cut fewer edges or improve compactness, bands kept
    (the primary band widened ``slack`` times, for a rebalance to tighten afterwards).
    Returns the number of moves."""
    s.bands.set_primary(slack)
    try:
        return greedy(s, passes)
    finally:
        s.bands.set_primary(1.0)


def greedy(s: SearchState, passes: int) -> int:
    """Passes over the boundary in random order, each unit taking its best improving
    move inside the current bands; stops when a pass moves nothing."""
    lab = s.lab
    total = 0
    for _ in range(passes):
        cand = s.boundary()
        s.rng.shuffle(cand)
        moved = 0
        for u in cand.tolist():
            if s.locked[u]:
                continue
            p = lab[u]
            cnt = s.neighbour_territories(u)
            if len(cnt) == 1:
                continue
            cp = cnt.get(p, 0)
            best_s, best_q = 1e-9, -1
            for q, cq in cnt.items():
                if q == p:
                    continue
                sc = (cq - cp) + s.beta * compactness_gain(s, u, p, q)
                if sc <= best_s or violation_delta(s, u, p, q) > 1e-12:
                    continue
                best_s, best_q = sc, q
            if best_q >= 0 and can_remove(s, u, p):
                s.move(u, p, best_q)
                moved += 1
        total += moved
        if moved == 0:
            break
    return total


def swap_refine(s: SearchState, rounds: int = 3) -> int:
    """Exchange pairs of boundary units between neighbouring territories when the pair
    cuts fewer edges and both territories stay inside every band: the refinement that
    still works when balance is so tight that no single move fits."""
    lab, nbrs = s.lab, s.nbrs
    bands = s.bands
    done = 0
    m = s.m
    for _ in range(rounds):
        swapped = 0
        sides = s.all_boundaries()
        for (p, q), A0 in sides.items():
            if q > p:
                A = [u for u in A0 if not s.locked[u] and lab[u] == p]
                B = [u for u in sides.get((q, p), ()) if not s.locked[u] and lab[u] == q]
                if not A or not B:
                    continue
                ga = np.array(
                    [cut_gain(s, u, p, q) + s.beta * compactness_gain(s, u, p, q) for u in A]
                )
                gb = np.array(
                    [cut_gain(s, u, q, p) + s.beta * compactness_gain(s, u, q, p) for u in B]
                )
                gain = ga[:, None] + gb[None, :]
                bset = {u: i for i, u in enumerate(B)}
                for ia, u in enumerate(A):
                    for v in nbrs[u]:
                        ib = bset.get(v)
                        if ib is not None:
                            gain[ia, ib] -= 2.0
                ok = gain > 1e-9
                if not ok.any():
                    continue
                wa = np.array([s.rows[u] for u in A])
                wb = np.array([s.rows[u] for u in B])
                net = wa[:, None, :] - wb[None, :, :]  # leaves p, joins q
                tp = np.array(s.tot[p])[None, None, :] - net
                tq = np.array(s.tot[q])[None, None, :] + net
                inside = (
                    (
                        (tp >= np.array(bands.lo[p]) - 1e-9)
                        & (tp <= np.array(bands.hi[p]) + 1e-9)
                        & (tq >= np.array(bands.lo[q]) - 1e-9)
                        & (tq <= np.array(bands.hi[q]) + 1e-9)
                    ).all(axis=-1)
                    if m
                    else ok
                )
                ok &= inside
                if not ok.any():
                    continue
                flat = np.flatnonzero(ok.ravel())
                for f in flat[np.argsort(-gain.ravel()[flat], kind="stable")][:4].tolist():
                    ia, ib = divmod(f, len(B))
                    a, b = A[ia], B[ib]
                    if lab[a] != p or lab[b] != q or not can_remove(s, a, p):
                        continue
                    if not any(lab[x] == q for x in nbrs[a]):
                        continue
                    s.move(a, p, q)
                    if any(lab[x] == p for x in nbrs[b]) and can_remove(s, b, q):
                        s.move(b, q, p)
                        swapped += 1
                        break
                    s.move(a, q, p)
        done += swapped
        if swapped == 0:
            break
    return done


def best_move(s: SearchState, u: int, beta: float) -> tuple[float, int]:
    """(gain, territory) of u's best move to a neighbouring territory: edges no longer
    cut plus ``beta`` times the compactness term; (-inf, -1) if none."""
    lab = s.lab
    p = lab[u]
    cnt = s.neighbour_territories(u)
    cp = cnt.get(p, 0)
    best_s, best_q = -np.inf, -1
    for q, cq in cnt.items():
        if q != p:
            sc = (cq - cp) + beta * compactness_gain(s, u, p, q)
            if sc > best_s:
                best_s, best_q = sc, q
    return best_s, best_q


def fm(s: SearchState, passes: int = 6, patience: int = 100) -> int:
    """Fiduccia–Mattheyses passes: keep taking the best boundary move, even one that
    cuts more edges, each unit moving once per pass, and keep the best prefix of the
    sequence. Where greedy refinement stops at the first ridge, this walks over it (a
    jagged boundary straightens only after a few moves that gain nothing on their own).
    Bands and contiguity hold after every move; compactness only breaks near-ties here
    (cut edges are what the walk is after). Returns the number of moves kept."""
    lab, nbrs = s.lab, s.nbrs
    beta = FM_COMPACTNESS * s.beta
    kept = 0
    for _ in range(passes):
        heap = []
        for u in s.boundary().tolist():
            if not s.locked[u]:
                sc, q = best_move(s, u, beta)
                if q >= 0:
                    heap.append((-sc, u, q))
        heapq.heapify(heap)
        done: set[int] = set()
        seq: list[tuple[int, int, int]] = []
        gain = best_gain = 0.0
        best_len = 0
        while heap and len(seq) - best_len <= patience:
            neg, u, q = heapq.heappop(heap)
            if u in done:
                continue
            sc, q2 = best_move(s, u, beta)
            if q2 < 0:
                continue
            if sc < -neg - 1e-9 or q2 != q:  # stale entry: requeue at its current value
                heapq.heappush(heap, (-sc, u, q2))
                continue
            p = lab[u]
            if violation_delta(s, u, p, q) > 1e-12 or not can_remove(s, u, p):
                done.add(u)
                continue
            s.move(u, p, q)
            done.add(u)
            seq.append((u, p, q))
            gain += sc
            if gain > best_gain + 1e-9:
                best_gain, best_len = gain, len(seq)
            for v in nbrs[u]:
                if v not in done and not s.locked[v]:
                    sv, qv = best_move(s, v, beta)
                    if qv >= 0:
                        heapq.heappush(heap, (-sv, v, qv))
        for u, p, q in reversed(seq[best_len:]):
            s.move(u, q, p)
        kept += best_len
        if best_len == 0:
            break
    return kept
