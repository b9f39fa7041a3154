"""The schedule: how seeding, balancing and refinement are strung together.

:func:`improve` runs one search from a start: balance, then rounds of refinement with a
primary band that starts wide and narrows (8x, 4x, 2x, 1x its tolerance), each followed
by a rebalance, pair swaps and Fiduccia–Mattheyses passes; the best plan seen is kept,
and a last tightening keeps a tighter balance if it costs (almost) no cut edges.
:func:`solve` runs restarts from different seeds (recursive bisection, or with rep homes
capacitated starts first) and keeps the best plan: balance targets first, then fewest
cut edges.
"""

from __future__ import annotations

import numpy as np

from patchmap.partition.balance import balance, settle
from patchmap.partition.contiguity import settle_locks
from patchmap.partition.objective import score
from patchmap.partition.problem import Problem
from patchmap.partition.refine import fm, greedy, refine, swap_refine
from patchmap.partition.secondary import secondary
from patchmap.partition.seeding import capacity_seed, recursive_seed
from patchmap.partition.state import SearchState

__all__ = ["HOME_STARTS", "improve", "solve"]

RETRIES = 4  # extra restarts allowed while no plan meets the primary target
HOME_STARTS = ("plain", "match", "linear")  # capacitated starts with rep homes
SLACK = [8.0, 4.0, 2.0, 1.0]  # primary band multipliers for successive refinement rounds
TIGHTEN_COST = 0.01  # extra cut edges (fraction) the final tightening may cost


def improve(s: SearchState, rounds: int) -> None:
    """Balance, then alternate refinement (with a shrinking band) and rebalancing,
    keeping the best plan seen; finally tighten the balance if that is (almost) free."""
    settle(s, 0.5)
    secondary(s)
    best = score(s)
    best_lab = s.labels()
    for r in range(rounds):
        slack = SLACK[min(r, len(SLACK) - 1)]
        moved = refine(s, slack=slack)
        settle(s, 0.5)
        secondary(s)
        swap_refine(s)
        refine(s)
        fm(s)
        now = score(s)
        if now < best:
            best, best_lab = now, s.labels()
        if moved == 0 and slack == 1.0:
            break
    if score(s) != best:
        s.load(best_lab)
    # as tight as it goes, as long as that costs (almost) no cut edges: rebalance to
    # half the band, refine inside it, and keep the result only if it holds up
    before, cut0 = s.labels(), s.cut_edges()
    settle(s, 0.5)
    s.bands.set_primary(0.5)
    try:
        swap_refine(s)
        greedy(s, 4)
    finally:
        s.bands.set_primary(1.0)
    if s.cut_edges() > cut0 * (1 + TIGHTEN_COST) or score(s)[0] > 0:
        s.load(before)


def solve(
    problem: Problem,
    *,
    seed: int,
    n_init: int | str = "auto",
    max_rounds: int = 6,
    initial: np.ndarray | None = None,
    homes: np.ndarray | None = None,
) -> np.ndarray:
    """Restarts of seed + search; the best labelling (integer codes) wins.

    ``initial`` (codes) is the first start when given. With rep ``homes`` (unit index per
    territory), three extra starts come first from capacitated assignments of units to
    homes (see :func:`~patchmap.partition.seeding.capacity_seed`): recursive bisection
    can trap a rep whose home sits among others' in a pocket it cannot grow out of.
    ``n_init`` restarts (``"auto"``: 3 up to 1,000 units, 2 up to 5,000, else 1), plus up
    to a few more while no plan meets the primary target.
    """
    graph, W, k = problem.graph, problem.weights, problem.k
    lock_codes, share = problem.locked, np.asarray(problem.shares)
    n = graph.n
    best = None
    rng_master = np.random.default_rng(seed)
    if homes is not None and initial is None:
        for i, mode in enumerate(HOME_STARTS):
            rng = np.random.default_rng(seed + 1 + i)
            lab = capacity_seed(graph, problem.xy, W[:, 0], k, lock_codes, share, homes, mode)
            if lab is None:
                break
            s = SearchState(problem, lab, rng)
            balance(s, 0.5, max_iter=40 * k, failures=5.0, in_a_row=True)
            improve(s, max_rounds)
            sc = score(s)
            if best is None or sc < best[0]:
                best = (sc, s.labels())
    n_init = n_init if n_init != "auto" else (3 if n <= 1000 else 2 if n <= 5000 else 1)
    # restarts; a few more when none has met the primary target yet (an unlucky
    # early split among coarse units is the usual cause, and another seed avoids it)
    seeds = rng_master.integers(0, 2**31 - 1, size=n_init + RETRIES)
    for r, sd in enumerate(seeds):
        if r >= n_init and best is not None and best[0][0] == 0:
            break
        rng = np.random.default_rng(int(sd))
        if initial is not None and r == 0:
            lab = initial.copy()
        else:
            # with locked units, restarts alternate straight and graph-grown splits
            lab = recursive_seed(
                graph, problem.xy, W, problem.area, k, problem.tol, lock_codes, rng,
                problem.compactness, shares=share,
                along_graph=bool(r % 2) and bool((lock_codes >= 0).any()),
            )  # fmt: skip
        lab = settle_locks(graph, lab, W[:, 0], k, lock_codes)
        s = SearchState(problem, lab, rng)
        improve(s, max_rounds)
        sc = score(s)
        if best is None or sc < best[0]:
            best = (sc, s.labels())
    return best[1]
