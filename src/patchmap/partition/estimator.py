"""``Partitioner``: the territory engine's estimator (parameters in, ``fit`` -> Plan).

It follows scikit-learn's estimator contract: the constructor only stores its
parameters (``get_params``, ``set_params`` and ``sklearn.base.clone`` work), and every
parameter is validated when a plan is made (:meth:`Partitioner.settings`). One
difference, deliberately: :meth:`Partitioner.fit` returns the :class:`Plan` rather than
``self``, because the plan is the product (a partitioner is a recipe reused across unit
tables, and a plan is kept, compared and written out on its own); the estimator keeps
no fitted state.

The search itself lives in the package's parts: ``problem`` (graph, weights, bands),
``state`` (labels and running tallies), ``objective``, ``contiguity``, ``seeding``,
``balance``, ``secondary``, ``refine`` and ``schedule`` (the restarts).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from patchmap.certify import certify_plan, require_solver
from patchmap.certify.corridors import corridor_bound
from patchmap.certify.pockets import pocket_bound
from patchmap.errors import InputError, LockError
from patchmap.notes import Note
from patchmap.partition.constraints import (
    BalanceTolerance,
    Contiguity,
    HomeBases,
    LockedUnits,
)
from patchmap.partition.contiguity import check_locks, locked_whole
from patchmap.partition.hierarchy import fit_nested
from patchmap.partition.plan import Plan, build_plan
from patchmap.partition.problem import (
    COMPACTNESS,
    EFFORT,
    PROVE_TIME_LIMIT,
    TARGET,
    TOLERANCE,
    Problem,
    input_notes,
    prepare,
    resolve_adjacency,
    territory_shares,
    warm_codes,
)
from patchmap.partition.realign import realign
from patchmap.partition.reps import locate_homes, prepare_reps, rep_report, rep_shares
from patchmap.partition.schedule import SearchProgress, solve
from patchmap.units.adjacency import Adjacency, show_id

__all__ = ["Partitioner", "Settings"]

NOTE_DIRECTIONS, NOTE_STEPS = 6, 24  # the corridor sweeps of a missed rep-home plan's note


@dataclass(frozen=True)
class Settings:
    """A partitioner's parameters, validated (see :class:`Partitioner`)."""

    n_territories: int
    balance: list[str]
    tolerance: float
    target: float
    id_col: str | None
    seed: int
    compactness: float
    labels: str
    n_init: int | str
    max_rounds: int
    effort: float
    time_limit: float | None
    prove: bool = False
    prove_time_limit: float = PROVE_TIME_LIMIT


class Partitioner(BaseEstimator):
    """Split units into ``n_territories`` balanced, contiguous, compact territories.

    Parameters
    ----------
    n_territories:
        Number of territories K (2 <= K <= number of units).
    balance:
        Column name(s) to balance. The first is primary and is held to ``target``
        (as tight as unit sizes allow); the others to ``tolerance``.
    tolerance:
        Allowed deviation from the mean for the secondary balance columns (0.05 = 5%).
    target:
        Deviation the primary column is driven below (0.005 = 0.5%).
    id_col:
        Unit id column (the index when the column is absent and ``id_col`` is None).
    seed:
        Seed for every random choice; the same seed gives the same plan.
    compactness:
        Weight of the compactness term against one cut edge when choosing moves.
    labels:
        Format of territory labels, given the 1-based territory number.
    n_init:
        Restarts from different seeds; the best plan is kept (``"auto"``: 3 up to 1,000
        units, 2 up to 5,000, else 1).
    max_rounds:
        Most refine-and-rebalance rounds per restart.
    prove:
        Certify the plan with an exact model (needs ``highspy``: ``patchmap[exact]``):
        ``plan.lower_bound``, ``plan.gap``, ``plan.proven_optimal`` and
        ``plan.certificate``, or a proven reason why no plan meets the bands (see
        :mod:`patchmap.certify`). Plain fits, locks and rep homes only.
    prove_time_limit:
        Most seconds the exact model may take.
    effort:
        Length of the anytime search that follows the restarts (tabu search inside the
        exact bands, see :mod:`patchmap.partition.tabu`), in multiples of the default
        number of steps; 0 skips it. The same seed and effort give the same plan.
    time_limit:
        Seconds (wall clock) the whole search may take: no start (a rep-home start, a
        restart) begins once it is past, the anytime search and, with rep homes, the
        repair of a plan still off its band (moving territories next to the surplus)
        stop at it. The first start always runs, so a plan comes back; one start can
        itself take a few seconds on a large map, so the solve can end that much past
        the limit. ``plan.notes`` says what was skipped (codes ``starts_stopped`` and
        ``repair_stopped``). None: the step budget (``effort``) ends the anytime search,
        with a safety cap of 7 s of the process's CPU time up to 1,000 units, rising to
        40 s at 50,000 (the starts and the repair's rounds are not capped); CPU time is
        what a busy machine does not eat into, so the default plan does not depend on
        the load. A run cut short by a given limit depends on the machine's speed.

    Parameters are checked when a plan is made (scikit-learn's contract), and
    :meth:`fit` returns the :class:`Plan` (see the module docstring).
    """

    def __init__(
        self,
        n_territories: int,
        balance: str | Sequence[str],
        *,
        tolerance: float = TOLERANCE,
        target: float = TARGET,
        id_col: str | None = "unit_id",
        seed: int = 0,
        compactness: float = COMPACTNESS,
        labels: str = "T{:02d}",
        n_init: int | str = "auto",
        max_rounds: int = 6,
        prove: bool = False,
        prove_time_limit: float = PROVE_TIME_LIMIT,
        effort: float = EFFORT,
        time_limit: float | None = None,
    ) -> None:
        self.n_territories = n_territories
        self.balance = balance
        self.tolerance = tolerance
        self.target = target
        self.id_col = id_col
        self.seed = seed
        self.compactness = compactness
        self.labels = labels
        self.n_init = n_init
        self.max_rounds = max_rounds
        self.prove = prove
        self.prove_time_limit = prove_time_limit
        self.effort = effort
        self.time_limit = time_limit

    def settings(self) -> Settings:
        """The parameters, validated: raises :class:`InputError` saying what was expected."""
        k = self.n_territories
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise InputError(f"n_territories must be an integer >= 2, got {k!r}")
        if k < 2:
            raise InputError(f"n_territories must be >= 2, got {k}")
        balance = self.balance
        cols = [balance] if isinstance(balance, str) else list(balance)
        if not cols or not all(isinstance(c, str) and c for c in cols):
            raise InputError(
                f"balance must be a column name or a list of column names, got {balance!r}"
            )
        if len(set(cols)) != len(cols):
            raise InputError(f"balance columns repeat: {', '.join(cols)}")
        for name, value in (("tolerance", self.tolerance), ("target", self.target)):
            if not isinstance(value, (int, float)) or not (0 < float(value) < 1):
                raise InputError(
                    f"{name} must be a fraction between 0 and 1 (0.05 = 5%), got {value!r}"
                )
        c = self.compactness
        if not isinstance(c, (int, float)) or c < 0:
            raise InputError(f"compactness must be a number >= 0, got {c!r}")
        try:
            self.labels.format(1)
        except (IndexError, KeyError, ValueError, AttributeError):
            raise InputError(
                f"labels must be a format string like 'T{{:02d}}', got {self.labels!r}"
            ) from None
        n_init = self.n_init
        if n_init != "auto" and (
            not isinstance(n_init, int) or isinstance(n_init, bool) or n_init < 1
        ):
            raise InputError(f"n_init must be an integer >= 1 or 'auto', got {n_init!r}")
        r = self.max_rounds
        if isinstance(r, bool) or not isinstance(r, (int, np.integer)) or r < 1:
            raise InputError(f"max_rounds must be an integer >= 1, got {r!r}")
        if not isinstance(self.prove, (bool, np.bool_)):
            raise InputError(f"prove must be True or False, got {self.prove!r}")
        tl = self.prove_time_limit
        if isinstance(tl, bool) or not isinstance(tl, (int, float)) or not tl > 0:
            raise InputError(f"prove_time_limit must be a number of seconds > 0, got {tl!r}")
        e = self.effort
        if isinstance(e, bool) or not isinstance(e, (int, float)) or not (0 <= e <= 1000):
            raise InputError(f"effort must be a number from 0 to 1000, got {e!r}")
        tlim = self.time_limit
        if tlim is not None and (
            isinstance(tlim, bool) or not isinstance(tlim, (int, float)) or not tlim > 0
        ):
            raise InputError(f"time_limit must be a number of seconds > 0, got {tlim!r}")
        return Settings(
            n_territories=int(k), balance=cols, tolerance=float(self.tolerance),
            target=float(self.target), id_col=self.id_col, seed=int(self.seed),
            compactness=float(c), labels=self.labels, n_init=n_init, max_rounds=int(r),
            prove=bool(self.prove), prove_time_limit=float(tl),
            effort=float(e), time_limit=None if tlim is None else float(tlim),
        )  # fmt: skip

    @property
    def constraints(self) -> list:
        """The constraint objects this partitioner optimizes for and the plan is checked on."""
        cfg = self.settings()
        out = [BalanceTolerance(cfg.balance[0], cfg.target)]
        out += [BalanceTolerance(c, cfg.tolerance) for c in cfg.balance[1:]]
        out.append(Contiguity())
        return out

    def fit(
        self,
        units: gpd.GeoDataFrame,
        *,
        adjacency: Adjacency | str | os.PathLike | pd.DataFrame | None = None,
        initial: pd.Series | Mapping | None = None,
        locked: pd.Series | Mapping | None = None,
        reps: pd.DataFrame | None = None,
        within: str | pd.Series | None = None,
        regions: int | None = None,
        shares: Sequence[float] | None = None,
    ) -> Plan:
        """Partition ``units`` and return the :class:`Plan`.

        ``adjacency`` reuses a prebuilt graph (built with :func:`build_adjacency` otherwise),
        or replaces it with an edge list: a file or DataFrame of ``unit_a,unit_b`` rows
        (see :func:`~patchmap.units.adjacency.edge_adjacency`).
        ``initial`` (unit id -> territory label) warm-starts from an existing plan;
        ``locked`` (unit id -> label) pins units to territories, which then never move.
        ``reps`` (``rep_id``, ``lat``, ``lon``; see :func:`patchmap.partition.reps.prepare_reps`)
        gives one territory per rep, labelled by ``rep_id`` and grown around the unit holding
        the rep's home, which stays in it. ``within`` (a column name or one value per unit)
        keeps every territory inside one group; ``regions`` first draws that many regions
        and nests the territories in them (``plan.regions``). ``shares`` sets each
        territory's target fraction of the totals (equal by default; with ``reps`` that
        carry a ``capacity``, each rep's capacity over the total: 0.5 FTE aims at half a
        share). Balance is judged against these targets.
        """
        cfg = self.settings()
        if cfg.prove:
            require_solver()  # before the search: a missing solver is a quick, clear error
        adjacency = resolve_adjacency(units, adjacency, cfg.id_col)
        if within is not None or regions is not None:
            if cfg.prove:
                raise InputError(
                    "prove covers plain plans, locks and rep homes (not within/regions)"
                )
            return fit_nested(
                self, units, adjacency=adjacency, initial=initial, locked=locked, reps=reps,
                within=within, regions=regions,
            )  # fmt: skip
        t0 = time.perf_counter()
        k = cfg.n_territories
        W, adjacency = prepare(
            units, adjacency, balance=cfg.balance, id_col=cfg.id_col, n_territories=k
        )
        ids = np.asarray(adjacency.ids)
        names = [cfg.labels.format(i + 1) for i in range(k)]
        extra: list = []
        home_idx = None
        if reps is not None:
            reps = prepare_reps(reps)
            if len(reps) != k:
                raise InputError(
                    f"{reps.attrs.get('source', 'reps')}: {len(reps)} reps but "
                    f"n_territories={k} (one territory per rep)"
                )
            home_idx = locate_homes(reps, units, adjacency)
            names = reps["rep_id"].tolist()
            if shares is None:
                shares = rep_shares(reps)
        init_codes, lock_codes, label_names = warm_codes(
            ids, names, initial, locked, fixed=reps is not None
        )
        if locked is not None:
            extra.append(
                LockedUnits(
                    pd.Series(
                        np.asarray(label_names, dtype=object)[lock_codes[lock_codes >= 0]],
                        index=ids[lock_codes >= 0],
                    )
                )
            )
        if home_idx is not None:
            clash = (lock_codes[home_idx] >= 0) & (lock_codes[home_idx] != np.arange(k))
            if clash.any():
                i = int(np.flatnonzero(clash)[0])
                raise LockError(
                    f"locked: unit {show_id(ids[home_idx[i]])} is locked to "
                    f"{label_names[lock_codes[home_idx[i]]]!r} but is the home of rep "
                    f"{names[i]!r}",
                    units=ids[home_idx[i : i + 1]],
                )
            lock_codes[home_idx] = np.arange(k)
            extra.append(
                HomeBases(pd.Series(ids[home_idx], index=pd.Index(names, name="territory")))
            )
        check_locks(adjacency, lock_codes, label_names)
        share = territory_shares(shares, k)
        problem = Problem.from_adjacency(
            adjacency, W, shares=share, primary_tol=cfg.target, tolerance=cfg.tolerance,
            locked=lock_codes, compactness=cfg.compactness,
        )  # fmt: skip
        notes = input_notes(W, ids, adjacency, share, cfg.target, cfg.balance[0])
        if k == len(ids):  # one unit per territory: the only plan, no search needed
            lab = one_unit_each(lock_codes, k)
        else:
            with SearchProgress(problem.graph.n) as report:
                lab = solve(
                    problem, seed=cfg.seed, n_init=cfg.n_init, max_rounds=cfg.max_rounds,
                    initial=init_codes, homes=home_idx, effort=cfg.effort,
                    time_limit=cfg.time_limit, report=report, notes=notes,
                )  # fmt: skip
        fixed_names = initial is not None or locked is not None or reps is not None

        def make_plan(codes: np.ndarray, notes: list[str]) -> Plan:
            return build_plan(
                adjacency, codes, W, label_names, notes, balance=cfg.balance,
                target=cfg.target, tolerance=cfg.tolerance, seed=cfg.seed,
                reorder=not fixed_names, shares=share, extra=extra,
            )  # fmt: skip

        fresh = list(notes)
        plan = make_plan(lab, notes)
        if not locked_whole(problem.graph, lab, lock_codes):
            notes.append(
                Note(
                    "locked_apart",
                    "locked units of some territories could not all be joined (other "
                    "territories' locks are in the way): see the contiguous column",
                )
            )
        if home_idx is not None:
            plan.homes = pd.Series(ids[home_idx], index=pd.Index(names, name="territory"))
            plan.reps = rep_report(reps, plan, units)
            if plan.max_deviation > cfg.target + 1e-12:
                notes.append(_crowded_homes_note(plan, cfg, problem, home_idx, ids))
        plan.elapsed_s = time.perf_counter() - t0
        if cfg.prove:

            def rebuild(codes: np.ndarray) -> Plan:
                new = make_plan(codes, list(fresh))
                if home_idx is not None:
                    new.homes, new.reps = plan.homes, rep_report(reps, new, units)
                return new

            plan = certify_plan(
                plan, codes=lab, ei=problem.graph.ei, ej=problem.graph.ej, weights=W,
                shares=share, tolerances=[cfg.target] + [cfg.tolerance] * (W.shape[1] - 1),
                fixed=lock_codes, label_names=label_names, columns=cfg.balance, ids=ids,
                time_limit=cfg.prove_time_limit, seed=cfg.seed, rebuild=rebuild,
            )  # fmt: skip
            plan.elapsed_s = time.perf_counter() - t0
        return plan

    def realign(
        self,
        units: gpd.GeoDataFrame,
        current: pd.Series | Mapping,
        *,
        max_moved: float | None = None,
        adjacency: Adjacency | str | os.PathLike | pd.DataFrame | None = None,
        locked: pd.Series | Mapping | None = None,
        reps: pd.DataFrame | None = None,
        within: str | pd.Series | None = None,
        regions: int | None = None,
        relax: str = "tolerance",
    ) -> Plan:
        """Rebalance an existing plan ``current`` (unit id -> label) while moving little.

        Every balance column is brought within ``tolerance`` (realignment does not chase the
        tighter ``target``) by moving boundary units, at most ``max_moved`` (a fraction) of
        the primary column to a different territory. When both cannot hold, ``relax``
        (``"tolerance"`` or ``"budget"``) says which gives way; ``plan.notes`` says by how
        much. Territories keep their labels; ``plan.moves`` lists the units that moved.
        """
        cfg = self.settings()
        if cfg.prove:
            raise InputError("prove covers plain plans, locks and rep homes (not a realignment)")
        adjacency = resolve_adjacency(units, adjacency, cfg.id_col)
        return realign(
            self, units, current, max_moved=max_moved, adjacency=adjacency, locked=locked,
            reps=reps, within=within, regions=regions, relax=relax,
        )  # fmt: skip

    def evaluate(
        self, units: gpd.GeoDataFrame, assignment: pd.Series | Mapping, *,
        adjacency: Adjacency | str | pd.DataFrame | None = None,
    ) -> Plan:  # fmt: skip
        """The :class:`Plan` of a given assignment (unit id -> label), measured the way
        :meth:`fit` measures its own; ``n_territories`` is taken from the assignment.
        ``adjacency`` as in :meth:`fit` (an edge list measures on the user's graph)."""
        cfg = self.settings()
        adjacency = resolve_adjacency(units, adjacency, cfg.id_col)
        labels = pd.Series(assignment)
        names = sorted(pd.unique(labels.astype(str)))
        W, adjacency = prepare(
            units, adjacency, balance=cfg.balance, id_col=cfg.id_col,
            n_territories=max(len(names), 2),
        )  # fmt: skip
        ids = pd.Index(np.asarray(adjacency.ids))
        lab_s = labels.astype(str).reindex(ids)
        if lab_s.isna().any():
            raise InputError(
                f"assignment: unit {show_id(ids[lab_s.isna().to_numpy()][0])} has no territory"
            )
        lab = pd.Index(names).get_indexer(lab_s.to_numpy())
        return build_plan(
            adjacency, lab, W, names, [], balance=cfg.balance, target=cfg.target,
            tolerance=cfg.tolerance, seed=cfg.seed, reorder=False,
        )  # fmt: skip


def _crowded_homes_note(
    plan: Plan, cfg: Settings, problem: Problem, homes: np.ndarray, ids: np.ndarray
) -> Note:
    """Why a plan with rep homes misses the balance target: a proof when a neck of the map
    lets too few territories cross (:func:`~patchmap.certify.corridors.corridor_bound`)
    or other homes wall a home in (:func:`~patchmap.certify.pockets.pocket_bound`), else the homes' crowding, said as what it is (no proof that the target is out of reach)."""
    dev = plan.territories.set_index("territory")[f"{cfg.balance[0]}_deviation"]
    worst = dev.abs().sort_values(ascending=False).index[:3]
    load = plan.reps.set_index("rep_id")["nearest_load"]
    spread = (
        f"; the units nearest each home hold {load.min():.2f}x ({load.idxmin()}) to "
        f"{load.max():.2f}x ({load.idxmax()}) of a territory's share"
        if load.notna().all()
        else ""
    )
    off = "(most off: " + ", ".join(f"{t} {dev[t]:+.1%}" for t in worst) + ")"
    bound = corridor_bound(
        problem.graph.matrix, problem.xy, problem.weights[:, 0], homes,
        np.asarray(problem.shares), directions=NOTE_DIRECTIONS, steps=NOTE_STEPS,
    )  # fmt: skip
    why = bound.sentence(ids)
    pocket = pocket_bound(
        problem.graph.matrix, problem.weights[:, 0], homes, np.asarray(problem.shares)
    )
    if pocket.deviation > 0 and pocket.deviation >= bound.deviation - 1e-6:
        bound, why = pocket, pocket.sentence(ids, plan.homes.index.to_numpy())
    if bound.deviation > cfg.target:
        text = f"with these rep homes the balance target cannot be met {off}: {why}"
    else:
        text = (
            f"the balance target was not met with these rep homes {off}; reps living close "
            "together compete for the same units" + spread + ". No proof that it cannot "
            "be met was found: another seed or a longer search may reach it"
        )
    return Note(
        "crowded_homes", text, worst={t: float(dev[t]) for t in worst},
        bound=float(bound.deviation),
    )  # fmt: skip


def one_unit_each(lock_codes: np.ndarray, k: int) -> np.ndarray:
    """The labels of K territories over K units: locked units (and rep homes) keep their
    territory, the others take the territories left, in unit order."""
    lab = np.asarray(lock_codes, dtype=np.int64).copy()
    taken = lab[lab >= 0]
    if len(np.unique(taken)) < len(taken):
        raise InputError(
            f"{k} territories over {k} units need one unit each, but locks put several "
            "units in one territory"
        )
    free = np.setdiff1d(np.arange(k), taken)
    lab[lab < 0] = free
    return lab
