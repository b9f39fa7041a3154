"""patchmap's territory engine side by side with GerryChain, METIS (pymetis), KaHIP and spopt.

Every tool gets the same instance (real Census geography, population as the balance
measure) and the same adjacency graph (rook contiguity, islands bridged), runs in its own
subprocess with a time limit, and is scored by the same functions from
``patchmap.metrics``. The table goes into the partition section of ``BENCHMARKS.md``
(other sections of that file are left as they are).

    python benchmarks/partition_peers.py                 # all instances, 300 s per peer run
    python benchmarks/partition_peers.py --timeout 60 --instances ca_zcta
    python benchmarks/partition_peers.py --instances us_h3r7 --bridge-factor 0  # tree only

Peers are optional (``pip install -e ".[bench]"``); a missing one is reported, not fatal.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _report import machine, write_section

REPO = Path(__file__).resolve().parents[1]
SECTION = "## Partition: patchmap vs GerryChain, METIS, KaHIP, spopt"
NOT_LOWER48 = {"AK", "HI", "PR", "AS", "GU", "MP", "VI"}

# every instance runs the FAST_TOOLS; GerryChain and spopt run on the smaller ones too
FAST_TOOLS = ["patchmap", "metis", "metis-u5", "kahip"]
ALL_TOOLS = [*FAST_TOOLS, "gerrychain-0.5%", "gerrychain-2%", "spopt-skater"]

# instance -> (description, K, tools to run)
INSTANCES: dict[str, tuple[str, int, list[str]]] = {
    "ca_zcta": (
        "California ZCTAs",
        20,
        ALL_TOOLS,
    ),
    "l48_county": (
        "lower-48 counties",
        20,
        ALL_TOOLS,
    ),
    "ri_de_dc_zcta": (
        "RI + DE + DC ZCTAs",
        4,
        ALL_TOOLS,
    ),
    "ca_h3r7": (
        "California H3 res 7 (populated cells)",
        20,
        FAST_TOOLS,
    ),
    "tx_h3r7": (
        "Texas H3 res 7 (every cell; population from ZCTA Voronoi cells)",
        8,
        FAST_TOOLS,
    ),
    "hi_zcta": (
        "Hawaii ZCTAs (Voronoi cells of the gazetteer points; islands)",
        4,
        FAST_TOOLS,
    ),
    "us_zcta_voronoi": (
        "lower-48 ZCTAs (Voronoi cells of the gazetteer points)",
        200,
        FAST_TOOLS,
    ),
    "us_h3r7": (
        "lower-48 H3 res 7 (populated cells: ZCTA Voronoi cells of >= 100 people/km2; islands)",
        200,
        FAST_TOOLS,
    ),
}
SETTLED_KM2 = 100.0  # people per km2 of land (gazetteer) for a ZCTA's cells to count as populated

TOOL_NOTES = {
    "patchmap": "patchmap `Partitioner(K, 'population', seed=0)` (defaults: target 0.5%)",
    "metis": "METIS k-way via pymetis, contiguous, default imbalance (ufactor 30)",
    "metis-u5": "METIS k-way via pymetis, contiguous, ufactor 5 (asks for 0.5%)",
    "kahip": "KaHIP `kaffpa` preset strong, imbalance 0.5% (guarantees neither contiguity "
    "nor a lower bound on a block's weight)",
    "gerrychain-0.5%": "GerryChain `recursive_tree_part`, epsilon 0.5%",
    "gerrychain-2%": "GerryChain `recursive_tree_part`, epsilon 2%",
    "spopt-skater": "spopt SKATER (K regions on population; spopt has no balance constraint)",
}


# ---------------------------------------------------------------------------------------------
# instances (the same data in every process)


def load_instance(name: str):
    """(units GeoDataFrame with unit_id and population, K)."""
    from patchmap import geodata

    if name == "ca_zcta":
        units = geodata.zcta_polygons(["CA"]).rename(columns={"zcta": "unit_id"})
    elif name == "hi_zcta":
        from patchmap.units.zcta import zcta_voronoi_units

        units = zcta_voronoi_units(["HI"])
    elif name == "ri_de_dc_zcta":
        units = geodata.zcta_polygons(["RI", "DE", "DC"]).rename(columns={"zcta": "unit_id"})
    elif name == "l48_county":
        c = geodata.counties()
        c = c[~c["state"].isin(NOT_LOWER48)]
        units = c[~c.geometry.is_empty].rename(columns={"county": "unit_id"})
    elif name == "ca_h3r7":
        units = _h3_california()
    elif name == "tx_h3r7":
        units = _h3_voronoi("TX")
    elif name == "us_zcta_voronoi":
        from patchmap.units.zcta import zcta_voronoi_units

        lower48 = sorted(set(geodata.FIPS_TO_STATE.values()) - NOT_LOWER48)
        units = zcta_voronoi_units(lower48)
    elif name == "us_h3r7":
        units = _h3_lower48()
    else:
        raise SystemExit(f"unknown instance {name!r} (choose from {', '.join(INSTANCES)})")
    units = units[["unit_id", "population", "geometry"]].reset_index(drop=True)
    return units, INSTANCES[name][1]


def _h3_california():
    """H3 resolution-7 cells over California whose centre lies in a populated ZCTA; each
    ZCTA's 2010 population is shared evenly among its cells."""
    from patchmap import geodata

    zcta = geodata.zcta_polygons(["CA"]).rename(columns={"zcta": "unit_id"})
    units = _r7_cells_sharing(geodata.region_geometry("CA"), zcta)
    return units[units["population"] > 0].reset_index(drop=True)


def _h3_voronoi(state: str):
    """Every H3 resolution-7 cell whose centre lies in ``state`` (a sparse, fine grid as a
    new user draws it); each ZCTA's 2010 population is shared evenly among the cells whose
    centre lies in its Voronoi cell (the bundled polygons cover only a few states)."""
    from patchmap import geodata
    from patchmap.units.zcta import zcta_voronoi_units

    return _r7_cells_sharing(geodata.region_geometry(state), zcta_voronoi_units([state]))


def _h3_lower48():
    """H3 resolution-7 cells over the lower 48 whose centre lies in a populated ZCTA (one
    of at least :data:`SETTLED_KM2` people per km2 of land; its polygon the Voronoi cell of
    its gazetteer point, the bundled polygons cover only a few states); each ZCTA's 2010
    population is shared evenly among its cells. Towns and cities far apart make many
    islands, joined by bridge edges."""
    import shapely

    from patchmap import geodata
    from patchmap.units.zcta import zcta_voronoi_units

    lower48 = sorted(set(geodata.FIPS_TO_STATE.values()) - NOT_LOWER48)
    zcta = zcta_voronoi_units(lower48)
    dense = zcta["population"] >= SETTLED_KM2 * zcta["land_km2"].clip(lower=1e-9)
    zcta = zcta[dense & (zcta["population"] > 0)].reset_index(drop=True)
    return _r7_cells_sharing(shapely.union_all(zcta.geometry.values), zcta)


def _r7_cells_sharing(region, areas):
    """The H3 resolution-7 cells of ``region`` whose centre lies in one of ``areas``
    (``unit_id``, ``population``, polygons); each area's population is shared evenly among
    its cells."""
    import geopandas as gpd
    import h3

    from patchmap.units.h3 import cells_to_polygons

    cells = sorted(h3.geo_to_cells(region, 7))
    ll = np.array([h3.cell_to_latlng(c) for c in cells])
    pts = gpd.GeoDataFrame(
        {"cell": cells}, geometry=gpd.points_from_xy(ll[:, 1], ll[:, 0]), crs=4326
    )
    joined = gpd.sjoin(
        pts, areas[["unit_id", "population", "geometry"]], how="inner", predicate="within"
    )
    joined = joined[~joined.index.duplicated()]
    share = joined.groupby("unit_id")["cell"].transform("size")
    ids = joined["cell"].to_numpy()
    return gpd.GeoDataFrame(
        {"unit_id": ids, "population": (joined["population"] / share).round(3).to_numpy()},
        geometry=cells_to_polygons(ids).values,
        crs=4326,
    )


# ---------------------------------------------------------------------------------------------
# one tool on one instance (runs in a subprocess)


def run_tool(tool: str, instance: str, seed: int, repeat: int, bridge_factor: float) -> dict:
    """Run ``tool``; return labels (list, one per unit in instance order) and seconds.

    Seconds are the best of up to ``repeat`` runs (as ``timeit`` reports), repeating only
    while the runs so far took under 20 s in all, so a busy machine skews less.
    """
    from patchmap.units import build_adjacency

    units, k = load_instance(instance)
    t0 = time.perf_counter()
    adj = build_adjacency(units, id_col="unit_id", bridge_factor=bridge_factor)
    adj_s = time.perf_counter() - t0
    pop = units["population"].to_numpy(dtype=float)
    n = len(units)
    i, j = adj.edges()
    if tool == "patchmap":
        from patchmap.partition import Partitioner

        def algo() -> list:
            plan = Partitioner(k, "population", seed=seed).fit(units, adjacency=adj)
            return plan.assignment.reindex(units["unit_id"]).to_numpy().tolist()

    elif tool.startswith("metis"):
        import pymetis

        opts = pymetis.Options()
        opts.contig = 1
        opts.seed = seed
        if tool == "metis-u5":
            opts.ufactor = 5
        m = adj.matrix.tocsr()
        xadj, adjncy = m.indptr.tolist(), m.indices.tolist()
        vw = np.maximum(np.round(pop), 0).astype(int).tolist()

        def algo() -> list:
            _, parts = pymetis.part_graph(k, xadj=xadj, adjncy=adjncy, vweights=vw, options=opts)
            return [int(x) for x in parts]

    elif tool == "kahip":
        import kahip

        m = adj.matrix.tocsr()
        xadj, adjncy = m.indptr.tolist(), m.indices.tolist()
        vw = np.maximum(np.round(pop), 0).astype(int).tolist()
        ew = [1] * len(adjncy)

        def algo() -> list:
            _, parts = kahip.kaffpa(vw, xadj, ew, adjncy, k, 0.005, True, seed, kahip.STRONG)
            return [int(x) for x in parts]

    elif tool.startswith("gerrychain"):
        import networkx as nx
        from gerrychain import Graph
        from gerrychain.partition.initial_partition_generators import recursive_tree_part

        eps = 0.005 if tool.endswith("0.5%") else 0.02
        g = nx.Graph()
        g.add_nodes_from((x, {"population": float(pop[x])}) for x in range(n))
        g.add_edges_from(zip(i.tolist(), j.tolist(), strict=True))
        graph = Graph.from_networkx(g)

        def algo() -> list:
            assign = recursive_tree_part(
                graph, range(k), pop.sum() / k, "population", eps, rng=seed
            )
            return [int(assign[x]) for x in range(n)]

    elif tool == "spopt-skater":
        import warnings

        from libpysal.weights import W
        from spopt.region import Skater

        neigh: dict[int, list[int]] = {x: [] for x in range(n)}
        for a, b in zip(i.tolist(), j.tolist(), strict=True):
            neigh[a].append(b)
            neigh[b].append(a)
        warnings.simplefilter("ignore")
        w = W(neigh, silence_warnings=True)
        frame = units.assign(pop=pop)

        def algo() -> list:
            model = Skater(frame, w, ["pop"], n_clusters=k, floor=1, islands="ignore")
            model.solve()
            return [int(x) for x in model.labels_]

    else:
        raise SystemExit(f"unknown tool {tool!r}")
    times = []
    labels: list = []
    while len(times) < max(repeat, 1) and sum(times) < 20.0:
        t = time.perf_counter()
        out = algo()
        times.append(time.perf_counter() - t)
        labels = labels or out
    return {"labels": labels, "seconds": min(times), "runs": len(times), "adjacency_s": adj_s}


# ---------------------------------------------------------------------------------------------
# the driver


def score(instance: str, k: int, labels: list, adj, pop: np.ndarray) -> dict:
    from patchmap.metrics import cut_edge_fraction, is_contiguous, polsby_popper_from_parts

    uniq, codes = np.unique(np.asarray(labels, dtype=str), return_inverse=True)
    kk = len(uniq)
    tot = np.bincount(codes, weights=pop, minlength=kk)
    dev = np.abs(tot / (pop.sum() / k) - 1)
    pp = polsby_popper_from_parts(codes, adj.area_km2, adj.perimeter_km, adj.shared_km, kk)
    i, j = adj.edges()
    return {
        "cut_edges": int((codes[i] != codes[j]).sum()),
        "territories": kk,
        "max_dev": float(dev.max()) if kk == k else float("nan"),
        "cut": cut_edge_fraction(adj, codes),
        "pp": float(np.nanmean(pp)),
        "noncontig": int((~is_contiguous(adj, codes)).sum()),
    }


def versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for pkg in ["patchmap", "gerrychain", "pymetis", "kahip", "spopt", "libpysal"]:
        try:
            out.append(f"{pkg} {version(pkg)}")
        except PackageNotFoundError:
            out.append(f"{pkg} (not installed)")
    return ", ".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per peer run")
    ap.add_argument("--instances", default=",".join(INSTANCES), help="comma-separated")
    ap.add_argument("--tools", default="", help="comma-separated subset of tools")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per tool (best counts)")
    ap.add_argument("--out", default=str(REPO / "BENCHMARKS.md"))
    ap.add_argument(
        "--bridge-factor",
        type=float,
        default=None,
        help="islands' links besides the shortest tree (build_adjacency's bridge_factor; "
        "0: the tree alone; default: the library's)",
    )
    ap.add_argument(
        "--worker", nargs=3, metavar=("TOOL", "INSTANCE", "JSON"), help=argparse.SUPPRESS
    )
    args = ap.parse_args(argv)
    from patchmap.units import BRIDGE_FACTOR, build_adjacency

    if args.bridge_factor is None:
        args.bridge_factor = BRIDGE_FACTOR

    if args.worker:
        tool, instance, out = args.worker
        res = run_tool(tool, instance, args.seed, args.repeat, args.bridge_factor)
        Path(out).write_text(json.dumps(res))
        return 0

    args.load = [os.getloadavg()[0]]
    rows = []
    adj_times = {}
    wanted_tools = [t for t in args.tools.split(",") if t]
    for instance in [s for s in args.instances.split(",") if s]:
        desc, k, tools = INSTANCES[instance]
        units, k = load_instance(instance)
        t0 = time.perf_counter()
        adj = build_adjacency(units, id_col="unit_id", bridge_factor=args.bridge_factor)
        adj_times[instance] = (time.perf_counter() - t0, len(adj.bridges), adj.n_edges)
        pop = units["population"].to_numpy(dtype=float)
        for tool in tools:
            if wanted_tools and tool not in wanted_tools:
                continue
            with tempfile.TemporaryDirectory() as tmp:
                res_path = Path(tmp) / "result.json"
                cmd = [
                    sys.executable,
                    __file__,
                    "--seed",
                    str(args.seed),
                    "--repeat",
                    str(args.repeat),
                    "--bridge-factor",
                    str(args.bridge_factor),
                    "--worker",
                    tool,
                    instance,
                    str(res_path),
                ]
                row = {"tool": tool, "instance": desc, "units": len(units), "k": k}
                try:
                    proc = subprocess.run(
                        cmd, capture_output=True, text=True, timeout=args.timeout, cwd=REPO
                    )
                except subprocess.TimeoutExpired:
                    row["status"] = f"no plan in {args.timeout:.0f} s"
                else:
                    if proc.returncode != 0 or not res_path.exists():
                        last = (proc.stderr.strip().splitlines() or ["failed"])[-1]
                        row["status"] = f"error: {last[:80]}"
                    else:
                        res = json.loads(res_path.read_text())
                        row.update(score(instance, k, res["labels"], adj, pop))
                        row["seconds"] = res["seconds"]
                        row["status"] = (
                            "ok" if row["territories"] == k else f"{row['territories']} territories"
                        )
            rows.append(row)
            print(_fmt_row(row), flush=True)

    args.load.append(os.getloadavg()[0])
    write_section(Path(args.out), SECTION, render(rows, adj_times, args))
    print(f"wrote {args.out}")
    return 0


def _fmt_row(r: dict) -> str:
    if "seconds" not in r:
        cells = [
            r["tool"],
            r["instance"],
            f"{r['units']:,}",
            str(r["k"]),
            r["status"],
            "",
            "",
            "",
            "",
            "",
        ]
    else:
        md = "n/a" if np.isnan(r["max_dev"]) else f"{100 * r['max_dev']:.2f}"
        if r["status"] != "ok":
            md += f" ({r['status']})"
        cells = [
            r["tool"],
            r["instance"],
            f"{r['units']:,}",
            str(r["k"]),
            md,
            f"{r['cut_edges']:,}",
            f"{r['cut']:.3f}",
            f"{r['pp']:.3f}",
            str(r["noncontig"]),
            f"{r['seconds']:.2f}",
        ]
    return "| " + " | ".join(cells) + " |"


def _findings(rows: list[dict]) -> list[str]:
    """One line per instance: patchmap against the issue's targets and METIS's cut."""
    out = []
    for inst in dict.fromkeys(r["instance"] for r in rows):
        by = {r["tool"]: r for r in rows if r["instance"] == inst}
        pm, mt, kh = by.get("patchmap"), by.get("metis"), by.get("kahip")
        if not pm or "seconds" not in pm:
            continue
        line = (
            f"- {inst}: patchmap max dev {100 * pm['max_dev']:.2f}% "
            f"({'meets' if pm['max_dev'] <= 0.005 else 'misses'} 0.5%), "
            f"{pm['noncontig']} non-contiguous, {pm['seconds']:.2f} s"
        )
        if mt and "seconds" in mt and mt["cut"] > 0:
            ratio = pm["cut"] / mt["cut"]
            line += (
                f"; cut-edge fraction {ratio:.2f}x METIS's "
                f"({'meets' if ratio <= 1.2 else 'misses'} 1.2x; METIS max dev "
                f"{100 * mt['max_dev']:.1f}%)"
            )
        if kh and "seconds" in kh:
            ok = pm["max_dev"] <= 0.005 and pm["noncontig"] == 0
            line += (
                f"; {pm['cut_edges']:,} cut edges against KaHIP's {kh['cut_edges']:,} "
                f"({'meets' if ok and pm['cut_edges'] <= kh['cut_edges'] else 'misses'} "
                f"<= KaHIP; KaHIP max dev {100 * kh['max_dev']:.2f}%, "
                f"{kh['noncontig']} non-contiguous)"
            )
        if inst == INSTANCES["ri_de_dc_zcta"][0]:
            line += (
                "; no plan within 0.5% can meet 1.2x here: every such plan cuts at least 22 "
                "edges, METIS's 18 x 1.2 = 21.6 (`python benchmarks/cut_bound.py`, section "
                "below)"
            )
        out.append(line)
    return [*out, ""] if out else []


def render(rows: list[dict], adj_times: dict, args) -> str:
    """The BENCHMARKS.md section (markdown)."""
    factor = args.bridge_factor
    links = (
        "the shortest tree of links alone"
        if factor <= 0
        else f"the shortest tree of links plus every link between neighbouring pieces at "
        f"most {factor:g}x the longest tree link on the tree path between them"
    )
    shown = []
    for a in sys.argv[1:]:
        if os.path.isabs(a):  # never record this machine's paths
            rel = os.path.relpath(a, REPO)
            a = rel if not rel.startswith("..") else Path(a).name
        shown.append(a)
    cmd = " ".join(["python benchmarks/partition_peers.py", *shown])
    lines = [
        SECTION,
        "",
        f"- date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {machine()}; load average (1 min) {args.load[0]:.1f} at the start, "
        f"{args.load[-1]:.1f} at the end (other work shared the 2 cores: seconds are "
        "inflated, cuts are not)",
        f"- command: `{cmd}` (peer time limit {args.timeout:.0f} s, seed {args.seed})",
        f"- versions: {versions()}",
        "- balance measure: 2010 census population; every tool gets the same rook adjacency "
        f"graph (islands joined by bridge edges: {links}) and is scored by "
        "`patchmap.metrics`",
        "- seconds: the algorithm only, best of up to "
        f"{args.repeat} runs (graph construction and I/O excluded); building the "
        "adjacency took "
        + ", ".join(
            f"{v[0]:.2f} s for {INSTANCES[k][0]} ({v[1]:,} bridges, {v[2]:,} edges)"
            for k, v in adj_times.items()
        ),
        "- max dev: largest |territory total / (total / K) - 1|; cut-edge frac: share of "
        "adjacency edges between territories; Polsby-Popper: mean over territories, equal-area "
        "projection",
        "",
        "| tool | instance | units | K | max dev % | cut edges | cut-edge frac "
        "| mean Polsby-Popper | non-contiguous territories | seconds |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        *[_fmt_row(r) for r in rows],
        "",
        *_findings(rows),
        "Tools: " + "; ".join(f"`{k}`: {v}" for k, v in TOOL_NOTES.items()) + ".",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
