"""One search from a start: balance, then rounds of refinement and rebalancing.

:func:`improve` balances, then runs rounds of refinement with a primary band that
starts wide and narrows (8x, 4x, 2x, 1x its tolerance), each followed by a rebalance,
pair swaps and Fiduccia–Mattheyses passes; the best plan seen is kept, and a last
tightening keeps a tighter balance if it costs (almost) no cut edges. The schedule's
restarts (:mod:`~patchmap.partition.schedule`) and each level of a multilevel solve
(:mod:`~patchmap.partition.multilevel`) run it.
"""

from __future__ import annotations

from patchmap.partition.balance import settle
from patchmap.partition.objective import score
from patchmap.partition.refine import fm, greedy, refine, swap_refine
from patchmap.partition.secondary import secondary
from patchmap.partition.state import SearchState

__all__ = ["SLACK", "TIGHTEN_COST", "improve"]

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
