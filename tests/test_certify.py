"""Certified plans (issue 13): the bound is a true bound, and "impossible" is proven.

Honesty first: on small pieces of real county maps the exact model's bound is checked
against exhaustive enumeration of every labelling (contiguity and bands judged directly),
and on the published districting instances (when present) against the proven optima.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from conftest import run_cli
from patchmap import geodata
from patchmap.certify import Instance, explain, formulate, lower_bound
from patchmap.certify import bound as bound_module
from patchmap.errors import InputError
from patchmap.partition import Partitioner
from patchmap.units.adjacency import build_adjacency

pytest.importorskip("highspy")

DISTRICTING = Path(
    os.environ.get(
        "PATCHMAP_DISTRICTING",
        Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "districting",
    )
)


@pytest.fixture(scope="module")
def county_graph():
    """Counties of a few north-eastern states with their rook graph and populations."""
    units = geodata.counties(["NY", "PA", "NJ"]).rename(columns={"county": "unit_id"})
    adj = build_adjacency(units, id_col="unit_id")
    return units, adj


def _piece(county_graph, seed: int, n: int):
    """A connected piece of ``n`` real counties (breadth-first from a random county)."""
    units, adj = county_graph
    rng = np.random.default_rng(seed)
    m = adj.matrix.tocsr()
    start = int(rng.integers(adj.n_units))
    seen, frontier = [start], [start]
    while len(seen) < n and frontier:
        nxt = []
        for u in frontier:
            for v in m.indices[m.indptr[u] : m.indptr[u + 1]]:
                if v not in seen and len(seen) < n:
                    seen.append(int(v))
                    nxt.append(int(v))
        frontier = nxt
    idx = np.array(sorted(seen))
    sub = sparse.triu(m[idx][:, idx], k=1).tocoo()
    pop = units["population"].to_numpy(dtype=float)[idx]
    return sub.row.astype(np.int64), sub.col.astype(np.int64), pop


def _brute(inst: Instance) -> int | None:
    """Fewest cut edges over every labelling meeting the bands, the fixed units and
    contiguity (None when none does): exhaustive enumeration."""
    found = _brute_plan(inst)
    return None if found is None else found[0]


def _brute_plan(inst: Instance) -> tuple[int, np.ndarray] | None:
    """The fewest cut edges and a labelling reaching them (exhaustive enumeration)."""
    n, k = inst.n, inst.k
    labs = np.array(list(itertools.product(range(k), repeat=n)), dtype=np.int64)
    ok = np.ones(len(labs), dtype=bool)
    for c in range(inst.weights.shape[1]):
        for j in range(k):
            tot = (labs == j).astype(float) @ inst.weights[:, c]
            ok &= (tot >= inst.lo[j, c]) & (tot <= inst.hi[j, c])
    fx = np.flatnonzero(inst.fixed >= 0)
    for i in fx:
        ok &= labs[:, i] == inst.fixed[i]
    labs = labs[ok]
    cut = (labs[:, inst.ei] != labs[:, inst.ej]).sum(axis=1)
    m = inst.matrix
    for t in np.argsort(cut, kind="stable"):
        lab = labs[t]
        good = True
        for j in range(k):
            units = np.flatnonzero(lab == j)
            if len(units) > 1 and connected_components(m[units][:, units])[0] > 1:
                good = False
                break
        if good:
            return int(cut[t]), lab
    return None


CASES = [  # seed, units, territories, band (fraction), fixed units (0, 1 or 2)
    (1, 9, 2, 0.10, False),
    (2, 10, 2, 0.05, False),
    (3, 9, 3, 0.30, False),
    (4, 8, 3, 0.15, False),
    (5, 10, 2, 0.20, True),
    (6, 9, 3, 0.40, True),
    (7, 11, 2, 0.02, False),
    (8, 9, 3, 0.35, 2),
    (9, 10, 2, 0.30, 2),
    (10, 9, 3, 0.25, 2),
]


@pytest.mark.parametrize(("seed", "n", "k", "tol", "fix"), CASES)
def test_bound_equals_brute_force_optimum(county_graph, seed, n, k, tol, fix):
    ei, ej, pop = _piece(county_graph, seed, n)
    fixed = np.full(len(pop), -1)
    heavy = np.argsort(-pop)
    if fix:
        fixed[heavy[0]] = k - 1
    if fix == 2:
        fixed[heavy[1]] = 0  # two territories pinned apart: paths may not cross the other
    inst = Instance.from_bands(ei, ej, pop, shares=np.full(k, 1 / k), tolerances=[tol], fixed=fixed)
    best = _brute(inst)
    res = lower_bound(inst, time_limit=20)
    if best is None:
        assert res.infeasible
        return
    assert res.lower_bound is not None and res.lower_bound <= best  # never above
    assert res.status == "optimal" and res.lower_bound == best  # and exact when solved
    assert res.labels is not None
    assert int((res.labels[ei] != res.labels[ej]).sum()) == best


def test_a_warm_start_in_any_labelling_is_accepted(county_graph):
    # the plan handed over as incumbent, with its territories named in any order, is
    # renamed the model's way (anchors, lowest units) so every unit stays allowed
    ei, ej, pop = _piece(county_graph, 3, 9)
    inst = Instance.from_bands(ei, ej, pop, shares=np.full(3, 1 / 3), tolerances=[0.3])
    best, lab = _brute_plan(inst)
    form = formulate(inst)
    for perm in itertools.permutations(range(3)):
        canon = form.canonical(np.asarray(perm)[lab])
        assert form.allowed[np.arange(inst.n), canon].all()
        assert int((canon[ei] != canon[ej]).sum()) == best
    res = lower_bound(inst, time_limit=20, incumbent=np.asarray([2, 0, 1])[lab])
    assert res.lower_bound == best and res.status == "optimal"


def _feasible_plans(inst: Instance) -> list[np.ndarray]:
    """Every labelling meeting the bands, the fixed units and contiguity."""
    n, k = inst.n, inst.k
    labs = np.array(list(itertools.product(range(k), repeat=n)), dtype=np.int64)
    ok = np.ones(len(labs), dtype=bool)
    for j in range(k):
        tot = (labs == j).astype(float) @ inst.weights[:, 0]
        ok &= (tot >= inst.lo[j, 0]) & (tot <= inst.hi[j, 0])
    for i in np.flatnonzero(inst.fixed >= 0):
        ok &= labs[:, i] == inst.fixed[i]
    m = inst.matrix
    out = []
    for lab in labs[ok]:
        parts = [np.flatnonzero(lab == j) for j in range(k)]
        if all(len(u) <= 1 or connected_components(m[u][:, u])[0] == 1 for u in parts):
            out.append(lab)
    return out


def _case(county_graph, seed, n, k, tol, fix):
    """A brute-force case: a piece of counties, its instance (the largest unit fixed to the
    last territory when ``fix``) and its edge ends."""
    ei, ej, pop = _piece(county_graph, seed, n)
    fixed = np.full(len(pop), -1)
    if fix:
        fixed[np.argmax(pop)] = k - 1
    inst = Instance.from_bands(ei, ej, pop, shares=np.full(k, 1 / k), tolerances=[tol], fixed=fixed)
    return ei, ej, inst


@pytest.mark.parametrize(("seed", "n", "k", "tol", "fix"), CASES[:6])
def test_every_contiguous_plan_is_a_point_of_the_model(county_graph, seed, n, k, tol, fix):
    # the model (fixing, anchors, neighbour rows) may only remove labellings no plan
    # has: every feasible plan, in the model's naming, satisfies every row and bound
    ei, ej, inst = _case(county_graph, seed, n, k, tol, fix)
    form = formulate(inst)
    prog = bound_module._Program(form, threads=1, seed=0)
    lp = prog.h.getLp()
    mat = lp.a_matrix_
    kind = sparse.csr_matrix if mat.format_ == prog.hs.MatrixFormat.kRowwise else sparse.csc_matrix
    a = kind((mat.value_, mat.index_, mat.start_), shape=(lp.num_row_, lp.num_col_))
    plans = _feasible_plans(inst)
    assert plans or _brute(inst) is None
    for lab in plans:
        col = prog.columns(form.canonical(lab))
        assert col is not None
        act = a @ col
        assert (act >= np.asarray(lp.row_lower_) - 1e-7).all()
        assert (act <= np.asarray(lp.row_upper_) + 1e-7).all()
        assert (col >= np.asarray(lp.col_lower_) - 1e-9).all()
        assert (col <= np.asarray(lp.col_upper_) + 1e-9).all()


@pytest.mark.parametrize(("seed", "n", "k", "tol", "fix"), CASES[:6])
def test_a_feasible_incumbent_is_a_cutoff_and_the_bound_stays_exact(
    county_graph, seed, n, k, tol, fix
):
    # with a plan meeting everything the model only asks for plans beating it: handed the
    # worst plan it must find the optimum; handed the optimum it proves it (infeasible
    # below) and reports exactly its cut edges, never more
    ei, ej, inst = _case(county_graph, seed, n, k, tol, fix)
    plans = _feasible_plans(inst)
    if not plans:
        return
    cuts = [int((lab[ei] != lab[ej]).sum()) for lab in plans]
    best = min(cuts)
    worst = plans[int(np.argmax(cuts))]
    res = lower_bound(inst, time_limit=20, incumbent=worst)
    assert res.status == "optimal" and res.lower_bound == best
    if max(cuts) > best:
        assert res.labels is not None and int((res.labels[ei] != res.labels[ej]).sum()) == best
    res = lower_bound(inst, time_limit=20, incumbent=plans[int(np.argmin(cuts))])
    assert res.status == "optimal" and res.lower_bound == best


def test_two_columns_and_unequal_shares_against_brute_force(county_graph):
    ei, ej, pop = _piece(county_graph, 11, 9)
    area = np.random.default_rng(0).uniform(1, 3, len(pop))
    inst = Instance.from_bands(
        ei, ej, np.column_stack([pop, area]), shares=np.array([0.5, 0.3, 0.2]),
        tolerances=[0.35, 0.5],
    )  # fmt: skip
    best = _brute(inst)
    res = lower_bound(inst, time_limit=20)
    if best is None:
        assert res.infeasible
    else:
        assert res.lower_bound == best


def _districting(state: str):
    cnt = pd.read_parquet(
        DISTRICTING / "counties.parquet", columns=["county", "state", "population"]
    )
    edges = pd.read_csv(DISTRICTING / "county_edges.csv", dtype=str)
    opt = pd.read_csv(DISTRICTING / "optimal_cut_edges.csv").set_index("state").loc[state]
    c = cnt[cnt["state"] == state].reset_index(drop=True)
    pos = {v: i for i, v in enumerate(c["county"].astype(str))}
    e = edges[edges["state"] == state]
    k = int(opt["territories"])
    pop = c["population"].to_numpy(dtype=float)
    inst = Instance.from_bands(
        e["unit_a"].map(pos).to_numpy(), e["unit_b"].map(pos).to_numpy(), pop,
        shares=np.full(k, 1 / k), tolerances=[0.005],
    )  # fmt: skip
    return inst, int(opt["optimal_cut_edges"])


def test_the_time_limit_covers_the_whole_solve(county_graph):
    # HiGHS's own time limit is not checked everywhere, so the program interrupts it at
    # its deadline: a deadline already past stops the solve before it ends, whatever
    # HiGHS's limit says, and lower_bound then reports a time-limited (still valid) bound
    ei, ej, pop = _piece(county_graph, 12, 60)
    inst = Instance.from_bands(ei, ej, pop, shares=np.full(4, 0.25), tolerances=[0.01])
    prog = bound_module._Program(formulate(inst), threads=2, seed=0, deadline=0.0)
    prog.h.setOptionValue("time_limit", 1e6)
    prog.h.run()
    assert prog.h.getModelStatus() == prog.hs.HighsModelStatus.kInterrupt
    res = lower_bound(inst, time_limit=0.2)
    assert res.status == "time_limit" and res.lower_bound is not None and res.lower_bound >= 3


def _stalled_solve(inst, time_limit, incumbent, threads, seed, t0, send):
    """A solve that proves a bound of 7 and then never returns (as HiGHS can stall
    between its clock checks): the forked child runs it."""
    import time

    send.send(("bound", (7, None, 0)))
    time.sleep(3600)


@pytest.mark.skipif(not bound_module._can_fork(), reason="no fork on this platform")
def test_a_solve_past_its_deadline_is_killed_and_its_last_bound_kept(county_graph, monkeypatch):
    ei, ej, pop = _piece(county_graph, 12, 60)
    inst = Instance.from_bands(ei, ej, pop, shares=np.full(4, 0.25), tolerances=[0.01])
    monkeypatch.setattr(bound_module, "_solve", _stalled_solve)
    monkeypatch.setattr(bound_module, "COLUMNS", False)  # only the model's bound here
    res = lower_bound(inst, time_limit=0.5)
    assert res.status == "time_limit" and res.lower_bound == 7


def _failing_solve(inst, time_limit, incumbent, threads, seed, t0, send):
    raise InputError("the child failed")


@pytest.mark.skipif(not bound_module._can_fork(), reason="no fork on this platform")
def test_an_error_in_the_solve_reaches_the_caller(county_graph, monkeypatch):
    ei, ej, pop = _piece(county_graph, 12, 20)
    inst = Instance.from_bands(ei, ej, pop, shares=np.full(2, 0.5), tolerances=[0.01])
    monkeypatch.setattr(bound_module, "_solve", _failing_solve)
    monkeypatch.setattr(bound_module, "COLUMNS", False)
    with pytest.raises(InputError, match="the child failed"):
        lower_bound(inst, time_limit=5)


@pytest.mark.skipif(not bound_module._can_fork(), reason="no fork on this platform")
def test_a_solve_after_highs_ran_here_is_still_exact(county_graph):
    # HiGHS's thread pool is made once per process, by the first solve: after a one-thread
    # solve here the forked child's two-thread solve failed at once (bound 1 instead of
    # the proven 2)
    hs = bound_module.require_solver()
    h = hs.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("threads", 1)
    h.addVars(2, np.zeros(2), np.ones(2))
    h.changeColsIntegrality(2, np.arange(2, dtype=np.int32), np.ones(2, dtype=np.uint8))
    h.run()
    ei, ej, pop = _piece(county_graph, 1, 9)
    inst = Instance.from_bands(ei, ej, pop, shares=np.full(2, 0.5), tolerances=[0.1])
    res = lower_bound(inst, time_limit=20)
    assert res.status == "optimal" and res.lower_bound == _brute(inst)


@pytest.mark.skipif(not DISTRICTING.exists(), reason="districting instances not present")
@pytest.mark.parametrize("state", ["NM", "ID", "ME"])
def test_bound_never_above_the_proven_optimum(state):
    inst, opt = _districting(state)
    res = lower_bound(inst, time_limit=4)
    assert res.lower_bound is not None and res.lower_bound <= opt


# --------------------------------------------------------------------------- plans
#
# The plans below are searched with effort 0 (restarts only, no anytime phase): these tests
# check the certificate of whatever plan the search returns, not how good the search is
# (the golden tests pin that). On Connecticut's 8 counties the default anytime search
# spends its whole 7 s CPU cap.


@pytest.fixture(scope="module")
def ri():
    return geodata.counties(["CT"]).rename(columns={"county": "unit_id"})


def test_fit_with_prove_reports_bound_gap_and_optimality(ri):
    plan = Partitioner(2, "population", target=0.2, prove=True, prove_time_limit=20, effort=0).fit(
        ri
    )
    cert = plan.certificate
    assert cert is not None and cert.status == "optimal"
    assert plan.lower_bound == cert.lower_bound <= plan.cut_edges
    assert plan.proven_optimal == (plan.lower_bound == plan.cut_edges)
    assert plan.gap == pytest.approx(1 - plan.lower_bound / plan.cut_edges)
    assert cert.sentence() in plan.notes
    assert plan.summary()["certificate"]["lower_bound"] == plan.lower_bound
    plain = Partitioner(2, "population", target=0.2, effort=0).fit(ri)
    assert plain.certificate is None and plain.lower_bound is None and not plain.proven_optimal


def test_a_unit_above_the_cap_is_proven_infeasible(ri):
    # Hartford County alone is about a quarter of Connecticut: four territories within 1%
    # cannot hold it, and the proof names it
    plan = Partitioner(6, "population", target=0.01, prove=True, prove_time_limit=10, effort=0).fit(
        ri
    )
    cert = plan.certificate
    assert cert.infeasible and cert.lower_bound is None and not plan.proven_optimal
    big = ri.loc[ri["population"].idxmax(), "unit_id"]
    assert str(big) in cert.reason and "alone holds" in cert.reason
    assert not any("unit sizes or shape do not allow it" in n for n in plan.notes)
    assert any(n.startswith("no plan can meet the constraints (proven") for n in plan.notes)


def test_locks_that_make_the_band_unreachable_are_proven(ri):
    pop = ri.set_index("unit_id")["population"].sort_values()
    # the two lightest counties locked to T01, the rest of the map locked to T02 but one:
    # T01 can only grow by that one county, too little for a half within 5%
    locked = {u: "T02" for u in pop.index[2:-1]}
    locked.update({pop.index[0]: "T01", pop.index[1]: "T01"})
    plan = Partitioner(2, "population", target=0.05, prove=True, prove_time_limit=10, effort=0).fit(
        ri, locked=locked
    )
    cert = plan.certificate
    assert cert.infeasible
    assert "T01" in cert.reason or "T02" in cert.reason


def test_explain_words_a_home_that_cannot_reach_a_share():
    # a path a - b - c - d - e, the home of T01 at a and d locked to T02: T01 reaches only
    # a, b, c (3 of the 4 a half would be)
    inst = Instance.from_bands(
        np.array([0, 1, 2, 3]), np.array([1, 2, 3, 4]), np.array([1.0, 1.0, 1.0, 3.0, 2.0]),
        shares=np.array([0.5, 0.5]), tolerances=[0.1], fixed=np.array([0, -1, -1, 1, -1]),
        names=["T01", "T02"], columns=["population"],
    )  # fmt: skip
    res = lower_bound(inst, time_limit=5)
    assert res.infeasible
    why = explain(inst, res.empty, np.array(list("abcde")))
    assert "T01" in why and "0.75 of a share" in why


# --------------------------------------------------------------------------- CLI


def test_cli_prove_writes_the_bound_file_and_the_sentence(tmp_path, ri):
    units = tmp_path / "ct.parquet"
    ri.to_parquet(units)
    out = tmp_path / "plan.csv"
    r = run_cli(
        "partition", units, "--territories", "2", "--balance", "population",
        "--target", "20", "--prove", "--prove-time-limit", "20", "--effort", "0", "--out", out,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    bound = json.loads((tmp_path / "plan.bound.json").read_text())
    assert set(bound) >= {"cut_edges", "lower_bound", "gap", "proven_optimal", "seconds"}
    assert bound["lower_bound"] <= bound["cut_edges"]
    assert "T01–T02: " in r.stdout and "cut edges" in r.stdout
    r2 = run_cli(
        "partition", units, "--territories", "2", "--balance", "population",
        "--effort", "0", "--out", tmp_path / "plain.csv",
    )  # fmt: skip
    assert r2.returncode == 0 and not (tmp_path / "plain.bound.json").exists()


def test_cli_prove_time_limit_must_be_positive(tmp_path, ri):
    units = tmp_path / "ct.parquet"
    ri.to_parquet(units)
    r = run_cli(
        "partition", units, "--territories", "2", "--balance", "population", "--prove",
        "--prove-time-limit", "0", "--out", tmp_path / "p.csv",
    )  # fmt: skip
    assert r.returncode == 2 and "--prove-time-limit" in r.stderr


def test_missing_solver_is_a_clear_exit_2(tmp_path, ri, monkeypatch):
    units = tmp_path / "ct.parquet"
    ri.to_parquet(units)
    # `import highspy` fails, as on a machine without the extra (the CLI in this process;
    # tests/test_cli.py runs `python -m patchmap` in a subprocess)
    monkeypatch.setitem(sys.modules, "highspy", None)
    r = run_cli("partition", units, "--territories", "2", "--balance", "population", "--prove",
                "--out", tmp_path / "p.csv")  # fmt: skip
    assert r.returncode == 2, r.stderr[-2000:]
    assert "patchmap[exact]" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "p.csv").exists()


def test_the_solver_banner_never_reaches_stdout():
    # HiGHS prints a banner on file descriptor 1 the first time it is created in a process;
    # a caller capturing sys.stdout (a notebook, a test) must not get it on the terminal
    import subprocess
    import sys

    code = (
        "import contextlib, io, numpy as np\n"
        "from patchmap.certify import Instance, lower_bound\n"
        "inst = Instance.from_bands(np.array([0, 1]), np.array([1, 2]), np.ones(3),\n"
        "    shares=np.full(2, 0.5), tolerances=[0.5])\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    res = lower_bound(inst, time_limit=5)\n"
        "assert res.lower_bound == 1, res\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout == "", r.stdout


def test_plan_file_prove_runs_through_to_summary_md(tmp_path, ri):
    from patchmap.config import load_config

    units = tmp_path / "ct.parquet"
    ri.to_parquet(units)
    (tmp_path / "a.csv").write_text("account_id,zip\n1,06103\n2,06510\n3,06320\n")
    (tmp_path / "plan.toml").write_text(
        f'[accounts]\npath = "a.csv"\n[units]\nkind = "{units.as_posix()}"\nunit_id = "unit_id"\n'
        '[partition]\nterritories = 2\nbalance = "population"\ntarget = 20\nprove = true\n'
        'prove_time_limit = 15\neffort = 0\n[output]\ndir = "out"\n'
    )
    cfg = load_config(tmp_path / "plan.toml")
    assert cfg.partition["prove"] is True and cfg.partition["prove_time_limit"] == 15
    r = run_cli("run", tmp_path / "plan.toml", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    bound = sorted((tmp_path / "out").rglob("*.bound.json"))
    assert bound, sorted(p.name for p in (tmp_path / "out").rglob("*"))
    md = next((tmp_path / "out").rglob("summary.md")).read_text()
    assert "- optimality (exact model" in md and "T01–T02: " in md
