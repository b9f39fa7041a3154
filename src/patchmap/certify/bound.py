"""A valid lower bound on the cut edges of any plan: the exact model solved with HiGHS.

The labelling model of :mod:`.model` becomes a mixed-integer program: ``x[i, j]``
(binary: unit ``i`` in territory ``j``, only where :class:`~.model.Formulation` allows
it), one row per unit (exactly one territory), two per territory and column (its band),
and the *extended* cut objective ``z[e, j] >= x[u, j] - x[v, j]`` summed over edges and
territories (half the L1 distance of the two units' rows: the strong form of Validi &
Buchanan). Contiguity is imposed lazily: when the solver's best labelling has a
territory in pieces, every piece ``C`` cut off from the rest gets the separator rows
``x[a, j] + x[b, j] - 1 <= sum of x[s, j] over the units s bordering C`` and the model is
solved again. Each round solves a relaxation of the true problem, so its dual bound is a
true lower bound; the best over the rounds is reported. A round stops at the first
improving labelling in pieces (its rows are added and the solve restarts) rather than
searching on for the best labelling of a relaxation that is about to change.

When the heuristic plan meets every constraint, the question becomes "is there a plan
cutting fewer edges?": a row ``sum z <= cut - 1`` (the cutoff) lets HiGHS prune every
node that cannot beat the plan, and a proof that no labelling is left proves the plan
optimal (bound = its cut edges). On the county instances this proved WV (23, in 34 s)
and OK (40, in 25 s), where a warm-started bound reached 22 and 36 in 60 s. Without such
a plan, it is handed to HiGHS as a warm start.

HiGHS was chosen over OR-Tools CP-SAT by measurement on the twelve county instances
(see the notes of issue 13): on the same model CP-SAT's bound stayed at 0-13 where HiGHS
reached 17-31 in 30 s.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from patchmap.certify.columns import applies as columns_apply
from patchmap.certify.columns import column_bound
from patchmap.certify.model import (
    MAX_CELLS,
    Formulation,
    Instance,
    add_rows,
    better,
    cut_edges,
    formulate,
    meets,
    pieces,
    trivial_bound,
)
from patchmap.errors import InputError

__all__ = ["BoundResult", "lower_bound", "require_solver"]

INSTALL_HINT = "pip install 'patchmap[exact]'"
# the set-partitioning bound (.columns) in a second child beside the model, where it
# applies; the parent keeps the larger bound. On: the model uses about one core of two, and
# on the county instances at low load (optimal.py --prove 60) both together prove the same
# 7 of 12 as the model alone and raise the open states' bounds (LA 36 -> 38, AL 36 -> 45,
# AR 23 -> 30, MS 20 -> 31, IA 21 -> 28; the model-alone figures are from a loaded run)
COLUMNS = True
COLUMN_UNITS = 500  # and only up to this many units (not measured beyond)
ORBITOPE = False  # orbitope rows: measured no better than HiGHS's own symmetry handling, and
# they stall its root on 300+ units (diagonal fixing and anchors stay)


@dataclass
class BoundResult:
    """What the exact model proved: ``lower_bound`` on the cut edges of every plan meeting
    the instance (None when no plan can), ``status`` (``optimal``: the bound is the optimum;
    ``time_limit``; ``infeasible``: no plan meets the constraints; ``too_large``: only the
    trivial bound), ``labels`` (the best plan the model found and checked, or None),
    ``seconds``, ``rounds`` of contiguity cuts, ``fixings`` (unit-territory pairs the
    fixing removed) and ``empty`` (units the fixing left nowhere to go)."""

    lower_bound: int | None
    status: str
    labels: np.ndarray | None
    seconds: float
    rounds: int = 0
    fixings: int = 0
    empty: np.ndarray | None = None

    @property
    def infeasible(self) -> bool:
        """True when the model proved that no plan meets the constraints."""
        return self.status == "infeasible"


def require_solver():
    """The ``highspy`` module, or an :class:`InputError` saying how to install it."""
    try:
        import highspy
    except ImportError:
        raise InputError(
            f"prove: the exact solver HiGHS is not installed ({INSTALL_HINT})"
        ) from None
    return highspy


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """HiGHS prints a banner to the process's stdout the first time it is created: to file
    descriptor 1, whatever ``sys.stdout`` is (a caller capturing it still sees the banner)."""
    fd = 1
    for stream in (sys.stdout, sys.__stdout__):
        if stream is not None:
            stream.flush()
    try:
        saved = os.dup(fd)
    except OSError:  # no stdout at all
        yield
        return
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, fd)
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)
        os.close(null)


class _Program:
    """The mixed-integer program of a formulation, built once and re-solved as
    contiguity rows are added."""

    def __init__(
        self, form: Formulation, *, threads: int, seed: int, deadline: float = math.inf
    ) -> None:
        hs = require_solver()
        self.hs = hs
        self.form = form
        self.deadline = deadline
        inst = form.instance
        n, k = inst.n, inst.k
        al = form.allowed
        xcol = np.full((n, k), -1, dtype=np.int64)
        xcol[al] = np.arange(int(al.sum()))
        self.xcol = xcol
        nx = int(al.sum())
        # extended objective on each edge, oriented from the end with fewer choices
        ei, ej = inst.ei, inst.ej
        swap = al[ei].sum(axis=1) > al[ej].sum(axis=1)
        u = np.where(swap, ej, ei)
        v = np.where(swap, ei, ej)
        eu, jj = np.nonzero(al[u])
        zcol = nx + np.arange(len(eu))
        self.nx, self.nz = nx, len(eu)
        self.eu, self.ej_, self.zj = u[eu], v[eu], jj
        _fresh_scheduler()
        with _quiet_stdout():
            h = hs.Highs()
        h.setOptionValue("output_flag", False)
        h.setOptionValue("threads", int(threads))
        h.setOptionValue("random_seed", int(seed))
        h.setOptionValue("mip_rel_gap", 0.0)
        h.setOptionValue("mip_abs_gap", 0.99)  # cut edges are whole: a gap below 1 is closed
        self.h = h
        self.stop = False  # set when the solver found a labelling to cut off (see watch)
        self.bad: list[np.ndarray] = []
        # HiGHS's own time limit is not checked everywhere (presolve, the root's cut loop:
        # 300-unit graphs overran a 60 s limit by up to 15 s): interrupt it at the deadline
        for event in (h.cbMipInterrupt, h.cbSimplexInterrupt, h.cbIpmInterrupt):
            event.subscribe(self._interrupt)
        self.on_dual = None  # called with the MIP's dual bound as the search goes (lower_bound)
        h.cbMipInterrupt.subscribe(self._dual)
        ncol = nx + self.nz
        h.addVars(ncol, np.zeros(ncol), np.ones(ncol))
        h.changeColsIntegrality(
            nx, np.arange(nx, dtype=np.int32), np.full(nx, hs.HighsVarType.kInteger, np.uint8)
        )
        h.changeColsCost(self.nz, zcol.astype(np.int32), np.ones(self.nz))
        rows: list[tuple[float, float, np.ndarray, np.ndarray]] = []
        inf = hs.kHighsInf
        for i in range(n):
            c = xcol[i][al[i]]
            rows.append((1.0, 1.0, c, np.ones(len(c))))
        for j in range(k):
            members = np.flatnonzero(al[:, j])
            for c in range(inst.weights.shape[1]):
                rows.append(
                    (float(inst.lo[j, c]), float(inst.hi[j, c]), xcol[members, j],
                     inst.weights[members, c])
                )  # fmt: skip
        xu = xcol[self.eu, jj]
        xv = xcol[self.ej_, jj]
        for t in range(self.nz):
            if xv[t] >= 0:
                rows.append((0.0, inf, np.array([zcol[t], xu[t], xv[t]]), np.array([1.0, -1, 1])))
            else:
                rows.append((0.0, inf, np.array([zcol[t], xu[t]]), np.array([1.0, -1])))
        # orbitope rows, linear in size: s[a, p] counts territory a's units among the first
        # p + 1 of the order; territory b's unit at position p needs s[a, p - 1] >= 1
        pairs = list(zip(form.chain[:-1], form.chain[1:], strict=True)) if ORBITOPE else []
        self.scol0 = ncol
        self.pairs = pairs
        if pairs:
            ns = len(pairs) * n
            h.addVars(ns, np.zeros(ns), np.full(ns, float(n)))
        order = form.order
        for t, (a, b) in enumerate(pairs):
            base = ncol + t * n
            for p_ in range(n):
                i = order[p_]
                cols, vals = [base + p_], [1.0]
                if p_ > 0:
                    cols.append(base + p_ - 1)
                    vals.append(-1.0)
                if xcol[i, a] >= 0:
                    cols.append(xcol[i, a])
                    vals.append(-1.0)
                rows.append((0.0, 0.0, np.array(cols), np.array(vals)))
                if xcol[i, b] >= 0:
                    if p_ == 0:
                        rows.append((0.0, 0.0, np.array([xcol[i, b]]), np.array([1.0])))
                    else:
                        rows.append((-inf, 0.0, np.array([xcol[i, b], base + p_ - 1]),
                                     np.array([1.0, -1.0])))  # fmt: skip
        if inst.contiguous:
            rows += self._neighbour_rows()
        add_rows(self.h, rows)

    def _interrupt(self, event) -> None:
        """HiGHS's interrupt callbacks: stop the solve once the deadline has passed, or
        once it found a labelling in pieces (``watch``)."""
        event.interrupt(bool(self.stop or time.perf_counter() >= self.deadline))

    def _dual(self, event) -> None:
        """Pass the MIP's current dual bound (a bound of this round's relaxation) on."""
        if self.on_dual is not None:
            self.on_dual(float(event.data_out.mip_dual_bound))

    def watch(self) -> None:
        """Stop the solve at its first improving labelling with a territory in pieces,
        keeping it in ``bad``: its separator rows are added and the solve restarts,
        instead of searching on for the best of the relaxation (wasted work when the
        question is whether any contiguous plan beats the cutoff)."""

        def seen(event) -> None:
            lab = self.labels(np.asarray(event.data_out.mip_solution))
            inst = self.form.instance
            if any(len(pieces(inst, lab, j)) > 1 for j in range(inst.k)):
                self.bad.append(lab)
                self.stop = True

        self.h.cbMipImprovingSolution.subscribe(seen)

    def cutoff(self, most: int) -> None:
        """Only labellings cutting at most ``most`` edges: the program is then infeasible
        exactly when no plan beats ``most + 1``, which the solver settles faster than
        a bound (it prunes every node that cannot go below)."""
        zc = np.arange(self.nx, self.nx + self.nz, dtype=np.int32)
        self.h.addRow(-self.hs.kHighsInf, most + 0.5, len(zc), zc, np.ones(len(zc)))
        # primal heuristics off: here a labelling they find is only one more to cut off
        # (KS, 60 s, load 1-1.4: proven 32 in 56-58 s with them off, bound 26 with them
        # on; WV and OK stay proven, 3-6 s slower)
        self.h.setOptionValue("mip_heuristic_effort", 0.0)
        self.h.setOptionValue("mip_heuristic_run_feasibility_jump", False)

    def _neighbour_rows(self) -> list:
        """A unit of a contiguous territory with two or more units has a neighbour in it:
        ``x[i, j] <= sum of x[v, j] over i's neighbours v`` wherever ``i`` alone cannot be
        territory ``j`` (it is not the anchor, or lighter than the band's floor)."""
        inst, al, xcol = self.form.instance, self.form.allowed, self.xcol
        m = inst.matrix
        inf = self.hs.kHighsInf
        rows = []
        alone = (inst.weights[:, None, :] >= inst.lo[None, :, :]).all(axis=2) & (
            inst.weights[:, None, :] <= inst.hi[None, :, :]
        ).all(axis=2)
        for i, j in zip(*np.nonzero(al), strict=True):
            if self.form.anchors[j] == i or alone[i, j]:
                continue
            nb = m.indices[m.indptr[i] : m.indptr[i + 1]]
            c = xcol[nb, j]
            c = c[c >= 0]
            rows.append((-inf, 0.0, np.r_[xcol[i, j], c], np.r_[1.0, -np.ones(len(c))]))
        return rows

    def columns(self, labels: np.ndarray) -> np.ndarray | None:
        """The column values of a labelling (None when the model does not allow it)."""
        inst = self.form.instance
        lab = np.asarray(labels, dtype=np.int64)
        ok = (lab >= 0) & (lab < inst.k)
        if not ok.all() or not self.form.allowed[np.arange(inst.n), lab].all():
            return None
        n = inst.n
        col = np.zeros(self.scol0 + len(self.pairs) * n)
        col[self.xcol[np.arange(n), lab]] = 1.0
        col[self.nx : self.nx + self.nz] = (lab[self.eu] == self.zj) & (lab[self.ej_] != self.zj)
        for t, (a, _) in enumerate(self.pairs):
            col[self.scol0 + t * n : self.scol0 + (t + 1) * n] = np.cumsum(
                lab[self.form.order] == a
            )
        return col

    def labels(self, col: np.ndarray) -> np.ndarray:
        """The labelling of a solution's columns."""
        x = np.full(self.form.allowed.shape, -1.0)
        x[self.form.allowed] = col[: self.nx]
        return np.argmax(x, axis=1)

    def separate(self, labels: np.ndarray) -> int:
        """Add separator rows for every piece of a territory cut off from its main piece;
        returns how many rows were added (0: the labelling is contiguous)."""
        inst = self.form.instance
        m = inst.matrix
        rows = []
        inf = self.hs.kHighsInf
        for j in range(inst.k):
            parts = pieces(inst, labels, j)
            if len(parts) <= 1:
                continue
            anchor = self.form.anchors[j]
            for r, part in enumerate(parts):
                if anchor >= 0 and anchor in part:
                    continue
                others = [q for s, q in enumerate(parts) if s != r]
                if anchor < 0 and r == 0:
                    continue
                inside = np.zeros(inst.n, dtype=bool)
                inside[part] = True
                border = np.unique(m[part].indices)
                border = border[~inside[border]]
                bcols = self.xcol[border, j]
                bcols = bcols[bcols >= 0]
                w = inst.weights[:, 0]
                b = max((q[np.argmax(w[q])] for q in others), key=lambda t: w[t])
                for a in part:
                    cols = np.r_[self.xcol[a, j], self.xcol[b, j], bcols]
                    vals = np.r_[1.0, 1.0, -np.ones(len(bcols))]
                    rows.append((-inf, 1.0, cols, vals))
        add_rows(self.h, rows)
        return len(rows)


def lower_bound(
    inst: Instance,
    *,
    time_limit: float = 60.0,
    incumbent: np.ndarray | None = None,
    threads: int = 2,
    seed: int = 0,
) -> BoundResult:
    """Solve the exact model for at most ``time_limit`` seconds and return the best proven
    lower bound on the cut edges of every plan meeting ``inst`` (see the module docstring).
    ``incumbent`` (a territory code per unit) warm-starts the solver as an upper bound.

    The limit is a hard one: HiGHS checks its clock (and calls back) only between steps,
    and at the root of a 300-unit model one step took over 6 s (a 60 s limit ran to
    62-75 s). So the whole solve (fixing, building, every round) runs in a forked child
    that reports each better bound as it is proven; at the deadline the child is killed
    and the last reported bound is the answer. Where fork is not available (or this is a
    daemonic process, which may not start one) the solve runs here, limit best-effort.
    """
    t0 = time.perf_counter()
    require_solver()
    if not math.isfinite(time_limit) or not _can_fork():
        return _solve(inst, time_limit, incumbent, threads, seed, t0, None)
    import multiprocessing as mp
    from multiprocessing.connection import wait

    ctx = mp.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    best, found, fixings = trivial_bound(inst), None, 0
    ub = None
    if incumbent is not None and meets(inst, np.asarray(incumbent, dtype=np.int64)):
        ub = cut_edges(inst, incumbent)
    # the set-partitioning bound runs beside the exact model, on one thread of its own
    side = COLUMNS and inst.n <= COLUMN_UNITS and columns_apply(inst)
    # beside the column child the model gets one thread: HiGHS's tree search uses about one
    # core anyway, and the column child needs the other (60 s, engine plans, load 1.4-2.1:
    # IA 31 -> 33 proven in 39.8 s, KS proven in 21.2 -> 19.1 s, WV 26.1 s, OK 28.2 s)
    model_threads = min(threads, 1) if side else threads
    proc = ctx.Process(
        target=_child,
        args=(send, inst, time_limit, incumbent, model_threads, seed, t0),
        daemon=True,
    )
    procs = [proc]
    sources = {recv: "model"}
    ends = [recv]
    if side:
        crecv, csend = ctx.Pipe(duplex=False)
        plan = None if ub is None else np.asarray(incumbent, dtype=np.int64)
        procs.append(
            ctx.Process(target=_column_child, args=(csend, inst, time_limit, plan, t0),
                        daemon=True)
        )  # fmt: skip
        sources[crecv] = "columns"
        ends.append(crecv)
    deadline = t0 + time_limit
    try:
        for p_, end in zip(procs, [send] + ([csend] if side else []), strict=True):
            p_.start()
            end.close()
        while sources:
            left = deadline - time.perf_counter()
            if left <= 0:
                break
            ready = wait(list(sources), timeout=left)
            if not ready:
                break
            for conn in ready:
                try:
                    kind, value = conn.recv()
                except EOFError:  # the child died without an answer
                    del sources[conn]
                    continue
                if kind == "error":
                    raise value
                if sources[conn] == "columns":
                    if kind == "done":
                        del sources[conn]
                        continue
                    # never past the plan in hand: reaching it proves that plan optimal
                    value = value if ub is None else min(value, ub)
                    best = max(best, value)
                    if ub is not None and best >= ub:
                        return BoundResult(ub, "optimal", found, time.perf_counter() - t0, 0,
                                           fixings)  # fmt: skip
                    continue
                if kind == "done":
                    if value.status == "time_limit" and value.lower_bound is not None:
                        value.lower_bound = max(value.lower_bound, best)
                    return value
                best, found, fixings = max(best, value[0]), value[1], value[2]
    finally:
        for p_ in procs:
            if p_.is_alive():
                p_.kill()
            p_.join()
        for conn in ends:
            conn.close()
    return BoundResult(best, "time_limit", found, time.perf_counter() - t0, 0, fixings)


def _fresh_scheduler() -> None:
    """HiGHS makes its thread pool once per process, at the first solve, and refuses a
    later solve asking for another number of threads (a fork copies the pool too): after
    a one-thread solve in the parent, the child's two-thread solve failed at once (bound 1
    where 2 was proven on a 9-unit case). Every program here starts with a fresh pool (not
    safe beside another HiGHS solve running in this process)."""
    require_solver().Highs.resetGlobalScheduler(True)


def _column_child(send, inst, time_limit, plan, t0) -> None:
    """The forked set-partitioning bound: each better bound goes back through ``send``."""
    try:
        left = time_limit - (time.perf_counter() - t0)
        with _quiet_stdout():
            column_bound(inst, time_limit=left, incumbent=plan, threads=1,
                         on_bound=lambda v: send.send(("bound", int(v))))  # fmt: skip
        send.send(("done", None))
    except BaseException as exc:  # handed to the parent, which raises it
        send.send(("error", exc))
    finally:
        send.close()


def _can_fork() -> bool:
    import multiprocessing as mp

    return "fork" in mp.get_all_start_methods() and not mp.current_process().daemon


def _child(send, inst, time_limit, incumbent, threads, seed, t0) -> None:
    """The forked solve: progress and the result go back through ``send``."""
    try:
        res = _solve(inst, time_limit, incumbent, threads, seed, t0, send)
        send.send(("done", res))
    except BaseException as exc:  # handed to the parent, which raises it
        send.send(("error", exc))
    finally:
        send.close()


def _solve(
    inst: Instance,
    time_limit: float,
    incumbent: np.ndarray | None,
    threads: int,
    seed: int,
    t0: float,
    send,
) -> BoundResult:
    """The body of :func:`lower_bound`; ``send`` (a pipe end or None) gets
    ``("bound", (bound, best plan found, fixings))`` each time the proven bound rises."""
    form = formulate(inst)
    base = trivial_bound(inst)
    if len(form.empty):
        return BoundResult(None, "infeasible", None, time.perf_counter() - t0, 0,
                           form.fixings, form.empty)  # fmt: skip
    if form.cells + len(inst.ei) * inst.k > MAX_CELLS:
        return BoundResult(base, "too_large", None, time.perf_counter() - t0, 0, form.fixings)
    # one deadline for everything: fixing, building the program, every round of cuts
    prog = _Program(form, threads=threads, seed=seed, deadline=t0 + time_limit)
    hs, h = prog.hs, prog.h
    best = base
    found: np.ndarray | None = None
    rounds = 0
    ub = None
    if incumbent is not None and meets(inst, np.asarray(incumbent, dtype=np.int64)):
        # a plan meeting everything: ask only for plans that beat it
        ub = cut_edges(inst, incumbent)
        prog.cutoff(ub - 1)
    prog.watch()
    sent = [best]
    found_cut: list[int | None] = [None]

    def report(dual: float) -> None:
        # what the parent shows if it must stop the child: the bound proven so far, never
        # past a plan in hand (a cutoff model's bound covers only the plans that beat ub)
        if send is None or not math.isfinite(dual):
            return
        val = max(best, math.ceil(dual - 1e-6))
        for plan_cut in (ub, found_cut[0]):
            if plan_cut is not None:
                val = min(val, plan_cut)
        if val > sent[0]:
            sent[0] = val
            send.send(("bound", (val, found, form.fixings)))

    prog.on_dual = report
    while True:
        left = time_limit - (time.perf_counter() - t0)
        if left <= 0.05:
            status = "time_limit"
            break
        h.setOptionValue("time_limit", float(left))
        warm = found if found is not None else (incumbent if ub is None else None)
        if warm is not None:
            col = prog.columns(form.canonical(warm))
            if col is not None:
                h.setSolution(len(col), np.arange(len(col), dtype=np.int32), col)
        prog.stop, prog.bad = False, []
        h.run()
        rounds += 1
        ms = h.getModelStatus()
        info = h.getInfo()
        if ms == hs.HighsModelStatus.kInfeasible:
            if ub is not None:  # no labelling beats the incumbent: it is optimal
                return BoundResult(ub, "optimal", None, time.perf_counter() - t0, rounds,
                                   form.fixings)  # fmt: skip
            return BoundResult(None, "infeasible", None, time.perf_counter() - t0, rounds,
                               form.fixings)  # fmt: skip
        dual = info.mip_dual_bound
        added = sum(prog.separate(lab) for lab in prog.bad)
        if info.primal_solution_status >= 2:
            lab = prog.labels(np.asarray(h.getSolution().col_value))
            cut = prog.separate(lab)
            if cut == 0 and meets(inst, lab):
                found = better(inst, found, lab)
                found_cut[0] = cut_edges(inst, found)
            added += cut
        if math.isfinite(dual):
            report(dual)
            best = max(best, math.ceil(dual - 1e-6))
        if added == 0:
            optimal = ms == hs.HighsModelStatus.kOptimal and found is not None
            status = "optimal" if optimal else "time_limit"
            break
    # the incumbent (and any plan found) is a plan: no bound goes past it
    for plan in (incumbent if ub is not None else None, found):
        if plan is not None:
            best = min(best, cut_edges(inst, plan))
    return BoundResult(best, status, found, time.perf_counter() - t0, rounds, form.fixings)
