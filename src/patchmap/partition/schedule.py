"""The schedule: how seeding, balancing and refinement are strung together.

:func:`solve` runs restarts from different seeds (recursive bisection, or with rep homes
capacitated starts first), each searched by
:func:`~patchmap.partition.search.improve`, and keeps the best plan: balance targets
first, then fewest cut edges. With an ``effort`` above 0, :func:`solve` then searches
on (the anytime phase, :func:`anytime`): tabu search over single and paired moves
inside the exact balance band (:func:`~patchmap.partition.tabu.pair_search`) from the
best plan, then from fresh restarts, for a number of steps set by ``effort``
(deterministic for a seed).
A given ``time_limit`` bounds the whole solve (starts, search and repair); the default
cap bounds the anytime phase alone.

A large map (:func:`~patchmap.partition.multilevel.large_map`) goes the multilevel
path (:mod:`~patchmap.partition.multilevel`): the multilevel plan is the first
candidate, and it and the flat restart each get one V-cycle, the better going through
more, as the anytime phase of a large map, its cap covering the whole solve.
With many territories (fewer units each than the gate) the multilevel plan goes alone,
without the V-cycles and the flat restart: on lower-48 H3 r7 cells at K=50 a V-cycle
cost as much as the rest of the solve and gained nothing, and the flat restart, as
costly, cut 10% more edges (a restart runs only if the plan misses its target).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from patchmap.logs import log, progress
from patchmap.notes import Note
from patchmap.partition.balance import balance
from patchmap.partition.contiguity import settle_locks
from patchmap.partition.flows import chain_balance, flow_balance
from patchmap.partition.multilevel import large_map, many_territories, multilevel, vcycles
from patchmap.partition.objective import max_deviation, score
from patchmap.partition.problem import MARGIN, Problem
from patchmap.partition.relocate import relocations, transplants
from patchmap.partition.search import improve
from patchmap.partition.seeding import capacity_seed, recursive_seed
from patchmap.partition.state import SearchState
from patchmap.partition.tabu import PAIR_LIMIT, pair_search

__all__ = [
    "SearchProgress",
    "ANYTIME_MAX_UNITS",
    "CHAIN_ROUNDS",
    "HOME_STARTS",
    "anytime",
    "default_time_limit",
    "transplanted",
    "solve",
    "starts_stopped",
    "steadier",
]

ANYTIME_MAX_UNITS = 20_000  # above this the anytime phase runs only after a multilevel solve
STEP_WORK = 60_000  # boundary moves x steps one anytime run may take at effort 1
RUNS = 4  # anytime runs: from the best plan, then from fresh restarts


class SearchProgress:
    """The anytime search's progress on stderr: a bar on a terminal showing the best
    plan so far (cut edges, largest deviation), and one closing note."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.t0 = time.perf_counter()
        self.best: tuple | None = None
        self.bar = None

    def __enter__(self) -> SearchProgress:
        return self

    def __call__(self, key: tuple, step: int) -> None:
        """Called with each new best plan's rank key (violation, cut, max deviation)."""
        self.best = key
        if self.bar is None:
            self.bar = progress(total=0, desc="search")
        self.bar.set_postfix_str(self.line(), refresh=True)

    def line(self) -> str:
        v, cut, dev = self.best
        band = "" if v <= 0 else " (outside the band)"
        return f"best {cut} cut edges, max deviation {100 * dev:.2f}%{band}"

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.best is not None and exc[0] is None:
            log.info(f"search: {self.line()} after {time.perf_counter() - self.t0:.1f} s")


def run_steps(moves: int, effort: float) -> int:
    """Steps of one anytime run at ``effort`` (1 = the default), given the number of
    boundary moves of the start (what one step's cost grows with): about the same work
    on every map, and the same steps for the same input, so a run is reproducible."""
    return int(round(effort * min(max(STEP_WORK / max(moves, 1), 400), 4000)))


def default_time_limit(n: int) -> float:
    """The anytime phase's cap when no time limit is given, in seconds of the process's
    CPU time (the step budget or this cap, whichever comes first: the later of the
    :data:`RUNS` restarts may meet it). On an idle machine, CPU time is wall time: a plan
    of up to 1,000 units within 10 s and of 50,000 within 60 s, all stages included."""
    return 7.0 if n <= 1000 else min(7.0 + 33.0 * (n - 1000) / 49_000, 40.0)


RETRIES = 4  # extra restarts allowed while no plan meets the primary target
HOME_STARTS = ("plain", "match", "linear")  # capacitated starts with rep homes
CHAIN_ROUNDS = 4  # extra chain rebalancing rounds for the best home start still off
SETTLE_ROUNDS = 2  # flow and chain balance rounds after a transplant or relocation
RELOCATE_ROUNDS = 6  # rounds of relocations, each from the best plan the last one found


def solve(
    problem: Problem,
    *,
    seed: int,
    n_init: int | str = "auto",
    max_rounds: int = 6,
    initial: np.ndarray | None = None,
    homes: np.ndarray | None = None,
    effort: float = 0.0,
    time_limit: float | None = None,
    report: Callable | None = None,
    levels: bool = True,
    runs: int | None = None,
    notes: list[str] | None = None,
) -> np.ndarray:
    """Restarts of seed + search; the best labelling (integer codes) wins.

    ``initial`` (codes) is the first start when given. With rep ``homes`` (unit index per
    territory), three extra starts come first from capacitated assignments of units to
    homes (see :func:`~patchmap.partition.seeding.capacity_seed`): recursive bisection
    can trap a rep whose home sits among others' in a pocket it cannot grow out of.
    A home start still off its balance target is rebalanced along a plan of flows
    between neighbouring territories (:func:`~patchmap.partition.flows.flow_balance`),
    then by re-splitting pairs of territories along chains
    (:func:`~patchmap.partition.flows.chain_balance`), and the
    best of them, when still off, for up to :data:`CHAIN_ROUNDS` more rounds while they
    gain. The anytime phase's plan stays unless it is off the exact band with a larger
    deviation than its start (:func:`steadier`). A rep-home plan still off at the end goes
    to :func:`transplanted`.
    A given ``time_limit`` (wall clock) bounds the whole solve: no home start, chain round
    or restart begins once it is past (the first start always runs, so there is a plan;
    one start can itself take a while), the anytime phase and :func:`transplanted` stop
    at the same deadline, and a note appended to ``notes`` says what was skipped
    (:func:`starts_stopped`; ``repair_stopped`` for the repair). Without one, the default
    cap (:func:`default_time_limit`) bounds the anytime phase alone.
    ``n_init`` restarts (``"auto"``: 3 up to 1,000 units, 2 up to 5,000, else 1), plus up
    to a few more while no plan meets the primary target.
    """
    graph, W, k = problem.graph, problem.weights, problem.k
    lock_codes, share = problem.locked, np.asarray(problem.shares)
    n = graph.n
    best = None
    # a given limit is wall time; the default cap is the process's CPU time, which a busy
    # machine does not eat into, so with default settings a plan does not depend on load
    clock = time.perf_counter if time_limit is not None else time.process_time
    limit = time_limit if time_limit is not None else default_time_limit(n)
    start = clock()
    # a given limit bounds the whole solve: no start (rep-home start, chain round,
    # restart) begins once it is past, though one start always runs so there is a plan;
    # the default cap bounds the anytime phase alone (the starts are the same work on any
    # machine, so with default settings a plan does not depend on its speed)
    cutoff = None if time_limit is None else start + time_limit

    def late() -> bool:
        return cutoff is not None and clock() > cutoff

    skipped, chain_cut = 0, False  # starts not begun, chain rounds cut at the time limit
    large = levels and large_map(n, k) and initial is None and homes is None
    many = large and many_territories(n, k)
    pool: list[np.ndarray] = []  # a large map's plans, for the V-cycles to screen
    if large:
        # a large map: the multilevel plan is the first candidate, the restarts compete
        lab = multilevel(
            problem, seed=seed, n_init=n_init, max_rounds=max_rounds, effort=effort,
            time_limit=time_limit, report=report, solve=solve,
        )  # fmt: skip
        if lab is not None:
            best = (score(SearchState(problem, lab, np.random.default_rng(seed))), lab)
            pool.append(lab)
        else:
            large = False
    rng_master = np.random.default_rng(seed)
    if homes is not None and initial is None:
        for i, mode in enumerate(HOME_STARTS):
            if best is not None and late():
                skipped += len(HOME_STARTS) - i
                break
            rng = np.random.default_rng(seed + 1 + i)
            lab = capacity_seed(graph, problem.xy, W[:, 0], k, lock_codes, share, homes, mode)
            if lab is None:
                break
            s = SearchState(problem, lab, rng)
            balance(s, 0.5, max_iter=40 * k, failures=5.0, in_a_row=True)
            improve(s, max_rounds)
            if score(s)[0] > 0:  # boundary moves are stuck: pass weight along a flow
                flow_balance(s)  # plan, then re-split pairs along chains
                chain_balance(s, rng)
                improve(s, max_rounds)
            sc = score(s)
            if best is None or sc < best[0]:
                best = (sc, s.labels())
        if best is not None and best[0][0] > 0:
            # the best start is still off: more rounds while they gain
            s = SearchState(problem, best[1], np.random.default_rng([seed, 11]))
            for _ in range(CHAIN_ROUNDS):
                if late():
                    chain_cut = True
                    break
                flow_balance(s)
                chain_balance(s, s.rng)
                improve(s, max_rounds)
                sc = score(s)
                if sc >= best[0]:
                    break
                best = (sc, s.labels())
                if sc[0] <= 0:
                    break
    n_init = n_init if n_init != "auto" else (3 if n <= 1000 else 2 if n <= 5000 else 1)
    if many and best is not None:
        n_init = 0  # many territories: the multilevel plan alone (restarts only while off)
    # restarts; a few more when none has met the primary target yet (an unlucky
    # early split among coarse units is the usual cause, and another seed avoids it)
    seeds = rng_master.integers(0, 2**31 - 1, size=n_init + RETRIES)
    for r, sd in enumerate(seeds):
        if r >= n_init and best is not None and best[0][0] == 0:
            break
        if r >= n_init and large and 2 * (clock() - start) > limit:
            # a restart on a large map costs about what the multilevel solve did: one
            # runs only while the time left covers that (lower-48 H3 r7 cells, K=200:
            # 4 restarts took 420 s CPU and never beat the multilevel plan)
            break
        if best is not None and late():
            # the rest would run: the first n_init, and the retries while off target
            more = best[0][0] != 0 and not large
            skipped += len(seeds) - r if more else max(n_init - r, 0)
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
        sc, lab = score(s), s.labels()
        if large:
            pool.append(lab)
        if best is None or sc < best[0]:
            best = (sc, lab)
    # after a multilevel solve the cap covers the whole solve, and one run refines
    # the best plan (a fresh restart costs more than it wins on a large map)
    deadline = cutoff if cutoff is not None else (start if large else clock()) + limit
    if (skipped or chain_cut) and notes is not None:
        notes.append(starts_stopped(skipped, chain_cut, time_limit))
    if effort <= 0 or (n > ANYTIME_MAX_UNITS and not large) or n <= k:
        lab = found = best[1]
    else:
        if large and not many:
            # V-cycles: one on each plan (the multilevel one and the flat restart),
            # then more on the best; each ends in a tabu search on the full map, so no
            # anytime run follows
            lab = vcycles(
                problem, best[1], seed=seed + 1, effort=effort, deadline=deadline,
                clock=clock, report=report, rivals=[p for p in pool if p is not best[1]],
            )  # fmt: skip
        else:
            lab = anytime(
                problem, best[1], seed=seed, effort=effort, deadline=deadline,
                max_rounds=max_rounds, report=report, clock=clock,
                runs=1 if large else runs or RUNS,
            )  # fmt: skip
        found, lab = lab, steadier(problem, best[1], lab)
    if homes is not None and initial is None:
        # the plan steadier set aside can still be the better start for transplants
        # (county rep draw 5: 24.56% from the start steadier kept, 7.70% from the other)
        # A given time limit stops it at the anytime phase's deadline; without one its
        # rounds alone (RELOCATE_ROUNDS) set its work, so the default plan does not
        # depend on the machine
        starts = [lab] if found is lab else [lab, found]
        stop = cutoff
        repaired = []
        for p in starts:
            repaired.append(
                transplanted(
                    problem, p, seed=seed, max_rounds=max_rounds, deadline=stop, clock=clock
                )
            )
        lab = min(
            (p for p, _ in repaired),
            key=lambda p: score(SearchState(problem, p, np.random.default_rng(0))),
        )
        skipped = sum(left for _, left in repaired)
        if skipped and notes is not None:
            notes.append(
                Note(
                    "repair_stopped",
                    f"rep homes: the repair after the search stopped at the time limit "
                    f"({time_limit:g} s) with {skipped} candidate plan(s) unsearched; a "
                    f"longer time_limit (or none) may balance the plan better",
                    skipped=skipped,
                    time_limit=time_limit,
                )
            )
    return lab


def starts_stopped(skipped: int, chain_cut: bool, time_limit: float) -> Note:
    """The note of a solve whose time limit passed before its starts were done:
    ``skipped`` starts (rep-home starts and restarts) not begun, and whether the extra
    chain rebalancing rounds of the best rep-home start were cut."""
    what = f"{skipped} start(s) not begun" if skipped else ""
    if chain_cut:
        what += (" and " if what else "") + "the best rep-home start's rebalancing cut short"
    return Note(
        "starts_stopped",
        f"the time limit ({time_limit:g} s) passed before the starts were done: {what}; "
        f"a longer time_limit (or none) may find a better plan",
        skipped=skipped,
        chain_cut=chain_cut,
        time_limit=time_limit,
    )


def steadier(problem: Problem, start: np.ndarray, found: np.ndarray) -> np.ndarray:
    """The anytime search's plan, or its start when the plan is off the exact band and
    the start's largest deviation is smaller. The tabu search ranks plans by their summed
    band violation, which off the band can trade the worst territory for the others (a
    rep-home plan at 4.72% came back at 10.58%); the largest deviation is what a plan is
    judged by (:func:`~patchmap.partition.objective.score` puts it first)."""
    tol = problem.tol[0] / MARGIN
    rng = np.random.default_rng(0)
    dev_found = max_deviation(SearchState(problem, found, rng))
    if dev_found <= tol:
        return found
    return start if max_deviation(SearchState(problem, start, rng)) < dev_found else found


def transplanted(
    problem: Problem,
    lab: np.ndarray,
    *,
    seed: int,
    max_rounds: int = 6,
    rounds: int = RELOCATE_ROUNDS,
    deadline: float | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[np.ndarray, int]:
    """A rep-home plan still off its exact band after the search: a heavy unit held along a long
    path is offered to the territories whose own path to it is lightest
    (:func:`~patchmap.partition.relocate.transplants`), and short territories move next to
    the surplus, keeping a path to their homes
    (:func:`~patchmap.partition.relocate.relocations`); the search goes on from each
    (refinement, then flow and chain balance for up to :data:`SETTLE_ROUNDS` rounds while
    they gain), and the best plan by :func:`score` wins. Relocations start again from a
    plan they improved, up to ``rounds`` times (the work is set by ``rounds``, the same
    for the same input). No plan is searched, and no settle round starts, once ``clock()``
    reads past ``deadline`` (None: no deadline). Returns the best plan and the number of
    plans left unsearched at the deadline (0 when the rounds ran their course)."""
    s = SearchState(problem, lab, np.random.default_rng([seed, 12]))
    best = (score(s), lab)
    if max_deviation(s) <= problem.tol[0] / MARGIN:
        return lab, 0  # inside the exact band (if not the search's narrower one)

    def late() -> bool:
        return deadline is not None and clock() > deadline

    plans = transplants(s) + relocations(s)
    for r in range(rounds):
        start = best[0]
        for i, new in enumerate(plans):
            if late():
                return best[1], len(plans) - i
            t = SearchState(problem, new, np.random.default_rng([seed, 12]))
            improve(t, max_rounds)
            sc = score(t)
            for _ in range(SETTLE_ROUNDS):
                if sc[0] <= 0 or late():
                    break
                flow_balance(t)
                chain_balance(t, t.rng)
                improve(t, max_rounds)
                now = score(t)
                if now >= sc:
                    break
                sc = now
            if sc < best[0]:
                best = (sc, t.labels())
        if best[0] >= start or best[0][0] <= 0 or r + 1 == rounds:
            break
        plans = relocations(SearchState(problem, best[1], np.random.default_rng([seed, 12, r])))
    return best[1], 0


def anytime(
    problem: Problem,
    start: np.ndarray,
    *,
    seed: int,
    effort: float,
    deadline: float,
    max_rounds: int = 6,
    report: Callable | None = None,
    clock: Callable[[], float] = time.perf_counter,
    runs: int = RUNS,
) -> np.ndarray:
    """The anytime phase: ``runs`` tabu runs inside the exact bands (the first from
    ``start``, the others from fresh restarts), each of :func:`run_steps` steps, stopping
    at ``deadline`` (a reading of ``clock``); the best plan by :func:`~patchmap.partition.tabu.rank` wins (and
    ``start`` stays when nothing beats it)."""
    tol = [problem.tol[0] / MARGIN] + list(problem.tol[1:])
    rng = np.random.default_rng([seed, 7])
    first = SearchState(problem, start, rng)
    moves = int(
        sum(
            len({first.lab[v] for v in first.nbrs[u]} - {first.lab[u]})
            for u in first.boundary().tolist()
        )
    )
    steps = run_steps(min(moves, PAIR_LIMIT), effort)
    best = None
    for r in range(runs):
        if r and clock() > deadline:
            break
        if r == 0:
            lab = start
        else:
            sub = np.random.default_rng([seed, 7, r])
            lab = recursive_seed(
                problem.graph, problem.xy, problem.weights, problem.area, problem.k,
                problem.tol, problem.locked, sub, problem.compactness,
                shares=np.asarray(problem.shares),
            )  # fmt: skip
            lab = settle_locks(problem.graph, lab, problem.weights[:, 0], problem.k, problem.locked)
            st = SearchState(problem, lab, sub)
            improve(st, max_rounds)
            lab = st.labels()
        s = SearchState(problem, lab, rng)
        key, lab = pair_search(
            s, tol, steps, deadline=deadline, seed=int(rng.integers(2**31)), report=report,
            clock=clock,
        )  # fmt: skip
        if best is None or key < best[0]:
            best = (key, lab)
    return best[1]
