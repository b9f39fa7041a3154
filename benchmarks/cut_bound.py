"""A lower bound on cut edges for any 0.5%-balanced plan of RI + DE + DC ZCTAs (K = 4).

On this instance METIS cuts fewer edges than patchmap but leaves a territory about 6% off
the mean; the issue's target was a cut within 1.2x METIS's. This script shows from the
data that no plan with every territory within 0.5% of the mean population (and every
territory connected in the benchmark's adjacency graph) can meet it:

(a) DC touches the rest of the graph through one edge only, the bridge from a DC ZCTA to
    a DE ZCTA (call it r). DC's population is below the 0.5% floor, so every territory
    that holds a DC unit must also leave DC, through that edge; two territories cannot
    both hold it, so DC lies whole in one territory T, and T = DC + S with S a connected
    set of non-DC units containing r and population(S) in [floor - DC, cap - DC].
    Every edge from S to another non-DC unit is cut. Growing every connected set from r
    (depth-first, pruned at cap - DC, which is small) gives the least such count.
(b) RI's population is above the cap, so RI is split. The territories that hold RI
    units (T is not one of them if no set in (a) reaches RI, so K - 1 of them) each hold
    at most the cap of RI's population. A MILP (scipy / HiGHS) assigns RI units to that
    many labels, each label's population <= cap, and minimises the RI-internal edges
    between labels. Contiguity and the other states are dropped, so the optimum is a
    lower bound on the RI-internal edges any such plan cuts.

(a) counts no RI-internal edge, so every plan within 0.5% cuts at least (a) + (b) edges.
The table (also run here: METIS and patchmap on the same graph) goes into its own
section of BENCHMARKS.md.

    python benchmarks/cut_bound.py
"""

from __future__ import annotations

import datetime as dt
import warnings
from pathlib import Path

import numpy as np
from _report import machine, write_section
from partition_peers import load_instance, score
from scipy import sparse
from scipy.optimize import Bounds, LinearConstraint, milp

REPO = Path(__file__).resolve().parents[1]
SECTION = "## Cut-edge lower bound on RI + DE + DC"
INSTANCE = "ri_de_dc_zcta"
TOL = 0.005  # max deviation from the mean territory population


def need(ok: bool, why: str) -> None:
    """Stop when a premise of the argument fails on the data."""
    if not ok:
        raise SystemExit(f"the argument does not apply: {why}")


def connected_sets(root: int, nbrs: dict[int, set[int]], pop: np.ndarray, cap: float):
    """Every connected set of units containing ``root`` with population <= ``cap``."""
    seen: set[frozenset[int]] = set()
    stack = [frozenset([root])]
    while stack:
        s = stack.pop()
        if s in seen:
            continue
        seen.add(s)
        total = pop[list(s)].sum()
        for v in {v for u in s for v in nbrs[u]} - s:
            if total + pop[v] <= cap:
                stack.append(s | {v})
    return seen


def min_split_cut(pop: np.ndarray, a: np.ndarray, b: np.ndarray, labels: int, cap: float):
    """Least number of edges (a, b) joining different labels, when every unit gets one of
    ``labels`` labels and each label's population is <= ``cap`` (contiguity ignored)."""
    n, m = len(pop), len(a)
    nx = n * labels
    x = np.arange(nx).reshape(n, labels)  # x[u, t] = 1: unit u has label t
    rows, cols, vals, lo, hi = [], [], [], [], []
    r = 0
    for u in range(n):  # one label per unit
        rows += [r] * labels
        cols += x[u].tolist()
        vals += [1.0] * labels
        lo.append(1)
        hi.append(1)
        r += 1
    for t in range(labels):  # label population <= cap
        rows += [r] * n
        cols += x[:, t].tolist()
        vals += pop.tolist()
        lo.append(0)
        hi.append(cap)
        r += 1
    for e in range(m):  # y_e >= x[a, t] - x[b, t]: y_e = 1 when a and b differ
        for t in range(labels):
            rows += [r] * 3
            cols += [x[a[e], t], x[b[e], t], nx + e]
            vals += [-1.0, 1.0, 1.0]
            lo.append(0)
            hi.append(np.inf)
            r += 1
    A = sparse.csr_matrix((vals, (rows, cols)), shape=(r, nx + m))
    lb, ub = np.zeros(nx + m), np.ones(nx + m)
    lb[x[int(np.argmax(pop)), 0]] = 1  # symmetry: the largest unit takes label 0
    res = milp(
        np.r_[np.zeros(nx), np.ones(m)],
        constraints=LinearConstraint(A, lo, hi),
        integrality=np.r_[np.ones(nx), np.zeros(m)],
        bounds=Bounds(lb, ub),
    )
    if res.status != 0:
        raise SystemExit(f"MILP not solved to optimality: {res.message}")
    return round(res.fun)


def main() -> int:
    from patchmap import geodata
    from patchmap.units import build_adjacency

    units, k = load_instance(INSTANCE)
    zc = geodata.zcta_polygons(["RI", "DE", "DC"])
    state = units["unit_id"].map(dict(zip(zc["zcta"], zc["state"], strict=True))).to_numpy()
    ids = units["unit_id"].to_numpy()
    adj = build_adjacency(units, id_col="unit_id")
    pop = units["population"].to_numpy(dtype=float)
    i, j = adj.edges()
    mean = pop.sum() / k
    floor, cap = mean * (1 - TOL), mean * (1 + TOL)
    dc, ri = state == "DC", state == "RI"
    ri_inner = ri[i] & ri[j]

    # (a) DC's territory
    leave = np.flatnonzero(dc[i] != dc[j])
    need(len(leave) == 1, "DC meets the rest through more than one edge")
    e = leave[0]
    dc_end, r = (i[e], j[e]) if dc[i[e]] else (j[e], i[e])
    pair = {ids[dc_end], ids[r]}
    bridges = zip(adj.bridges["unit_a"], adj.bridges["unit_b"], strict=True)
    need(any({a, b} == pair for a, b in bridges), "DC's one edge out is not a bridge")
    dc_pop = pop[dc].sum()
    need(dc_pop < floor, "a territory could lie inside DC")
    nbrs: dict[int, set[int]] = {u: set() for u in np.flatnonzero(~dc)}
    for a, b in zip(i, j, strict=True):
        if not (dc[a] or dc[b]):
            nbrs[a].add(b)
            nbrs[b].add(a)
    sets = connected_sets(r, nbrs, pop, cap - dc_pop)
    best_a, best_s, n_ok = None, None, 0
    for s in sets:
        if pop[list(s)].sum() < floor - dc_pop:
            continue
        n_ok += 1
        cut = sum(1 for u in s for v in nbrs[u] if v not in s and not (ri[u] and ri[v]))
        if best_a is None or cut < best_a:
            best_a, best_s = cut, s
    need(best_a is not None, "no territory for DC within the tolerance")
    dc_reaches_ri = any(ri[u] for s in sets for u in s)

    # (b) RI's internal cut
    ri_pop = pop[ri].sum()
    need(ri_pop > cap, "RI fits in one territory")
    pos = np.full(len(pop), -1)
    pos[ri] = np.arange(ri.sum())
    labels = k if dc_reaches_ri else k - 1
    best_b = min_split_cut(pop[ri], pos[i[ri_inner]], pos[j[ri_inner]], labels, cap)
    bound = best_a + best_b

    # the two tools, as in partition_peers.run_tool
    import pymetis

    from patchmap.partition import Partitioner

    opts = pymetis.Options()
    opts.contig = 1
    opts.seed = 0
    csr = adj.matrix.tocsr()
    vw = np.maximum(np.round(pop), 0).astype(int).tolist()
    with warnings.catch_warnings():  # pymetis 2025 deprecates xadj/adjncy; kept as peers do
        warnings.simplefilter("ignore", DeprecationWarning)
        _, parts = pymetis.part_graph(
            k, xadj=csr.indptr.tolist(), adjncy=csr.indices.tolist(), vweights=vw, options=opts
        )
    plan = Partitioner(k, "population", seed=0).fit(units, adjacency=adj)
    plans = {
        "METIS (pymetis, contiguous, seed 0, default ufactor 30)": [int(p) for p in parts],
        'patchmap `Partitioner(4, "population", seed=0)`': plan.assignment[ids].tolist(),
    }
    res = {}
    for name, lab in plans.items():
        codes = np.unique(np.asarray(lab, dtype=str), return_inverse=True)[1].ravel()
        res[name] = (int((codes[i] != codes[j]).sum()), score(INSTANCE, k, lab, adj, pop))

    n_e = adj.n_edges
    (metis_name, (metis_cut, metis_sc)), (pm_name, (pm_cut, pm_sc)) = res.items()
    target = 1.2 * metis_cut
    s_desc = ", ".join(sorted(ids[u] for u in best_s))
    table = [
        "| plan | cut edges | cut-edge frac | max dev % | non-contiguous |",
        "|---|---:|---:|---:|---:|",
        f"| {metis_name} | {metis_cut} | {metis_cut / n_e:.4f} "
        f"| {100 * metis_sc['max_dev']:.2f} | {metis_sc['noncontig']} |",
        f"| 1.2x METIS (the issue's target) | {target:.1f} | {target / n_e:.4f} | | |",
        f"| lower bound, any plan within {100 * TOL:.1f}%: (a) {best_a} + (b) {best_b} "
        f"| {bound} | {bound / n_e:.4f} | <= {100 * TOL:.2f} | 0 (assumed) |",
        f"| {pm_name} | {pm_cut} | {pm_cut / n_e:.4f} "
        f"| {100 * pm_sc['max_dev']:.2f} | {pm_sc['noncontig']} |",
    ]
    print("\n".join(table))
    verdict = "cannot" if bound > target else "might"
    lines = [
        SECTION,
        "",
        f"RI + DE + DC ZCTAs ({len(units)} units, {n_e} adjacency edges incl. "
        f"{len(adj.bridges)} bridges), K = {k}, balanced on 2010 population "
        f"(mean {mean:,.0f}); the instance and graph of the partition section. "
        f"A plan with max dev <= {100 * TOL:.1f}% {verdict} meet the 1.2x-METIS cut target.",
        "",
        f"- date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {machine(libs=['patchmap', 'pymetis', 'scipy'])}",
        "- command: `python benchmarks/cut_bound.py`",
        f"- (a) DC ({dc_pop:,.0f} people, below the floor {floor:,.0f}) meets the rest only "
        f"by the bridge {ids[dc_end]}-{ids[r]}, so DC's territory is DC plus a connected set "
        f"S of non-DC units containing {ids[r]} with {floor - dc_pop:,.0f} <= population(S) "
        f"<= {cap - dc_pop:,.0f}; of the {len(sets):,} connected sets from {ids[r]} under "
        f"the cap, {n_ok:,} are in that range, and the least number of edges from S to "
        f"other non-DC units is {best_a} (e.g. S = {s_desc})",
        f"- (b) RI ({ri_pop:,.0f} people, above the cap {cap:,.0f}) is split among at most "
        f"{labels} territories{'' if dc_reaches_ri else ' (no set in (a) reaches RI)'}; "
        f"the MILP over RI's {int(ri.sum())} units and {int(ri_inner.sum())} internal edges "
        f"(each part <= cap, contiguity dropped) cuts at least {best_b} of them",
        "- (a) counts no RI-internal edge, so the two sets of cut edges are disjoint",
        "",
        *table,
        "",
    ]
    write_section(REPO / "BENCHMARKS.md", SECTION, "\n".join(lines))
    print("wrote BENCHMARKS.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
