"""The multilevel path of a large map: a multilevel solve, then V-cycles.

A map above :data:`~patchmap.partition.coarsen.COARSEN_MIN_UNITS` units (with at least
:data:`COARSEN_MIN_PER_TERRITORY` per territory, or at least :data:`MANY_UNITS` in all,
:func:`large_map`) is first solved multilevel (:func:`multilevel`: coarsen, search the
coarsest level with the schedule's solve, which the caller passes in, then refine level
by level); the schedule then gives that plan and the flat restart one V-cycle each
(:func:`vcycle`: the map coarsened within the plan's territories, a tabu search inside
the exact bands on every level from the coarsest up), and the better goes through more
(:func:`vcycles`) until a few in a row cut no fewer edges or the time is up.
With many territories (:func:`many_territories`: fewer units each than the gate) the
multilevel plan goes alone, without the V-cycles and the flat restart.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from patchmap.partition.coarsen import COARSEN_MIN_UNITS, MIN_NODES, coarsen, project
from patchmap.partition.problem import MARGIN, Problem
from patchmap.partition.search import improve
from patchmap.partition.state import SearchState
from patchmap.partition.tabu import pair_search

__all__ = [
    "COARSEN_MIN_PER_TERRITORY",
    "MANY_UNITS",
    "VCYCLES",
    "VCYCLE_PATIENCE",
    "VCYCLE_STEPS",
    "VCYCLE_WORK",
    "large_map",
    "many_territories",
    "multilevel",
    "uncoarsen",
    "vcycle",
    "vcycles",
]

COARSE_SHARE = 0.3  # share of a given time limit the coarsest level's search may use
VCYCLES = 40  # most V-cycles on a large map (the time limit usually ends them first)
VCYCLE_PATIENCE = 3  # ... and they stop after this many in a row that cut no fewer edges
VCYCLE_STEPS = 200  # most tabu steps on each level of a V-cycle at effort 1
VCYCLE_WORK = 10_000_000  # ... and at most this many units x steps per level (a cycle's
# coarsening, states and kicks grow with the map: about the same work on every large map)
COARSEN_MIN_PER_TERRITORY = 1000  # multilevel only with at least this many units per territory
MANY_UNITS = 50_000  # ... or with at least this many units (then the multilevel plan alone)
LEVEL_ROUNDS = 2  # refinement rounds on each level of a multilevel solve
COMBINE = True  # every other V-cycle after the screening combines with the runner-up


def large_map(n: int, k: int) -> bool:
    """Whether a map of ``n`` units into ``k`` territories goes the multilevel path:
    above :data:`~patchmap.partition.coarsen.COARSEN_MIN_UNITS` units, with at least
    :data:`COARSEN_MIN_PER_TERRITORY` per territory or at least :data:`MANY_UNITS`."""
    return n > COARSEN_MIN_UNITS and n >= min(COARSEN_MIN_PER_TERRITORY * k, MANY_UNITS)


def many_territories(n: int, k: int) -> bool:
    """Whether a map of ``n`` units has many territories: fewer units each than
    :data:`COARSEN_MIN_PER_TERRITORY` (then the multilevel plan goes alone)."""
    return n < COARSEN_MIN_PER_TERRITORY * k


def multilevel(
    problem: Problem,
    *,
    seed: int,
    n_init: int | str = "auto",
    max_rounds: int = 6,
    effort: float = 0.0,
    time_limit: float | None = None,
    report: Callable | None = None,
    solve: Callable[..., np.ndarray],
) -> np.ndarray | None:
    """A large map solved multilevel (see :mod:`~patchmap.partition.coarsen`): coarsen,
    solve the coarsest level with the full search (``solve``, the schedule's
    :func:`~patchmap.partition.schedule.solve`: restarts and the anytime phase, called
    with ``levels=False``), then project the plan back level by level, balancing and
    refining on each. None when the map does not coarsen."""
    rng = np.random.default_rng([seed, 11])
    stack = coarsen(problem, rng)
    if not stack:
        return None
    # with many territories (fewer units each than the gate) the coarsest level's anytime
    # phase is one run from its best plan: on lower-48 H3 r7 cells at K=200 the fresh
    # restarts never beat it (the same plan in 23% less CPU); with fewer, larger
    # territories they do (California H3 r7 at K=20: 1,147 cut edges with one run, 1,090
    # with the restarts)
    many = many_territories(problem.graph.n, problem.k)
    lab = solve(
        stack[-1].problem, seed=seed, n_init=n_init, max_rounds=max_rounds, effort=effort,
        time_limit=None if time_limit is None else COARSE_SHARE * time_limit, report=report,
        levels=False, runs=1 if many else None,
    )  # fmt: skip
    return uncoarsen(problem, stack, lab, rng)


def uncoarsen(
    problem: Problem, stack: list, lab: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """A plan of the coarsest level of ``stack`` projected back to ``problem`` level by
    level, refined by :data:`LEVEL_ROUNDS` rounds on each."""
    finer = [problem] + [lv.problem for lv in stack[:-1]]
    for level, fine in zip(reversed(stack), reversed(finer), strict=True):
        s = SearchState(fine, project(lab, level), rng)
        improve(s, LEVEL_ROUNDS)
        lab = s.labels()
    return lab


def vcycle(
    problem: Problem,
    lab: np.ndarray,
    *,
    seed: int,
    steps: int,
    deadline: float | None = None,
    clock: Callable[[], float] = time.perf_counter,
    report: Callable | None = None,
    other: np.ndarray | None = None,
) -> tuple[tuple, np.ndarray]:
    """One V-cycle from a plan inside the exact bands, in the manner of KaHIP's: the map
    coarsens within the plan's territories (so the plan is a plan of every level, with
    the same cut edges and totals), down to the level whose mean node still fits in the
    lightest territory's band (coarser, no move keeps the band); then from the coarsest
    level up, a tabu search of ``steps`` steps inside the exact bands
    (:func:`~patchmap.partition.tabu.pair_search`) on each level, its plan projected to
    the next. A coarse move carries a whole stretch of boundary, a fine one a unit. No
    level returns a plan worse than it was given, so neither does the cycle: the rank
    (:func:`~patchmap.partition.tabu.rank`) and plan of the finest level's search.
    With ``other`` (another plan of the map) the cycle is a combine, in the manner of
    KaHIP's: nodes merge only within a territory of both plans, so a coarse move can
    carry a piece on which they disagree."""
    tol = [problem.tol[0] / MARGIN] + list(problem.tol[1:])
    lightest = float(np.min(problem.shares))
    floor = int(np.ceil(1.0 / (2.0 * tol[0] * lightest)))
    rng = np.random.default_rng([seed, 13])
    within = np.asarray(lab)
    if other is not None:  # a combine: nodes merge only where both plans agree
        within = within * problem.k + np.asarray(other)
    stack = coarsen(problem, rng, labels=within, band=False, target=max(floor, MIN_NODES))
    problems = [problem] + [level.problem for level in stack]
    cur = np.asarray(lab)
    for level in stack:  # the plan of each level (its nodes lie within one territory)
        cur = np.rint(np.bincount(level.parent, weights=cur) / np.bincount(level.parent))
        cur = cur.astype(np.int64)
    key = None
    for i in range(len(stack), -1, -1):
        if i < len(stack):
            cur = project(cur, stack[i])
        s = SearchState(problems[i], cur, rng)
        key, cur = pair_search(
            s, tol, steps, deadline=deadline, seed=int(rng.integers(2**31)),
            report=report if i == 0 else None, clock=clock,
        )  # fmt: skip
    return key, cur


def vcycles(
    problem: Problem,
    lab: np.ndarray,
    *,
    seed: int,
    effort: float,
    deadline: float | None = None,
    clock: Callable[[], float] = time.perf_counter,
    report: Callable | None = None,
    rivals: Sequence[np.ndarray] = (),
) -> np.ndarray:
    """V-cycles (:func:`vcycle`, each with a different matching) on the best plan, up
    to :data:`VCYCLES` in all and never past ``deadline``; they stop when
    :data:`VCYCLE_PATIENCE` cycles in a row cut no fewer edges than the best plan so
    far (one cycle's gain varies widely with its matching, so one that gains nothing
    does not end them). With ``rivals`` (other plans of the map) every start, ``lab``
    first, gets one cycle and the best of them goes on: a start's cut edges say little
    about where its cycles lead (a multilevel plan's boundaries are ragged where a flat
    restart's are smooth, the layout of its territories is what counts), one cycle's
    result says more. After the screening, every other cycle is a combine
    (:data:`COMBINE`): the best plan cycled within the territories of both it and the
    runner-up of the screening (California H3 r7 K=20, seeds 0-3, 40 CPU-s: mean 1,132
    cut edges without, 1,115 with). Each level's search takes :data:`VCYCLE_STEPS` steps at
    ``effort`` 1, fewer on a map of more than :data:`VCYCLE_WORK` /
    :data:`VCYCLE_STEPS` units (units x steps at most :data:`VCYCLE_WORK`)."""
    steps = int(round(effort * min(VCYCLE_STEPS, VCYCLE_WORK / problem.graph.n)))
    if steps <= 0:
        return lab
    starts = [lab, *rivals]
    best = None
    runner = None  # the second-best screened plan: the combines' other parent
    stale = 0
    for c in range(VCYCLES):
        if c and deadline is not None and clock() > deadline:
            break
        screening = c < len(starts)
        mate = None
        if COMBINE and not screening and runner is not None and (c - len(starts)) % 2 == 0:
            mate = runner[1]
        key, new = vcycle(
            problem, starts[c] if screening else lab, seed=seed + c, steps=steps,
            deadline=deadline, clock=clock, report=report, other=mate,
        )  # fmt: skip
        gained = best is None or key[:2] < best[:2]
        if best is None or key < best:
            # fewer cut edges, or as many in a tighter balance: the next cycle's start
            # (only fewer cut edges count as a gain)
            if screening and best is not None:
                runner = (best, lab)
            best, lab = key, new
        elif screening and (runner is None or key < runner[0]):
            runner = (key, new)
        if not screening:
            stale = 0 if gained else stale + 1
            if stale >= VCYCLE_PATIENCE:
                break
    return lab
