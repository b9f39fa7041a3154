"""Rep home bases benchmark: 20 reps on California ZCTAs, 30 on lower-48 counties.

For each seed, the rep homes are drawn at random in proportion to unit population (so
several reps often share a metro; draws with two reps in one unit are redrawn), and
``Partitioner(K, 'population', seed=0).fit(units, reps=reps)`` grows one territory per
rep. Prints seed, max deviation, contiguity, whether every home is in its rep's territory,
cut-edge fraction, seconds and the bound (no plan with these homes can deviate less:
too few units link a part of the map to the rest, :mod:`patchmap.certify.corridors`, or
other homes wall a home in, :mod:`patchmap.certify.pockets`), and writes the ``## Rep home bases`` section of
``BENCHMARKS.md`` (``--instance county`` its ``## Rep home bases, counties`` section).

    python benchmarks/reps.py [--seeds 8] [--instance zcta|county] [--out BENCHMARKS.md]
    python benchmarks/reps.py --only 1,12 --no-write   # a few draws, nothing written
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _report import machine, write_section

from patchmap import geodata, metrics
from patchmap.certify.corridors import corridor_bound
from patchmap.certify.pockets import pocket_bound
from patchmap.partition import Partitioner
from patchmap.units import build_adjacency

REPO = Path(__file__).resolve().parents[1]
SECTION = "## Rep home bases"
K, GOAL = 20, 0.02
NOT_LOWER48 = {"AK", "HI", "PR", "AS", "GU", "MP", "VI"}
#: instance -> (section, number of reps, description)
INSTANCES = {
    "zcta": (SECTION, 20, "California ZCTAs (1,769 units)"),
    "county": (f"{SECTION}, counties", 30, "Lower-48 counties (3,108 units)"),
}


def load_units(instance: str) -> pd.DataFrame:
    """The instance's units with ``unit_id`` and ``population``."""
    if instance == "zcta":
        return geodata.zcta_polygons(["CA"]).rename(columns={"zcta": "unit_id"})
    c = geodata.counties()
    c = c[~c["state"].isin(NOT_LOWER48) & ~c.geometry.is_empty]
    return c.rename(columns={"county": "unit_id"}).reset_index(drop=True)


def draw_reps(units: pd.DataFrame, seed: int, k: int = K) -> tuple[pd.DataFrame, np.ndarray]:
    """k reps living in ZCTAs drawn in proportion to population (one rep per ZCTA)."""
    w = units["population"].to_numpy(dtype=float)
    pts = units.geometry.representative_point()
    rng = np.random.default_rng(seed)
    while True:
        idx = rng.choice(len(units), size=k, p=w / w.sum())
        if len(set(idx.tolist())) == k:
            break
    reps = pd.DataFrame({
        "rep_id": [f"r{i:02d}" for i in range(k)],
        "lat": pts.y.to_numpy()[idx], "lon": pts.x.to_numpy()[idx],
    })  # fmt: skip
    return reps, idx


def unit_bound(units: pd.DataFrame, adj, k: int) -> tuple[float, str]:
    """A lower bound on any plan's max deviation from the units alone (homes aside): the
    territory holding unit u is u alone or u plus at least one neighbour, so it deviates
    by at least min(|w_u / mean - 1|, (w_u + lightest neighbour) / mean - 1). Returns
    the largest such bound and a sentence naming its unit."""
    w = units["population"].to_numpy(dtype=float)
    mean = w.sum() / k
    m = adj.matrix.tocsr()
    best, why = 0.0, ""
    for u in np.argsort(-w)[:50].tolist():
        nb = m.indices[m.indptr[u] : m.indptr[u + 1]]
        lightest = int(nb[np.argmin(w[nb])])
        alone = abs(w[u] / mean - 1)
        joined = max((w[u] + w[lightest]) / mean - 1, 0.0)
        lb = min(alone, joined)
        if lb > best:
            name = units["name"].iloc[u] if "name" in units.columns else units["unit_id"].iloc[u]
            best = lb
            why = (
                f"{name} ({units['unit_id'].iloc[u]}, {w[u]:,.0f} people) is {w[u] / mean - 1:+.2%} "
                f"from the mean {mean:,.0f} alone and {joined:+.2%} with its lightest neighbour "
                f"({w[lightest]:,.0f} people)"
            )
    return best, why


def judge(units: pd.DataFrame, adj, plan, reps: pd.DataFrame, idx: np.ndarray) -> dict:
    """Max deviation, contiguity and homes, measured independently of the engine."""
    lab = plan.assignment.reindex(units["unit_id"]).to_numpy()
    tot = pd.Series(units["population"].to_numpy(dtype=float)).groupby(lab).sum()
    return {
        "max_dev": float((tot / tot.mean() - 1).abs().max()),
        "contiguous": bool(metrics.is_contiguous(adj, lab).all()),
        "homes": bool((lab[idx] == reps["rep_id"].to_numpy()).all()),
        "cut": metrics.cut_edge_fraction(adj, lab),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=8, help="rep draws (seeds 0..N-1)")
    ap.add_argument("--instance", choices=sorted(INSTANCES), default="zcta")
    ap.add_argument("--only", help="comma-separated draws to run (instead of 0..N-1)")
    ap.add_argument("--out", default=str(REPO / "BENCHMARKS.md"))
    ap.add_argument("--no-write", action="store_true", help="print the table only")
    args = ap.parse_args(argv)
    draws = [int(x) for x in args.only.split(",")] if args.only else list(range(args.seeds))

    section, k, what = INSTANCES[args.instance]
    ca = load_units(args.instance)
    adj = build_adjacency(ca, id_col="unit_id")
    # the adjacency's unit order is the units' order (the draws index both)
    ids = ca["unit_id"].to_numpy()
    assert (np.asarray(adj.ids) == ids).all()
    w = ca["population"].to_numpy(dtype=float)
    rows = []
    print("seed | max dev % | contiguous | homes respected | cut-edge frac | seconds | bound %")
    for seed in draws:
        reps, idx = draw_reps(ca, seed, k)
        t = time.perf_counter()
        plan = Partitioner(k, "population", seed=0).fit(ca, adjacency=adj, reps=reps)
        r = judge(ca, adj, plan, reps, idx) | {"seed": seed, "s": time.perf_counter() - t}
        b = corridor_bound(adj.matrix, adj.xy_km, w, idx)
        pb = pocket_bound(adj.matrix, w, idx)
        if pb.deviation > 0 and pb.deviation >= b.deviation - 1e-6:
            r |= {"bound": pb.deviation, "why": pb.sentence(ids, reps["rep_id"].to_numpy())}
        else:
            r |= {"bound": b.deviation, "why": b.sentence(ids)}
        rows.append(r)
        print(f"{seed} | {100 * r['max_dev']:.2f} | {r['contiguous']} | {r['homes']} | "
              f"{r['cut']:.3f} | {r['s']:.2f} | {100 * r['bound']:.2f}", flush=True)  # fmt: skip
    if args.no_write:
        return 0
    bound = unit_bound(ca, adj, k)
    write_section(Path(args.out), section, render(rows, section, k, what, bound))
    return 0


def render(
    rows: list[dict], section: str = SECTION, k: int = K, what: str = "",
    bound: tuple[float, str] = (0.0, ""),
) -> str:  # fmt: skip
    """The ``## Rep home bases`` section of BENCHMARKS.md (markdown)."""
    args = sys.argv[1:]
    # an output path outside the repository is the machine's: leave it (and its flag) out
    drop = {i for i, a in enumerate(args) if os.path.isabs(a)}
    drop |= {i - 1 for i in drop if i > 0 and args[i - 1] == "--out"}
    shown = " ".join(["python benchmarks/reps.py",
                      *[a for i, a in enumerate(args) if i not in drop]])  # fmt: skip
    met = [r for r in rows if r["max_dev"] <= GOAL and r["contiguous"] and r["homes"]]
    yn = {True: "yes", False: "no"}
    return "\n".join([
        section,
        "",
        f"{what or INSTANCES['zcta'][2]}, {k} reps whose homes are drawn at random in "
        "proportion to unit population (several reps often live in the same metro; draws "
        f"with two reps in one unit are redrawn); `Partitioner({k}, 'population', seed=0)"
        ".fit(units, reps=reps)`. Target: max deviation <= 2%, every territory contiguous, "
        "each home in its rep's territory.",
        "",
        f"- date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {machine(libs=['patchmap', 'scipy'])}",
        f"- command: `{shown}`",
        "- measured independently of the engine: max dev = largest |territory total / mean - 1|",
        "",
        "- bound: no plan with the draw's homes can have a smaller max deviation (the "
        "larger of the corridor bound, `patchmap.certify.corridors`: a few units are the "
        "only links between a part of the map and the rest, and at most that many "
        "territories can cross them; and the pocket bound, `patchmap.certify.pockets`: a "
        "unit joins a territory only along a path from its home past no other home, "
        "which walls some homes in and drags heavy units' paths along); 0 where neither "
        "found one (which proves nothing either way)",
        "",
        "| seed | max dev % | contiguous | homes respected | cut-edge frac | seconds | bound % |",
        "|---:|---:|---|---|---:|---:|---:|",
        *[
            f"| {r['seed']} | {100 * r['max_dev']:.2f} | {yn[r['contiguous']]} | "
            f"{yn[r['homes']]} | {r['cut']:.3f} | {r['s']:.2f} | {100 * r.get('bound', 0):.2f} |"
            for r in rows
        ],
        "",
        f"- target met in {len(met)} of {len(rows)} draws",
        *[f"- seed {r['seed']}: the target cannot be met: {r['why']}" for r in rows
          if r.get("bound", 0) > GOAL],
        *([f"- no plan can do better than {bound[0]:.2%} max deviation, whatever the homes: "
           f"{bound[1]}; draws at that figure are optimal in max deviation"]
          if bound[0] > 0 else []),
        "",
    ])  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
